"""``medseg report`` (mounted on a bare app, as ``cli/main.py`` mounts it)."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from medseg.cli import report as report_cli
from medseg.errors import OverwriteError


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """A root like medseg's, so ``report`` is a subcommand."""

    report_cli.register(app)
    return app


def test_report_command_writes_the_report_and_refuses_to_replace_it(shared_results: Path) -> None:
    path = shared_results / "report.html"
    path.unlink(missing_ok=True)
    runner = CliRunner()
    first = runner.invoke(_app(), ["report", str(shared_results)])
    assert first.exit_code == 0, first.output
    assert f"wrote {path}" in first.output and path.is_file()
    second = runner.invoke(_app(), ["report", str(shared_results)])
    assert isinstance(second.exception, OverwriteError)
    third = runner.invoke(_app(), ["report", str(shared_results), "--overwrite", "--title", "T"])
    assert third.exit_code == 0 and "<title>T</title>" in path.read_text(encoding="utf-8")
