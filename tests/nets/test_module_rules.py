"""Package rules: nets/losses import only torch, numpy, scipy and the lowest medseg layer;
modules stay small; the docstring examples run."""

from __future__ import annotations

import ast
import doctest
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "medseg"
MODULES = sorted([*SRC.joinpath("nets").rglob("*.py"), *SRC.joinpath("losses").glob("*.py")])
ALLOWED = {
    "torch",
    "numpy",
    "scipy",
    "__future__",
    "collections",
    "typing",
    "math",
    "inspect",
    "dataclasses",
    "functools",
}


def _module_name(path: Path) -> str:
    return "medseg." + ".".join(path.relative_to(SRC).with_suffix("").parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_imports_only_lower_layers(path: Path) -> None:
    package = path.relative_to(SRC).parts[0]  # nets/transformer/x.py belongs to nets
    bad = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            ok = top in ALLOWED or name in ("medseg.registry", "medseg.errors")
            ok = ok or name.startswith(f"medseg.{package}")
            if not ok:
                bad.append(name)
    assert bad == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_is_short(path: Path) -> None:
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 400


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_docstring_examples_run(path: Path) -> None:
    module = importlib.import_module(_module_name(path).removesuffix(".__init__"))
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
