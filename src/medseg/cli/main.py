"""Entry point of the ``medseg`` console script.

Each command group lives in its own module and is mounted here. A user error
(``MedsegError``) prints one line on stderr and exits with code 1; ``--verbose`` shows the
traceback too.
"""

from __future__ import annotations

import errno
import logging
import sys
import traceback

import typer

from medseg import __version__
from medseg.cli import augment as augment_cli
from medseg.cli import classic as classic_cli
from medseg.cli import classify as classify_cli
from medseg.cli import clinical as clinical_cli
from medseg.cli import data as data_cli
from medseg.cli import demo as demo_cli
from medseg.cli import detect as detect_cli
from medseg.cli import enhance as enhance_cli
from medseg.cli import evaluate as evaluate_cli
from medseg.cli import fed as fed_cli
from medseg.cli import measure as measure_cli
from medseg.cli import nets as nets_cli
from medseg.cli import pipeline as pipeline_cli
from medseg.cli import predict as predict_cli
from medseg.cli import prompt as prompt_cli
from medseg.cli import register as register_cli
from medseg.cli import report as report_cli
from medseg.cli import robustness as robustness_cli
from medseg.cli import slide as slide_cli
from medseg.cli import survival as survival_cli
from medseg.cli import view as view_cli
from medseg.errors import MedsegError
from medseg.fileutil import disk_full_message

app = typer.Typer(
    name="medseg",
    help="Deep learning for medical image segmentation: data checks, planning, training, "
    "inference and honest evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
_state = {"verbose": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medseg {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show debug logs and full tracebacks."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """medseg command line."""
    _state["verbose"] = verbose
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )


app.add_typer(data_cli.app, name="data", help="Check, fingerprint, sparsify and generate datasets.")
app.add_typer(augment_cli.app, name="augment", help="Preview data augmentation.")
app.add_typer(
    nets_cli.app, name="nets", help="Inspect the networks (segmentation and classification)."
)
app.add_typer(
    classify_cli.app,
    name="classify",
    help="Train, predict, evaluate and explain image classifiers.",
)
app.add_typer(
    survival_cli.app,
    name="survival",
    help="Survival analysis from images: deep Cox models (train, predict, demo).",
)
pipeline_cli.register(app)
predict_cli.register(app)
evaluate_cli.register(app)
measure_cli.register(app)
report_cli.register(app)
robustness_cli.register(app)
clinical_cli.register(app)
demo_cli.register(app)
prompt_cli.register(app)
detect_cli.register(app)
enhance_cli.register(app)
fed_cli.register(app)
app.add_typer(
    register_cli.app,
    name="register",
    help="Learnt deformable registration (VoxelMorph): train, apply.",
)
view_cli.register(app)
app.add_typer(
    classic_cli.app,
    name="classic",
    help="Classical baselines: thresholds, region growing, graph cuts, level sets, "
    "multi-atlas, random forests; their benchmark.",
)
app.add_typer(
    slide_cli.app,
    name="slide",
    help="Whole-slide images: predict a mask and a heatmap in bounded memory, evaluate "
    "slide masks.",
)


def run() -> None:
    """Console-script entry: run the app, turning user errors into one clean line."""
    try:
        app()
    except MedsegError as err:
        if _state["verbose"]:
            traceback.print_exc()
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # a write outside medseg's atomic writers (a log, a library's cache) ran out of space
        if _state["verbose"]:
            traceback.print_exc()
        typer.secho(
            f"error: {disk_full_message(err.filename or 'output')}", fg=typer.colors.RED, err=True
        )
        sys.exit(1)


if __name__ == "__main__":
    run()
