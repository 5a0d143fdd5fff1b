"""Same-subject pairs (ACDC ED -> ES): the pairing rule, the pair data (frames cropped or
padded together), split by subject, a tiny run that beats identity, the CLI, and 2 real ACDC
patients."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medseg.cli import register as register_cli
from medseg.data.dataset import load_dataset
from medseg.errors import ConfigError, DatasetError
from medseg.io import Image, read_image, write_image
from medseg.registration.config import RegistrationConfig
from medseg.registration.data import load_volumes
from medseg.registration.pairs import (
    DEFAULT_PAIR_PATTERN,
    ListedPairBatches,
    check_pair_shapes,
    read_pairs_file,
    same_subject_pairs,
    split_pairs,
)
from medseg.registration.scores import mean_label_dice
from medseg.registration.train import fit_registration

TINY = dict(features=(8, 16, 16), decoder_features=(16, 16, 16), final_features=(16, 8))
PHANTOM_PATTERN = r"^(?P<subject>pair_\d+)_(?P<frame>fixed|moving)$"


def test_acdc_names_pair_ed_onto_es_and_frames_sort_as_numbers() -> None:
    ids = ["patient002_frame02", "patient001_frame01", "patient002_frame01", "patient001_frame12"]
    assert same_subject_pairs(ids) == [
        ("patient001_frame01", "patient001_frame12"),  # 1 < 12 as numbers (not as text)
        ("patient002_frame01", "patient002_frame02"),
    ]
    both = same_subject_pairs(ids[:1] + ids[2:3], both_directions=True)
    assert both == [
        ("patient002_frame01", "patient002_frame02"),
        ("patient002_frame02", "patient002_frame01"),
    ]
    chosen = same_subject_pairs(["a_frame01", "a_frame02"], moving_frame="02")
    assert chosen == [("a_frame02", "a_frame01")]


def test_a_missing_partner_and_unmatched_names_are_named() -> None:
    with pytest.raises(DatasetError, match=r"patient003_frame01 has no partner"):
        same_subject_pairs(["patient001_frame01", "patient001_frame02", "patient003_frame01"])
    with pytest.raises(DatasetError, match="no same-subject pairs.*case_a"):
        same_subject_pairs(["case_a", "case_b"])
    with pytest.raises(DatasetError, match="do not match.*stray"):
        same_subject_pairs(["p_frame01", "p_frame02", "stray"])
    with pytest.raises(DatasetError, match="3 frames"):
        same_subject_pairs(["p_frame01", "p_frame02", "p_frame03"])
    with pytest.raises(DatasetError, match="not the moving frame '05'"):
        same_subject_pairs(["p_frame01", "p_frame02"], moving_frame="05")
    with pytest.raises(ConfigError, match="named group"):
        same_subject_pairs(["p_frame01"], r"(?P<subject>.+)_frame\d+")
    with pytest.raises(ConfigError, match="listed pairs"):
        RegistrationConfig(dataset="d", atlas="p_frame01", pairs="same-subject")
    with pytest.raises(ConfigError, match="pairs 'all'"):
        RegistrationConfig(dataset="d", pairs="all")


def test_pairs_file_and_split_by_subject(tmp_path: Path) -> None:
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([["a", "b"], {"moving": "c", "fixed": "d"}]))
    assert read_pairs_file(path, "abcd") == [("a", "b"), ("c", "d")]
    path.write_text(json.dumps([["a", "zz"]]))
    with pytest.raises(DatasetError, match=r"pairs.json: entry 0 names unknown case\(s\) \['zz'\]"):
        read_pairs_file(path, "abcd")
    pairs = same_subject_pairs(
        [f"s{i}_frame0{f}" for i in range(10) for f in (1, 2)], both_directions=True
    )
    train, val = split_pairs(pairs, 0.2, seed=3)
    assert len(val) == 4 and len(train) == 16  # 2 of 10 subjects, both directions each
    subjects = lambda ps: {m.split("_")[0] for p in ps for m in p}  # noqa: E731
    assert not subjects(train) & subjects(val)
    with pytest.raises(DatasetError, match=r"a_frame01 \(4, 4\) / a_frame02 \(4, 5\)"):
        check_pair_shapes(
            [("a_frame01", "a_frame02")], {"a_frame01": (4, 4), "a_frame02": (4, 5)}, "ds"
        )


def _write_case(root: Path, case: str, image: np.ndarray, labels: np.ndarray) -> None:
    write_image(
        Image(image.astype(np.float32), spacing=(1.0, 1.0)),
        root / "imagesTr" / f"{case}_0000.nii.gz",
    )
    write_image(
        Image(labels.astype(np.uint8), spacing=(1.0, 1.0)), root / "labelsTr" / f"{case}.nii.gz"
    )


def test_pair_volumes_are_cropped_together_and_stay_aligned(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    rng = np.random.default_rng(0)
    for subject, shape in (("p1", (10, 14)), ("p2", (20, 6))):  # different grids per subject
        for frame, shift in (("01", 0), ("02", 1)):
            labels = np.zeros(shape, np.uint8)
            labels[3 + shift : 6 + shift, 2:5] = 1  # ES moved one row down
            image = labels * 5.0 + rng.random(shape)
            _write_case(root, f"{subject}_frame{frame}", image, labels)
    cases = ["p1_frame01", "p1_frame02", "p2_frame01", "p2_frame02"]
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "MR"},
                "labels": {"background": 0, "x": 1},
                "numTraining": 4,
                "file_ending": ".nii.gz",
            }
        )
    )
    volumes = load_volumes(load_dataset(root), cases, divisor=4, shape=(16, 8))
    rows = {c: i for i, c in enumerate(volumes.case_ids)}
    pairs = same_subject_pairs(cases)
    check_pair_shapes(pairs, volumes.shapes, str(root))
    batches = list(ListedPairBatches(rows, pairs, batch_size=2, steps=3, seed=0)(0))
    assert len(batches) == 3
    for moving_rows, fixed_rows in batches:
        moving, fixed = volumes.images[moving_rows], volumes.images[fixed_rows]
        assert moving.shape == fixed.shape == (2, 1, 16, 8)
        for m, f in zip(moving_rows.tolist(), fixed_rows.tolist(), strict=True):
            assert volumes.case_ids[m][:2] == volumes.case_ids[f][:2]  # the same subject
            lm, lf = volumes.labels[m], volumes.labels[f]
            assert torch.equal(torch.roll(lm, 1, dims=0), lf)  # still one row apart
            assert torch.all(volumes.images[m, 0][lm == 1] > volumes.images[m, 0][lm == 0].max())


@pytest.fixture(scope="module")
def same_subject_run(
    phantom_2d: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, object]:
    torch.set_num_threads(1)
    config = RegistrationConfig(
        dataset=str(phantom_2d),
        pairs="same-subject",
        pair_pattern=PHANTOM_PATTERN,
        moving_frame="moving",
        smooth=0.1,
        label_weight=0.5,
        learning_rate=3e-3,
        batch_size=2,
        steps_per_epoch=200,
        epochs=1,  # 200 steps
        val_fraction=0.34,
        downsize=2,
        **TINY,
    )
    run = tmp_path_factory.mktemp("same_subject") / "run"
    return run, fit_registration(phantom_2d, run, config, progress=False, amp=False)


def test_a_tiny_same_subject_run_beats_identity(phantom_2d: Path, same_subject_run) -> None:
    run, result = same_subject_run
    split = json.loads((run / "split.json").read_text())
    assert len(split["val_pairs"]) == 2 and len(split["train_pairs"]) == 4
    assert all(
        m.endswith("_moving") and f == m.replace("moving", "fixed") for m, f in split["val_pairs"]
    )
    identity = np.mean(
        [
            mean_label_dice(
                read_image(phantom_2d / "labelsTr" / f"{f}.nii.gz").array,
                read_image(phantom_2d / "labelsTr" / f"{m}.nii.gz").array,
            )
            for m, f in split["val_pairs"]
        ]
    )
    assert result.best_metric > identity + 0.02
    saved = RegistrationConfig.from_dict(json.loads((run / "config.json").read_text()))
    assert saved.pairs == "same-subject" and saved.moving_frame == "moving"


def test_cli_same_subject_pairs_and_its_checks(phantom_2d: Path, tmp_path: Path) -> None:
    assert register_cli.DEFAULT_PATTERN == DEFAULT_PAIR_PATTERN
    base = ["train", str(phantom_2d), "-o", str(tmp_path / "run"), "--epochs", "1"]
    base += ["--steps-per-epoch", "1", "--device", "cpu", "--pairs", "same-subject"]
    result = CliRunner().invoke(register_cli.app, base)  # the default ACDC rule does not fit
    assert result.exit_code != 0 and "no same-subject pairs" in str(result.exception)
    ok = [*base, "--pair-pattern", PHANTOM_PATTERN, "--moving-frame", "moving", "--shape", "32x32"]
    result = CliRunner().invoke(register_cli.app, ok)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["shape"] == [32, 32] and saved["pairs"] == "same-subject"
    for flag, value in (
        ("--pair-pattern", "(?P<subject>x"),
        ("--shape", "16x0"),
        ("--moving-frame", "a b"),
    ):
        bad = CliRunner().invoke(register_cli.app, [*base, flag, value])
        assert bad.exit_code == 2 and flag in bad.output


@pytest.mark.realdata
def test_two_acdc_patients_pair_ed_onto_es_on_one_grid(shared_data: Path) -> None:
    acdc = shared_data / "acdc"
    if not (acdc / "dataset.json").is_file():
        pytest.skip("no ACDC in ../shared/data")
    ids = [c.case_id for c in load_dataset(acdc).cases]
    pairs = same_subject_pairs(ids)
    assert len(pairs) == len(ids) // 2
    assert pairs[0] == ("patient001_frame01", "patient001_frame02")
    for moving, fixed in pairs[:2]:
        ed, es = (read_image(acdc / "labelsTr" / f"{c}.nii.gz") for c in (moving, fixed))
        assert ed.same_grid(es) and ed.spatial_shape == es.spatial_shape
        assert (ed.array == 3).sum() > (es.array == 3).sum()  # LV larger at end-diastole
