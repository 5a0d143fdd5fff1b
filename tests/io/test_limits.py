"""Header checks before decoding: the memory budget, lying headers, zip bombs, absurd spacing."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import nibabel
import numpy as np
import pytest

from medseg.errors import ConfigError, ImageIOError
from medseg.io import Image, integrity, read_image, write_image
from medseg.io.limits import MAX_IMAGE_GB, max_image_bytes

TINY_GB = "0.000001"  # about 1 KiB


def _nifti(path: Path, *, shape=(4, 5, 6), pixdim=(1.0, 1.0, 1.0)) -> Path:
    image = nibabel.Nifti1Image(np.ones(shape, np.float32), np.eye(4))
    image.header["pixdim"][1 : 1 + len(pixdim)] = pixdim
    nibabel.save(image, str(path))
    return path


def _patch_dims(path: Path, dims: tuple[int, ...]) -> None:
    """Rewrite dim[0..] of an uncompressed NIfTI-1 header in place (the data stays as it is)."""
    data = bytearray(path.read_bytes())
    data[40:56] = struct.pack("<8h", len(dims), *dims, *([1] * (7 - len(dims))))
    path.write_bytes(bytes(data))


def test_default_budget_is_generous_and_the_env_variable_overrides_it(monkeypatch) -> None:
    monkeypatch.delenv("MEDSEG_MAX_IMAGE_GB", raising=False)
    assert max_image_bytes() == int(MAX_IMAGE_GB * 2**30) and MAX_IMAGE_GB >= 8
    monkeypatch.setenv("MEDSEG_MAX_IMAGE_GB", "0.5")
    assert max_image_bytes() == 2**29
    assert max_image_bytes(2.0) == 2**31  # the argument wins over the environment


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan"])
def test_a_meaningless_budget_is_a_config_error_naming_the_variable(
    monkeypatch, value: str
) -> None:
    monkeypatch.setenv("MEDSEG_MAX_IMAGE_GB", value)
    with pytest.raises(ConfigError, match="MEDSEG_MAX_IMAGE_GB must be a positive number"):
        max_image_bytes()


@pytest.mark.parametrize("ending", [".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".tif"])
def test_an_image_over_the_budget_is_refused_before_decoding(
    tmp_path: Path, monkeypatch, ending: str
) -> None:
    shape = (40, 40) if ending in (".png", ".tif") else (12, 12, 12)
    path = write_image(
        Image(np.ones(shape, np.uint8), (1.0,) * len(shape)), tmp_path / f"v{ending}"
    )
    assert read_image(path).array.shape == shape  # the default budget reads it
    monkeypatch.setenv("MEDSEG_MAX_IMAGE_GB", TINY_GB)
    with pytest.raises(
        ImageIOError, match=rf"v{ending}: header declares .* GiB .* budget.*MEDSEG_MAX_IMAGE_GB"
    ):
        read_image(path)
    with pytest.raises(ImageIOError, match="budget"):
        read_image(path, max_gb=float(TINY_GB))


@pytest.mark.parametrize("ending", [".nii", ".nii.gz"])
def test_a_header_claiming_terabytes_is_refused_without_allocating(
    tmp_path: Path, ending: str
) -> None:
    path = _nifti(tmp_path / "liar.nii")
    _patch_dims(
        path, (30000, 30000, 30000)
    )  # 30000^3 float32 voxels = 98 TiB; the file holds 480 bytes
    if ending == ".nii.gz":
        (tmp_path / "liar.nii.gz").write_bytes(gzip.compress(path.read_bytes()))
        path = tmp_path / "liar.nii.gz"
    with pytest.raises(ImageIOError, match=r"liar.nii(.gz)?: header declares 1.01e\+05 GiB"):
        read_image(path)


def test_a_gzip_stream_larger_than_its_header_stops_early(tmp_path: Path, monkeypatch) -> None:
    small = _nifti(tmp_path / "small.nii")
    declared = integrity.read_nifti_header(small).file_bytes
    bomb = tmp_path / "bomb.nii.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as f:
        f.write(small.read_bytes())
        f.write(bytes(64 * 2**20))  # 64 MiB of zeros after the data the header declares
    read_bytes = []
    real_open = gzip.open

    class Counting:
        def __init__(self, *args, **kwargs):
            self.file = real_open(*args, **kwargs)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def read(self, n=-1):
            chunk = self.file.read(n)
            read_bytes.append(len(chunk))
            return chunk

    monkeypatch.setattr(integrity, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(integrity.gzip, "open", Counting)
    with pytest.raises(
        ImageIOError, match=f"bomb.nii.gz: file decompresses to more than the {declared} bytes"
    ):
        read_image(bomb)
    assert sum(read_bytes) < declared + 2 * 4096 + 540  # stopped right after the declared size


@pytest.mark.parametrize("bad", [0.0, -2.0, float("nan"), float("inf"), 1e6])
def test_nifti_spacing_zero_negative_nan_inf_or_absurd_is_refused(
    tmp_path: Path, bad: float
) -> None:
    # ITK alone reads a pixdim of 0, NaN or inf as 1.0 mm without a word
    path = _nifti(tmp_path / "s.nii.gz", pixdim=(bad, 1.0, 1.0))
    with pytest.raises(
        ImageIOError, match=r"s.nii.gz: spacing \(.*\) mm (is not positive|exceeds 100 mm).*header"
    ):
        read_image(path)


@pytest.mark.parametrize("spacing", ["0 1 1", "-2 1 1", "1 1 1e6"])
def test_metaimage_spacing_zero_negative_or_absurd_is_refused(tmp_path: Path, spacing: str) -> None:
    path = tmp_path / "m.mha"
    path.write_bytes(
        f"ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementSpacing = {spacing}\n"
        "ElementType = MET_UCHAR\nElementDataFile = LOCAL\n".encode()
        + bytes(64)
    )
    with pytest.raises(ImageIOError, match="m.mha: spacing"):
        read_image(path)


def test_a_spacing_of_100_mm_is_still_accepted(tmp_path: Path) -> None:
    path = _nifti(tmp_path / "thick.nii.gz", pixdim=(0.5, 0.5, 100.0))
    assert read_image(path).spacing == pytest.approx((100.0, 0.5, 0.5))
