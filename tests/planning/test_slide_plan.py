"""Planning a slide dataset: tiles extracted, planned like any 2D dataset, split by slide,
then preprocessed and trained by the unchanged pipeline."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from medseg.data.phantoms_slide import phantom_slide
from medseg.errors import ConfigError, OverwriteError
from medseg.pipeline import preprocess, train
from medseg.planning.choices import PlanChoices
from medseg.planning.slide import SLIDE_FILE, plan_slides, read_slide_record, slide_splits

LABELS = {"background": 0, "tissue": 1, "gland": 2, "nucleus": 3}


@pytest.fixture(scope="module")
def slide_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 1024^2 phantom slides at 1 µm/px (1 mm^2 of glass each) with label slides."""
    root = tmp_path_factory.mktemp("slide_ds")
    slides = []
    for seed, name in enumerate("ab"):
        phantom_slide(
            root / f"slides/{name}.tif",
            size=(1024, 1024),
            mpp=1.0,
            seed=seed,
            label_path=root / f"labels/{name}.tif",
        )
        slides.append({"image": f"slides/{name}.tif", "label": f"labels/{name}.tif"})
    meta = {"name": "phantom", "labels": LABELS, "file_ending": ".tif", "slides": slides}
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


def test_folds_hold_whole_slides() -> None:
    groups = {"a": ["a_t0", "a_t1"], "b": ["b_t0"], "c": ["c_t0", "c_t1", "c_t2"]}
    folds = slide_splits(groups)
    assert len(folds) == 3
    for fold in folds:
        slides_in_val = {t.split("_")[0] for t in fold["val"]}
        slides_in_train = {t.split("_")[0] for t in fold["train"]}
        assert len(slides_in_val) == 1 and not slides_in_val & slides_in_train
        assert sorted(fold["val"] + fold["train"]) == sorted(sum(groups.values(), []))
    with pytest.raises(ConfigError, match="at least 2 slides"):
        slide_splits({"a": ["a_t0"]})


@pytest.mark.slow
def test_slide_dataset_plans_preprocesses_and_trains(
    slide_dataset: Path, tmp_path: Path, shrink_2d_plan
) -> None:
    results = tmp_path / "results"
    plans = plan_slides(
        slide_dataset,
        results,
        mpp=2.0,
        tile_size=64,
        tiles_per_slide=6,
        memory_gb=0.25,
        jobs=1,
        progress=False,
    )
    p = plans["2d"]
    assert p.spacing == pytest.approx([0.002, 0.002])  # mpp 2 µm = 0.002 mm
    assert p.in_channels == 3 and Path(plans.dataset_path) == (results / "tiles").resolve()
    record = read_slide_record(results)
    assert record["mpp"] == 2.0 and record["tile_size"] == 64
    assert Path(record["source"]) == slide_dataset.resolve()
    splits = json.loads((results / "splits.json").read_text(encoding="utf-8"))
    assert [sorted({c[0] for c in f["val"]}) for f in splits] in ([["a"], ["b"]], [["b"], ["a"]])
    variant = plan_slides(
        slide_dataset,
        results,
        mpp=2.0,
        variant="adam",
        choices=PlanChoices(optimizer="adam"),
        jobs=1,
        progress=False,
    )
    assert variant["2d-adam"].optimizer == "adam"  # the tiles were kept, the variant added
    shrink_2d_plan(results)
    preprocess(results, configurations=["2d"], jobs=1, progress=False)
    out = train(
        results,
        "2d",
        0,
        epochs=1,
        steps_per_epoch=2,
        num_workers=0,
        device="cpu",
        precision="fp32",
        progress=False,
    )
    with (results / "2d" / "fold_0" / "log.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and math.isfinite(float(rows[-1]["train_loss"]))
    assert out["validation"]["n_cases"] == 6  # fold 0 validates on the 6 tiles of one slide


def test_existing_plans_are_kept_before_any_tile_is_written(
    slide_dataset: Path, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "plans.json").write_text("{}", encoding="utf-8")
    with pytest.raises(OverwriteError, match="plans.json: already exists"):
        plan_slides(slide_dataset, results, mpp=2.0, tile_size=32, tiles_per_slide=1)
    assert not (results / "tiles").exists() and not (results / SLIDE_FILE).exists()
    assert read_slide_record(tmp_path) is None


def test_medseg_plan_recognises_a_slide_dataset(slide_dataset: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from medseg.cli.main import app
    from medseg.data import load_dataset
    from medseg.errors import DatasetError

    with pytest.raises(DatasetError, match="whole-slide dataset.*medseg plan"):
        load_dataset(slide_dataset)
    results = tmp_path / "results"
    args = ["plan", str(slide_dataset), "-o", str(results), "--tile-mpp", "2"]
    args += ["--tile-size", "32", "--tiles-per-slide", "2", "--foreground-fraction", "1"]
    args += ["--stain", "reinhard"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    record = read_slide_record(results)
    assert record is not None and record["mpp"] == 2.0 and record["tile_size"] == 32
    plans = json.loads((results / "plans.json").read_text(encoding="utf-8"))
    assert plans["configurations"]["2d"]["stain_normalizer"]["method"] == "reinhard"
    assert len(load_dataset(results / "tiles").cases) == 4  # 2 tiles from each of 2 slides
    assert (
        "2d" in json.loads((results / "plans.json").read_text(encoding="utf-8"))["configurations"]
    )


def test_slide_plans_keep_colour_and_apply_the_fitted_stain_normaliser(
    slide_dataset: Path, tmp_path: Path
) -> None:
    from dataclasses import replace

    import numpy as np

    from medseg.data import load_dataset
    from medseg.data.dataset import read_case
    from medseg.planning.plan import Plans
    from medseg.planning.preprocessing import preprocess_arrays
    from medseg.transforms import stain_normalizer_from_config

    results = tmp_path / "results"
    plans = plan_slides(
        slide_dataset, results, mpp=2.0, tile_size=32, tiles_per_slide=3, stain="macenko",
        progress=False, jobs=1,
    )  # fmt: skip
    p = Plans.from_json(results / "plans.json")["2d"]
    assert p == plans["2d"] and p.normalization == ("rgb",) * 3
    assert p.augmentation == "pathology" and p.stain_normalizer["method"] == "macenko"
    case = load_dataset(results / "tiles").cases[0]
    image, _ = read_case(case, num_channels=3)
    raw = image.channels_first().astype(np.float32)
    out, _, _ = preprocess_arrays(raw, None, image.spacing, p)
    expected = stain_normalizer_from_config(p.stain_normalizer).normalize_array(raw) / 255.0
    np.testing.assert_allclose(out, expected, atol=1e-5)  # same grid: mpp is the tile spacing
    plain, _, _ = preprocess_arrays(raw, None, image.spacing, replace(p, stain_normalizer={}))
    assert np.abs(plain - out).max() > 1e-3  # the normaliser changed the colours
    with pytest.raises(ConfigError, match="pathology augmentation works on colour values"):
        replace(p, normalization=("zscore",) * 3)
    with pytest.raises(ConfigError, match="method must be one of"):
        replace(p, stain_normalizer={"method": "vahadane"})
