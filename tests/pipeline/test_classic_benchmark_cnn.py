"""The benchmark's graph-cut seeds (a scribble, not one voxel per component), and the CNN
row on the same split: the subset dataset it trains on and the row's wiring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from medseg.data.dataset import load_dataset
from medseg.data.phantom_config import PhantomConfig
from medseg.data.phantoms import generate_dataset
from medseg.errors import ConfigError
from medseg.io import Image, read_image
from medseg.pipeline.classic import classic_benchmark, format_table
from medseg.pipeline.classic_cnn import run_cnn, subset_dataset
from medseg.pipeline.classic_run import segment_binary
from medseg.pipeline.classic_seeds import oracle_seeds

pytest.importorskip("maxflow")


def _low_contrast_blob() -> tuple[Image, Image]:
    """A dark two-label ellipsoid in brighter noise (contrast 1.5 noise SDs) and one bright
    outlier voxel: the Hippocampus crops' situation."""
    rng = np.random.default_rng(0)
    z, y, x = np.indices((24, 28, 26))
    inside = ((z - 12) / 6) ** 2 + ((y - 14) / 8) ** 2 + ((x - 13) / 5) ** 2 <= 1
    label = inside.astype(np.uint8)
    label[inside & (y >= 14)] = 2
    image = np.where(inside, 300.0, 420.0) + rng.normal(0, 80, label.shape)
    image[0, 0, 0] = 5000.0
    return Image(image, (1.0, 1.0, 1.0)), Image(label, (1.0, 1.0, 1.0))


def test_scribble_holds_the_seeds_and_eroded_foreground_voxels_only() -> None:
    label = np.zeros((40, 50), dtype=np.uint8)
    label[5:25, 5:30] = 1
    label[30:36, 35:45] = 2
    seeds = oracle_seeds(label, max_scribble=50)
    assert seeds.scribble[: len(seeds.foreground)] == seeds.foreground
    assert len(seeds.scribble) == len(set(seeds.scribble)) <= len(seeds.foreground) + 50
    assert len(seeds.scribble) > 40
    eroded = ndimage.binary_erosion(label > 0)
    assert all(eroded[p] for p in seeds.scribble)
    assert oracle_seeds(label, max_scribble=50).scribble == seeds.scribble  # deterministic


def test_graph_cut_with_the_scribble_segments_a_low_contrast_blob() -> None:
    from medseg.classic.graph_cut import graph_cut

    image, label = _low_contrast_blob()
    truth = label.array > 0

    def dice(mask: np.ndarray) -> float:
        return 2 * float((mask & truth).sum()) / float(mask.sum() + truth.sum())

    seeds = oracle_seeds(label)
    # one seed per component: the foreground histogram is the Laplace prior, nothing grows
    single = graph_cut(image, seeds.foreground, seeds.background).array > 0
    assert dice(single) < 0.1
    prediction, seconds = segment_binary("graph_cut", image, label)
    assert dice(prediction.array > 0) > 0.8 and seconds >= 0


@pytest.fixture
def phantoms_2d(tmp_path: Path) -> Path:
    config = PhantomConfig(fov_mm=(48.0, 48.0))
    return generate_dataset(tmp_path / "ph", spatial_dims=2, num_cases=5, seed=3, config=config)


def test_subset_dataset_links_only_the_given_cases(phantoms_2d: Path, tmp_path: Path) -> None:
    data = load_dataset(phantoms_2d)
    root = subset_dataset(data, ["phantom_001", "phantom_003"], tmp_path / "subset")
    subset = load_dataset(root)
    assert [c.case_id for c in subset.cases] == ["phantom_001", "phantom_003"]
    assert subset.foreground_labels == data.foreground_labels
    assert json.loads((root / "dataset.json").read_text())["numTraining"] == 2
    original = read_image(phantoms_2d / "labelsTr" / "phantom_003.nii.gz").array
    np.testing.assert_array_equal(read_image(subset.cases[1].label_path).array, original)


def test_cnn_row_is_evaluated_on_the_same_cases(
    phantoms_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medseg.pipeline.classic_cnn as classic_cnn

    seen = {}

    def fake_run_cnn(data, train_ids, eval_ids, pred_dir, work, *, minutes, device, overwrite):
        seen.update(train=list(train_ids), eval=list(eval_ids), minutes=minutes)
        for case_id in eval_ids:  # a perfect network: the reference itself
            label = read_image(data.case(case_id).label_path)
            pred_dir.mkdir(parents=True, exist_ok=True)
            (pred_dir / f"{case_id}.nii.gz").write_bytes(
                Path(data.case(case_id).label_path).read_bytes()
            )
            assert label.array.any()
        return {"budget_min": minutes, "fit_s": 1.0, "seconds": [0.5] * len(eval_ids)}

    monkeypatch.setattr(classic_cnn, "run_cnn", fake_run_cnn)
    table = classic_benchmark(phantoms_2d, tmp_path / "b", methods=["otsu"], cnn_minutes=0.5)
    rows = {row["method"]: row for row in table["rows"]}
    assert seen == {"train": table["train_cases"], "eval": table["evaluated_cases"], "minutes": 0.5}
    assert rows["cnn"]["dice"] == pytest.approx(1.0) and rows["cnn"]["scope"] == "labels"
    assert not rows["cnn"]["oracle_seeds"]
    assert "| cnn (U-Net, 0.5 min) | labels | 1.0000 |" in format_table(table)


def test_cnn_needs_a_positive_budget(phantoms_2d: Path, tmp_path: Path) -> None:
    data = load_dataset(phantoms_2d)
    with pytest.raises(ConfigError, match="cnn_minutes"):
        run_cnn(data, ["phantom_000"], ["phantom_004"], tmp_path / "p", tmp_path / "w", minutes=0)
