"""``medseg demo``: the whole chain on the embedded phantom dataset (or ``--data PATH``)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    """Mount the ``demo`` command on the main app."""

    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Output folder."),
        data: Path = typer.Option(None, "--data", help="A dataset in the MSD/nnU-Net layout (default: phantoms)."),
        config: str = typer.Option("2d", "--config", "-c", help="Configuration to train."),
        time_budget: str = typer.Option("4m", "--time-budget", help="Training time budget, e.g. 4m."),
        device: str = typer.Option(None, "--device", help="cpu or cuda (default: auto)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous demo in OUT."),
    ) -> None:
        """Generate phantoms, plan, train, predict, evaluate and report, in a few CPU minutes."""
        from medseg.cli.pipeline import parse_duration
        from medseg.pipeline.demo import run_demo

        summary = run_demo(out, data=data, configuration=config, time_budget_s=parse_duration(time_budget) or 240.0,
                           device=device, overwrite=overwrite)
        for name, value in summary["per_label_dice"].items():
            console.print(f"  {name:>12}: Dice {value:.4f}")
        console.print(f"  {'foreground':>12}: Dice {summary['foreground_dice']:.4f}   (Otsu baseline {summary['otsu_foreground_dice']:.4f})")
        console.print(f"mean Dice {summary['mean_dice']:.4f} on {summary['evaluated_on']} "
                      f"({summary['epochs']} epochs, {summary['total_s']:.0f} s in all)")
        console.print(f"augmentation preview: {summary['augmentation_preview']}")
        console.print(f"report: {summary['report']}")
