"""Sites: the split, its shifts, refusals naming the site, federated planning."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from medseg.data.dataset import load_dataset
from medseg.data.fingerprint import compute_fingerprint
from medseg.data.phantoms import generate_dataset
from medseg.federated.aggregate import FederatedError
from medseg.federated.planning import federated_plan
from medseg.federated.sites import assign_cases, check_sites, split_sites
from medseg.io.formats import read_image


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("ds") / "ds", spatial_dims=2, num_cases=8)


def test_split_writes_one_dataset_per_site_with_shifts(phantom, tmp_path):
    shifts = tmp_path / "shift.json"
    shifts.write_text(
        json.dumps({"sites": [{"gain": 2.0, "offset": 1.0}, {"spacing": [2.0, 2.0]}]})
    )
    record = split_sites(phantom, tmp_path / "sites", sites=2, shifts=shifts, seed=3)
    assert [s["cases"] for s in record["sites"]] == [4, 4]
    assert json.loads((tmp_path / "sites" / "sites.json").read_text()) == record
    assert "phantom_000" not in (tmp_path / "sites" / "sites.json").read_text()  # counts only
    site0 = load_dataset(tmp_path / "sites" / "site_0")
    case = site0.cases[0]
    original = read_image(phantom / "imagesTr" / f"{case.case_id}_0000.nii.gz")
    shifted = read_image(case.image_paths[0])
    np.testing.assert_allclose(shifted.array, 2.0 * original.array + 1.0, rtol=1e-5, atol=1e-5)
    resampled = read_image(load_dataset(tmp_path / "sites" / "site_1").cases[0].image_paths[0])
    assert resampled.spacing == (2.0, 2.0)
    assert resampled.spatial_shape == tuple(
        round(n * original.spacing[0] / 2) for n in original.spatial_shape
    )


def test_dirichlet_quantity_skew_and_prefix():
    ids = [f"c{i:02d}" for i in range(30)]
    groups = assign_cases(ids, 3, dirichlet=0.3, seed=1)
    assert sorted(sum(groups, [])) == ids and min(map(len, groups)) >= 2
    assert max(map(len, groups)) >= 2 * min(map(len, groups))  # skewed
    by_prefix = assign_cases(["a_1", "a_2", "b_1", "c_x_1"], 3, by="prefix")
    assert by_prefix == [["a_1", "a_2"], ["b_1"], ["c_x_1"]]


def test_refusals_name_the_site(phantom, tmp_path):
    split_sites(phantom, tmp_path / "s", sites=2)
    for f in (tmp_path / "s" / "site_1" / "labelsTr").iterdir():
        f.unlink()
    for f in (tmp_path / "s" / "site_1" / "imagesTr").iterdir():
        f.unlink()
    with pytest.raises(FederatedError, match="site site_1: refused: it has no labelled cases"):
        check_sites(tmp_path / "s")
    shutil.rmtree(tmp_path / "s")
    split_sites(phantom, tmp_path / "s", sites=2)
    meta_path = tmp_path / "s" / "site_1" / "dataset.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "labels": {**meta["labels"], "extra": 9}}))
    with pytest.raises(FederatedError, match="site site_1: refused: labels"):
        check_sites(tmp_path / "s")
    meta_path.write_text(json.dumps({**meta, "channel_names": {"0": "MR", "1": "MR2"}}))
    with pytest.raises(FederatedError, match="site site_1: refused"):
        check_sites(tmp_path / "s")


def test_federated_plan_pools_aggregates_exactly(phantom, tmp_path):
    split_sites(phantom, tmp_path / "s", sites=2)
    sites = check_sites(tmp_path / "s")
    plans, fp, summaries = federated_plan(sites)
    pooled = compute_fingerprint(load_dataset(phantom), jobs=1, progress=False)
    assert fp.class_fractions == pytest.approx(pooled.class_fractions, rel=1e-9)
    assert fp.median_spacing == pytest.approx(pooled.median_spacing)
    # foreground intensities: every voxel (the fingerprint samples <= 10,000 per case)
    values = []
    for case in load_dataset(phantom).cases:
        image, label = read_image(case.image_paths[0]).array, read_image(case.label_path).array
        values.append(image[label > 0])
    values = np.concatenate(values)
    assert fp.intensity["0"]["mean"] == pytest.approx(values.mean(), rel=1e-6)
    assert fp.intensity["0"]["std"] == pytest.approx(values.std(), rel=1e-5)
    spread = values.max() - values.min()
    assert abs(fp.intensity["0"]["median"] - np.median(values)) < 2 * spread / 2048
    assert plans["2d"].num_classes == len(pooled.labels)
    text = json.dumps(summaries)
    assert not any(c.case_id in text for c in load_dataset(phantom).cases)
