"""Report figures: Dice boxplots, training curves and case overlays, as PNG data URIs.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas directly (no pyplot),
so building a report never touches global plotting state or needs a display.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medseg.io import Image

REFERENCE_COLOUR = "#ffd400"  # yellow and blue stay distinct for colour-blind readers
PREDICTION_COLOUR = "#1e90ff"


def new_figure(width: float, height: float) -> Any:
    """A matplotlib ``Figure`` of ``width`` x ``height`` inches on the Agg canvas (no pyplot
    state, safe in worker threads and without a display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def to_data_uri(figure: Any, *, dpi: int = 90) -> str:
    """The figure as a ``data:image/png;base64,...`` URI (for an ``<img src>``)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def dice_boxplot(
    rows: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    *,
    title: str,
    names: Sequence[str] | None = None,
) -> Any:
    """A box per label of the per-case Dice (NaN skipped), with every case drawn as a dot.

    Args:
        rows: ``per_case.csv`` rows (``label``, ``dice``).
        labels: label names, in the order to draw them.
        title: the axes title.
        names: tick text per label (default the label names).

    Returns:
        The matplotlib ``Figure``; a label without any finite Dice gets an empty slot.
    """
    values = [
        [
            d
            for r in rows
            if r.get("label") == label and not math.isnan(d := float(r.get("dice", math.nan)))
        ]
        for label in labels
    ]
    figure = new_figure(max(3.0, 0.9 * len(labels) + 1.5), 3.2)
    ax = figure.add_subplot()
    positions = [i + 1 for i, v in enumerate(values) if v]
    if positions:
        ax.boxplot([v for v in values if v], positions=positions, widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)  # fixed jitter: the same report twice is the same file
    for position, points in zip(range(1, len(values) + 1), values, strict=True):
        ax.scatter(
            position + rng.uniform(-0.12, 0.12, len(points)), points, s=10, alpha=0.6, color="#444"
        )
    ax.set_xticks(range(1, len(labels) + 1), [str(n) for n in (names or labels)])
    ax.set_xlim(0.4, len(labels) + 0.6)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("label")
    ax.set_ylabel("Dice per case")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return figure


def training_curves(log: Sequence[Mapping[str, float]], *, title: str) -> Any:
    """Four panels per epoch: loss, validation Dice (EMA, per class), gradient norm, data wait.

    Args:
        log: ``log.csv`` rows as floats (``epoch``, ``train_loss``, ``val_dice``,
            ``val_dice_ema``, ``grad_norm``, ``data_wait_share``, ``val_dice_1..K``); a
            missing column is drawn as an empty panel.
        title: the figure title.
    """
    epochs = [row.get("epoch", float(i + 1)) for i, row in enumerate(log)]

    def column(name: str) -> list[float]:
        return [row.get(name, math.nan) for row in log]

    figure = new_figure(13.0, 3.0)
    loss, dice, norm, wait = figure.subplots(1, 4)
    loss.plot(epochs, column("train_loss"), color="#333")
    loss.set_title("training loss")
    classes = sorted(
        (k for k in log[0] if k.startswith("val_dice_") and k[9:].isdigit()),
        key=lambda k: int(k[9:]),
    )
    for name in classes:
        dice.plot(epochs, column(name), linewidth=0.8, alpha=0.6, label=f"class {name[9:]}")
    dice.plot(epochs, column("val_dice"), color="#333", label="mean")
    dice.plot(epochs, column("val_dice_ema"), color="#d62728", label="EMA")
    dice.set_ylim(-0.02, 1.02)
    dice.set_title("online validation Dice")
    dice.legend(fontsize=7, loc="lower right")
    norm.plot(
        epochs,
        [max(v, 1e-12) if not math.isnan(v) else v for v in column("grad_norm")],
        color="#333",
    )
    norm.set_yscale("log")
    norm.set_title("gradient norm")
    wait.plot(epochs, [100 * v for v in column("data_wait_share")], color="#333")
    wait.set_ylim(0, 100)
    wait.set_title("time waiting for data (%)")
    for ax in (loss, dice, norm, wait):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def overlay_slice(
    reference: np.ndarray, prediction: np.ndarray, image: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int | None]:
    """The 2D slice to show: the axial slice (array axis 0) with most reference foreground.

    Args:
        reference: ``(z, y, x)`` or ``(y, x)`` label map.
        prediction: the predicted label map, same shape.
        image: the image, ``(*spatial)`` or ``(C, *spatial)`` (first channel shown, or RGB
            for a 3-channel 2D picture); None when unavailable.

    Returns:
        ``(reference2d, prediction2d, image2d or None, z or None)``; a 2D input is returned
        as is with ``z`` None. Without any reference foreground the middle slice is used.

    Raises:
        ValueError: reference and prediction differ in shape.

    Example:
        >>> ref = np.zeros((3, 2, 2), int); ref[2, 0, 0] = 1
        >>> overlay_slice(ref, ref)[3]
        2
    """
    if reference.shape != prediction.shape:
        raise ValueError(
            f"reference {reference.shape} and prediction {prediction.shape} differ in shape"
        )
    if image is not None and image.shape != reference.shape:
        # channels first: show the first channel; any other mismatch: no image
        fits = image.ndim == reference.ndim + 1 and image.shape[1:] == reference.shape
        image = image[0] if fits else None
    if reference.ndim == 2:
        return reference, prediction, image, None
    counts = (reference > 0).reshape(len(reference), -1).sum(axis=1)
    z = int(counts.argmax()) if counts.max() > 0 else len(reference) // 2
    return reference[z], prediction[z], None if image is None else image[z], z


def _rgb_or_grey(picture: Image, reference_shape: tuple[int, ...]) -> np.ndarray | None:
    """``(y, x, 3)`` for an RGB 2D picture matching the reference, else None."""
    array = picture.array
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[1:] == reference_shape:
        rgb = np.moveaxis(array.astype(float), 0, -1)
        return (rgb - rgb.min()) / max(float(np.ptp(rgb)), 1e-12)
    return None


def case_overlay(
    reference: Image,
    prediction: Image,
    regions: Mapping[str, Sequence[int]],
    *,
    image: Image | None,
    title: str,
) -> tuple[Any, list[str]]:
    """Reference and prediction contours of every region over the image slice.

    Args:
        reference: the reference label map.
        prediction: the predicted label map on the same grid.
        regions: label name -> label values (a contour per region).
        image: the case's image (first channel); None draws the contours on black.
        title: the axes title (case id and Dice).

    Returns:
        ``(figure, notes)``; notes say what was left out (no image, a mismatched image).

    Raises:
        ValueError: reference and prediction differ in shape.
    """
    notes = []
    rgb = _rgb_or_grey(image, reference.array.shape) if image is not None else None
    ref2d, pred2d, image2d, z = overlay_slice(
        reference.array, prediction.array, None if image is None or rgb is not None else image.array
    )
    if image is not None and rgb is None and image2d is None:
        notes.append(
            f"image shape {image.array.shape} does not match the label map {reference.array.shape}"
        )
    spacing = reference.spacing[-2:]
    figure = new_figure(4.0, 4.0)
    ax = figure.add_subplot()
    if rgb is not None:
        ax.imshow(rgb, interpolation="nearest")
    else:
        shown = np.zeros(ref2d.shape) if image2d is None else image2d.astype(float)
        low, high = np.percentile(shown, [0.5, 99.5]) if shown.size else (0.0, 1.0)
        ax.imshow(shown, cmap="gray", vmin=low, vmax=max(high, low + 1e-6), interpolation="nearest")
    for mask_of, colour in ((ref2d, REFERENCE_COLOUR), (pred2d, PREDICTION_COLOUR)):
        for values in regions.values():
            mask = np.isin(mask_of, list(values))
            if mask.any():
                ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=1.3)
    from matplotlib.lines import Line2D

    ax.legend(
        handles=[
            Line2D([], [], color=REFERENCE_COLOUR, label="reference"),
            Line2D([], [], color=PREDICTION_COLOUR, label="prediction"),
        ],
        loc="lower right",
        fontsize=7,
        framealpha=0.7,
    )
    ax.set_aspect(spacing[0] / spacing[1])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title if z is None else f"{title}\naxial slice {z}", fontsize=9)
    return figure, notes
