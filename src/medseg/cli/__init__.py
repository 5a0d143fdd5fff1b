"""The ``medseg`` command line: a thin typer layer over the Python API (no logic here)."""
