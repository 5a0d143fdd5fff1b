"""ONNX export of a trained fold: onnxruntime reproduces PyTorch, the plan travels in the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.errors import ConfigError, ImageIOError, OverwriteError
from medseg.inference.onnx_export import export_onnx, read_onnx_metadata
from medseg.training import model_from_checkpoint

from .conftest import make_plan, write_checkpoint

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """Results with 3d_fullres folds 0 and 1 (random weights) of a 3-label plan with mirror axes."""
    plan = make_plan(mirror_axes=(1, 2))
    write_checkpoint(tmp_path / "results", plan, 0, seed=0)
    write_checkpoint(tmp_path / "results", plan, 1, seed=1)
    return tmp_path / "results"


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x})
    return out


def test_onnx_matches_torch_on_patch_and_larger_image(results: Path, tmp_path: Path) -> None:
    out = export_onnx(results, tmp_path / "model.onnx", fold=1)
    model, plan = model_from_checkpoint(results / "3d_fullres" / "fold_1" / "checkpoint_best.pt")
    meta = read_onnx_metadata(out)
    assert meta.recipe["dynamic_spatial_axes"] is True
    rng = np.random.default_rng(0)
    for shape in [(1, 1, 8, 16, 16), (2, 1, 16, 32, 24)]:  # the patch, then a whole larger image
        x = rng.normal(size=shape).astype(np.float32)
        with torch.no_grad():
            expected = model.eval()(torch.from_numpy(x)).numpy()
        assert expected.shape == (shape[0], 3, *shape[2:])  # the full-resolution head only
        np.testing.assert_allclose(_run(out, x), expected, atol=1e-4, rtol=0)


def test_metadata_round_trips_the_plan_and_recipe(results: Path, tmp_path: Path) -> None:
    out = export_onnx(results, tmp_path / "model.onnx", configuration="3d_fullres", fold=0)
    meta = read_onnx_metadata(out)
    _, plan = model_from_checkpoint(results / "3d_fullres" / "fold_0" / "checkpoint_best.pt")
    assert meta.plan == plan
    recipe = meta.recipe
    assert recipe["spacing"] == [1.0, 1.0, 1.0] and recipe["patch_size"] == [8, 16, 16]
    assert recipe["normalization"] == ["zscore"]
    assert recipe["label_values"] == [0, 1, 2]
    assert recipe["label_names"] == {"0": "background", "1": "organ", "2": "lesion"}
    assert recipe["mirror_axes"] == [1, 2] and recipe["fold"] == "0"
    assert meta.version


def test_export_needs_a_single_model_and_refuses_overwrite(results: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="several trained models.*fold_0.*fold_1"):
        export_onnx(results, tmp_path / "model.onnx")
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(OverwriteError):
        export_onnx(results, tmp_path / "model.onnx", fold=0)
    with pytest.raises(ImageIOError, match="not an ONNX model"):
        read_onnx_metadata(tmp_path / "model.onnx")
