"""``medseg plan | preprocess | train | prepare-cascade``: the pipeline steps (each calls one
function)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import typer
from rich.console import Console

from medseg.cli import options
from medseg.cli.cluster_options import ADDRESS_OPTION, EXECUTOR_OPTION, Executor, where
from medseg.cli.train_options import (
    EMA_DECAY_OPTION,
    FREEZE_OPTION,
    MAP_OPTION,
    PRETRAINED_OPTION,
    SAVE_PROBABILITIES_OPTION,
    WARMUP_STEPS_OPTION,
)

console = Console()


# medseg plan's choices (issue 13), defined here so the command reads as a list
NETWORK_OPTION = typer.Option(
    None, "--network", help="Segmentation network (medseg nets list; default unet)."
)
LOSS_OPTION = typer.Option(None, "--loss", help="Loss (default dice_ce); e.g. dice, focal.")
SAMPLING_OPTION = typer.Option(
    None, "--sampling", help="Patch sampling (default oversample: a third on foreground)."
)
OPTIMIZER_OPTION = typer.Option(
    None, "--optimizer", help="Optimiser (default: adamw on CPU, sgd on CUDA)."
)
AUGMENT_OPTION = typer.Option(
    None, "--augment", help="Augmentation preset (default nnunet_default)."
)
MIRROR_AXES_OPTION = typer.Option(
    None,
    "--mirror-axes",
    callback=options.mirror_axes,
    metavar="AXES",
    help="Image axes to mirror in training and test-time augmentation: 0,1 | none | all "
    "(default: all but left-right where labels say left/right).",
)
ELASTIC_OPTION = options.number_option(
    None,
    "--elastic",
    help="Probability of elastic deformation per sample, 0-1 (default 0).",
    parser=options.probability,
    metavar="P",
)
SETTINGS_OPTION = typer.Option(
    None,
    "--set",
    metavar="KEY=VALUE",
    help="Set any plan field (JSON value), e.g. batch_size=4, loss_config.alpha=0.3; repeatable.",
)
N4_OPTION = typer.Option(
    "",
    "--n4",
    metavar="CHANNELS",
    help="N4 bias-field correction of these image channels before normalisation: 0,1 | "
    "all (MRI; off by default).",
)
HISTOGRAM_MATCHING_OPTION = typer.Option(
    "",
    "--histogram-matching",
    metavar="CHANNELS",
    help="Match these channels' histograms to the dataset's landmarks (Nyul-Udupa): "
    "0,1 | all (off by default).",
)
VARIANT_OPTION = typer.Option(
    None,
    "--variant",
    help="Add these choices as a variant <configuration>-<variant> next to the plans "
    "already in RESULTS (e.g. --variant attn --network attention_unet).",
)
TILE_MPP_OPTION = options.number_option(
    1.0,
    "--tile-mpp",
    metavar="UM",
    help="Slide datasets: resolution of the training tiles in microns per pixel (> 0).",
)
TILE_SIZE_OPTION = typer.Option(
    512, "--tile-size", min=16, help="Slide datasets: tile side in pixels."
)
TILES_PER_SLIDE_OPTION = typer.Option(
    64, "--tiles-per-slide", min=1, help="Slide datasets: tiles drawn per slide."
)
FOREGROUND_FRACTION_OPTION = options.number_option(
    0.33,
    "--foreground-fraction",
    parser=options.probability,
    metavar="P",
    help="Slide datasets: share of tiles centred on labelled foreground (0-1).",
)
STAIN_OPTION = typer.Option(
    "none",
    "--stain",
    help="Slide datasets: stain normalisation fitted on the training tiles, applied in "
    "preprocessing and prediction alike.",
)


def plan_command(
    dataset: Path = typer.Argument(..., help="Dataset folder."),
    output: Path = typer.Option(
        ..., "--output", "-o", callback=options.output_folder, help="Results folder (created)."
    ),
    device: Literal["cpu", "cuda"] = typer.Option("cpu", help="Device the plan is sized for."),
    memory_gb: float = options.number_option(
        4.0, "--memory-gb", help="Memory budget of one training step (> 0).", metavar="GB"
    ),
    time_budget: float = options.time_budget_option(
        "Training time budget (e.g. 20m): measure step times, set epochs, recommend a "
        "configuration."
    ),
    precision: Literal["bf16", "fp32"] | None = typer.Option(
        None,
        "--precision",
        help="Train every configuration in bf16 or fp32 (default: bf16 where the device "
        "supports it natively and a bf16 step does not crash or hang in a child process).",
    ),
    network: str = NETWORK_OPTION,
    loss: str = LOSS_OPTION,
    sampling: Literal["oversample", "balanced", "uniform"] | None = SAMPLING_OPTION,
    optimizer: Literal["sgd", "adam", "adamw"] | None = OPTIMIZER_OPTION,
    augment: Literal["nnunet_default", "light", "mri_artefacts", "pathology", "none"]
    | None = AUGMENT_OPTION,
    mirror_axes: str = MIRROR_AXES_OPTION,
    elastic: float = ELASTIC_OPTION,
    settings: list[str] = SETTINGS_OPTION,
    n4: str = N4_OPTION,
    histogram_matching: str = HISTOGRAM_MATCHING_OPTION,
    variant: str = VARIANT_OPTION,
    tile_mpp: float = TILE_MPP_OPTION,
    tile_size: int = TILE_SIZE_OPTION,
    tiles_per_slide: int = TILES_PER_SLIDE_OPTION,
    foreground_fraction: float = FOREGROUND_FRACTION_OPTION,
    stain: Literal["macenko", "reinhard", "none"] = STAIN_OPTION,
    explain: bool = typer.Option(False, "--explain", help="Print why each value was chosen."),
    jobs: int = typer.Option(None, "--jobs", "-j", min=1, help="Worker processes."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing plans."),
) -> None:
    """Check and fingerprint DATASET, then plan every configuration into RESULTS."""
    from medseg.pipeline import plan
    from medseg.planning.choices import PlanChoices
    from medseg.planning.steps import explain as explain_plans

    choices = PlanChoices(
        network=network,
        loss=loss,
        sampling=sampling,
        optimizer=optimizer,
        augmentation=augment,
        mirror_axes=options.mirror_axes_value(mirror_axes),
        elastic=elastic,
        settings=tuple(settings or ()),
    )
    plans = plan(
        dataset,
        output,
        device=device,
        memory_gb=memory_gb,
        time_budget_s=time_budget,
        precision=precision,
        choices=choices,
        variant=variant,
        n4=n4,
        histogram=histogram_matching,
        jobs=jobs,
        overwrite=overwrite,
        slide_tiles={
            "mpp": tile_mpp,
            "tile_size": tile_size,
            "tiles_per_slide": tiles_per_slide,
            "foreground_fraction": foreground_fraction,
            "stain": None if stain == "none" else stain,
        },
    )
    if explain:
        typer.echo(explain_plans(plans))
    _print_plans(plans, output)


def _print_plans(plans: Any, output: Path) -> None:
    for name, p in plans.configurations.items():
        console.print(
            f"{name}: {p.network}, {p.loss}, patch {p.patch_size}, batch {p.batch_size}, "
            f"spacing {tuple(round(s, 3) for s in p.spacing)}, "
            f"mirror axes {list(p.mirror_axes) if p.mirror_axes is not None else 'all'}"
        )
    if plans.recommended:
        console.print(f"recommended configuration: {plans.recommended}")
    console.print(f"wrote {output / 'plans.json'}")


def preprocess_command(
    results: Path = typer.Argument(..., help="Results folder with plans.json."),
    config: str = typer.Option(
        None,
        "--config",
        "-c",
        callback=options.configurations,
        help="Comma-separated configurations, e.g. 2d,3d_fullres,3d_lowres "
        "(default all; 3d_cascade_fullres shares the 3d_fullres data, a variant such as "
        "2d-attn its configuration's).",
    ),
    jobs: int = typer.Option(None, "--jobs", "-j", min=1, help="Worker processes."),
    executor: Executor = EXECUTOR_OPTION,
    address: str | None = ADDRESS_OPTION,
) -> None:
    """Resample, normalise and store the training cases (skips unchanged cases)."""
    from medseg.pipeline import preprocess

    configurations = config.split(",") if config else None
    summary = preprocess(
        results, configurations=configurations, jobs=jobs, **where(executor, address)
    )
    for name, counts in summary.items():
        console.print(
            f"{name}: {counts['processed']} processed, {counts['skipped']} unchanged, "
            f"{counts['removed']} removed"
        )


def train_command(
    results: Path = typer.Argument(..., help="Results folder (planned and preprocessed)."),
    config: str | None = options.plan_name_option(
        None,
        "A planned configuration (2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres) or "
        "variant (e.g. 2d-attn); 3d_cascade_fullres after the 3d_lowres folds and 'medseg "
        "prepare-cascade'; default: the plan's recommendation, else 3d_fullres, else 2d.",
    ),
    fold: str = typer.Option(
        "0",
        "--fold",
        "-f",
        parser=options.fold,
        metavar="FOLD",
        help="Fold index (>= 0) or 'all'.",
    ),
    epochs: int = typer.Option(
        None, "--epochs", min=1, help="Number of epochs (default: the plan's)."
    ),
    steps_per_epoch: int = typer.Option(None, "--steps-per-epoch", min=1, help="Steps per epoch."),
    time_budget: float = options.time_budget_option("Stop in time, e.g. 20m."),
    resume: bool = typer.Option(False, "--resume", help="Continue from checkpoint_latest.pt."),
    device: str = options.device_option(),
    workers: int = typer.Option(None, "--workers", min=0, help="Data loader workers (0: none)."),
    precision: Literal["bf16", "fp32"] | None = typer.Option(
        None, "--precision", help="bf16 or fp32 autocast (default: the plan's decision)."
    ),
    no_validate: bool = typer.Option(False, "--no-validate", help="Skip the full-case validation."),
    pretrained: Path | None = PRETRAINED_OPTION,
    freeze: str = FREEZE_OPTION,
    weight_map: list[str] = MAP_OPTION,
    save_probabilities: bool = SAVE_PROBABILITIES_OPTION,
    ema_decay: float = EMA_DECAY_OPTION,
    warmup_steps: int = WARMUP_STEPS_OPTION,
) -> None:
    """Train one fold, then predict and evaluate its validation cases."""
    from medseg.pipeline import train
    from medseg.planning import Plans
    from medseg.training import leave_distributed_run
    from medseg.training.segmentation_transfer import parse_mapping

    plans = Plans.from_json(results / "plans.json")
    if config is None:
        config = plans.recommended or (
            "3d_fullres" if "3d_fullres" in plans.configurations else "2d"
        )
    out = train(
        results,
        config,
        fold if fold == "all" else int(fold),
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        time_budget_s=time_budget,
        resume=resume,
        device=device,
        num_workers=workers,
        precision=precision,
        validate=not no_validate,
        pretrained=pretrained,
        freeze=freeze,
        weight_mapping=parse_mapping(weight_map) or None,
        save_probabilities=save_probabilities,
        ema_decay=ema_decay,
        warmup_steps=warmup_steps,
    )
    _print_training_summary(out, plans, config, results)
    leave_distributed_run()  # under torchrun: exit before gloo's teardown can abort the process


def _print_training_summary(out: dict, plans, config: str, results: Path) -> None:
    """What ``medseg train`` did, its validation Dice, and the cascade's next step."""
    fit = out["fit"]
    console.print(
        f"trained {fit['epochs']} epoch(s), {fit['steps']} steps in {fit['seconds']:.0f} s "
        f"(stopped by {fit['stopped_by']}); checkpoints in {fit['fold_dir']}"
    )
    if out["validation"]:
        overall = out["validation"]["overall"]["dice"]
        console.print(
            f"validation mean Dice {overall['mean']:.4f} over "
            f"{out['validation']['n_cases']} case(s)"
        )
    cascades = [n for n, p in plans.configurations.items() if p.previous_stage == config]
    if cascades:
        console.print(
            f"when every {config} fold is trained: medseg prepare-cascade {results}, "
            f"then medseg train {results} --config {cascades[0]} --fold K"
        )


