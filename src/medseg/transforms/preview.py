"""Preview figures: a few cases, each with several augmented versions and the label overlaid."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from medseg.errors import DatasetError
from medseg.fileutil import atomic_path, check_writable
from medseg.transforms import build_transform
from medseg.transforms.base import Transform

Pair = tuple[np.ndarray, np.ndarray]


def _middle_slice(array: np.ndarray) -> np.ndarray:
    """``(*spatial)`` -> 2-D: the middle slice along axis 0 of a 3-D array."""
    return array[array.shape[0] // 2] if array.ndim == 3 else array


def augment_pair(
    image: np.ndarray, label: np.ndarray, transform: Transform, *, n_augmented: int, seed: int
) -> list[Pair]:
    """Run ``transform`` on ``n_augmented`` copies of one case (one batch, one seed).

    Args:
        image: ``(C, *spatial)``.
        label: ``(*spatial)``.

    Returns:
        ``n_augmented`` pairs ``(image (C, *spatial'), label (*spatial'))``.
    """
    images = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None].repeat(
        n_augmented, *[1] * image.ndim
    )
    labels = torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))[None, None].repeat(
        n_augmented, 1, *[1] * label.ndim
    )
    out_image, out_label = transform(images, labels, generator=torch.Generator().manual_seed(seed))
    if out_label is None:
        raise ValueError(f"{transform!r} dropped the label")
    return [(out_image[i].numpy(), out_label[i, 0].numpy()) for i in range(n_augmented)]


def preview_augmentations(
    pairs: Sequence[Pair],
    transform: Transform,
    out_png: str | os.PathLike[str],
    *,
    n_augmented: int = 4,
    seed: int = 0,
    names: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Save a grid: one row per case, the original then ``n_augmented`` augmented versions.

    Channel 0 is shown in grey with the label overlaid in colour (background transparent);
    3-D cases show the middle slice along axis 0.

    Args:
        pairs: ``(image (C, *spatial), label (*spatial))`` per case, 2-D or 3-D.
        transform: a ``medseg.transforms`` transform (called on a batch of copies).
        out_png: output PNG path.
        n_augmented: augmented versions per case.
        seed: seed of the augmentations (case ``i`` uses ``seed + i``).
        names: row titles (default ``case 0``, ``case 1``, ...).
        overwrite: replace an existing ``out_png``.

    Returns:
        The written path.

    Raises:
        ValueError: no pairs, or an image and label whose shapes disagree.
        OverwriteError: ``out_png`` exists and ``overwrite`` is False.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not pairs:
        raise ValueError("no cases to preview")
    path = check_writable(out_png, overwrite=overwrite)
    for image, label in pairs:
        if image.shape[1:] != label.shape:
            raise ValueError(
                f"image {image.shape} does not match label {label.shape}: "
                "expected (C, *spatial) and (*spatial)"
            )
    top = max(1, max(int(np.max(label)) for _, label in pairs))
    cols = 1 + n_augmented
    figure = Figure(figsize=(2.2 * cols, 2.2 * len(pairs)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(pairs), cols, squeeze=False)
    for row, (image, label) in enumerate(pairs):
        versions = [
            (image, label),
            *augment_pair(image, label, transform, n_augmented=n_augmented, seed=seed + row),
        ]
        for col, (img, lab) in enumerate(versions):
            ax = axes[row, col]
            ax.imshow(_middle_slice(img[0]), cmap="gray", interpolation="nearest")
            overlay = np.ma.masked_less_equal(_middle_slice(lab), 0)
            ax.imshow(
                overlay, cmap="tab10", vmin=0, vmax=max(top, 9), alpha=0.45, interpolation="nearest"
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title("original" if col == 0 else f"augmented {col}", fontsize=9)
        axes[row, 0].set_ylabel(names[row] if names else f"case {row}", fontsize=9)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path


def load_pairs(root: str | os.PathLike[str], *, n_cases: int = 3) -> tuple[list[Pair], list[str]]:
    """Read the first ``n_cases`` labelled cases of a dataset folder as arrays.

    Returns:
        ``([(image (C, *spatial), label (*spatial)), ...], case ids)``.

    Raises:
        DatasetError: the dataset has no labelled case.
    """
    from medseg.data.dataset import load_dataset
    from medseg.io import read_image

    dataset = load_dataset(root)
    labelled = [case for case in dataset.cases if case.label_path is not None][:n_cases]
    if not labelled:
        raise DatasetError(f"{root}: no labelled training case to preview")
    pairs = []
    for case in labelled:
        channels = [read_image(p).array for p in case.image_paths]
        image = np.stack(channels).astype(np.float32)
        pairs.append((image, read_image(case.label_path).array))  # type: ignore[arg-type]
    return pairs, [case.case_id for case in labelled]


def preview_dataset(
    root: str | os.PathLike[str],
    out_png: str | os.PathLike[str],
    *,
    preset: str = "nnunet_default",
    p: float | None = None,
    n_cases: int = 3,
    n_augmented: int = 4,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """``medseg augment preview``: preview a preset on the first cases of a dataset folder.

    Args:
        root: dataset folder (nnU-Net/MSD layout, see ``medseg.data.dataset``).
        out_png: output PNG.
        preset: a registered preset name ("nnunet_default", "light").
        p: replace every probability of the preset (e.g. 1.0 shows every transform).
        n_cases, n_augmented, seed, overwrite: as ``preview_augmentations``.

    Returns:
        The written path.
    """
    check_writable(out_png, overwrite=overwrite)
    pairs, names = load_pairs(root, n_cases=n_cases)
    transform = build_transform(preset, spatial_dims=pairs[0][1].ndim, p=p)
    return preview_augmentations(
        pairs,
        transform,
        out_png,
        n_augmented=n_augmented,
        seed=seed,
        names=names,
        overwrite=overwrite,
    )
