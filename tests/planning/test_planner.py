"""Planning rules against the nnU-Net table in seed 004 and hand-made fingerprints."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from medseg.data import Fingerprint, compute_fingerprint, load_dataset
from medseg.errors import ConfigError
from medseg.planning import Plan, Plans, plan_configuration, plan_dataset, plan_topology
from medseg.planning.planner import choose_normalization, choose_target_spacing


# seed 004, "nnU-Net" table: (patch size, spacing) -> num pool per axis
@pytest.mark.parametrize(
    ("patch", "spacing", "pools"),
    [
        ((40, 56, 40), (1.0, 1.0, 1.0), (3, 3, 3)),  # Hippocampus 3D
        ((56, 40), (1.0, 1.0), (3, 3)),  # Hippocampus 2D
        ((20, 192, 192), (3.6, 0.62, 0.62), (2, 5, 5)),  # Prostate 3D (anisotropic)
        ((80, 192, 128), (1.37, 1.25, 1.25), (4, 5, 5)),  # Heart 3D
        ((128, 128, 128), (1.0, 0.77, 0.77), (5, 5, 5)),  # Liver 3D
        ((512, 512), (0.77, 0.77), (6, 6)),  # Liver 2D
        ((192, 160), (1.0, 1.0), (5, 5)),  # BrainTumour 2D
    ],
)
def test_pooling_per_axis_matches_the_nnunet_table(patch, spacing, pools) -> None:
    topo = plan_topology(patch, spacing)
    counted = tuple(sum(1 for s in topo.strides if s[d] == 2) for d in range(len(patch)))
    assert counted == pools
    assert topo.strides[0] == (1,) * len(patch)
    assert all(p % d == 0 for p, d in zip(topo.patch_size, topo.divisor, strict=True))


def test_thick_slices_get_in_plane_kernels_first() -> None:
    topo = plan_topology((20, 192, 192), (3.6, 0.62, 0.62))
    assert topo.kernel_sizes[0] == (1, 3, 3)
    assert topo.kernel_sizes[-1] == (3, 3, 3)


def test_patch_is_rounded_up_to_the_divisor() -> None:
    assert plan_topology((36, 50, 35), (1.0, 1.0, 1.0)).patch_size == (40, 56, 40)


def _fingerprint(spacings, shapes, channel="MRI") -> Fingerprint:
    cases = {
        f"c{i}": {"shape": list(sh), "spacing": list(sp), "class_voxels": {}}
        for i, (sp, sh) in enumerate(zip(spacings, shapes, strict=True))
    }
    import numpy as np

    med_sp = [float(v) for v in np.median(np.array(spacings), axis=0)]
    return Fingerprint(
        dataset_name="t",
        spatial_dims=len(spacings[0]),
        channel_names={"0": channel},
        labels={"background": 0, "a": 1},
        cases=cases,
        median_spacing=med_sp,
        median_shape=[float(v) for v in np.median(np.array(shapes), axis=0)],
        spacing_percentiles={},
        intensity={"0": {"mean": 0.0, "std": 1.0, "percentile_00_5": -1.0, "percentile_99_5": 1.0}},
        class_fractions={},
        anisotropy=max(med_sp) / min(med_sp),
    )


def test_anisotropic_axis_takes_its_10th_percentile_spacing() -> None:
    spacings = [(s, 0.7, 0.7) for s in (3.0, 4.0, 5.0, 5.0, 5.0, 6.0, 6.0, 6.0, 6.0, 6.0)]
    shapes = [(30, 512, 512)] * 10
    target, reason = choose_target_spacing(_fingerprint(spacings, shapes))
    assert target[0] == pytest.approx(3.9, abs=0.01)  # np.percentile([...], 10)
    assert target[1:] == [0.7, 0.7] and "10th percentile" in reason


def test_isotropic_data_keeps_the_median_spacing() -> None:
    target, _ = choose_target_spacing(
        _fingerprint([(1.0, 1.0, 1.0), (1.2, 1.0, 1.0)], [(40, 50, 40)] * 2)
    )
    assert target == [1.1, 1.0, 1.0]


def test_ct_channels_are_clipped_and_others_z_scored() -> None:
    assert choose_normalization(_fingerprint([(1, 1, 1)], [(8, 8, 8)], channel="CT"))[0] == ("ct",)
    assert choose_normalization(_fingerprint([(1, 1, 1)], [(8, 8, 8)], channel="T2"))[0] == (
        "zscore",
    )


def test_large_median_case_gets_a_lowres_configuration() -> None:
    fp = _fingerprint([(1.0, 0.8, 0.8)] * 3, [(400, 512, 512)] * 3, channel="CT")
    plans = plan_dataset(fp, "x", device="cpu", memory_gb=2)
    assert set(plans.configurations) == {"2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"}
    low, full = plans["3d_lowres"], plans["3d_fullres"]
    assert all(lo > fu for lo, fu in zip(low.spacing, full.spacing, strict=True))
    cascade = plans[
        "3d_cascade_fullres"
    ]  # the cascade's second stage: fullres + one channel per foreground class
    assert cascade.previous_stage == "3d_lowres" and cascade.in_channels == full.in_channels + 1
    assert cascade.spacing == full.spacing and cascade.patch_size == full.patch_size


def test_smaller_memory_budget_never_grows_patch_or_batch() -> None:
    fp = _fingerprint([(1.0, 1.0, 1.0)] * 3, [(160, 160, 160)] * 3)
    big = plan_configuration(fp, "3d_fullres", memory_gb=8)
    small = plan_configuration(fp, "3d_fullres", memory_gb=0.5)
    assert all(s <= b for s, b in zip(small.patch_size, big.patch_size, strict=True))
    assert small.batch_size <= big.batch_size and small.batch_size >= 2


def test_every_choice_has_a_reason(tiny_dataset: Path) -> None:
    fp = compute_fingerprint(load_dataset(tiny_dataset), jobs=1, progress=False)
    plan = plan_dataset(fp, str(tiny_dataset))["3d_fullres"]
    for key in (
        "spacing",
        "normalization",
        "patch_size",
        "batch_size",
        "network_config",
        "optimizer",
    ):
        assert plan.reasons[key]


def test_plans_json_round_trip_and_unknown_keys(tiny_dataset: Path, tmp_path: Path) -> None:
    fp = compute_fingerprint(load_dataset(tiny_dataset), jobs=1, progress=False)
    plans = plan_dataset(fp, str(tiny_dataset))
    plans.to_json(tmp_path / "plans.json")
    assert Plans.from_json(tmp_path / "plans.json") == plans
    data = plans["2d"].to_dict()
    data["pach_size"] = [8, 8]
    with pytest.raises(ConfigError, match="pach_size"):
        Plan.from_dict(data)
    with pytest.raises(ConfigError, match="no configuration 'bogus'"):
        plans["bogus"]


def test_plan_variants_are_dataclass_replacements(tiny_dataset: Path) -> None:
    fp = compute_fingerprint(load_dataset(tiny_dataset), jobs=1, progress=False)
    plan = plan_dataset(fp, str(tiny_dataset))["2d"]
    wider = replace(plan, batch_size=plan.batch_size + 1)
    assert wider.batch_size == plan.batch_size + 1 and wider.patch_size == plan.patch_size
    with pytest.raises(ConfigError):
        replace(plan, patch_size=(8, 8, 8))
