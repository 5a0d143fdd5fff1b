"""Imports point down only: a module never imports a higher layer (STYLE.md section 9)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "medseg"

# lower number = lower layer; a module may import its own layer or lower ones
LAYERS = {
    "errors": 0,
    "registry": 0,
    "fileutil": 0,
    "device": 0,
    "locks": 0,
    "io": 1,
    "data": 2,
    "classic": 3,
    "transforms": 3,
    "nets": 4,
    "losses": 4,
    "metrics": 4,
    "planning": 5,
    "training": 6,
    "inference": 7,
    "evaluation": 8,
    "report": 8,
    "prompt": 8,
    "registration": 8,
    "enhance": 8,
    "detect": 8,
    "federated": 8,
    "pipeline": 9,
    "viewer": 9,
    "cli": 10,
}


def _layer_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "medseg" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.parent != SRC or p.stem in LAYERS)


def test_every_package_and_top_level_module_has_a_layer() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    missing = sorted((packages | modules) - set(LAYERS))
    assert missing == [], f"add {missing} to LAYERS"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_module_imports_only_its_own_or_lower_layers(path: Path) -> None:
    own = path.relative_to(SRC).parts[0].removesuffix(".py")
    upward = [
        name
        for name in _imports(path)
        if (layer := _layer_of(name)) in LAYERS and LAYERS[layer] > LAYERS[own]
    ]
    assert upward == [], f"{path.relative_to(SRC)} imports higher layers: {upward}"
