"""Fixtures shared by the CLI tests: usage errors read the same under every typer that
``pyproject.toml`` allows (the ``federated`` extra's Flower pins typer < 0.21, whose range
errors are click's ``x>=1`` where newer typer writes ``greater than or equal to 1``)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

_BOTH = re.compile(r"(-?[\d.]+)<=x<=(-?[\d.]+)")
_LOWER = re.compile(r"x>=(-?[\d.]*\d)")
_UPPER = re.compile(r"x<=(-?[\d.]*\d)")
_ARGUMENT = re.compile(r"Invalid value for '\[?([A-Z][A-Z_0-9]*)(?:\.\.\.)?\]?'")


def usage_error_words(output: str) -> str:
    """A usage error on one line, without rich's box, with click's range notation in
    typer's words and an argument named as newer typer names it (``'out'``, not ``'[OUT]'``)."""
    for char in "│╭╮╰╯─":
        output = output.replace(char, " ")
    text = " ".join(output.split())
    text = _BOTH.sub(r"greater than or equal to \1 and less than or equal to \2", text)
    text = _ARGUMENT.sub(lambda m: f"Invalid value for '{m.group(1).lower()}'", text)
    text = _LOWER.sub(r"greater than or equal to \1", text)
    return _UPPER.sub(r"less than or equal to \1", text)


@pytest.fixture
def usage_error() -> Callable[[str], str]:
    """:func:`usage_error_words`, as a fixture (test modules are imported by path)."""
    return usage_error_words


@pytest.fixture
def type_descriptor() -> Callable[[object], object]:
    """A click parameter's typer descriptor (annotation and ``parameter_info``); skips the test
    on a typer that does not record it (older than the one CI installs)."""

    def descriptor(param: object) -> object:
        found = getattr(param, "type_descriptor", None)
        if found is None:
            pytest.skip("this typer does not record parameter descriptors (typer < 0.21)")
        return found

    return descriptor
