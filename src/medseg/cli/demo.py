"""``medseg demo``: the whole chain on the embedded phantom dataset."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Mount the ``demo`` command on the main app."""