def prepare_cascade_command(
    results: Path = typer.Argument(..., help="Results folder whose 3d_lowres folds are trained."),
    config: str = options.plan_name_option("3d_cascade_fullres", "The cascade stage to prepare."),
    checkpoint: options.Checkpoint = typer.Option(
        "best", "--checkpoint", help="Which previous-stage checkpoints."
    ),
    mirror: bool = typer.Option(
        True, "--mirror/--no-mirror", help="Test-time mirroring along the plan's mirror axes."
    ),
    device: str = options.device_option(),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace existing previous-stage predictions."
    ),
) -> None:
    """Predict the training cases with the 3d_lowres folds (what 3d_cascade_fullres trains on).

    Each case is predicted by the fold that held it out, on the full-resolution grid.
    """
    from medseg.pipeline import prepare_cascade

    out = prepare_cascade(
        results,
        config,
        checkpoint=checkpoint,
        mirror=mirror,
        device=device,
        overwrite=overwrite,
    )
    folds = ", ".join(f"fold {k}: {n}" for k, n in out["folds"].items())
    console.print(f"predicted {out['cases']} case(s) ({folds}) -> {out['folder']}")
    if out["fallback"]:
        console.print(
            f"[yellow]{len(out['fallback'])} case(s) predicted by a fold that trained on "
            "them[/yellow]"
        )
    console.print(f"next: medseg train {results} --config {config} --fold K")


def register(app: typer.Typer) -> None:
    """Mount the pipeline commands on the main app."""
    app.command("plan")(plan_command)
    app.command("preprocess")(preprocess_command)
    app.command("train")(train_command)
    app.command("prepare-cascade")(prepare_cascade_command)
    app.command("crossval")(crossval_command)


def crossval_command(
    results: Path = typer.Argument(..., help="Results folder with trained folds."),
    config: str = options.plan_name_option("2d", "The configuration whose folds to pool."),
    crf: bool = typer.Option(
        False,
        "--crf",
        help="Also decide a dense CRF on the folds' softmax (trained with --save-probabilities).",
    ),
) -> None:
    """Pool the folds' validation predictions, evaluate them and decide the post-processing
    (largest component, hole filling, optionally a dense CRF) that 'medseg predict' applies."""
    from medseg.pipeline.steps import evaluate_cross_validation

    summary = evaluate_cross_validation(results, config, crf=crf)
    console.print(
        f"cross-validation mean Dice {summary['overall']['dice']['mean']:.4f} over "
        f"{summary['n_cases']} case(s); decision in {results / 'postprocessing.json'}"
    )
