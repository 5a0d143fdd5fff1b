"""``medseg register``: learnt deformable registration (VoxelMorph) from the shell.

* ``medseg register train DATASET -o RUN [--atlas CASE] [--loss ncc|mse] [--smooth 1.0]
  [--label-weight W] [--diffeomorphic] [--time-budget 15m] [--epochs N] [--seed S]``:
  VoxelMorph on the shared engine, random inter-subject pairs (or every case onto an atlas);
* ``medseg register apply -m RUN --fixed F --moving M [--labels L] -o OUT``: writes
  ``OUT/warped.nii.gz``, ``OUT/warped_labels.nii.gz`` (nearest neighbours) and
  ``OUT/field.nii.gz``, a displacement field SimpleITK reads as a
  ``DisplacementFieldTransform`` (mm, ITK x, y, z vectors on the fixed grid).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from medseg.cli.options import (
    device_option,
    non_negative_float,
    number_option,
    output_folder,
    time_budget_option,
)

app = typer.Typer(
    no_args_is_help=True,
    help="Learnt deformable registration (VoxelMorph): train on a dataset, apply to a pair.",
)

Loss = Literal["ncc", "mse"]
Checkpoint = Literal["best", "latest"]
OUTPUT_NAMES = ("warped.nii.gz", "warped_labels.nii.gz", "field.nii.gz")
RUN_FILES = (
    "checkpoint_best.pt",
    "checkpoint_latest.pt",
    "log.csv",
    "curves.png",
    "config.json",
    "split.json",
)


@app.command("train")
def train(
    dataset: Path = typer.Argument(
        ..., exists=True, file_okay=False, help="A dataset folder (nnU-Net v2 or MSD layout)."
    ),
    out: Path = typer.Option(..., "--out", "-o", callback=output_folder, help="The run folder."),
    atlas: str | None = typer.Option(
        None, "--atlas", help="Register every case onto this case id (default: random pairs)."
    ),
    loss: Loss = typer.Option("ncc", "--loss", help="Image similarity: local NCC or MSE."),
    smooth: float = number_option(
        1.0,
        "--smooth",
        parser=non_negative_float,
        help="Weight of the field's gradient smoothness.",
    ),
    label_weight: float = number_option(
        0.0, "--label-weight", parser=non_negative_float, help="Weight of 1 - warped-label Dice."
    ),
    diffeomorphic: bool = typer.Option(
        False, "--diffeomorphic", help="Predict a velocity, integrate it (scaling and squaring)."
    ),
    time_budget: float | None = time_budget_option("Stop training after this long, e.g. 15m."),
    epochs: int = typer.Option(
        50, "--epochs", min=1, help="Epochs (an upper bound with a budget)."
    ),
    steps: int = typer.Option(100, "--steps-per-epoch", min=1, help="Pairs per epoch."),
    lr: float = number_option(1e-4, "--lr", help="Adam's learning rate (VoxelMorph: 1e-4)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the split, the pairs and weights."),
    device: str | None = device_option(),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous run in RUN."),
) -> None:
    """Train VoxelMorph on a dataset's pairs (unsupervised; labels validate)."""
    from medseg.errors import OverwriteError
    from medseg.registration.config import RegistrationConfig
    from medseg.registration.train import fit_registration

    previous = [out / name for name in RUN_FILES if (out / name).exists()]
    if previous and not resume:
        if not overwrite:
            raise OverwriteError(
                f"{out}: holds a registration run; pass --overwrite to replace it or --resume"
            )
        for path in previous:  # only the run's own files: anything else in RUN stays
            path.unlink()
    config = RegistrationConfig(
        dataset=str(dataset),
        atlas=atlas,
        loss=loss,
        smooth=smooth,
        label_weight=label_weight,
        diffeomorphic=diffeomorphic,
        epochs=epochs,
        steps_per_epoch=steps,
        learning_rate=lr,
        seed=seed,
    )
    result = fit_registration(
        dataset, out, config, time_budget_s=time_budget, resume=resume, device=device
    )
    typer.echo(
        f"register train: {result.epochs} epoch(s), {result.steps} steps in "
        f"{result.seconds:.0f} s, best validation score {result.best_metric:.3f}; model in {out}"
    )


@app.command("apply")
def apply(
    model: Path = typer.Option(
        ..., "--model", "-m", exists=True, help="A `register train` run folder."
    ),
    fixed: Path = typer.Option(..., "--fixed", exists=True, help="The fixed image."),
    moving: Path = typer.Option(..., "--moving", exists=True, help="The moving image."),
    labels: Path | None = typer.Option(
        None, "--labels", exists=True, help="The moving image's labels."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        callback=output_folder,
        help="Folder for the warped image, labels, field.",
    ),
    checkpoint: Checkpoint = typer.Option("best", "--checkpoint", help="Which checkpoint."),
    device: str | None = device_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:
    """Register MOVING onto FIXED: warped image, warped labels and the displacement field."""
    from medseg.fileutil import check_writable
    from medseg.io import read_image, write_image
    from medseg.registration.apply import register_pair

    names = OUTPUT_NAMES if labels is not None else (OUTPUT_NAMES[0], OUTPUT_NAMES[2])
    for name in names:
        check_writable(out / name, overwrite=overwrite)
    fixed_image, moving_image = read_image(fixed), read_image(moving)
    label_image = read_image(labels) if labels is not None else None
    warped, warped_labels, field = register_pair(
        model, fixed_image, moving_image, label_image, checkpoint=checkpoint, device=device
    )
    write_image(warped, out / OUTPUT_NAMES[0], overwrite=overwrite)
    if warped_labels is not None:
        write_image(warped_labels, out / OUTPUT_NAMES[1], overwrite=overwrite)
    write_image(field, out / OUTPUT_NAMES[2], overwrite=overwrite)
    typer.echo(f"register apply: wrote {', '.join(names)} to {out}")
