"""``medseg view``: the clinician-in-the-loop viewer in the browser.

* ``medseg view RESULTS|DATASET [-o OUT] [--port 0] [--host 127.0.0.1] [--allow-remote]
  [--user NAME] [--read-only] [--predictions DIR] [--prompt-model RUN]``: start the local
  server and print ``http://127.0.0.1:PORT/?token=...`` (``view open`` is the same command);
* ``medseg view export RESULTS -o DATASET``: the accepted and corrected cases as an MSD
  dataset for retraining;
* ``medseg view verify-audit RESULTS``: check the audit log's hash chain (exit 1 at the
  first broken line).
"""

from __future__ import annotations

import re
from pathlib import Path

import typer
from typer.core import TyperGroup

from medseg.cli.options import output_folder
from medseg.errors import ConfigError

_HOST = re.compile(r"[A-Za-z0-9.:\-]{1,253}")
_USER = re.compile(r"[\w.@ \-]{1,64}")


class _DefaultToOpen(TyperGroup):
    """``medseg view RESULTS`` runs ``view open RESULTS``; subcommand names dispatch as usual."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["open", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultToOpen,
    no_args_is_help=True,
    help="Browse, compare, correct and save masks in the browser; export the reviewed cases.",
)


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="view", help=app.info.help)


def _host(value: str) -> str:
    if not _HOST.fullmatch(value):
        raise typer.BadParameter(f"--host {value!r}: an IP address or host name")
    return value


def _user(value: str | None) -> str | None:
    if value is not None and not _USER.fullmatch(value):
        raise typer.BadParameter(
            f"--user {value!r}: 1 to 64 letters, digits, spaces or . @ _ - characters"
        )
    return value


FOLDER = {"exists": True, "file_okay": False, "dir_okay": True}


@app.command("open")
def open_command(
    root: Path = typer.Argument(..., **FOLDER, help="A results folder or a dataset folder."),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        callback=output_folder,
        help="Where corrections/ and audit.jsonl go (default: the results folder; a dataset "
        "folder without -o is read-only; never inside the dataset).",
    ),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="0: any free port."),
    host: str = typer.Option("127.0.0.1", "--host", callback=_host, help="Address to bind."),
    allow_remote: bool = typer.Option(
        False, "--allow-remote", help="Allow a --host other than loopback (warns)."
    ),
    user: str | None = typer.Option(
        None, "--user", callback=_user, help="Name in the audit log (default: login name)."
    ),
    read_only: bool = typer.Option(False, "--read-only", help="Browse only: no edits or saves."),
    predictions: Path | None = typer.Option(
        None, "--predictions", **FOLDER, help="Predictions folder instead of the results'."
    ),
    prompt_model: Path | None = typer.Option(
        None,
        "--prompt-model",
        exists=True,
        help="A `medseg prompt finetune` run: enables click and box refinement.",
    ),
) -> None:
    """Start the viewer on 127.0.0.1 and print its URL (with the access token)."""
    from medseg.viewer.app import create_app
    from medseg.viewer.serve import bind_socket, remote_hosts, serve, viewer_url

    extra = remote_hosts(host, allow_remote=allow_remote)
    prompt = _load_prompt(prompt_model) if prompt_model else None
    viewer = create_app(
        root,
        output=output,
        user=user,
        read_only=read_only,
        predictions=predictions,
        prompt_model=prompt,
        extra_hosts=extra,
    )
    sock = bind_socket(host, port)
    session = viewer.state.session
    typer.echo(
        f"{len(session.catalog.cases)} cases from {root}"
        f"{' (read-only)' if session.read_only else ''}; stop with Ctrl+C"
    )
    typer.echo(viewer_url(sock, viewer.state.token))
    serve(viewer, sock)


def _load_prompt(run: Path):
    from medseg.prompt.finetune_model import load_prompt_run

    model, config = load_prompt_run(run)
    if config.spatial_dims != 2:
        raise ConfigError(f"{run}: the viewer refines one slice at a time: give a 2D prompt model")
    return model, config


@app.command("export")
def export_command(
    root: Path = typer.Argument(..., **FOLDER, help="The reviewed results or dataset folder."),
    out: Path = typer.Option(
        ..., "--out", "-o", callback=output_folder, help="The new dataset folder (MSD layout)."
    ),
    reviews: Path | None = typer.Option(
        None, "--reviews", **FOLDER, help="The viewer's -o folder (default: the results folder)."
    ),
    predictions: Path | None = typer.Option(
        None, "--predictions", **FOLDER, help="As for medseg view."
    ),
    user: str | None = typer.Option(None, "--user", callback=_user, help="Name in the audit log."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty folder."),
) -> None:
    """Write the accepted and corrected cases as a dataset for retraining."""
    from medseg.viewer.export import export_reviewed

    cases = export_reviewed(
        root,
        out,
        output=reviews,
        predictions=predictions,
        overwrite=overwrite,
        user=user or "unknown",
    )
    typer.echo(f"wrote {len(cases)} reviewed cases to {out}")


@app.command("verify-audit")
def verify_audit_command(
    folder: Path = typer.Argument(
        ..., exists=True, help="The results folder (or the viewer's -o folder, or audit.jsonl)."
    ),
) -> None:
    """Check the audit log's hash chain; exit 1 naming the first broken line."""
    from medseg.viewer.audit import AUDIT_FILE, verify_audit

    path = folder / AUDIT_FILE if folder.is_dir() else folder
    if not path.exists():
        raise ConfigError(f"{path}: no audit log (nothing was saved or accepted yet)")
    check = verify_audit(path)
    if not check.ok:
        raise ConfigError(f"{path}: line {check.first_bad}: {check.reason}")
    typer.echo(f"{path}: {check.lines} lines, chain intact; last hash {check.head}")
