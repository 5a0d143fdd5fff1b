"""Limits checked on an image's header before its voxels are read.

A file is data from outside: its header may lie or be absurd. Before any voxel is decoded
``read_image`` checks

* the **size** the header declares (voxels x components x bytes per component, as stored)
  against a memory budget, so a header claiming terabytes allocates nothing;
* the **spacing** on every spatial axis: finite, positive and at most ``MAX_SPACING_MM``.
  ITK quietly turns a NIfTI pixdim of 0, NaN or inf into 1.0 mm, and one case with a
  spacing of 1e6 mm makes resampling ask for hundreds of GiB.

The budget is ``MAX_IMAGE_GB`` GiB; the environment variable ``MEDSEG_MAX_IMAGE_GB`` or the
``max_gb`` argument of ``read_image`` override it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from medseg.errors import ConfigError, ImageIOError

MAX_IMAGE_GB = 8.0  # GiB of voxel data (as stored) one image may declare
MAX_IMAGE_GB_ENV = "MEDSEG_MAX_IMAGE_GB"
MAX_SPACING_MM = 100.0  # no scanner makes voxels 10 cm wide; a larger value is a broken header


def max_image_bytes(max_gb: float | None = None) -> int:
    """The image size budget in bytes.

    Args:
        max_gb: budget in GiB; None: ``$MEDSEG_MAX_IMAGE_GB`` if set, else ``MAX_IMAGE_GB``.

    Raises:
        ConfigError: the budget (argument or environment variable) is not a positive number.

    Example:
        >>> max_image_bytes(0.5)
        536870912
    """
    source = "max_gb"
    if max_gb is None:
        text = os.environ.get(MAX_IMAGE_GB_ENV, "").strip()
        if not text:
            return int(MAX_IMAGE_GB * 2**30)
        source = f"environment variable {MAX_IMAGE_GB_ENV}"
        try:
            max_gb = float(text)
        except ValueError:
            max_gb = math.nan
    if not math.isfinite(max_gb) or max_gb <= 0:
        raise ConfigError(f"{source} must be a positive number of GiB (e.g. 8), got {max_gb!r}")
    return int(max_gb * 2**30)


def check_image_bytes(path: str | os.PathLike[str], nbytes: int, max_bytes: int) -> None:
    """Refuse an image whose header declares more than ``max_bytes`` of voxel data.

    Raises:
        ImageIOError: naming the file, the declared size and how to raise the budget.
    """
    if nbytes > max_bytes:
        raise ImageIOError(
            f"{Path(path)}: header declares {nbytes / 2**30:.3g} GiB of voxel data, more than "
            f"the {max_bytes / 2**30:.3g} GiB budget; if the image is real, set "
            f"{MAX_IMAGE_GB_ENV} higher"
        )


def spacing_problem(spacing: Sequence[float]) -> str | None:
    """Why a spacing (mm per spatial axis) is unusable, or None when it is fine.

    Example:
        >>> spacing_problem((1.0, 0.5)) is None, spacing_problem((0.0, 1.0))
        (True, 'spacing (0, 1) mm is not positive and finite on every axis')
    """
    text = "(" + ", ".join(f"{float(s):.6g}" for s in spacing) + ")"
    if any(not math.isfinite(float(s)) or float(s) <= 0 for s in spacing):
        return f"spacing {text} mm is not positive and finite on every axis"
    if any(float(s) > MAX_SPACING_MM for s in spacing):
        return f"spacing {text} mm exceeds {MAX_SPACING_MM:g} mm on an axis"
    return None


def check_spacing(path: str | os.PathLike[str], spacing: Sequence[float]) -> None:
    """Refuse a header spacing that is zero, negative, NaN, inf or absurd (> ``MAX_SPACING_MM``).

    Raises:
        ImageIOError: naming the file, the spacing and the fix.
    """
    problem = spacing_problem(spacing)
    if problem is not None:
        raise ImageIOError(f"{Path(path)}: {problem}; fix the voxel size in the image header")
