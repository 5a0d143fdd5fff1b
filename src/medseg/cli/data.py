"""``medseg data ...``: check, fingerprint, sparsify and generate datasets."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from medseg.cli import cine as cine_cli
from medseg.cli import phantoms as phantoms_cli
from medseg.cli.cluster_options import ADDRESS_OPTION, EXECUTOR_OPTION, Executor, where
from medseg.cli.options import output_file, output_folder

app = typer.Typer(no_args_is_help=True)
console = Console()


@app.command("check")
def check(
    dataset: Path = typer.Argument(
        ..., help="Dataset folder (nnU-Net v2, MSD or 2D images/masks)."
    ),
    jobs: int = typer.Option(
        None, "--jobs", "-j", min=1, help="Worker processes (default: all CPUs)."
    ),
    executor: Executor = EXECUTOR_OPTION,
    address: str | None = ADDRESS_OPTION,
) -> None:
    """Validate a dataset and list every problem, one line each. Exit 1 if any."""
    from medseg.data import check_dataset, load_dataset

    ds = load_dataset(dataset)
    problems = check_dataset(ds, jobs=jobs, **where(executor, address))
    _print_time_axis(ds)
    for problem in problems:
        typer.echo(str(problem))
    summary = (
        f"{ds.name}: {len(ds.cases)} case(s), {ds.num_channels} channel(s), labels {ds.labels}"
    )
    if problems:
        typer.secho(f"{summary}: {len(problems)} problem(s)", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.secho(f"{summary}: OK", fg=typer.colors.GREEN)


@app.command("fingerprint")
def fingerprint(
    dataset: Path = typer.Argument(..., help="Dataset folder."),
    output: Path = typer.Option(
        ..., "--output", "-o", callback=output_file, help="Where to write fingerprint.json."
    ),
    jobs: int = typer.Option(
        None, "--jobs", "-j", min=1, help="Worker processes (default: all CPUs)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    executor: Executor = EXECUTOR_OPTION,
    address: str | None = ADDRESS_OPTION,
) -> None:
    """Compute the dataset fingerprint (spacings, shapes, intensities, class fractions)."""
    from medseg.data import compute_fingerprint, load_dataset
    from medseg.fileutil import check_writable

    check_writable(output, overwrite=overwrite)
    start = time.perf_counter()
    fp = compute_fingerprint(load_dataset(dataset), jobs=jobs, **where(executor, address))
    fp.to_json(output)
    print_fingerprint(fp)
    console.print(f"wrote {output} in {time.perf_counter() - start:.1f} s")


@app.command("sparsify")
def sparsify(
    dataset: Path = typer.Argument(..., help="nnU-Net v2 dataset folder to copy."),
    out: Path = typer.Option(
        ..., "--out", "-o", callback=output_folder, help="Folder of the sparse copy."
    ),
    every_nth_slice: int = typer.Option(
        ..., "--every-nth-slice", min=1, help="Keep the labels of slices 0, n, 2n, ..."
    ),
    axis: int = typer.Option(0, "--axis", min=0, help="Array axis of the slices (0: z)."),
    copy_images: bool = typer.Option(
        False, "--copy-images", help="Copy the images instead of hard-linking them."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT dataset."),
) -> None:
    """Copy a dataset keeping the labels of every n-th slice only; the rest becomes 'ignore'."""
    from medseg.data.sparsify import sparsify_dataset

    summary = sparsify_dataset(
        dataset,
        out,
        every_nth_slice=every_nth_slice,
        axis=axis,
        overwrite=overwrite,
        copy_images=copy_images,
    )
    tests = f" (+{summary.num_test_cases} imagesTs copied)" if summary.num_test_cases else ""
    typer.echo(
        f"wrote {summary.out}: {summary.num_cases} case(s){tests}, slices 0, "
        f"{every_nth_slice}, {2 * every_nth_slice}, ... along axis {axis} annotated "
        f"({summary.annotated_slices} of {summary.total_slices} slices, "
        f"{summary.annotated_share:.1%} of voxels); the rest is 'ignore' = "
        f"{summary.ignore_label}"
    )


def print_fingerprint(fp: object) -> None:
    """A short table of the fingerprint's headline numbers."""
    table = Table(title=f"fingerprint: {fp.dataset_name}", show_header=False)  # type: ignore[attr-defined]
    table.add_row("cases", str(len(fp.cases)))  # type: ignore[attr-defined]
    table.add_row("spatial dims", str(fp.spatial_dims))  # type: ignore[attr-defined]
    table.add_row("median shape", _fmt(fp.median_shape))  # type: ignore[attr-defined]
    table.add_row("median spacing (mm)", _fmt(fp.median_spacing))  # type: ignore[attr-defined]
    table.add_row("anisotropy", f"{fp.anisotropy:.2f}")  # type: ignore[attr-defined]
    for channel, stats in fp.intensity.items():  # type: ignore[attr-defined]
        table.add_row(
            f"channel {channel} foreground",
            f"mean {stats['mean']:.4g}, std {stats['std']:.4g}, "
            f"p0.5 {stats['percentile_00_5']:.4g}, p99.5 {stats['percentile_99_5']:.4g}",
        )
    fractions = ", ".join(f"{k} {v:.2%}" for k, v in fp.class_fractions.items())  # type: ignore[attr-defined]
    table.add_row("class fractions", fractions)
    time_axis = getattr(fp, "time_axis", None)
    if time_axis:
        table.add_row(
            "time axis",
            f"{time_axis['median_frames']:g} frames x {time_axis['median_time_interval']:g} s, "
            f"labelled frames {time_axis['min_labelled_frames']}-"
            f"{time_axis['max_labelled_frames']} per case",
        )
    console.print(table)


def _print_time_axis(ds: object) -> None:
    from medseg.data.temporal import is_time_series_dataset
    from medseg.data.temporal_check import time_series_summary

    if is_time_series_dataset(ds):
        for line in time_series_summary(ds):
            typer.echo(line)


def _fmt(values: list[float]) -> str:
    return " x ".join(f"{v:g}" for v in values)


phantoms_cli.register(app)
cine_cli.register(app)
