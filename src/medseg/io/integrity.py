"""Detect truncated ``.nii.gz`` files, which ITK's reader silently pads with zeros.

A gzip stream ends with ISIZE, the uncompressed length mod 2**32. A complete NIfTI file is
``vox_offset + voxels * bitpix / 8`` bytes long, so comparing the two costs one header read
and one 4-byte seek. Only when they disagree (or the file is multi-member) do we decompress
the whole stream to be sure.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np


def nifti_is_truncated(path: Path) -> bool:
    """True when a ``.nii`` / ``.nii.gz`` file holds fewer bytes than its header promises."""
    if path.name.lower().endswith(".gz"):
        return nifti_gz_is_truncated(path)
    expected = _expected_nifti_size(path, opener=open)
    return expected is not None and path.stat().st_size < expected


def nifti_gz_is_truncated(path: Path) -> bool:
    """True when the gzip stream or the voxel data of a ``.nii.gz`` file is incomplete."""
    expected = _expected_nifti_size(path)
    if expected is None:  # no readable NIfTI header: the reader reports the file as corrupt
        return False
    with open(path, "rb") as f:
        f.seek(-4, 2)
        isize = int.from_bytes(f.read(4), "little")
    if isize == expected % 2**32:
        return False
    try:
        total = 0
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                total += len(chunk)
    except (EOFError, OSError, zlib.error):
        return True
    return total < expected


def _expected_nifti_size(path: Path, opener=gzip.open) -> int | None:
    try:
        with opener(path, "rb") as f:
            head = f.read(540)
    except (EOFError, OSError, zlib.error):
        return None
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348:  # NIfTI-1
            dims = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
            break
        if len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540:  # NIfTI-2
            dims = struct.unpack(endian + "8q", head[16:80])
            bitpix = struct.unpack(endian + "h", head[14:16])[0]
            offset = int(struct.unpack(endian + "q", head[168:176])[0])
            break
    else:
        return None
    ndim = int(dims[0])
    if not 1 <= ndim <= 7:
        return None
    voxels = int(np.prod([max(int(d), 1) for d in dims[1 : 1 + ndim]], dtype=np.int64))
    return offset + voxels * int(bitpix) // 8
