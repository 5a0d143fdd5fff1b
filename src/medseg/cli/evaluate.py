"""``medseg evaluate``: metrics for a folder of predictions against references."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Mount the ``evaluate`` command on the main app."""
