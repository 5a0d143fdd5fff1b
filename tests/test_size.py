"""Size and shape (STYLE.md section 10): modules at most 400 lines, functions at most 80.

The allow-lists name what is still larger, with its size when it was listed: an entry may only
shrink (the test fails when it grows, and when it fits the limit, so it gets removed).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "medseg"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80

#: module (relative to src/medseg) -> its line count when listed
MODULE_ALLOW_LIST: dict[str, int] = {}

#: "module::function" -> its line count when listed
FUNCTION_ALLOW_LIST: dict[str, int] = {
    "cli/classify.py::train_command": 105,
}


def _modules() -> dict[str, int]:
    return {
        str(p.relative_to(SRC)): len(p.read_text(encoding="utf-8").splitlines())
        for p in sorted(SRC.rglob("*.py"))
    }


def _functions() -> dict[str, int]:
    sizes = {}
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                sizes[f"{path.relative_to(SRC)}::{node.name}"] = node.end_lineno - node.lineno + 1
    return sizes


def _check(sizes: dict[str, int], allowed: dict[str, int], limit: int, what: str) -> list[str]:
    problems = []
    for name, size in sizes.items():
        if size > limit and name not in allowed:
            problems.append(f"{name}: {size} lines (a {what} may have {limit}); split it")
        elif name in allowed and size > allowed[name]:
            problems.append(
                f"{name}: grew to {size} lines (allow-listed at {allowed[name]}); "
                "it may only shrink"
            )
    for name in allowed:
        if name in sizes and sizes[name] <= limit:
            problems.append(
                f"{name}: now {sizes[name]} lines, within the limit: remove it from the allow-list"
            )
        elif name not in sizes:
            problems.append(f"{name}: no longer exists: remove it from the allow-list")
    return problems


def test_modules_are_at_most_400_lines() -> None:
    assert _check(_modules(), MODULE_ALLOW_LIST, MAX_MODULE_LINES, "module") == []


def test_functions_are_at_most_80_lines() -> None:
    assert _check(_functions(), FUNCTION_ALLOW_LIST, MAX_FUNCTION_LINES, "function") == []


@pytest.mark.parametrize(
    ("sizes", "allowed", "expected"),
    [
        ({"a.py": 500}, {}, "split it"),
        ({"a.py": 500}, {"a.py": 450}, "may only shrink"),
        ({"a.py": 300}, {"a.py": 450}, "remove it"),
        ({"a.py": 450}, {"a.py": 450}, None),
    ],
)
def test_the_allow_list_may_only_shrink(
    sizes: dict[str, int], allowed: dict[str, int], expected: str | None
) -> None:
    problems = _check(sizes, allowed, 400, "module")
    assert (expected in problems[0]) if expected else problems == []
