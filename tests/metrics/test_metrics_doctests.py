"""The examples in the metrics and evaluation docstrings are true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "medseg.metrics.aggregate",
    "medseg.metrics.agreement",
    "medseg.metrics.annotation_noise",
    "medseg.metrics.case",
    "medseg.metrics.classification",
    "medseg.metrics.confusion",
    "medseg.metrics.distance",
    "medseg.metrics.surface",
    "medseg.metrics.uncertainty",
    "medseg.transforms.degrade",
    "medseg.evaluation.robustness",
    "medseg.evaluation.robustness_summary",
    "medseg.evaluation.labels",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs={"np": importlib.import_module("numpy")})
    assert result.attempted > 0 and result.failed == 0
