"""``medseg mesh``, ``medseg export`` and ``medseg explain``: from label maps and trained
models to what a clinic uses (surface meshes, an ONNX model with its preprocessing recipe,
heatmaps of where the network looks). See ``docs/clinical_outputs.md``.
"""

from __future__ import annotations

import re
from pathlib import Path

import typer

from medseg.cli import options

_LABEL_ITEM = re.compile(r"(?:(?P<name>[^=,]+)=)?(?P<value>\d+)")


def register(app: typer.Typer) -> None:
    """Mount the ``mesh``, ``export`` and ``explain`` commands on the main app."""
    app.command("mesh")(mesh)
    app.command("export")(export)
    app.command("explain")(explain)


def mesh_labels(text: str) -> dict[int, str]:
    """``--labels``: comma-separated label values, each optionally named: ``1,2`` or
    ``liver=1,tumour=2`` (value -> name; an unnamed value is called ``label_<value>``).

    Example:
        >>> mesh_labels("liver=1, 3")
        {1: 'liver', 3: 'label_3'}
    """
    labels: dict[int, str] = {}
    for item in (part.strip() for part in text.split(",")):
        match = _LABEL_ITEM.fullmatch(item)
        if not item or match is None or int(match["value"]) == 0:
            raise typer.BadParameter(
                f"expected label values > 0, optionally named, e.g. '1,2' or 'liver=1,tumour=2'; "
                f"got {text!r}"
            )
        value = int(match["value"])
        labels[value] = (match["name"] or f"label_{value}").strip()
    return labels


def mesh(
    pred: Path = typer.Argument(..., exists=True, help="Label map (NIfTI, NRRD, ...), 3D."),
    out: Path = typer.Option(
        ...,
        "--output",
        "-o",
        callback=options.output_file,
        help="OUT.stl, OUT.ply or OUT.obj; several labels give OUT_<name>.<ext>.",
    ),
    labels: dict[int, str] | None = typer.Option(
        None,
        "--labels",
        parser=mesh_labels,
        metavar="LABELS",
        help="Labels to mesh, e.g. '1,2' or 'liver=1,tumour=2' (names go in the file names). "
        "Default: every non-zero value.",
    ),
    smooth: int = typer.Option(
        0, "--smooth", min=0, help="Taubin smoothing iterations (0: off; 20-50 for display)."
    ),
    step: int = typer.Option(1, "--step", min=1, help="Marching-cubes step in voxels."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing files."),
) -> None:
    """Write a surface mesh per label of a label map, in world coordinates (mm)."""
    from medseg.io import read_image
    from medseg.io.mesh import write_meshes

    written = write_meshes(
        read_image(pred),
        out,
        labels=list(labels) if labels else None,
        names=labels,
        smoothing_iterations=smooth,
        step=step,
        overwrite=overwrite,
    )
    if not written:
        typer.echo(f"{pred}: no foreground; nothing written")
    for path in written:
        typer.echo(f"wrote {path}")


# one model: the options of export and explain
ONE_CONFIG = options.plan_name_option(None, "Configuration (default: the only trained one).")
ONE_FOLD = typer.Option(
    None,
    "--fold",
    parser=options.fold,
    metavar="FOLD",
    help="Fold (default: the only trained one).",
)


def export(
    results: Path = typer.Argument(..., exists=True, help="Results folder with trained folds."),
    out: Path = typer.Option(
        ..., "--output", "-o", callback=options.output_file, help="The .onnx file to write."
    ),
    config: str | None = ONE_CONFIG,
    fold: str | None = ONE_FOLD,
    checkpoint: options.Checkpoint = typer.Option("best", "--checkpoint"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
) -> None:
    """Export one fold's network to ONNX with its preprocessing recipe as metadata."""
    from medseg.inference.onnx_export import export_onnx, read_onnx_metadata

    path = export_onnx(
        results,
        out,
        configuration=config,
        fold=fold,
        checkpoint=checkpoint,
        overwrite=overwrite,
    )
    recipe = read_onnx_metadata(path).recipe
    axes = "dynamic" if recipe["dynamic_spatial_axes"] else f"fixed {recipe['patch_size']}"
    typer.echo(
        f"wrote {path} ({recipe['configuration']} fold {recipe['fold']}, spatial axes {axes}, "
        f"spacing {recipe['spacing']} mm)"
    )


def explain(
    results: Path = typer.Argument(..., exists=True, help="Results folder with trained folds."),
    images: list[Path] = typer.Argument(
        ..., exists=True, help="The image (or DICOM folder); one file per channel, in order."
    ),
    label: str = typer.Option(..., "--label", help="Label name as in dataset.json, e.g. liver."),
    out: Path = typer.Option(
        ..., "--output", "-o", callback=options.output_folder, help="Folder for maps and PNGs."
    ),
    config: str | None = ONE_CONFIG,
    fold: str | None = ONE_FOLD,
    checkpoint: options.Checkpoint = typer.Option("best", "--checkpoint"),
    layer: str | None = typer.Option(
        None,
        "--layer",
        help="Module Grad-CAM explains, e.g. decoder.stages.0 (default: the map feeding the "
        "output head).",
    ),
    mirror: bool = typer.Option(
        True, "--mirror/--no-mirror", help="Test-time mirroring for the predicted region."
    ),
    device: str | None = options.device_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing files."),
) -> None:
    """Grad-CAM and saliency of one label's predicted region, in the image's geometry."""
    from medseg.inference.explain_segmentation import explain_segmentation

    written = explain_segmentation(
        results,
        images,
        out,
        label=label,
        configuration=config,
        fold=fold,
        checkpoint=checkpoint,
        layer=layer,
        mirror=mirror,
        device=device,
        overwrite=overwrite,
    )
    typer.echo(f"wrote {len(written)} files to {out}: " + ", ".join(p.name for p in written))
