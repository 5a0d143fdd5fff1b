"""``medseg predict``: label maps for a folder of new images with the trained ensemble."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from medseg.cli import options


def register(app: typer.Typer) -> None:
    """Mount the ``predict`` command on the main app."""
    app.command("predict")(predict)


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
    config: str | None = typer.Option(
        None,
        "--config",
        callback=options.configurations,
        help="Plans to ensemble: '2d,3d_fullres', '2d,2d-attn' (a variant), '3d_cascade_fullres' "
        "(runs its 3d_lowres folds first). Default: every trained configuration, not variants.",
    ),
    folds: str | None = typer.Option(
        None,
        "--folds",
        callback=options.folds,
        help="Folds, e.g. '0,1'. Default: every trained fold.",
    ),
    checkpoint: options.Checkpoint = typer.Option("best", "--checkpoint"),
    mirror: bool = typer.Option(
        True, "--mirror/--no-mirror", help="Test-time mirroring along the plan's mirror axes."
    ),
    overlap: float = typer.Option(
        0.5,
        "--overlap",
        parser=options.overlap,
        metavar="[0,1)",
        help="Sliding-window overlap in [0, 1).",
    ),
    save_probabilities: bool = typer.Option(
        False, "--save-probabilities", help="Also write CASE.npz with the class probabilities."
    ),
    postprocess: bool = typer.Option(
        True,
        "--postprocess/--no-postprocess",
        help="Apply RESULTS/postprocessing.json when present.",
    ),
    device: str | None = options.device_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    nan_to_num: bool = typer.Option(
        False,
        "--nan-to-num",
        help="Set NaN/inf voxels to 0 (with a warning) instead of refusing the image.",
    ),
) -> None:
    """Predict every case of a folder; write one label map per case in the input's geometry."""
    from medseg.inference import predict as run_predict

    start = time.perf_counter()
    written = run_predict(
        input_dir,
        output_dir,
        results,
        configurations=_split(config),
        folds=_split(folds),
        checkpoint=checkpoint,
        mirror=mirror,
        overlap=overlap,
        save_probabilities=save_probabilities,
        postprocess=postprocess,
        device=device,
        overwrite=overwrite,
        progress=True,
        nan_to_num=nan_to_num,
    )
    seconds = time.perf_counter() - start
    # counts the cases an interrupted earlier run had already predicted (kept; see the log)
    typer.echo(f"{len(written)} case(s) done in {seconds:.1f} s -> {output_dir}")
