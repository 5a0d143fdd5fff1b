"""Integration: check and fingerprint the real datasets in ../shared/data against PROVENANCE.md.

Skipped when the folder is absent (a user's fresh clone). Small subsets keep CI fast.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from medseg.data import check_dataset, compute_fingerprint, load_dataset

pytestmark = pytest.mark.realdata

# (folder, label fractions stated in PROVENANCE.md, shape bounds, spatial dims, channels)
EXPECTED = {
    "hippocampus": ({"Anterior": 0.027, "Posterior": 0.025}, 3, 1),
    "acdc": ({"RV": 0.012, "MYO": 0.013, "LV": 0.013}, 3, 1),
    "drive": ({"vessel": 0.087}, 2, 3),
    "isbi2012_em": ({"membrane": 0.220}, 2, 1),
    "montgomery_cxr": ({"lung": 0.255}, 2, 1),
}
DECLARED_CASES = {
    "hippocampus": 208,
    "acdc": 160,
    "drive": 20,
    "isbi2012_em": 30,
    "montgomery_cxr": 138,
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_dataset_is_clean_and_fingerprint_matches_provenance(
    shared_data: Path, name: str
) -> None:
    root = shared_data / name
    if not root.is_dir():
        pytest.skip(f"{root} absent")
    dataset = load_dataset(root)
    assert len(dataset.cases) == DECLARED_CASES[name]
    subset = replace(
        dataset, cases=dataset.cases[:: max(1, len(dataset.cases) // 12)], num_training=None
    )
    assert check_dataset(subset, jobs=2, progress=False) == []
    fractions, dims, channels = EXPECTED[name]
    fp = compute_fingerprint(subset, jobs=2, progress=False)
    assert fp.spatial_dims == dims and len(fp.intensity) == channels
    for label, fraction in fractions.items():
        # a subset of cases: within 35 % of the whole-dataset fraction stated in PROVENANCE.md
        assert fp.class_fractions[label] == pytest.approx(fraction, rel=0.35)


def test_hippocampus_shapes_and_spacing_match_provenance(shared_data: Path) -> None:
    root = shared_data / "hippocampus"
    if not root.is_dir():
        pytest.skip("hippocampus absent")
    fp = compute_fingerprint(load_dataset(root), jobs=2, progress=False)
    # PROVENANCE.md (nibabel, x,y,z): min (31, 40, 24), max (43, 59, 47); ours is z,y,x order
    shapes = [tuple(c["shape"][::-1]) for c in fp.cases.values()]
    assert tuple(min(s[i] for s in shapes) for i in range(3)) == (31, 40, 24)
    assert tuple(max(s[i] for s in shapes) for i in range(3)) == (43, 59, 47)
    assert fp.median_spacing == [1.0, 1.0, 1.0]
    assert fp.class_fractions["background"] == pytest.approx(0.948, abs=0.002)
    assert fp.class_fractions["Anterior"] == pytest.approx(0.027, abs=0.001)
    assert fp.class_fractions["Posterior"] == pytest.approx(0.025, abs=0.001)
