"""From a fingerprint to ``Plans``: target spacing, normalisation, patch, batch and topology.

Every heuristic is a small pure function of the fingerprint with a comment saying why. The
rules follow nnU-Net (Isensee et al., Nat. Methods 2021) where it has one, and say so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from medseg.data.fingerprint import Fingerprint
from medseg.data.labels import ignore_value
from medseg.data.preprocess import class_values
from medseg.nets.shapes import stage_features
from medseg.planning.laterality import default_mirror_axes
from medseg.planning.memory import estimate_training_bytes
from medseg.planning.plan import Plan, Plans
from medseg.planning.recipe import describe_augmentation
from medseg.planning.topology import Topology, plan_topology

ANISOTROPY = 3.0
# nnU-Net's reference patch volumes: a 3D patch of about 256^3 / a 2D patch of 2048^2 voxels
# before clipping to the median shape, then shrunk until the memory budget is met.
START_VOXELS = {2: 2048**2, 3: 256**3}
FEATURE_CAP = {2: 512, 3: 320}
# CPU: width is the price of every step, so start narrower than nnU-Net's 32 (see the issue's
# calibration: 16->128 features trained 5x faster per step and reached a better Dice in the
# same time on Hippocampus 2D slices).
BASE_FEATURES = {"cpu": 16, "cuda": 32}
CPU_FEATURE_CAP = 256
LOWRES_FACTOR = 4.0  # a 3d_lowres configuration is planned when a median case is 4x a patch
#: Why the planner's default loss and sampling (the ``Plan`` defaults).
RECIPE_REASONS = {
    "loss": "Dice + cross-entropy, deep supervision weights 1, 1/2, 1/4, ... (nnU-Net)",
    "sampling": "oversample: a third of each batch centred on foreground, the rest anywhere "
    "(nnU-Net)",
}
MIN_BATCH = 2  # nnU-Net's smallest batch: the patch shrinks until this many fit in memory


def choose_target_spacing(fp: Fingerprint) -> tuple[list[float], str]:
    """Median spacing; for strongly anisotropic data the coarse axis takes its 10th percentile.

    nnU-Net: resampling thick-slice data to the median would interpolate whole slices; the
    10th percentile keeps more of the high-resolution cases' detail on that axis.
    """
    target = list(fp.median_spacing)
    if fp.spatial_dims < 3:
        return target, "median spacing of the dataset"
    shape = fp.median_shape
    worst = int(np.argmax(target))
    others = [d for d in range(len(target)) if d != worst]
    aniso_spacing = target[worst] > ANISOTROPY * max(target[d] for d in others)
    aniso_voxels = shape[worst] * ANISOTROPY < min(shape[d] for d in others)
    if aniso_spacing and aniso_voxels:
        spacings = np.array([c["spacing"][worst] for c in fp.cases.values()])
        coarse = max(float(np.percentile(spacings, 10)), max(target[d] for d in others) + 1e-5)
        target[worst] = coarse
        return target, (
            f"median spacing, except axis {worst} (anisotropic, {fp.anisotropy:.1f}x): its 10th "
            f"percentile {coarse:.3g} mm, as nnU-Net, to keep slice detail"
        )
    return target, "median spacing of the dataset (nnU-Net rule; not anisotropic enough to change)"


def choose_normalization(fp: Fingerprint) -> tuple[tuple[str, ...], str]:
    """CT channels: clip to the foreground 0.5/99.5 percentiles then a global z-score (HU are
    absolute, so dataset statistics are meaningful). Other modalities: z-score per case
    (MRI intensities have no absolute scale; the Hippocampus copy even mixes uint8 and raw)."""
    schemes = tuple(
        "ct" if name.strip().lower() == "ct" else "zscore" for name in fp.channel_names.values()
    )
    return schemes, "CT channels: clip + global z-score; other channels: per-case z-score (nnU-Net)"


def initial_patch(spacing: list[float], median_shape: list[float]) -> list[int]:
    """nnU-Net: a patch shaped like the inverse spacing (isotropic in mm), of the reference
    volume, clipped to the median case shape."""
    dims = len(spacing)
    inverse = 1 / np.asarray(spacing)
    patch = inverse * (START_VOXELS[dims] / np.prod(inverse)) ** (1 / dims)
    return [int(min(round(p), m)) for p, m in zip(patch, median_shape, strict=True)]


def _fit_patch_to_budget(
    patch: list[int],
    spacing: list[float],
    median_shape: list[float],
    *,
    base: int,
    cap: int,
    in_channels: int,
    num_classes: int,
    budget_bytes: float,
    min_batch: int,
) -> tuple[Topology, tuple[int, ...]]:
    """Shrink the axis with the largest patch/median ratio until ``min_batch`` patches fit."""
    while True:
        topo = plan_topology(tuple(patch), tuple(spacing))
        features = stage_features(topo.num_stages, base=base, cap=cap)
        need = estimate_training_bytes(
            topo.patch_size, min_batch, features, topo.strides, in_channels, num_classes
        )
        if need <= budget_bytes or max(patch) <= 8:
            return topo, features
        ratios = [p / m for p, m in zip(topo.patch_size, median_shape, strict=True)]
        axis = int(np.argmax(ratios))
        patch[axis] = max(4, topo.patch_size[axis] - topo.divisor[axis])
        patch = [min(p, t) for p, t in zip(patch, topo.patch_size, strict=True)]


def choose_batch_size(
    per_sample_bytes: float,
    patch_size: tuple[int, ...],
    dataset_voxels: float,
    *,
    memory_gb: float,
    device: str,
) -> tuple[int, str]:
    """The largest batch within ``memory_gb``, capped at 5 % of the dataset's voxels (nnU-Net:
    so one batch does not see the whole dataset at once) and at 64 on CPU (512 elsewhere)."""
    batch = max(MIN_BATCH, int(memory_gb * 2**30 // per_sample_bytes))
    batch_cap = max(MIN_BATCH, int(0.05 * dataset_voxels / math.prod(patch_size)))
    batch = min(batch, batch_cap, 64 if device == "cpu" else 512)
    return batch, (
        f"largest batch within {memory_gb:g} GiB (estimated {per_sample_bytes / 2**20:.0f} MiB "
        f"per sample), capped at 5 % of the dataset's voxels ({batch_cap}) and 64 on CPU"
    )


def choose_network_config(
    topo: Topology, features: Sequence[int], device: str
) -> tuple[dict[str, Any], str]:
    """The U-Net of the topology: nnU-Net's kernels and strides, batch norm on CPU (batches
    are larger there), instance norm elsewhere, leaky ReLU, deep supervision."""
    config = {
        "features": list(features),
        "kernel_sizes": [list(k) for k in topo.kernel_sizes],
        "strides": [list(s) for s in topo.strides],
        "norm": "batch" if device == "cpu" else "instance",
        "act": "leakyrelu",
        "deep_supervision": True,
    }
    return config, (
        f"{topo.num_stages} stages; pooling per axis until ~4 voxels remain, coarse axes wait "
        f"(nnU-Net); features {features[0]}->{features[-1]} "
        f"({'narrow for CPU step time' if device == 'cpu' else 'nnU-Net width'})"
    )


def choose_optimizer(device: str) -> tuple[str, str]:
    """AdamW on CPU (a small step budget: it converges in fewer steps), nnU-Net's SGD
    elsewhere."""
    if device == "cpu":
        return "adamw", (
            "AdamW lr 1e-3: on CPU the step budget is small and AdamW converges in fewer steps "
            "than SGD"
        )
    return "sgd", "SGD Nesterov 0.99, lr 0.01, poly schedule (nnU-Net)"


def choose_ignore_label(fp: Fingerprint, reasons: dict[str, str]) -> int | None:
    """The ``ignore`` label of ``dataset.json`` (sparse annotations; nnU-Net v2), with its
    sentence in ``reasons``; None (no sentence) for dense labels."""
    value = ignore_value(fp.labels)
    if value is not None:
        reasons["ignore_label"] = (
            f"dataset.json declares 'ignore' = {value}: sparse annotations; those voxels are "
            "stored as -1 and count in no loss, sampled foreground or metric; not a class"
        )
    return value


def plan_configuration(
    fp: Fingerprint,
    configuration: str,
    *,
    device: str = "cpu",
    memory_gb: float = 4.0,
    spacing: list[float] | None = None,
    lateral_axis: int | None = None,
    laterality: str | None = None,
) -> Plan:
    """Plan one configuration (``2d``, ``3d_fullres``, ``3d_lowres``) for ``device``;
    ``lateral_axis``, ``laterality``: see :func:`medseg.planning.laterality.find_laterality`
    (None: every axis is mirrored)."""
    reasons: dict[str, str] = {}
    target, reasons["spacing"] = choose_target_spacing(fp)
    if spacing is not None:
        target = list(spacing)
        reasons["spacing"] = "lowres: spacing enlarged until a median case is ~4 patches"
    scale = np.asarray(fp.median_spacing) / np.asarray(target)
    median_shape = [max(1, int(round(s * f))) for s, f in zip(fp.median_shape, scale, strict=True)]
    dims = 2 if configuration == "2d" else 3
    patch_spacing, patch_shape = target[-dims:], median_shape[-dims:]
    normalization, reasons["normalization"] = choose_normalization(fp)
    in_channels = len(fp.channel_names)
    num_classes = len(class_values(fp.labels))  # the ignore label is no class
    ignore_label = choose_ignore_label(fp, reasons)
    topo, features = _fit_patch_to_budget(
        initial_patch(patch_spacing, patch_shape),
        patch_spacing,
        patch_shape,
        base=BASE_FEATURES.get(device, 32),
        cap=min(FEATURE_CAP[dims], CPU_FEATURE_CAP) if device == "cpu" else FEATURE_CAP[dims],
        in_channels=in_channels,
        num_classes=num_classes,
        budget_bytes=memory_gb * 2**30,
        min_batch=MIN_BATCH,
    )
    reasons["patch_size"] = (
        f"nnU-Net rule: isotropic-in-mm patch clipped to the median shape {tuple(patch_shape)}, "
        f"rounded up to a multiple of {topo.divisor}, shrunk until batch {MIN_BATCH} fits "
        f"{memory_gb:g} GiB"
    )
    per_sample = estimate_training_bytes(
        topo.patch_size, 1, features, topo.strides, in_channels, num_classes
    )
    dataset_voxels = sum(math.prod(c["shape"]) for c in fp.cases.values()) * float(np.prod(scale))
    batch, reasons["batch_size"] = choose_batch_size(
        per_sample, topo.patch_size, dataset_voxels, memory_gb=memory_gb, device=device
    )
    network_config, reasons["network_config"] = choose_network_config(topo, features, device)
    optimizer, reasons["optimizer"] = choose_optimizer(device)
    mirror_axes, reasons["mirror_axes"] = default_mirror_axes(
        dims, fp.spatial_dims, lateral_axis, laterality
    )
    reasons.update(RECIPE_REASONS)
    plan = Plan(
        configuration=configuration,
        spatial_dims=dims,
        spacing=tuple(target),
        median_shape=tuple(median_shape),
        patch_size=topo.patch_size,
        batch_size=int(batch),
        normalization=normalization,
        intensity=dict(fp.intensity),
        num_classes=num_classes,
        in_channels=in_channels,
        labels=dict(fp.labels),
        network="unet",
        network_config=network_config,
        optimizer=optimizer,
        learning_rate=1e-3 if device == "cpu" else 1e-2,
        weight_decay=1e-4 if device == "cpu" else 3e-5,
        mirror_axes=mirror_axes,
        ignore_label=ignore_label,
        reasons=reasons,
    )
    reasons["augmentation"] = describe_augmentation(plan)
    return plan


def plan_cascade(full: Plan, ratio: float, previous_stage: str = "3d_lowres") -> Plan:
    """The second cascade stage: ``full`` (the ``3d_fullres`` plan) with the previous stage's
    segmentation as extra input channels, one per foreground class (nnU-Net's cascade).

    Patch, batch and network stay those of ``full``: the extra channels only widen the input
    of the first convolution (a negligible share of the memory estimate). The preprocessed
    data are ``full``'s (same spacing and normalisation), so the case store is shared.
    """
    extra = full.num_classes - 1
    reasons = {
        **full.reasons,
        "configuration": (
            f"cascade stage 2: median case is {ratio:.1f}x the fullres patch, so a "
            f"{full.configuration} patch sees little of the case; the {previous_stage} "
            f"segmentation (whole-case context) is added as input (nnU-Net)"
        ),
        "in_channels": (
            f"{full.in_channels} image channel(s) + {extra} one-hot channel(s), one per "
            f"foreground class of the {previous_stage} segmentation resampled to this spacing"
        ),
        "previous_stage": (
            f"training uses {previous_stage}'s cross-validation predictions of the training cases "
            "(each case predicted by the fold that did not train on it), so the inputs are as "
            "imperfect as at test time"
        ),
        "data_configuration": (
            f"same spacing and normalisation as {full.configuration}: "
            "its preprocessed cases are shared"
        ),
    }
    return replace(
        full,
        configuration="3d_cascade_fullres",
        in_channels=full.in_channels + extra,
        previous_stage=previous_stage,
        data_configuration=full.configuration,
        reasons=reasons,
    )


def plan_dataset(
    fp: Fingerprint,
    dataset_path: str,
    *,
    device: str = "cpu",
    memory_gb: float = 4.0,
    lateral_axis: int | None = None,
    laterality: str | None = None,
) -> Plans:
    """Plan every configuration that makes sense for the dataset.

    ``2d`` always; ``3d_fullres`` for 3D data; ``3d_lowres`` when the median case is more
    than ``LOWRES_FACTOR`` times the full-resolution patch, and with it ``3d_cascade_fullres``
    (nnU-Net's cascade): ``3d_fullres`` whose input also holds the ``3d_lowres`` segmentation,
    one-hot per foreground class, so each full-resolution patch knows the whole-case context.
    ``lateral_axis``, ``laterality``: see :func:`plan_configuration`.
    """
    common = {
        "device": device,
        "memory_gb": memory_gb,
        "lateral_axis": lateral_axis,
        "laterality": laterality,
    }
    configs = {"2d": plan_configuration(fp, "2d", **common)}
    if fp.spatial_dims == 3:
        full = plan_configuration(fp, "3d_fullres", **common)
        configs["3d_fullres"] = full
        ratio = math.prod(full.median_shape) / math.prod(full.patch_size)
        if ratio > LOWRES_FACTOR:
            spacing = list(full.spacing)
            while math.prod(full.median_shape) * math.prod(
                np.divide(full.spacing, spacing)
            ) > LOWRES_FACTOR * math.prod(full.patch_size):
                spacing = [s * 1.01 for s in spacing]
            low = plan_configuration(fp, "3d_lowres", spacing=spacing, **common)
            configs["3d_lowres"] = replace(
                low,
                reasons={
                    **low.reasons,
                    "configuration": f"median case is {ratio:.1f}x the fullres patch",
                },
            )
            configs["3d_cascade_fullres"] = plan_cascade(full, ratio)
    return Plans(fp.dataset_name, dataset_path, configs)
