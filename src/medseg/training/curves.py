"""Training curves as a PNG: loss, validation Dice and the gradient norm per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.fileutil import atomic_path


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    """Write ``path`` (PNG) from the training log rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    axes[0].plot(epochs, [r["train_loss"] for r in rows], label="train loss")
    axes[0].set_title("loss")
    axes[1].plot(epochs, [r["val_dice"] for r in rows], label="val Dice")
    axes[1].plot(epochs, [r["val_dice_ema"] for r in rows], label="EMA")
    axes[1].set_title("online validation Dice")
    axes[1].set_ylim(0, 1)
    axes[1].legend(loc="lower right")
    axes[2].semilogy(epochs, [max(r["grad_norm"], 1e-12) for r in rows])
    axes[2].set_title("gradient norm")
    for ax in axes:
        ax.set_xlabel("epoch")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
