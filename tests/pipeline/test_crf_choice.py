"""A dense CRF decided by cross-validation: folds keep their softmax, the pooled decision
lands in postprocessing.json, and ``predict`` applies a chosen CRF."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.data.phantoms import PhantomConfig, generate_dataset
from medseg.inference.crf import dense_crf
from medseg.inference.predict import predict
from medseg.io import read_image
from medseg.pipeline import plan, preprocess
from medseg.pipeline.steps import evaluate_cross_validation, train

CRF = {"iterations": 3, "w_gaussian": 1.0, "w_bilateral": 1.0, "max_radius": 2}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2D phantom dataset, planned and preprocessed, fold 0 trained for a few steps; its
    validation kept its softmax."""
    root = tmp_path_factory.mktemp("crf_cv")
    config = PhantomConfig(fov_mm=(24.0, 24.0), spacing=(1.5, 1.5))
    data = generate_dataset(root / "data", spatial_dims=2, num_cases=5, seed=0, config=config)
    out = root / "results"
    plan(data, out, progress=False, jobs=1)
    preprocess(out, configurations=["2d"], jobs=1, progress=False)
    train(
        out, "2d", 0, epochs=3, steps_per_epoch=20, device="cpu", progress=False, seed=0,
        save_probabilities=True,
    )  # fmt: skip
    return out


def test_the_crf_decision_is_pooled_from_the_folds_softmax(results: Path) -> None:
    folder = results / "2d" / "fold_0" / "validation"
    saved = sorted(p.stem for p in (folder / "probabilities").glob("*.npz"))
    assert saved and saved == sorted(p.name[: -len(".nii.gz")] for p in folder.glob("*.nii.gz"))
    summary = evaluate_cross_validation(results, "2d", crf=CRF)
    decision = json.loads((results / "postprocessing.json").read_text(encoding="utf-8"))
    assert "keep_largest_component" in decision  # the component rule is still decided
    assert decision["crf"] in (None, CRF)
    # the CRF's "before" is the plain argmax of the same softmax: the pooled evaluation's Dice
    for value, dice in decision["crf_dice"].items():
        expected = summary["per_label"][value]["dice"]["mean"]
        assert dice["before"] == pytest.approx(expected, abs=1e-9)
    assert max(d["before"] for d in decision["crf_dice"].values()) > 0.3  # the organ was found
    chosen = decision["crf"] is not None
    assert chosen == (
        np.mean([d["after"] for d in decision["crf_dice"].values()])
        > np.mean([d["before"] for d in decision["crf_dice"].values()])
    )


def test_predict_applies_a_chosen_crf(results: Path, tmp_path: Path) -> None:
    images = Path(json.loads((results / "plans.json").read_text(encoding="utf-8"))["dataset_path"])
    images = images / "imagesTr"
    plain = tmp_path / "plain"
    predict(images, plain, results, mirror=False, save_probabilities=True, postprocess=False)
    (results / "postprocessing.json").write_text(json.dumps({"crf": CRF}), encoding="utf-8")
    refined = tmp_path / "crf"
    predict(images, refined, results, mirror=False)
    changed = 0
    for npz_path in sorted(plain.glob("*.npz")):
        case = npz_path.stem
        with np.load(npz_path, allow_pickle=False) as npz:
            probs, values = npz["probabilities"], npz["label_values"]
        image = read_image(images / f"{case}_0000.nii.gz")
        expected = values[
            dense_crf(probs, image.channels_first(), spacing=image.spacing, **CRF).argmax(0)
        ]
        got = read_image(refined / f"{case}.nii.gz").array
        np.testing.assert_array_equal(got, expected)
        changed += int((got != read_image(plain / f"{case}.nii.gz").array).sum())
    assert changed > 0  # the CRF did something, so the equality above is not vacuous
