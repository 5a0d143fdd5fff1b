"""``medseg register``: learnt deformable registration (VoxelMorph) from the shell.

* ``medseg register train DATASET -o RUN [--atlas CASE] [--loss ncc|mse] [--smooth 1.0]
  [--label-weight W] [--diffeomorphic] [--time-budget 15m] [--epochs N] [--seed S]``:
  VoxelMorph on the shared engine, random inter-subject pairs (or every case onto an atlas);
  ``--pairs same-subject [--pair-pattern REGEX] [--moving-frame F] [--both-directions]``
  pairs the two frames of each subject (ACDC: ED ``frame01`` onto ES ``frame02``),
  ``--pairs-file pairs.json`` lists them; ``--shape 16x192x224`` crops or pads every volume
  about its centre to one shape;
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
PairMode = Literal["random", "same-subject"]
Checkpoint = Literal["best", "latest"]
DEFAULT_PATTERN = r"^(?P<subject>.+)_frame(?P<frame>\d+)$"  # = registration.pairs's default
OUTPUT_NAMES = ("warped.nii.gz", "warped_labels.nii.gz", "field.nii.gz")
RUN_FILES = (
    "checkpoint_best.pt",
    "checkpoint_latest.pt",
    "log.csv",
    "curves.png",
    "config.json",
    "split.json",
)


def _pair_pattern(value: str) -> str:
    """``callback=``: a regex with the named groups ``subject`` and ``frame``."""
    from medseg.errors import ConfigError
    from medseg.registration.pairs import compile_pattern

    try:
        compile_pattern(value)
    except ConfigError as err:
        raise typer.BadParameter(str(err)) from None
    return value


def _frame(value: str | None) -> str | None:
    """``callback=``: a frame value (one token, no spaces)."""
    if value is not None and (not value or value.split() != [value]):
        raise typer.BadParameter(f"--moving-frame {value!r}: one frame value, no spaces")
    return value


def _shape(value: str | None) -> tuple[int, ...] | None:
    """``callback=``: ``ZxYxX`` (or ``YxX``), positive integers."""
    if value is None:
        return None
    try:
        shape = tuple(int(n) for n in value.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise typer.BadParameter(f"--shape {value!r}: positive sizes such as 16x192x224")
    return shape


# the pair-mode options of `register train` (module level: keeps the command short)
PAIRS = typer.Option(
    "random", "--pairs", help="random (inter-subject) or same-subject (two frames each)."
)
PAIR_PATTERN = typer.Option(
    DEFAULT_PATTERN,
    "--pair-pattern",
    callback=_pair_pattern,
    help="Same-subject rule: a regex with the groups 'subject' and 'frame'.",
)
MOVING_FRAME = typer.Option(
    None, "--moving-frame", callback=_frame, help="The moving frame (default: first sorted)."
)
BOTH_DIRECTIONS = typer.Option(
    False, "--both-directions", help="Also register each fixed frame onto the moving one."
)
PAIRS_FILE = typer.Option(
    None, "--pairs-file", exists=True, dir_okay=False, help="JSON [[moving, fixed], ...]."
)
SHAPE = typer.Option(
    None, "--shape", callback=_shape, help="Crop/pad cases about the centre, e.g. 16x192x224."
)


def _clear_previous(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Removes a previous run's own files from ``out`` (with ``overwrite``, not ``resume``)."""
    from medseg.errors import OverwriteError

    previous = [out / name for name in RUN_FILES if (out / name).exists()]
    if previous and not resume:
        if not overwrite:
            raise OverwriteError(
                f"{out}: holds a registration run; pass --overwrite to replace it or --resume"
            )
        for path in previous:  # only the run's own files: anything else in RUN stays
            path.unlink()


@app.command("train")
def train(
    dataset: Path = typer.Argument(
        ..., exists=True, file_okay=False, help="A dataset folder (nnU-Net v2 or MSD layout)."
    ),
    out: Path = typer.Option(..., "--out", "-o", callback=output_folder, help="The run folder."),
    atlas: str | None = typer.Option(
        None, "--atlas", help="Register every case onto this case id (default: random pairs)."
    ),
    pairs: PairMode = PAIRS,
    pair_pattern: str = PAIR_PATTERN,
    moving_frame: str | None = MOVING_FRAME,
    both_directions: bool = BOTH_DIRECTIONS,
    pairs_file: Path | None = PAIRS_FILE,
    shape: str | None = SHAPE,
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
    from medseg.registration.config import RegistrationConfig
    from medseg.registration.train import fit_registration

    _clear_previous(out, resume=resume, overwrite=overwrite)
    config = RegistrationConfig(
        dataset=str(dataset),
        atlas=atlas,
        pairs=pairs,
        pair_pattern=pair_pattern,
        moving_frame=moving_frame,
        both_directions=both_directions,
        pairs_file=None if pairs_file is None else str(pairs_file),
        shape=shape or (),
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
