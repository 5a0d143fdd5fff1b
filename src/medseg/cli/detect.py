"""``medseg detect``: object detection (boxes) and instance segmentation.

* ``medseg detect train DATA -o RUN --head centernet|watershed [--instances labels|components]
  [--instance-method distance|boundary|auto]``
  trains a CenterNet head (centre heatmap + box size, anchor-free) or a watershed head
  (foreground + distance map -> marker watershed) on the shared engine;
* ``medseg detect predict -m RUN INPUT -o OUT`` writes one instance label map per case and
  ``OUT/detections.csv`` (``case, instance, class, score, lo_0.., hi_0..``; boxes are corner
  voxel indices in array axis order, the high corner inclusive).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from medseg.cli.options import device_option, number_option, output_folder, time_budget_option

app = typer.Typer(
    no_args_is_help=True,
    help="Detection and instances: train a CenterNet or watershed head, predict boxes and "
    "instance label maps.",
)


def register(main: typer.Typer) -> None:
    """Mount this app as ``medseg detect``."""
    main.add_typer(app, name="detect", help=app.info.help)


def _label_values(value: str | None) -> str | None:
    """``callback=``: comma-separated non-negative label values."""
    if value is None:
        return value
    try:
        numbers = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        numbers = []
    if not numbers or any(n < 0 for n in numbers):
        raise typer.BadParameter(f"comma-separated label values >= 0, got {value!r}")
    return value


INSTANCE_METHOD_OPTION = typer.Option(
    "distance",
    "--instance-method",
    help="watershed head: distance (marker watershed of the distance map), boundary "
    "(watershed of 1 - foreground, regions merged across weak boundaries; EM) or auto "
    "(both tuned on the validation cases, the better kept).",
)


@app.command("train")
def train(
    data: Path = typer.Argument(
        ..., exists=True, help="A dataset folder (nnU-Net v2, MSD or 2D folder)."
    ),
    out: Path = typer.Option(..., "--out", "-o", callback=output_folder, help="The run folder."),
    head: Literal["centernet", "watershed"] = typer.Option(
        "centernet", "--head", help="centernet (boxes) or watershed (instance masks)."
    ),
    instances: Literal["labels", "components"] = typer.Option(
        "labels",
        "--instances",
        help="labels: label maps are instance maps; components: connected components of "
        "each label value (a semantic dataset).",
    ),
    labels: str | None = typer.Option(
        None,
        "--labels",
        callback=_label_values,
        help="With --instances components: label values whose components are objects "
        "(default: every foreground label; 0: the background's, e.g. cells between membranes).",
    ),
    instance_method: Literal["distance", "boundary", "auto"] = INSTANCE_METHOD_OPTION,
    image_size: int | None = typer.Option(
        None, "--image-size", min=8, help="Resize every image to this size per axis."
    ),
    patch_size: int | None = typer.Option(
        None, "--patch-size", min=8, help="Train on random crops of this size per axis."
    ),
    min_voxels: int = typer.Option(1, "--min-voxels", min=1, help="Smallest object kept."),
    epochs: int = typer.Option(
        50, "--epochs", min=1, help="Epochs (an upper bound with a budget)."
    ),
    steps: int = typer.Option(50, "--steps-per-epoch", min=1, help="Steps per epoch."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Images per step."),
    lr: float | None = number_option(None, "--lr", help="AdamW learning rate (default 1e-3)."),
    time_budget: float | None = time_budget_option("Stop training after this long, e.g. 5m."),
    val_fraction: float = typer.Option(
        0.2, "--val-fraction", min=0.0, max=0.9, help="Share of the cases held out."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the split and the weights."),
    device: str | None = device_option(),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run."),
) -> None:
    """Train a detector (CenterNet boxes or watershed instances)."""
    from medseg.detect.config import DetectConfig
    from medseg.detect.train import fit_detector

    config = DetectConfig(
        dataset=str(data),
        head=head,
        instances=instances,
        labels=tuple(int(v) for v in labels.split(",") if v.strip()) if labels else (),
        instance_method=instance_method,
        min_voxels=min_voxels,
        image_size=(image_size,) if image_size else (),  # one size: every axis
        patch_size=(patch_size,) if patch_size else (),
        epochs=epochs,
        steps_per_epoch=steps,
        batch_size=batch_size,
        learning_rate=lr or 1e-3,
        val_fraction=val_fraction,
        seed=seed,
    )
    result = fit_detector(
        data,
        out,
        config,
        time_budget_s=time_budget,
        resume=resume,
        overwrite=overwrite,
        device=device,
    )
    metric = "AP50" if head == "centernet" else "PQ"
    typer.echo(
        f"detect train ({head}): {result.epochs} epoch(s), {result.steps} steps in "
        f"{result.seconds:.0f} s, best validation {metric} {result.best_metric:.3f}; model in {out}"
    )


@app.command("predict")
def predict(
    input_path: Path = typer.Argument(
        ..., exists=True, help="An image file or a folder of CASE_0000<ending> files."
    ),
    model: Path = typer.Option(
        ..., "--model", "-m", exists=True, file_okay=False, help="A `detect train` run folder."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", callback=output_folder, help="Folder for label maps + CSV."
    ),
    checkpoint: Literal["best", "latest"] = typer.Option(
        "best", "--checkpoint", help="best or latest."
    ),
    device: str | None = device_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:
    """Instance label maps and a CSV of boxes and scores for new images."""
    from medseg.detect.predict import predict_folder

    table = predict_folder(
        model, input_path, out, overwrite=overwrite, device=device, checkpoint=checkpoint
    )
    typer.echo(f"detect predict: label maps in {out}, boxes in {table}")
