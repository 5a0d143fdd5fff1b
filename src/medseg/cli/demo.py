"""``medseg demo``: the whole chain on the embedded phantom dataset (or ``--data PATH``)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from medseg.cli import options

# the demo's training length, without importing torch for ``--help``
DEMO_EPOCHS = 30
DEMO_STEPS_PER_EPOCH = 50

console = Console()


def register(app: typer.Typer) -> None:
    """Mount the ``demo`` command on the main app."""

    @app.command("demo")
    def demo(
        out: Path = typer.Option(
            Path("demo_out"), "--out", "-o", callback=options.output_folder, help="Output folder."
        ),
        data: Path = typer.Option(
            None, "--data", help="A dataset in the MSD/nnU-Net layout (default: phantoms)."
        ),
        config: options.Configuration = typer.Option(
            "2d", "--config", "-c", help="Configuration to train."
        ),
        epochs: int = typer.Option(DEMO_EPOCHS, "--epochs", min=1, help="Training epochs."),
        steps_per_epoch: int = typer.Option(
            DEMO_STEPS_PER_EPOCH, "--steps-per-epoch", min=1, help="Training steps per epoch."
        ),
        time_budget: float = options.time_budget_option(
            "Optional cap, e.g. 4m: stops early on a slow or busy machine, so the Dice "
            "then depends on it. Default: none."
        ),
        device: str = options.device_option(),
        overwrite: bool = typer.Option(
            False, "--overwrite", help="Replace a previous demo in OUT."
        ),
    ) -> None:
        """Phantoms, plan, train (fixed steps), predict, evaluate, report: a few CPU minutes."""
        from medseg.pipeline.demo import run_demo

        summary = run_demo(
            out,
            data=data,
            configuration=config,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            time_budget_s=time_budget,
            device=device,
            overwrite=overwrite,
        )
        for name, value in summary["per_label_dice"].items():
            console.print(f"  {name:>12}: Dice {value:.4f}")
        console.print(
            f"  {'foreground':>12}: Dice {summary['foreground_dice']:.4f}   "
            f"(Otsu baseline {summary['otsu_foreground_dice']:.4f})"
        )
        console.print(
            f"mean Dice {summary['mean_dice']:.4f} on {summary['evaluated_on']} "
            f"(multi-atlas baseline {summary['multi_atlas_mean_dice']:.4f}) "
            f"({summary['epochs']} epochs, {summary['steps']} steps; "
            f"{summary['total_s']:.0f} s in all)"
        )
        console.print(f"augmentation preview: {summary['augmentation_preview']}")
        console.print(f"report: {summary['report']}")
