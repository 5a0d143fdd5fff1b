"""Training curves as a PNG: one panel per group of log columns, epoch on the x axis.

A panel is ``(title, columns, scale)`` with ``scale`` ``"linear"``, ``"log"`` (e.g. the
gradient norm) or ``"unit"`` (a score in [0, 1]). Columns missing from the log are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medseg.fileutil import atomic_path

Panel = tuple[str, Sequence[str], str]

#: Segmentation: loss, online validation Dice and its EMA, gradient norm.
SEGMENTATION_PANELS: tuple[Panel, ...] = (
    ("loss", ("train_loss",), "linear"),
    ("online validation Dice", ("val_dice", "val_dice_ema"), "unit"),
    ("gradient norm", ("grad_norm",), "log"),
)


def plot_curves(
    rows: list[dict[str, Any]], path: Path, panels: Sequence[Panel] = SEGMENTATION_PANELS
) -> None:
    """Write ``path`` (PNG) from the training log rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, (title, columns, scale) in zip(axes[0], panels, strict=True):
        for column in columns:
            if any(column in r for r in rows):
                values = [r.get(column, math.nan) for r in rows]
                if scale == "log":
                    values = [max(v, 1e-12) for v in values]
                ax.plot(epochs, values, label=column.removeprefix("val_").replace("_", " "))
        if scale == "log":
            ax.set_yscale("log")
        elif scale == "unit":
            ax.set_ylim(0, 1)
        if len(ax.lines) > 1:
            ax.legend(loc="best")
        ax.set_title(title)
        ax.set_xlabel("epoch")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
