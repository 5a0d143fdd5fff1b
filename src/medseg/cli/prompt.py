"""``medseg prompt``: promptable segmentation (SAM/MedSAM-style) from the shell.

* ``medseg prompt finetune DATASET -o RUN [--weights FILE [--medsam] | --encoder RESULTS]``:
  MedSAM's fine-tuning on the shared engine (boxes from the ground truth with jitter, Dice +
  BCE, the image encoder frozen and its embeddings cached);
* ``medseg prompt predict IMAGE -m RUN (--box LO,...,HI,... | --point I,J[,neg]) -o OUT``;
* ``medseg prompt auto IMAGE -m RUN -o OUT``: segment everything (a point grid);
* ``medseg prompt evaluate DATASET -m RUN --clicks 10``: Dice per simulated click, NoC@85/90.

Prompt coordinates are voxel indices in array axis order (2D ``row,col``; 3D ``z,y,x``),
as every medseg coordinate; a box is its low corner then its high corner (inclusive).
"""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.cli.options import (
    device_option,
    number_option,
    one_of,
    output_file,
    output_folder,
    time_budget_option,
)

app = typer.Typer(
    no_args_is_help=True,
    help="Promptable segmentation: fine-tune (MedSAM), predict from a box or clicks, segment "
    "everything, evaluate with simulated clicks.",
)


def _numbers(text: str, what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"{what}: expected comma-separated numbers, got {text!r}"
        ) from None
    if not values:
        raise typer.BadParameter(f"{what}: expected comma-separated numbers, got {text!r}")
    return values


def _check_box(value: str | None) -> str | None:
    """``callback=``: an even count of numbers (low corner, then high corner)."""
    if value is not None and len(_numbers(value, "--box")) % 2:
        raise typer.BadParameter(f"--box needs lo...,hi... (an even count of numbers): {value!r}")
    return value


def parse_point(text: str) -> tuple[list[float], int]:
    """``"12,40"`` -> ``([12, 40], 1)``; a trailing ``neg`` (or ``pos``) sets the label.

    Example:
        >>> parse_point("3,4,neg")
        ([3.0, 4.0], 0)
    """
    parts = [p.strip() for p in text.split(",") if p.strip()]
    label = 1
    if parts and parts[-1].lower() in ("neg", "pos"):
        label = 0 if parts.pop().lower() == "neg" else 1
    return _numbers(",".join(parts), "--point"), label


def _check_points(values: list[str] | None) -> list[str]:
    for value in values or []:
        parse_point(value)
    return values or []


def _int_list(text: str | None) -> tuple[int, ...]:
    return tuple(int(v) for v in _numbers(text, "--labels")) if text else ()


def _check_labels(value: str | None) -> str | None:
    """``callback=``: comma-separated positive label values."""
    if value is not None:
        numbers = _numbers(value, "--labels")
        if any(n != int(n) or n < 1 for n in numbers):
            raise typer.BadParameter(f"--labels: positive integer label values, got {value!r}")
    return value


VARIANT_OPTION = typer.Option(
    "vit_b",
    "--variant",
    callback=one_of("--variant", ("vit_b", "vit_l", "vit_h", "tiny")),
    help="SAM's encoder: vit_b, vit_l, vit_h (tiny: tests).",
)
FREEZE_OPTION = typer.Option(
    "image_encoder",
    "--freeze",
    callback=one_of("--freeze", ("image_encoder", "none")),
    help="image_encoder (embeddings cached) or none.",
)
OBJECTS_OPTION = typer.Option(
    "label",
    "--objects",
    callback=one_of("--objects", ("label", "component")),
    help="One object per label value, or per connected component.",
)
POINT_FRACTION_OPTION = typer.Option(
    0.5,
    "--point-fraction",
    min=0.0,
    max=1.0,
    help="Share of steps prompted by one click instead of a box (0: MedSAM, boxes only).",
)
TRAIN_CLICKS_OPTION = typer.Option(
    1, "--train-clicks", min=0, help="Correction clicks per step, previous mask fed back."
)
LABELS_OPTION = typer.Option(
    None, "--labels", callback=_check_labels, help="Label values (default: all)."
)


