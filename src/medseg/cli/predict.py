"""``medseg predict``: label maps for a folder of new images with the trained ensemble."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import typer

from medseg.cli import options
from medseg.cli.cluster_options import ADDRESS_OPTION, EXECUTOR_OPTION, Executor, where

# module constants keep the command's signature short
CONFIGURATIONS_OPTION = typer.Option(
    None,
    "--config",
    callback=options.configurations,
    help="Plans to ensemble: '2d,3d_fullres', '2d,2d-attn' (a variant), '3d_cascade_fullres' "
    "(runs its 3d_lowres folds first). Default: every trained configuration, not variants.",
)
FOLDS_OPTION = typer.Option(
    None,
    "--folds",
    callback=options.folds,
    help="Folds, e.g. '0,1'. Default: every trained fold.",
)
POSTPROCESS_OPTION = typer.Option(
    True,
    "--postprocess/--no-postprocess",
    help="Apply RESULTS/postprocessing.json when present.",
)
SAVE_PROBABILITIES_OPTION = typer.Option(
    False, "--save-probabilities", help="Also write CASE.npz with the class probabilities."
)
SAVE_UNCERTAINTY_OPTION = typer.Option(
    False,
    "--save-uncertainty",
    help="Also write uncertainty/CASE.nii.gz (entropy of the mean softmax over mirrors and "
    "folds, divided by log K: 0 certain, 1 uniform) and uncertainty.csv (per-case means).",
)
OUTPUT_FORMAT_OPTION = typer.Option(
    "image",
    "--output-format",
    help="image: one label map per case in the input's file format. dicom-seg: the input "
    "is one DICOM series folder; writes OUT/<folder>_seg.dcm, a DICOM Segmentation that "
    "references the source instances (needs the 'dicom' extra).",
)
SERIES_UID_OPTION = typer.Option(
    None,
    "--series-uid",
    help="dicom-seg: the SeriesInstanceUID to predict when the folder holds several.",
)
NAN_TO_NUM_OPTION = typer.Option(
    False,
    "--nan-to-num",
    help="Set NaN/inf voxels to 0 (with a warning) instead of refusing the image.",
)
OVERLAP_OPTION = typer.Option(
    0.5,
    "--overlap",
    parser=options.overlap,
    metavar="[0,1)",
    help="Sliding-window overlap in [0, 1).",
)


def register(app: typer.Typer) -> None:
    """Mount the ``predict`` command on the main app."""
    app.command("predict")(predict)


def _predict_dicom(series_dir: Path, target: Path, results: Path, **options: Any) -> None:
    from medseg.inference.dicom import predict_dicom_series

    predict_dicom_series(series_dir, target, results, **options)


def _split(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def predict(
    input_dir: Path = typer.Option(
        ...,
        "--input",
        "-i",
        help="Folder of CASE_0000.nii.gz... images (or a dataset folder: its imagesTs).",
    ),
    output_dir: Path = typer.Option(
        ...,
        "--output",
        "-o",
        callback=options.output_folder,
        help="Folder for the CASE.nii.gz label maps.",
    ),
    results: Path = typer.Option(
        ..., "--model", "-m", help="Results folder with the trained folds."
    ),
    config: str | None = CONFIGURATIONS_OPTION,
    folds: str | None = FOLDS_OPTION,
    checkpoint: options.Checkpoint = typer.Option("best", "--checkpoint"),
    mirror: bool = typer.Option(
        True, "--mirror/--no-mirror", help="Test-time mirroring along the plan's mirror axes."
    ),
    overlap: float = OVERLAP_OPTION,
    save_probabilities: bool = SAVE_PROBABILITIES_OPTION,
    save_uncertainty: bool = SAVE_UNCERTAINTY_OPTION,
    postprocess: bool = POSTPROCESS_OPTION,
    device: str | None = options.device_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    output_format: Literal["image", "dicom-seg"] = OUTPUT_FORMAT_OPTION,
    series_uid: str | None = SERIES_UID_OPTION,
    nan_to_num: bool = NAN_TO_NUM_OPTION,
    executor: Executor = EXECUTOR_OPTION,
    address: str | None = ADDRESS_OPTION,
) -> None:
    """Predict every case of a folder; write one label map per case in the input's geometry."""
    from medseg.inference import predict as run_predict

    start = time.perf_counter()
    common = {
        "configurations": _split(config),
        "folds": _split(folds),
        "checkpoint": checkpoint,
        "mirror": mirror,
        "overlap": overlap,
        "postprocess": postprocess,
        "device": device,
        "overwrite": overwrite,
    }
    if output_format == "dicom-seg":
        target = output_dir / f"{input_dir.resolve().name}_seg.dcm"
        _predict_dicom(input_dir, target, results, series_uid=series_uid, **common)
        typer.echo(f"DICOM SEG written in {time.perf_counter() - start:.1f} s -> {target}")
        return
    if series_uid is not None:
        raise typer.BadParameter("--series-uid needs --output-format dicom-seg")
    written = run_predict(
        input_dir,
        output_dir,
        results,
        save_probabilities=save_probabilities,
        save_uncertainty=save_uncertainty,
        progress=True,
        nan_to_num=nan_to_num,
        **where(executor, address),
        **common,
    )
    seconds = time.perf_counter() - start
    # counts the cases an interrupted earlier run had already predicted (kept; see the log)
    typer.echo(f"{len(written)} case(s) done in {seconds:.1f} s -> {output_dir}")
    if save_uncertainty:
        typer.echo(f"uncertainty: {output_dir / 'uncertainty.csv'}, maps in uncertainty/")
