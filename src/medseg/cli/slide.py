"""``medseg slide``: whole-slide (pathology) inference and evaluation.

* ``medseg slide predict -m RESULTS SLIDE -o MASK.ome.tif [--heatmap H.tif] [--mpp X]``:
  predict a slide tile by tile in bounded memory (``medseg.inference.slide.predict_slide``);
  the mask and the heatmap are pyramidal OME-TIFFs;
* ``medseg slide evaluate PRED REF [--labels dataset.json]``: Dice, IoU and areas (mm^2) of
  a slide mask against a reference label slide, tile by tile
  (``medseg.evaluation.slide.evaluate_slide``).
"""

from __future__ import annotations

from pathlib import Path

import typer

from medseg.cli.options import (
    device_option,
    folds,
    number_option,
    output_file,
    overlap,
    plan_name_option,
)

app = typer.Typer(
    no_args_is_help=True,
    help="Whole-slide images: predict a mask and a heatmap in bounded memory, evaluate masks.",
)


@app.command("predict")
def predict_command(
    slide: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="The slide (.svs, .ndpi, .tif, .ome.tif ...)."
    ),
    results: Path = typer.Option(
        ..., "--model", "-m", exists=True, file_okay=False, help="The results folder."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", callback=output_file, help="The label mask (pyramidal .ome.tif)."
    ),
    heatmap: Path | None = typer.Option(
        None, "--heatmap", callback=output_file, help="Also write the foreground heatmap here."
    ),
    heatmap_downsample: int = typer.Option(
        8, "--heatmap-downsample", min=1, help="Mask pixels per heatmap pixel (each axis)."
    ),
    mpp: float | None = number_option(
        None, "--mpp", help="The slide's microns per pixel, for a file that does not say."
    ),
    target_mpp: float | None = number_option(
        None,
        "--target-mpp",
        help="Predict at this resolution (default: the training tiles' resolution, "
        "else the slide's level 0).",
    ),
    tile_size: int | None = typer.Option(
        None, "--tile-size", min=16, help="Tile side in pixels (default: the plan's patch)."
    ),
    tile_overlap: float = typer.Option(
        0.25, "--overlap", parser=overlap, metavar="FLOAT", help="Tile overlap in [0, 1)."
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Tiles per forward pass."),
    configuration: str = plan_name_option("2d", "The 2D plan to use."),
    fold_list: str | None = typer.Option(
        None, "--folds", callback=folds, help="Folds to ensemble, e.g. 0,1 (default: all)."
    ),
    mirror: bool = typer.Option(False, "--mirror", help="Test-time mirroring (4x slower)."),
    device: str | None = device_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:
    """Predict a whole slide: a label mask (and a heatmap) as pyramidal OME-TIFFs."""
    from medseg.inference.slide import predict_slide

    summary = predict_slide(
        results,
        slide,
        out,
        mpp=target_mpp,
        slide_mpp=mpp,
        tile_size=tile_size,
        overlap=tile_overlap,
        batch_size=batch_size,
        device=None if device in (None, "auto") else device,
        heatmap_path=heatmap,
        heatmap_downsample=heatmap_downsample,
        configuration=configuration,
        folds=fold_list.split(",") if fold_list else None,
        mirror=mirror,
        overwrite=overwrite,
    )
    typer.echo(
        f"{out}: {summary.shape[0]} x {summary.shape[1]} pixels, {summary.tiles_processed} of "
        f"{summary.tiles_total} tiles (tissue {summary.tissue_fraction:.1%}), "
        f"{summary.seconds:.1f} s ({summary.tiles_per_second:.1f} tiles/s), "
        f"peak memory {summary.peak_rss_mb:.0f} MiB"
    )


@app.command("evaluate")
def evaluate_command(
    pred: Path = typer.Argument(..., exists=True, dir_okay=False, help="The predicted mask."),
    ref: Path = typer.Argument(..., exists=True, dir_okay=False, help="The reference mask."),
    labels: Path | None = typer.Option(
        None,
        "--labels",
        exists=True,
        dir_okay=False,
        help="A dataset.json whose labels to score (default: every value found).",
    ),  # fmt: skip
    tile: int = typer.Option(2048, "--tile", min=16, help="Pixels per side read at once."),
    json_out: Path | None = typer.Option(
        None, "--json", callback=output_file, help="Also write the results as JSON here."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json."),
) -> None:
    """Dice, IoU and areas (mm^2) of a slide mask against a reference, tile by tile."""
    from medseg.evaluation.slide import (
        evaluate_slide,
        labels_from_dataset_json,
        slide_result_lines,
    )
    from medseg.fileutil import check_writable, write_json_atomic

    regions = labels_from_dataset_json(labels) if labels is not None else None
    result = evaluate_slide(pred, ref, regions, tile=tile)
    for line in slide_result_lines(result):
        typer.echo(line)
    if json_out is not None:
        write_json_atomic(check_writable(json_out, overwrite=overwrite), result)
