"""The input cases of ``predict``: finding them in a folder (``find_input_cases``) and checking
each image before it is predicted (``checked_input``, ``warn_spacing``).

Their warnings go to the log of ``medseg.inference.predict``, which runs them case by case,
so that one logger name covers everything a prediction run reports.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from medseg.data.check import nonfinite_problems
from medseg.data.dataset import Case, load_dataset, missing_channel_files
from medseg.errors import DatasetError
from medseg.io import IMAGE_EXTENSIONS, Image, file_ending
from medseg.planning.plan import Plan

log = logging.getLogger("medseg.inference.predict")
SPACING_WARN_RATIO = 2.0


def find_input_cases(input_dir: str | os.PathLike[str]) -> list[Case]:
    """Cases of an input folder: ``CASE_0000<ending>``, ``CASE_0001<ending>``... (one file per
    channel, nnU-Net ``imagesTs`` style; a file without the ``_XXXX`` suffix is a case of its
    own), or a dataset folder with ``dataset.json``, whose ``imagesTs`` is used.

    Raises:
        DatasetError: the folder is missing or holds no images.
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise DatasetError(f"{input_dir}: input folder does not exist")
    if (input_dir / "dataset.json").exists():
        cases = list(load_dataset(input_dir).test_cases)
        if not cases:
            raise DatasetError(
                f"{input_dir}: dataset has no imagesTs cases; pass the image folder itself"
            )
        return cases
    channels: dict[str, list[Path]] = {}
    for path in sorted(input_dir.iterdir()):
        ending = file_ending(path)
        if path.name.startswith(".") or not path.is_file() or ending not in IMAGE_EXTENSIONS:
            continue
        stem = path.name[: -len(ending)]
        has_suffix = len(stem) > 5 and stem[-5] == "_" and stem[-4:].isdigit()
        channels.setdefault(stem[:-5] if has_suffix else stem, []).append(path)
    if not channels:
        raise DatasetError(f"{input_dir}: no images found (expected CASE_0000.nii.gz, ...)")
    return [Case(case_id, tuple(paths)) for case_id, paths in sorted(channels.items())]


def checked_input(case: Case, image: Image, channels: int, *, nan_to_num: bool = False) -> Image:
    """``image`` (read from ``case``'s files) once it is fit to predict on.

    Args:
        channels: the channel count the models expect.
        nan_to_num: replace NaN/inf voxels by 0 with a warning instead of refusing them.

    Raises:
        DatasetError: the channel count differs (naming a missing ``_XXXX`` channel file when
            that is the cause), or the image has NaN/inf voxels and ``nan_to_num`` is False.
    """
    if image.num_channels != channels:
        missing = missing_channel_files(case, channels)
        raise DatasetError(
            f"{missing[0] if missing else case.image_paths[0]}: "
            f"{'channel file missing: ' if missing else ''}case {case.case_id} has "
            f"{image.num_channels} channel(s), the model expects {channels}"
        )
    problems = nonfinite_problems(case.image_paths, image)
    if problems and not nan_to_num:
        raise DatasetError(
            f"{problems[0]}; replace them in the image, or pass --nan-to-num "
            "(nan_to_num=True) to predict with them set to 0"
        )
    if not problems:
        return image
    for problem in problems:
        log.warning("%s; set to 0 (--nan-to-num)", problem)
    return image.with_array(np.nan_to_num(image.array, nan=0.0, posinf=0.0, neginf=0.0))


def warn_spacing(case_id: str, image: Image, plan: Plan) -> None:
    """Log a warning when ``image``'s spacing differs from ``plan``'s by more than
    ``SPACING_WARN_RATIO`` along an axis the plan resamples (the model then sees data unlike
    its training data)."""
    axes = plan.spatial_dims  # a 2d plan keeps each case's own slice spacing
    ratios = [a / b for a, b in zip(image.spacing[-axes:], plan.spacing[-axes:], strict=True)]
    if any(r > SPACING_WARN_RATIO or r < 1 / SPACING_WARN_RATIO for r in ratios):
        log.warning(
            "case %s: spacing %s differs more than %gx from the %s plan's %s; the model sees data "
            "unlike its training data",
            case_id,
            image.spacing,
            SPACING_WARN_RATIO,
            plan.configuration,
            plan.spacing,
        )
