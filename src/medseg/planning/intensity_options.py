"""Planning the optional intensity corrections: N4 bias-field correction and histogram
matching (``medseg plan --n4 CHANNELS --histogram-matching CHANNELS``).

``with_intensity_corrections`` checks the channels, computes the histogram landmarks from the
training images (at most ``MAX_LANDMARK_CASES``, N4-corrected first where that channel also
has N4, exactly as ``preprocess_arrays`` will correct them) and sets ``n4_channels`` and
``histogram_landmarks`` of every configuration, each with its reason.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from functools import partial

import numpy as np

from medseg.data.dataset import Case, Dataset, load_dataset, read_case
from medseg.data.intensity_correction import (
    DEFAULT_PERCENTILES,
    N4_ITERATIONS,
    N4_SHRINK,
    correct_intensities,
    image_percentiles,
    landmarks_from_percentiles,
)
from medseg.data.parallel import map_cases
from medseg.data.preprocess import nonzero_box
from medseg.errors import ConfigError
from medseg.planning.plan import Plans

MAX_LANDMARK_CASES = 50


def parse_channels(text: str, num_channels: int, *, option: str = "--n4") -> tuple[int, ...]:
    """``"0,2"`` -> ``(0, 2)``; ``"all"`` -> every channel; ``""`` -> none.

    Raises:
        ConfigError: an entry is not an integer.
    """
    text = text.strip()
    if text.lower() == "all":
        return tuple(range(num_channels))
    try:
        return tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise ConfigError(
            f"{option}: expected comma-separated channel indices or 'all', got {text!r}"
        ) from None


def _describe(channels: Sequence[int], names: dict[str, str]) -> str:
    return ", ".join(f"{c} ({names.get(str(c), '?')})" for c in channels)


def check_intensity_channels(
    channel_names: dict[str, str],
    normalization: Sequence[str],
    *,
    n4: Sequence[int] = (),
    histogram: Sequence[int] = (),
) -> None:
    """Refuse channels that are not image channels, and CT-normalised channels.

    Args:
        channel_names: ``dataset.json``'s channel index (str) -> modality (every channel
            listed there is an image channel; a label is never one).
        normalization: the scheme of each channel (``Plan.normalization``; a channel named
            ``CT`` gets ``"ct"``).

    Raises:
        ConfigError: naming the valid channels.
    """
    valid = range(len(channel_names))
    listing = _describe(valid, channel_names)
    for option, channels in (("--n4", n4), ("--histogram-matching", histogram)):
        outside = [c for c in channels if c not in valid]
        if outside:
            raise ConfigError(
                f"{option}: channel(s) {outside} are not image channels of this dataset; "
                f"valid: {listing}"
            )
    ct_n4 = [c for c in n4 if normalization[c] == "ct"]
    if ct_n4:
        raise ConfigError(
            f"--n4: channel(s) {_describe(ct_n4, channel_names)} are CT ('ct' normalisation): "
            "N4 assumes an MRI-like multiplicative bias field, which Hounsfield units lack"
        )
    ct_hist = [c for c in histogram if normalization[c] == "ct"]
    if ct_hist:
        raise ConfigError(
            f"--histogram-matching: channel(s) {_describe(ct_hist, channel_names)} are CT "
            "('ct' normalisation): Hounsfield units are already on a common scale, and 'ct' "
            "clips with the fingerprint's raw-HU percentiles"
        )


def landmark_cases(cases: Sequence[Case], limit: int = MAX_LANDMARK_CASES) -> list[Case]:
    """At most ``limit`` of ``cases``, evenly spread over them in order (deterministic)."""
    if len(cases) <= limit:
        return list(cases)
    picks = np.linspace(0, len(cases) - 1, limit).round().astype(int)
    return [cases[i] for i in picks]


def _case_percentiles(
    case: Case, *, num_channels: int, n4: tuple[int, ...], channels: tuple[int, ...]
) -> list[np.ndarray]:
    """One case's percentiles per channel of ``channels``, after the same crop and N4 as
    ``preprocess_arrays``."""
    image, _ = read_case(case, num_channels=num_channels)
    array = image.channels_first()
    array = array[(slice(None), *nonzero_box(array).slices)]
    array = correct_intensities(array, image.spacing, n4_channels=[c for c in n4 if c in channels])
    return [image_percentiles(array[c], DEFAULT_PERCENTILES) for c in channels]


def with_intensity_corrections(
    plans: Plans,
    dataset: Dataset | str | os.PathLike[str],
    *,
    n4: Sequence[int] = (),
    histogram: Sequence[int] = (),
    jobs: int | None = None,
    progress: bool = True,
) -> Plans:
    """``plans`` with ``n4_channels`` and ``histogram_landmarks`` set in every configuration.

    Args:
        plans: the planned configurations.
        dataset: the dataset (or its folder) the plans are for.
        n4: image channels given N4 bias-field correction.
        histogram: image channels histogram-matched onto landmarks computed here from at
            most ``MAX_LANDMARK_CASES`` training cases (after N4 where both are asked).
        jobs: worker processes reading the cases (default: every CPU).

    Returns:
        The new plans; ``reasons["n4_channels"]`` and ``reasons["histogram_landmarks"]`` say
        what was chosen (or that it is off).

    Raises:
        ConfigError: a channel is not an image channel or is CT (see
            ``check_intensity_channels``), or no training image has a non-constant foreground.
    """
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    n4 = tuple(sorted({int(c) for c in n4}))
    histogram = tuple(sorted({int(c) for c in histogram}))
    for plan in plans.configurations.values():
        check_intensity_channels(ds.channel_names, plan.normalization, n4=n4, histogram=histogram)
    names = ds.channel_names
    levels = len(N4_ITERATIONS)
    if n4:
        n4_reason = (
            f"N4 bias-field correction of channel(s) {_describe(n4, names)} (SimpleITK, Otsu "
            f"mask, field fitted on the image shrunk {N4_SHRINK}x, {levels} levels x "
            f"{N4_ITERATIONS[0]} iterations), after cropping, at the original spacing, "
            "before resampling and normalisation: set by --n4"
        )
    else:
        n4_reason = "off: no --n4 channels (nnU-Net applies no bias-field correction)"
    landmarks: dict[str, list[float]] = {}
    if histogram:
        chosen = landmark_cases(ds.cases)
        work = partial(_case_percentiles, num_channels=ds.num_channels, n4=n4, channels=histogram)
        per_case = map_cases(work, chosen, jobs=jobs, desc="histogram landmarks", progress=progress)
        for i, c in enumerate(histogram):
            try:
                landmarks[str(c)] = landmarks_from_percentiles(points[i] for points in per_case)
            except ValueError:
                raise ConfigError(
                    f"--histogram-matching: channel {c} is constant in every training image "
                    "read; there is no histogram to match"
                ) from None
        after_n4 = f", after N4 on {list(n4)}" if set(n4) & set(histogram) else ""
        hist_reason = (
            f"Nyul-Udupa histogram matching of channel(s) {_describe(histogram, names)}: "
            f"percentiles {list(DEFAULT_PERCENTILES)} of the non-zero voxels, mapped onto "
            f"landmarks averaged over {len(chosen)} of {len(ds.cases)} training cases (at "
            f"most {MAX_LANDMARK_CASES}, evenly spread){after_n4}, scaled so 1st..99th "
            "percentile = 0..100: set by --histogram-matching"
        )
    else:
        hist_reason = "off: no --histogram-matching channels"
    configs = {
        name: replace(
            plan,
            n4_channels=n4,
            histogram_landmarks=landmarks,
            reasons={
                **plan.reasons,
                "n4_channels": n4_reason,
                "histogram_landmarks": hist_reason,
            },
        )
        for name, plan in plans.configurations.items()
    }
    return replace(plans, configurations=configs)
