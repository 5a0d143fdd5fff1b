"""``medseg plan | preprocess | train | prepare-cascade``: the pipeline steps (each calls one function)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()


def parse_duration(text: str | None) -> float | None:
    """'90s', '20m', '1.5h' or plain seconds -> seconds (None stays None)."""
    if text is None:
        return None
    from medseg.errors import ConfigError

    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text[-1].lower() in units:
            return float(text[:-1]) * units[text[-1].lower()]
        return float(text)
    except (ValueError, IndexError) as err:
        raise ConfigError(f"cannot read duration '{text}'; use e.g. 90s, 20m or 1.5h") from err


def register(app: typer.Typer) -> None:
    """Mount the pipeline commands on the main app."""

    @app.command("plan")
    def plan_command(
        dataset: Path = typer.Argument(..., help="Dataset folder."),
        output: Path = typer.Option(..., "--output", "-o", help="Results folder (created)."),
        device: str = typer.Option("cpu", help="Device the plan is sized for: cpu or cuda."),
        memory_gb: float = typer.Option(4.0, "--memory-gb", help="Memory budget of one training step."),
        time_budget: str = typer.Option(None, "--time-budget", help="Training time budget (e.g. 20m): measure step times, set epochs, recommend a configuration."),
        explain: bool = typer.Option(False, "--explain", help="Print why each value was chosen."),
        jobs: int = typer.Option(None, "--jobs", "-j", help="Worker processes."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing plans."),
    ) -> None:
        """Check and fingerprint DATASET, then plan every configuration into RESULTS."""
        from medseg.pipeline import plan
        from medseg.planning.steps import explain as explain_plans

        plans = plan(dataset, output, device=device, memory_gb=memory_gb, time_budget_s=parse_duration(time_budget),
                     jobs=jobs, overwrite=overwrite)
        if explain:
            typer.echo(explain_plans(plans))
        for name, p in plans.configurations.items():
            console.print(f"{name}: patch {p.patch_size}, batch {p.batch_size}, spacing {tuple(round(s, 3) for s in p.spacing)}, "
                          f"features {p.network_config['features']}")
        if plans.recommended:
            console.print(f"recommended configuration: {plans.recommended}")
        console.print(f"wrote {output / 'plans.json'}")

    @app.command("preprocess")
    def preprocess_command(
        results: Path = typer.Argument(..., help="Results folder with plans.json."),
        config: str = typer.Option(None, "--config", "-c", help="Comma-separated configurations, e.g. 2d,3d_fullres,3d_lowres "
                                   "(default all; 3d_cascade_fullres shares the 3d_fullres data)."),
        jobs: int = typer.Option(None, "--jobs", "-j", help="Worker processes."),
    ) -> None:
        """Resample, normalise and store the training cases (skips unchanged cases)."""
        from medseg.pipeline import preprocess

        summary = preprocess(results, configurations=config.split(",") if config else None, jobs=jobs)
        for name, counts in summary.items():
            console.print(f"{name}: {counts['processed']} processed, {counts['skipped']} unchanged, {counts['removed']} removed")

    @app.command("train")
    def train_command(
        results: Path = typer.Argument(..., help="Results folder (planned and preprocessed)."),
        config: str = typer.Option(None, "--config", "-c", help="2d, 3d_fullres, 3d_lowres or 3d_cascade_fullres (after the "
                                   "3d_lowres folds and 'medseg prepare-cascade'); default: the plan's recommendation, "
                                   "else 3d_fullres, else 2d."),
        fold: str = typer.Option("0", "--fold", "-f", help="Fold index or 'all'."),
        epochs: int = typer.Option(None, "--epochs", help="Number of epochs (default: the plan's)."),
        steps_per_epoch: int = typer.Option(None, "--steps-per-epoch", help="Steps per epoch."),
        time_budget: str = typer.Option(None, "--time-budget", help="Stop in time, e.g. 20m."),
        resume: bool = typer.Option(False, "--resume", help="Continue from checkpoint_latest.pt."),
        device: str = typer.Option(None, "--device", help="cpu or cuda (default: auto)."),
        workers: int = typer.Option(None, "--workers", help="Data loader workers."),
        no_validate: bool = typer.Option(False, "--no-validate", help="Skip the full-case validation."),
    ) -> None:
        """Train one fold, then predict and evaluate its validation cases."""
        from medseg.pipeline import train
        from medseg.planning import Plans
        from medseg.training.loop import leave_distributed_run

        plans = Plans.from_json(results / "plans.json")
        if config is None:
            config = plans.recommended or ("3d_fullres" if "3d_fullres" in plans.configurations else "2d")
        out = train(results, config, fold if fold == "all" else int(fold), epochs=epochs, steps_per_epoch=steps_per_epoch,
                    time_budget_s=parse_duration(time_budget), resume=resume, device=device, num_workers=workers,
                    validate=not no_validate)
        fit = out["fit"]
        console.print(f"trained {fit['epochs']} epoch(s), {fit['steps']} steps in {fit['seconds']:.0f} s "
                      f"(stopped by {fit['stopped_by']}); checkpoints in {fit['fold_dir']}")
        if out["validation"]:
            overall = out["validation"]["overall"]["dice"]
            console.print(f"validation mean Dice {overall['mean']:.4f} over {out['validation']['n_cases']} case(s)")
        cascades = [n for n, p in plans.configurations.items() if p.previous_stage == config]
        if cascades:
            console.print(f"when every {config} fold is trained: medseg prepare-cascade {results}, "
                          f"then medseg train {results} --config {cascades[0]} --fold K")
        leave_distributed_run()  # under torchrun: exit before gloo's teardown can abort the process

    @app.command("prepare-cascade")
    def prepare_cascade_command(
        results: Path = typer.Argument(..., help="Results folder whose 3d_lowres folds are trained."),
        config: str = typer.Option("3d_cascade_fullres", "--config", "-c", help="The cascade stage to prepare."),
        checkpoint: str = typer.Option("best", "--checkpoint", help="best or latest previous-stage checkpoints."),
        mirror: bool = typer.Option(True, "--mirror/--no-mirror", help="Test-time mirroring along every axis."),
        device: str = typer.Option(None, "--device", help="cpu or cuda (default: auto)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing previous-stage predictions."),
    ) -> None:
        """Predict every training case with the 3d_lowres fold that held it out, on the full-resolution grid
        (what 3d_cascade_fullres trains on)."""
        from medseg.pipeline.steps import prepare_cascade

        out = prepare_cascade(results, config, checkpoint=checkpoint, mirror=mirror, device=device, overwrite=overwrite)
        folds = ", ".join(f"fold {k}: {n}" for k, n in out["folds"].items())
        console.print(f"predicted {out['cases']} case(s) ({folds}) -> {out['folder']}")
        if out["fallback"]:
            console.print(f"[yellow]{len(out['fallback'])} case(s) predicted by a fold that trained on them[/yellow]")
        console.print(f"next: medseg train {results} --config {config} --fold K")
