"""``medseg evaluate``: metrics for a folder of predictions against references."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import typer

from medseg.cli.cluster_options import ADDRESS_OPTION, EXECUTOR_OPTION, Executor, where
from medseg.cli.options import non_negative_float, number_option, output_folder

_SHOWN = ("dice", "hd95", "assd", "nsd")


def _parse_size_bins(text: str) -> list[float]:
    """``"0.5,2,10"`` -> ``[0.5, 2.0, 10.0]`` (order and sign are checked by the library)."""
    try:
        return [float(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise typer.BadParameter(f"cannot read {text!r}; give mL values like 0.5,2,10") from None


def _check_size_bins(text: str | None) -> str | None:
    """Parse-time check of ``--size-bins`` (the text is kept; the command parses it again)."""
    if text:
        _parse_size_bins(text)
    return text


# the size and lesion-wise options (module constants keep the command's signature short)
SIZE_BINS_OPTION = typer.Option(
    None,
    "--size-bins",
    callback=_check_size_bins,
    metavar="ML,ML,...",
    help="Reference-volume edges in mL for the size strata of summary.json, e.g. "
    "'0.5,2,10' (3D only). Default: tertiles of each label's reference volumes.",
)
LESION_WISE_OPTION = typer.Option(
    False,
    "--lesion-wise",
    help="Also score lesion by lesion (BraTS 2023: detection TP/FP/FN and F1, lesion-wise "
    "Dice and HD95 with misses and false positives penalised); writes lesions.csv.",
)
LESION_LABELS_OPTION = typer.Option(
    None,
    "--lesion-labels",
    help="Lesion-wise: only these labels, e.g. '2' or 'et,tc' (names as in --labels). "
    "Default: every evaluated label.",
)
LESION_DILATION_OPTION = number_option(
    3.0,
    "--lesion-dilation",
    help="Lesion-wise: reference lesions closer than this merge, and a predicted component "
    "within it matches (mm, >= 0).",
    parser=non_negative_float,
    metavar="MM",
)
LESION_MIN_VOLUME_OPTION = number_option(
    50.0,
    "--lesion-min-volume",
    help="Lesion-wise: reference lesions of at most this volume are left out (mm^3, or "
    "mm^2 in 2D; BraTS: 50).",
    parser=non_negative_float,
    metavar="MM3",
)
LESION_FOOTPRINT_OPTION = typer.Option(
    "ellipsoid",
    "--lesion-footprint",
    help="Lesion-wise dilation shape: ellipsoid (true mm distance) or brats (BraTS's "
    "repeated 18-neighbour dilation, for BraTS-comparable numbers).",
)


JOBS_OPTION = typer.Option(
    None, "--jobs", "-j", min=1, help="Worker processes (default: CPU count)."
)


def register(app: typer.Typer) -> None:
    """Mount the ``evaluate`` command on the main app."""
    app.command("evaluate")(evaluate)


PRED_OPTION = typer.Option(
    ..., "--pred", help="Folder of predicted label maps, or one slide mask (.tif)."
)
REF_OPTION = typer.Option(
    ..., "--ref", help="Folder of reference label maps (same file names), or a slide mask."
)


def evaluate(
    pred: Path = PRED_OPTION,
    ref: Path = REF_OPTION,
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        callback=output_folder,
        help="Output folder for per_case.csv and summary.json.",
    ),
    labels: str | None = typer.Option(
        None,
        help="Labels/regions, e.g. '1,2' or 'wt=1+2+3,tc=1+3,et=3'. "
        "Default: all non-zero reference values.",
    ),
    ignore_label: int | None = typer.Option(
        None,
        "--ignore-label",
        min=0,
        help="Reference value whose voxels count in no metric. Default: the 'ignore' label "
        "(sparse annotations) of the dataset.json in --ref or its parent folder, if any.",
    ),
    tolerance: float = number_option(
        2.0, help="NSD tolerance in mm (>= 0).", parser=non_negative_float, metavar="MM"
    ),
    hd95_mode: Literal["max_directed", "pooled"] = typer.Option(
        "max_directed",
        help="max_directed (larger directed 95th percentile; MONAI, DeepMind) or pooled (MedPy).",
    ),
    surface: Literal["voxel", "surfel"] = typer.Option(
        "voxel", help="voxel (MONAI/MedPy surface voxels) or surfel (DeepMind)."
    ),
    size_bins: str | None = SIZE_BINS_OPTION,
    lesion_wise: bool = LESION_WISE_OPTION,
    lesion_labels: str | None = LESION_LABELS_OPTION,
    lesion_dilation: float = LESION_DILATION_OPTION,
    lesion_min_volume: float = LESION_MIN_VOLUME_OPTION,
    lesion_footprint: Literal["ellipsoid", "brats"] = LESION_FOOTPRINT_OPTION,
    jobs: int | None = JOBS_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    executor: Executor = EXECUTOR_OPTION,
    address: str | None = ADDRESS_OPTION,
) -> None:
    """Compare predictions with references case by case; write per_case.csv and summary.json."""
    from medseg.evaluation import evaluate_folders, parse_labels

    if pred.is_file() and ref.is_file():  # two slide masks (pathology): tile by tile
        _evaluate_slides(pred, ref, out, parse_labels(labels) if labels else None, overwrite)
        return
    summary = evaluate_folders(
        pred,
        ref,
        out,
        labels=parse_labels(labels) if labels else None,
        ignore_label="auto" if ignore_label is None else ignore_label,
        tolerance_mm=tolerance,
        hd95_mode=hd95_mode,
        surface=surface,
        jobs=jobs,
        overwrite=overwrite,
        show_progress=True,
        **where(executor, address),
        size_bins_ml=_parse_size_bins(size_bins) if size_bins else None,  # checked at parse
        lesion_wise=lesion_wise,
        lesion_options={
            "dilation_mm": lesion_dilation,
            "min_volume_mm3": lesion_min_volume,
            "footprint": lesion_footprint,
            "labels": [n.strip() for n in lesion_labels.split(",")] if lesion_labels else None,
        },
    )
    _print_table(summary)
    if lesion_wise:
        _print_lesions(summary["lesion_wise"])
    typer.echo(
        f"wrote {out / 'per_case.csv'} and {out / 'summary.json'} ({summary['n_cases']} cases)"
    )


def _print_table(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    options = summary["options"]
    table = Table(
        title=f"{summary['n_cases']} cases: mean±std (distances in mm)",
        caption=f"(k): k NaN values skipped. NSD at {options['tolerance_mm']:g} mm, "
        f"HD95 {options['hd95_mode']}. All metrics in per_case.csv and summary.json.",
    )
    table.add_column("label")
    for name in _SHOWN:
        table.add_column(name, justify="right")
    for label, stats in summary["per_label"].items():
        table.add_row(label, *(_cell(stats[name]) for name in _SHOWN))
    table.add_row("all", *(_cell(summary["overall"][name]) for name in _SHOWN), style="bold")
    Console().print(table)


def _print_lesions(lesion_summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="lesion-wise (BraTS 2023): detection over all cases, Dice and HD95 per case",
        caption="Misses and false positives count as Dice 0 and HD95 at the penalty; "
        "lesions.csv lists every lesion.",
    )
    for name in ("label", "ref lesions", "TP", "FP", "FN", "F1", "lesion Dice", "lesion HD95"):
        table.add_column(name, justify="left" if name == "label" else "right")
    for label, stats in lesion_summary["per_label"].items():
        f1 = stats["f1"]
        table.add_row(
            label,
            *(str(stats[key]) for key in ("n_ref", "tp", "fp", "fn")),
            "nan" if f1 is None or math.isnan(f1) else f"{f1:.3f}",
            _cell(stats["lesion_dice"]),
            _cell(stats["lesion_hd95"]),
        )
    Console().print(table)


def _cell(stats: dict[str, Any]) -> str:
    mean, std, skipped = stats["mean"], stats["std"], stats["nan_count"]
    text = "nan" if mean is None or math.isnan(mean) else f"{mean:.3f}±{std:.3f}"
    return f"{text} ({skipped})" if skipped else text


def _evaluate_slides(pred: Path, ref: Path, out: Path, labels: object, overwrite: bool) -> None:
    from medseg.evaluation.slide import evaluate_slide_to_folder, slide_result_lines

    result = evaluate_slide_to_folder(pred, ref, out, labels, overwrite=overwrite)
    for line in slide_result_lines(result):
        typer.echo(line)
    typer.echo(f"wrote {out / 'slide_summary.json'}")
