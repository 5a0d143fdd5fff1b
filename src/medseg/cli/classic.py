"""``medseg classic``: the classical baselines (thresholds to random forests) from the shell.

* ``medseg classic METHOD -i IN -o OUT [--set key=value ...] [--seed z,y,x ...]``: segment an
  image file (OUT a file) or a folder of images (OUT a folder, ``CASE<ending>`` per case);
  ``medseg classic run METHOD ...`` is the same command;
* ``medseg classic list``: the methods with their options;
* ``medseg classic benchmark DATASET -o OUT --methods otsu,forest``: the benchmark table
  (``medseg.pipeline.classic.classic_benchmark``; interactive methods use oracle seeds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from medseg.cli.options import output_folder

_COMMANDS = ("run", "list", "benchmark")


class _MethodGroup(TyperGroup):
    """``medseg classic METHOD ...`` runs ``run METHOD ...`` (a method is not a command)."""

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "run", self.commands["run"], args
        return super().resolve_command(ctx, args)


app = typer.Typer(
    cls=_MethodGroup,
    no_args_is_help=True,
    help="Classical segmentation: medseg classic METHOD -i IN -o OUT (see 'medseg classic "
    "list'), and the benchmark table.",
)


def _check_seeds(values: list[str] | None) -> list[str]:
    """``callback=``: every ``--seed`` is comma-separated integers."""
    from medseg.errors import ConfigError
    from medseg.pipeline.classic_seeds import parse_seed

    for value in values or []:
        try:
            parse_seed(value)
        except ConfigError as err:
            raise typer.BadParameter(str(err)) from None
    return values or []


def _check_pairs(values: list[str] | None) -> list[str]:
    """``callback=``: every ``--set`` is ``key=value`` (the key and the type are checked by
    the command, which knows the method)."""
    for value in values or []:
        key, sep, _ = value.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected key=value, e.g. iterations=50, got {value!r}")
    return values or []


def _check_methods(value: str) -> str:
    """``callback=``: a non-empty comma-separated list."""
    if not [m for m in value.split(",") if m.strip()]:
        raise typer.BadParameter(f"expected comma-separated methods, got {value!r}")
    return value


SET_OPTION = typer.Option(
    [],
    "--set",
    callback=_check_pairs,
    metavar="KEY=VALUE",
    help="A method option, typed by its signature (repeatable), e.g. --set iterations=50 "
    "--set method=geodesic; 'medseg classic list' shows each method's options.",
)


@app.command("run")
def run(
    method: str = typer.Argument(..., help="A method of 'medseg classic list', e.g. otsu."),
    input_path: Path = typer.Option(
        ..., "--input", "-i", help="An image file, or a folder of CASE_0000<ending> images."
    ),
    output_path: Path = typer.Option(
        ...,
        "--output",
        "-o",
        help="The label map file (file input), or a folder for CASE<ending> (folder input).",
    ),
    pairs: list[str] = SET_OPTION,
    seed: list[str] = typer.Option(
        [],
        "--seed",
        callback=_check_seeds,
        metavar="Z,Y,X",
        help="A foreground seed in array axis order (repeatable): region_grow, graph_cut.",
    ),
    bg_seed: list[str] = typer.Option(
        [],
        "--bg-seed",
        callback=_check_seeds,
        metavar="Z,Y,X",
        help="A background seed in array axis order (repeatable): graph_cut.",
    ),
    init: Path | None = typer.Option(
        None,
        "--init",
        help="level_set's initial contour: a mask file (or a folder of CASE<ending> masks).",
    ),
    atlases: Path | None = typer.Option(
        None,
        "--atlases",
        help="A dataset whose labelled cases are multi_atlas's atlases or forest's training cases.",
    ),
    channel: int = typer.Option(0, "--channel", min=0, help="The image channel segmented."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """Segment an image (or a folder of images) with one classical method."""
    from medseg.pipeline.classic_run import parse_method_options, segment_path
    from medseg.pipeline.classic_seeds import parse_seed

    written = segment_path(
        method,
        input_path,
        output_path,
        options=parse_method_options(method, pairs),
        seeds=[parse_seed(s) for s in seed],
        bg_seeds=[parse_seed(s) for s in bg_seed],
        init=init,
        atlases=atlases,
        channel=channel,
        overwrite=overwrite,
    )
    where = written[0] if len(written) == 1 else output_path
    typer.echo(f"{method}: wrote {len(written)} label map(s) to {where}")


@app.command("list")
def list_methods() -> None:
    """List the classical methods, what each does and its options."""
    from medseg.pipeline.classic_run import classic_registry

    classic = classic_registry()
    for name in classic.names():
        typer.echo(f"{name}: {classic.description(name)}")
        typer.echo(f"    options: {', '.join(classic.options(name)) or '(none)'}")


CNN_MINUTES_OPTION = typer.Option(
    None,
    "--cnn-minutes",
    min=0.1,
    help="Also train medseg's U-Net this many minutes on the training cases (the CNN row).",
)


@app.command("benchmark")
def benchmark(
    dataset: Path = typer.Argument(..., help="A dataset folder (nnU-Net v2, MSD or 2D folder)."),
    out: Path = typer.Option(
        ..., "--out", "-o", callback=output_folder, help="Output folder for the table and runs."
    ),
    methods: str = typer.Option(
        "otsu,region_grow,graph_cut,level_set,multi_atlas,forest",
        "--methods",
        callback=_check_methods,
        help="Comma-separated methods to benchmark.",
    ),
    cases: int | None = typer.Option(
        None, "--cases", min=1, help="Evaluate at most N held-out cases (default: all)."
    ),
    train_cases: int = typer.Option(
        10,
        "--train-cases",
        min=1,
        help="Training cases used (atlases of multi_atlas, forest's training set), evenly "
        "spread over the first 80 %% of the cases.",
    ),
    channel: int = typer.Option(0, "--channel", min=0, help="The image channel segmented."),
    pairs: list[str] = typer.Option(
        [],
        "--set",
        callback=_check_pairs,
        metavar="METHOD.KEY=VALUE",
        help="A method's option (repeatable), e.g. --set forest.n_estimators=20.",
    ),
    cnn_minutes: float | None = CNN_MINUTES_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
) -> None:
    """Benchmark classical methods on a dataset's held-out cases; print and write the table."""
    from medseg.pipeline.classic import classic_benchmark, format_table

    table = classic_benchmark(
        dataset,
        out,
        methods=[m.strip() for m in methods.split(",") if m.strip()],
        cases=cases,
        train_cases=train_cases,
        channel=channel,
        method_options=_method_options(pairs),
        cnn_minutes=cnn_minutes,
        overwrite=overwrite,
    )
    typer.echo(format_table(table))
    typer.echo(f"wrote {out / 'classic_benchmark.json'} and {out / 'classic_benchmark.md'}")


def _method_options(pairs: list[str]) -> dict[str, dict[str, Any]]:
    """``["forest.n_estimators=20"]`` -> ``{"forest": {"n_estimators": 20}}`` (typed)."""
    from medseg.errors import ConfigError
    from medseg.pipeline.classic_run import parse_method_options

    grouped: dict[str, list[str]] = {}
    for pair in pairs:
        method, dot, rest = pair.partition(".")
        if not dot or "=" in method:
            raise ConfigError(
                f"--set {pair!r}: expected METHOD.KEY=VALUE, e.g. forest.n_estimators=20"
            )
        grouped.setdefault(method.strip(), []).append(rest)
    return {method: parse_method_options(method, items) for method, items in grouped.items()}