@app.command("finetune")
def finetune(
    dataset: Path = typer.Argument(..., help="A dataset folder (nnU-Net v2, MSD or 2D folder)."),
    out: Path = typer.Option(..., "--out", "-o", callback=output_folder, help="The run folder."),
    weights: Path | None = typer.Option(
        None, "--weights", help="An official SAM checkpoint (or MedSAM's with --medsam)."
    ),
    medsam: bool = typer.Option(False, "--medsam", help="--weights is a MedSAM checkpoint."),
    variant: str = VARIANT_OPTION,
    encoder: Path | None = typer.Option(
        None, "--encoder", help="A medseg results folder (or checkpoint): its U-Net encoder."
    ),
    configuration: str | None = typer.Option(
        None, "--configuration", help="The --encoder results' configuration (default: first)."
    ),
    freeze: str = FREEZE_OPTION,
    image_size: int = typer.Option(256, "--image-size", min=16, help="The square model input."),
    spatial_dims: int = typer.Option(2, "--spatial-dims", min=2, max=3, help="2 or 3."),
    labels: str | None = LABELS_OPTION,
    objects: str = OBJECTS_OPTION,
    box_jitter: int = typer.Option(5, "--box-jitter", min=0, help="Box jitter in voxels."),
    point_fraction: float = POINT_FRACTION_OPTION,
    train_clicks: int = TRAIN_CLICKS_OPTION,
    epochs: int = typer.Option(
        50, "--epochs", min=1, help="Epochs (an upper bound with a budget)."
    ),
    steps: int = typer.Option(50, "--steps-per-epoch", min=1, help="Steps per epoch."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Objects per step."),
    lr: float | None = number_option(
        None, "--lr", help="AdamW rate (default: 1e-4 for SAM/MedSAM weights, else 1e-3)."
    ),
    time_budget: float | None = time_budget_option("Stop training after this long, e.g. 30m."),
    val_fraction: float = typer.Option(
        0.2, "--val-fraction", min=0.0, max=0.9, help="Share of the cases held out."
    ),
    seed: int = typer.Option(
        0, "--seed", min=0, help="Seed of the split, the boxes and the weights."
    ),
    device: str | None = device_option(),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run."),
) -> None:
    """Fine-tune a promptable model on a dataset's boxes (MedSAM's recipe)."""
    from medseg.prompt.finetune import finetune_prompt
    from medseg.prompt.finetune_config import PromptConfig

    source = "medsam" if medsam else "sam" if weights else "encoder" if encoder else "scratch"
    config = PromptConfig(
        dataset=str(dataset),
        source=source,
        weights=str(weights) if weights else None,
        variant=variant,
        encoder=str(encoder) if encoder else None,
        encoder_configuration=configuration,
        spatial_dims=spatial_dims,
        image_size=(image_size,) * spatial_dims,
        labels=_int_list(labels),
        objects=objects,
        freeze=freeze,
        box_jitter=box_jitter,
        point_fraction=point_fraction,
        clicks=train_clicks,
        batch_size=batch_size,
        learning_rate=lr or 0.0,
        epochs=epochs,
        steps_per_epoch=steps,
        val_fraction=val_fraction,
        seed=seed,
    )
    result = finetune_prompt(config, out, time_budget_s=time_budget, resume=resume, device=device)
    typer.echo(
        f"prompt finetune ({source}): {result.epochs} epoch(s), {result.steps} steps in "
        f"{result.seconds:.0f} s, best validation Dice {result.best_metric:.3f}; model in {out}"
    )


@app.command("predict")
def predict(
    image: Path = typer.Argument(..., help="An image file."),
    model: Path = typer.Option(..., "--model", "-m", help="A `prompt finetune` run folder."),
    out: Path = typer.Option(..., "--out", "-o", callback=output_file, help="The mask file."),
    box: str | None = typer.Option(
        None,
        "--box",
        callback=_check_box,
        metavar="LO,...,HI,...",
        help="Box corners in voxel indices, array axis order (2D: r0,c0,r1,c1).",
    ),
    point: list[str] = typer.Option(
        [],
        "--point",
        callback=_check_points,
        metavar="I,J[,neg]",
        help="A click in voxel indices, array axis order; ',neg' for background (repeatable).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
) -> None:
    """Segment the object a box or clicks point at."""
    from medseg.io.formats import read_image, write_image
    from medseg.prompt.apply import segment_with_prompt
    from medseg.prompt.finetune_model import load_prompt_run

    network, config = load_prompt_run(model)
    clicks = [parse_point(p) for p in point]
    mask, iou = segment_with_prompt(
        network,
        config,
        read_image(image),
        box=_numbers(box, "--box") if box else None,
        points=[c for c, _ in clicks] or None,
        point_labels=[label for _, label in clicks] or None,
    )
    path = write_image(mask, out, overwrite=overwrite)
    typer.echo(f"{path}: {int(mask.array.sum())} voxels, predicted IoU {iou:.3f}")


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="prompt", help=app.info.help)


@app.command("auto")
def auto(
    image: Path = typer.Argument(..., help="An image file."),
    model: Path = typer.Option(..., "--model", "-m", help="A `prompt finetune` run folder."),
    out: Path = typer.Option(..., "--out", "-o", callback=output_file, help="The label map."),
    points_per_side: int = typer.Option(16, "--points-per-side", min=1, help="Grid per axis."),
    iou_threshold: float = number_option(
        0.88, "--pred-iou-thresh", help="Keep masks whose predicted IoU is at least this."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
) -> None:
    """Segment everything: a grid of point prompts, filtered, de-duplicated (box NMS)."""
    from medseg.io.formats import read_image, write_image
    from medseg.prompt.apply import segment_everything_image
    from medseg.prompt.finetune_model import load_prompt_run

    network, config = load_prompt_run(model)
    labels, count = segment_everything_image(
        network,
        config,
        read_image(image),
        points_per_side=points_per_side,
        pred_iou_thresh=iou_threshold,
    )
    path = write_image(labels, out, overwrite=overwrite)
    typer.echo(f"{path}: {count} object(s)")


@app.command("evaluate")
def evaluate(
    model: Path = typer.Option(..., "--model", "-m", help="A `prompt finetune` run folder."),
    dataset: Path | None = typer.Argument(
        None, help="A dataset folder (default: the run's own, its held-out cases)."
    ),
    clicks: int = typer.Option(10, "--clicks", min=0, help="Simulated clicks per object."),
    out: Path | None = typer.Option(
        None, "--out", "-o", callback=output_file, help="Also write the summary as JSON."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
) -> None:
    """Box-prompt Dice and Dice per simulated click (each at the centre of the largest error
    region), NoC@85 and NoC@90, on held-out objects."""
    from medseg.fileutil import check_writable, write_json_atomic
    from medseg.prompt.evaluate import evaluate_prompt_model, run_split
    from medseg.prompt.finetune_model import load_prompt_run

    if out is not None:
        check_writable(out, overwrite=overwrite)
    network, config = load_prompt_run(model)
    held_out = run_split(model)["val"] if dataset is None else None
    summary = evaluate_prompt_model(
        network, config, dataset or config.dataset, case_ids=held_out or None, max_clicks=clicks
    )
    typer.echo(f"{summary['objects']} object(s): box-prompt Dice {summary['box_dice']:.3f}")
    if clicks:
        curve = ", ".join(f"{d:.3f}" for d in summary["mean_dice"])
        typer.echo(f"Dice after clicks 1..{clicks}: {curve}")
        typer.echo(f"NoC@85 {summary['noc85']:.2f}, NoC@90 {summary['noc90']:.2f}")
    if out is not None:
        write_json_atomic(out, summary)
        typer.echo(f"wrote {out}")
