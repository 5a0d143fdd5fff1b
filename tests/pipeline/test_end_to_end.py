"""End to end on a tiny phantom set: plan -> preprocess -> train -> predict -> evaluate ->
report."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from medseg.data.phantoms import PhantomConfig, generate_dataset
from medseg.io import read_image
from medseg.pipeline import evaluate, plan, predict, preprocess, report, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e")
    config = PhantomConfig(fov_mm=(24.0, 32.0, 32.0), spacing=(3.0, 1.0, 1.0))
    data = generate_dataset(root / "data", spatial_dims=3, num_cases=6, seed=0, config=config)
    test = generate_dataset(root / "test", spatial_dims=3, num_cases=2, seed=1, config=config)
    results = root / "results"
    plans = plan(data, results, memory_gb=0.25, progress=False)
    preprocess(results, configurations=["3d_fullres"], jobs=1, progress=False)
    out = train(
        results, "3d_fullres", 0, epochs=2, steps_per_epoch=2, num_workers=0, progress=False
    )
    return {"data": data, "test": test, "results": results, "plans": plans, "train": out}


def test_training_wrote_checkpoints_and_validated_the_fold(trained: dict) -> None:
    fold = trained["results"] / "3d_fullres" / "fold_0"
    assert (fold / "checkpoint_best.pt").is_file() and (fold / "checkpoint_latest.pt").is_file()
    validation = trained["train"]["validation"]
    assert validation["n_cases"] == len(list((fold / "validation").glob("*.nii.gz")))
    assert (fold / "evaluation" / "per_case.csv").is_file()


def test_prediction_has_the_input_geometry_and_is_deterministic(
    trained: dict, tmp_path: Path
) -> None:
    first = predict(trained["test"] / "imagesTr", tmp_path / "a", trained["results"], mirror=False)
    second = predict(trained["test"] / "imagesTr", tmp_path / "b", trained["results"], mirror=False)
    assert len(first) == 2
    for path_a, path_b in zip(sorted(first), sorted(second), strict=True):
        source = read_image(
            trained["test"] / "imagesTr" / path_a.name.replace(".nii.gz", "_0000.nii.gz")
        )
        pred = read_image(path_a)
        assert pred.spatial_shape == source.spatial_shape
        assert pred.spacing == pytest.approx(source.spacing)
        assert pred.origin == pytest.approx(source.origin)
        assert pred.direction == pytest.approx(source.direction)
        assert set(np.unique(pred.array)) <= {0, 1, 2, 3}
        assert (
            hashlib.sha256(np.ascontiguousarray(pred.array).tobytes()).digest()
            == hashlib.sha256(np.ascontiguousarray(read_image(path_b).array).tobytes()).digest()
        )


def test_evaluate_and_report_complete_the_chain(trained: dict, tmp_path: Path) -> None:
    predict(trained["test"] / "imagesTr", tmp_path / "pred", trained["results"], mirror=False)
    summary = evaluate(
        tmp_path / "pred", trained["test"] / "labelsTr", tmp_path / "eval", labels=[1, 2, 3], jobs=1
    )
    assert summary["n_cases"] == 2 and 0.0 <= summary["overall"]["dice"]["mean"] <= 1.0
    html = report(trained["results"], overwrite=True).read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "3d_fullres" in html
