"""NIfTI header facts and size checks, before a voxel is decoded.

ITK's reader silently pads a truncated ``.nii.gz`` with zeros, and a gzip stream may hold far
more than its header declares (a "zip bomb"). A complete NIfTI file is
``vox_offset + voxels * bitpix / 8`` bytes long, and a gzip stream ends with ISIZE, the
uncompressed length mod 2**32, so comparing the two costs one header read and one 4-byte seek.
Only when they disagree (or the file is multi-member) is the stream decompressed, in chunks,
counting bytes and stopping as soon as it exceeds what the header declares.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 1 << 24  # decompression chunk: memory stays at 16 MiB whatever the file holds


@dataclass(frozen=True)
class NiftiHeader:
    """The parts of a NIfTI-1/2 header that size and spacing checks need.

    Attributes:
        dims: ``dim[1..ndim]``, the NIfTI (i, j, k, t, ...) sizes (reversed array order).
        bitpix: bits per voxel (all components).
        vox_offset: byte offset of the voxel data.
        pixdim: ``pixdim[1..ndim]``, voxel size per NIfTI axis (mm for the spatial ones).
    """

    dims: tuple[int, ...]
    bitpix: int
    vox_offset: int
    pixdim: tuple[float, ...]

    @property
    def data_bytes(self) -> int:
        """Bytes of voxel data the header declares."""
        return math.prod(max(d, 1) for d in self.dims) * self.bitpix // 8

    @property
    def file_bytes(self) -> int:
        """Length of the complete (uncompressed) file."""
        return self.vox_offset + self.data_bytes


def read_nifti_header(path: Path) -> NiftiHeader | None:
    """Parse the header of a ``.nii`` / ``.nii.gz`` file; None when it is not a NIfTI header."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = f.read(540)
    except (EOFError, OSError, zlib.error):
        return None
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348:  # NIfTI-1
            dims = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            pixdim = struct.unpack(endian + "8f", head[76:108])
            offset = struct.unpack(endian + "f", head[108:112])[0]
            break
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540:  # NIfTI-2
            dims = struct.unpack(endian + "8q", head[16:80])
            bitpix = struct.unpack(endian + "h", head[14:16])[0]
            pixdim = struct.unpack(endian + "8d", head[104:168])
            offset = struct.unpack(endian + "q", head[168:176])[0]
            break
    else:
        return None
    ndim = int(dims[0])
    if not 1 <= ndim <= 7 or bitpix <= 0 or not math.isfinite(offset) or offset < 0:
        return None
    return NiftiHeader(
        tuple(int(d) for d in dims[1 : 1 + ndim]),
        int(bitpix),
        int(offset),
        tuple(float(p) for p in pixdim[1 : 1 + ndim]),
    )


def nifti_size_problem(path: Path, header: NiftiHeader | None = None) -> str | None:
    """Why the data of a ``.nii`` / ``.nii.gz`` file does not match its header, or None.

    Returns:
        ``"file is truncated ..."`` when it holds fewer bytes than the header promises,
        ``"file decompresses to more than ..."`` when a gzip stream holds more; None when the
        sizes agree or the header is unreadable (then the reader reports the file as corrupt).
    """
    header = header or read_nifti_header(path)
    if header is None:
        return None
    expected = header.file_bytes
    truncated = "file is truncated (the data ends early); re-export or re-copy it"
    if not path.name.lower().endswith(".gz"):
        return truncated if path.stat().st_size < expected else None
    with open(path, "rb") as f:
        f.seek(-4, 2)
        isize = int.from_bytes(f.read(4), "little")
    if isize == expected % 2**32:
        return None
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                total += len(chunk)
                if total > expected:
                    return (
                        f"file decompresses to more than the {expected} bytes its header "
                        "declares; it is corrupt or not a plain NIfTI file, re-export it"
                    )
    except (EOFError, OSError, zlib.error):
        return truncated
    return truncated if total < expected else None


def nifti_is_truncated(path: Path) -> bool:
    """True when a ``.nii`` / ``.nii.gz`` file holds fewer bytes than its header promises."""
    problem = nifti_size_problem(path)
    return problem is not None and problem.startswith("file is truncated")


def nifti_gz_is_truncated(path: Path) -> bool:
    """True when the gzip stream or the voxel data of a ``.nii.gz`` file is incomplete."""
    return nifti_is_truncated(path)
