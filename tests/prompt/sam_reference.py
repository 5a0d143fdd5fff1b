"""Import SAM's reference modelling code (``segment_anything.modeling``) without its package.

``segment_anything/__init__.py`` imports its predictor and automatic mask generator, which
need torchvision (absent here); the modelling code itself needs only torch. :func:`sam_modeling`
puts a stub ``segment_anything`` package (``__path__`` = the installed folder) into
``sys.modules`` so that ``segment_anything.modeling`` imports alone. Not a test module.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest


def sam_modeling() -> types.ModuleType:
    """``segment_anything.modeling`` (``PromptEncoder``, ``MaskDecoder``,
    ``TwoWayTransformer``, ...), or skip the calling test when the package is not installed."""
    if "segment_anything.modeling" in sys.modules:
        return sys.modules["segment_anything.modeling"]
    spec = importlib.util.find_spec("segment_anything")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("segment_anything (SAM's reference code) is not installed")
    if "segment_anything" not in sys.modules:
        stub = types.ModuleType("segment_anything")
        stub.__path__ = [str(Path(p)) for p in spec.submodule_search_locations]
        sys.modules["segment_anything"] = stub  # the real __init__ would import torchvision
    return importlib.import_module("segment_anything.modeling")
