"""The viewer's JSON API on a phantom results folder (FastAPI TestClient)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image as PILImage
from tests.viewer.conftest import client_for, dataset_of

CASE = "phantom_000"


def png(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.array(PILImage.open(io.BytesIO(response.content)))


def reference_array(results, case=CASE, folder="predictions") -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(results / folder / f"{case}.nii.gz")))


def test_session_and_case_list_sorted_worst_dice_first(client, results):
    info = client.get("/api/session").json()
    assert info["user"] == "tester" and info["prompt"] is False and not info["read_only"]
    assert info["labels"]["organ"] == 1
    rows = client.get("/api/cases", params={"sort": "dice"}).json()["cases"]
    with open(results / "evaluation" / "per_case.csv", encoding="utf-8", newline="") as handle:
        table = list(csv.DictReader(handle))
    for row in rows:
        dice = [float(r["dice"]) for r in table if r["case"] == row["id"] and r["dice"] != "nan"]
        assert row["dice"] == pytest.approx(np.mean(dice), abs=1e-4)
        assert row["status"] == "unreviewed" and row["problem"] is None
    dices = [r["dice"] for r in rows]
    assert dices == sorted(dices) and len(rows) == 3


def test_meta_reports_planes_with_true_spacing(client, results):
    meta = client.get(f"/api/cases/{CASE}/meta").json()
    image = sitk.ReadImage(str(dataset_of(results) / "imagesTr" / f"{CASE}_0000.nii.gz"))
    z, y, x = image.GetSize()[::-1]
    assert meta["shape"] == [z, y, x]
    sx, sy, sz = image.GetSpacing()
    assert meta["planes"]["coronal"] == {
        "count": y,
        "rows": z,
        "cols": x,
        "row_mm": sz,
        "col_mm": sx,
    }
    assert set(meta["layers"]) == {"image", "edit", "prediction", "reference", "diff"}


def test_image_slice_is_the_windowed_voxels(client, results):
    image = sitk.ReadImage(str(dataset_of(results) / "imagesTr" / f"{CASE}_0000.nii.gz"))
    voxels = sitk.GetArrayFromImage(image).astype(np.float64)
    shown = png(
        client.get(
            f"/api/cases/{CASE}/slice",
            params={"plane": "axial", "index": 7, "center": 0.5, "width": 1.0},
        )
    )
    expected = np.clip(np.floor((voxels[7] - 0.0) * 255.0 + 0.5), 0, 255)
    assert np.abs(shown.astype(int) - expected.astype(int)).max() <= 1


def test_label_slices_follow_the_plane_orientation(client, results):
    pred = reference_array(results)
    coronal = png(
        client.get(
            f"/api/cases/{CASE}/slice",
            params={"plane": "coronal", "index": 40, "layer": "prediction"},
        )
    )
    np.testing.assert_array_equal(coronal, pred[::-1, 40, :])
    sagittal = png(
        client.get(
            f"/api/cases/{CASE}/slice",
            params={"plane": "sagittal", "index": 30, "layer": "prediction"},
        )
    )
    np.testing.assert_array_equal(sagittal, pred[::-1, :, 30])


def test_diff_layer_marks_false_positives_and_negatives(client, results):
    pred, ref = reference_array(results), reference_array(dataset_of(results), folder="labelsTr")
    diff = png(
        client.get(
            f"/api/cases/{CASE}/slice", params={"plane": "axial", "index": 16, "layer": "diff"}
        )
    )
    p, r = pred[16], ref[16]
    assert ((diff == 2) == ((p == 0) & (r != 0))).all()
    assert ((diff == 1) == ((p != 0) & (p != r))).all()
    assert (diff == 2).any()


def test_window_presets_and_bad_preset(client):
    assert client.get(f"/api/cases/{CASE}/slice", params={"window": "ct_bone"}).status_code == 200
    response = client.get(f"/api/cases/{CASE}/slice", params={"window": "../x"})
    assert response.status_code == 400 and "../x" not in response.text


def test_brush_undo_redo_and_edit_layer(client):
    body = {
        "op": "brush",
        "plane": "axial",
        "index": 10,
        "points": [[5, 5]],
        "radius_mm": 2.0,
        "label": 2,
    }
    before = png(client.get(f"/api/cases/{CASE}/slice", params={"index": 10, "layer": "edit"}))
    answer = client.post(f"/api/cases/{CASE}/edit", json=body).json()
    after = png(client.get(f"/api/cases/{CASE}/slice", params={"index": 10, "layer": "edit"}))
    rows, cols = np.mgrid[:64, :64]
    disc = (rows - 5) ** 2 + (cols - 5) ** 2 <= 4  # 1 mm pixels in the axial plane
    assert (after[disc] == 2).all() and (after[~disc] == before[~disc]).all()
    assert answer["changed"] == int((before[disc] != 2).sum()) and answer["edit"]["can_undo"]
    client.post(f"/api/cases/{CASE}/edit", json={"op": "undo"})
    undone = png(client.get(f"/api/cases/{CASE}/slice", params={"index": 10, "layer": "edit"}))
    np.testing.assert_array_equal(undone, before)
    assert client.post(f"/api/cases/{CASE}/edit", json={"op": "redo"}).json()["changed"] > 0


def test_saved_mask_has_the_image_geometry(client, results):
    client.post(
        f"/api/cases/{CASE}/edit",
        json={
            "op": "brush",
            "plane": "coronal",
            "index": 30,
            "points": [[4, 4], [4, 20]],
            "radius_mm": 3.0,
            "label": 1,
        },
    )
    answer = client.post(f"/api/cases/{CASE}/save", json={"base_version": 0}).json()
    assert answer["version"] == 1
    saved = sitk.ReadImage(str(results / "corrections" / CASE / "v1.nii.gz"))
    image = sitk.ReadImage(str(dataset_of(results) / "imagesTr" / f"{CASE}_0000.nii.gz"))
    assert saved.GetSize() == image.GetSize()
    assert np.allclose(saved.GetSpacing(), image.GetSpacing())
    assert np.allclose(saved.GetOrigin(), image.GetOrigin())
    assert np.allclose(saved.GetDirection(), image.GetDirection())
    pred, mask = reference_array(results), sitk.GetArrayFromImage(saved)
    changed = mask != pred
    assert changed.any() and (mask[changed] == 1).all()
    assert client.get("/api/cases").json()["cases"][0]["status"] == "corrected"


def test_stale_base_version_is_refused_with_409(client, results):
    assert client.post(f"/api/cases/{CASE}/save", json={"base_version": 0}).status_code == 200
    response = client.post(f"/api/cases/{CASE}/save", json={"base_version": 0})
    assert response.status_code == 409
    assert sorted(p.name for p in (results / "corrections" / CASE).glob("v*")) == ["v1.nii.gz"]


def test_failure_mid_save_leaves_v1_intact_and_no_partial_file(client, results, monkeypatch):
    import errno

    from medseg.viewer import storage

    assert client.post(f"/api/cases/{CASE}/save", json={"base_version": 0}).status_code == 200
    v1 = (results / "corrections" / CASE / "v1.nii.gz").read_bytes()
    client.post(
        f"/api/cases/{CASE}/edit",
        json={
            "op": "brush",
            "plane": "axial",
            "index": 3,
            "points": [[30, 30]],
            "radius_mm": 5.0,
            "label": 1,
        },
    )

    def full_disk(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage, "_fsync", full_disk)
    response = client.post(f"/api/cases/{CASE}/save", json={"base_version": 1})
    assert response.status_code == 507
    files = sorted(p.name for p in (results / "corrections" / CASE).iterdir())
    assert files == ["status.json", "v1.nii.gz"]
    assert (results / "corrections" / CASE / "v1.nii.gz").read_bytes() == v1
    monkeypatch.undo()
    assert client.post(f"/api/cases/{CASE}/save", json={"base_version": 1}).status_code == 200


def test_accept_requires_saved_edits_and_marks_the_case(client):
    client.post(f"/api/cases/{CASE}/edit", json={"op": "fill_holes", "label": 1})
    client.post(
        f"/api/cases/{CASE}/edit",
        json={
            "op": "brush",
            "plane": "axial",
            "index": 3,
            "points": [[30, 30]],
            "radius_mm": 5.0,
            "label": 1,
        },
    )
    assert client.post(f"/api/cases/{CASE}/accept", json={}).status_code == 409
    client.post(f"/api/cases/{CASE}/edit", json={"op": "undo"})
    client.post(f"/api/cases/{CASE}/edit", json={"op": "undo"})
    assert (
        client.post(f"/api/cases/{CASE}/accept", json={}).json()["status"]["status"] == "accepted"
    )


def test_keep_largest_edit_removes_a_painted_island(client):
    client.post(
        f"/api/cases/{CASE}/edit",
        json={
            "op": "brush",
            "plane": "axial",
            "index": 0,
            "points": [[2, 2]],
            "radius_mm": 1.0,
            "label": 1,
        },
    )
    answer = client.post(f"/api/cases/{CASE}/edit", json={"op": "keep_largest", "label": 1}).json()
    assert answer["changed"] >= 5
    edit = png(client.get(f"/api/cases/{CASE}/slice", params={"index": 0, "layer": "edit"}))
    assert edit[2, 2] == 0


def test_prompt_without_model_is_409(client):
    response = client.post(
        f"/api/cases/{CASE}/prompt",
        json={"plane": "axial", "index": 1, "points": [[3, 3]], "label": 1},
    )
    assert response.status_code == 409 and "prompt" in response.json()["detail"]


def test_read_only_session_refuses_changes(results):
    with client_for(results, read_only=True) as client:
        assert client.get(f"/api/cases/{CASE}/meta").status_code == 200
        for action in ("edit", "save", "accept"):
            response = client.post(
                f"/api/cases/{CASE}/{action}", json={"op": "undo", "base_version": 0}
            )
            assert response.status_code == 403
    assert not (results / "corrections").exists()


def test_prompt_with_a_model_replaces_the_label_on_that_slice(results):
    torch = pytest.importorskip("torch")
    from medseg.io import Image
    from medseg.prompt.apply import segment_with_prompt
    from medseg.prompt.finetune_config import PromptConfig
    from medseg.prompt.model import build_promptable

    torch.manual_seed(0)
    model = build_promptable(2, preset="tiny", image_size=(32, 32)).eval()
    config = PromptConfig(dataset="unused", image_size=(32, 32))
    image = sitk.GetArrayFromImage(
        sitk.ReadImage(str(dataset_of(results) / "imagesTr" / f"{CASE}_0000.nii.gz"))
    )
    box = [10, 10, 40, 50]
    mask, _ = segment_with_prompt(model, config, Image(image[16], (1.0, 1.0)), box=box)
    pred = reference_array(results)
    with client_for(results, prompt_model=(model, config)) as client:
        assert client.get("/api/session").json()["prompt"] is True
        answer = client.post(
            f"/api/cases/{CASE}/prompt",
            json={"plane": "axial", "index": 16, "box": box, "label": 1},
        )
        assert answer.status_code == 200, answer.text
        edit = png(client.get(f"/api/cases/{CASE}/slice", params={"index": 16, "layer": "edit"}))
        other = png(client.get(f"/api/cases/{CASE}/slice", params={"index": 15, "layer": "edit"}))
    inside = np.asarray(mask.array) > 0
    expected = np.where(inside, 1, np.where(pred[16] == 1, 0, pred[16]))
    np.testing.assert_array_equal(edit, expected)
    np.testing.assert_array_equal(other, pred[15])


def test_working_copies_without_unsaved_edits_are_evicted(results):
    from medseg.viewer import session as session_module

    with client_for(results) as client:
        session = client.app.state.session
        session_module_max = session_module.MAX_WORKING
        try:
            session_module.MAX_WORKING = 1
            client.post(
                f"/api/cases/{CASE}/edit",
                json={
                    "op": "brush",
                    "plane": "axial",
                    "index": 1,
                    "points": [[3, 3]],
                    "radius_mm": 1.0,
                    "label": 1,
                },
            )
            client.get("/api/cases/phantom_001/slice", params={"layer": "edit"})
            client.get("/api/cases/phantom_002/slice", params={"layer": "edit"})
        finally:
            session_module.MAX_WORKING = session_module_max
        assert list(session.working) == [CASE, "phantom_002"]  # the edited one stays


def test_uncertainty_map_is_an_overlay_in_0_255(results):
    from medseg.io import read_image, write_image

    pred = read_image(results / "predictions" / f"{CASE}.nii.gz")
    ramp = np.broadcast_to(np.linspace(0.0, 1.0, 64, dtype=np.float32), pred.array.shape).copy()
    folder = results / "predictions" / "uncertainty"
    folder.mkdir()
    write_image(pred.with_array(ramp), folder / f"{CASE}.nii.gz")
    with client_for(results) as client:
        assert "uncertainty" in client.get(f"/api/cases/{CASE}/meta").json()["layers"]
        shown = png(
            client.get(f"/api/cases/{CASE}/slice", params={"index": 4, "layer": "uncertainty"})
        )
    np.testing.assert_array_equal(shown, np.floor(ramp[4] * 255 + 0.5).astype(np.uint8))


def test_cross_validation_predictions_and_a_predictions_folder_are_found(results, tmp_path):
    import shutil

    from medseg.viewer import discover_cases

    config = results / "3d_fullres"
    for fold, case in ((0, "phantom_000"), (1, "phantom_001")):
        (config / f"fold_{fold}" / "validation").mkdir(parents=True)
        shutil.move(
            results / "predictions" / f"{case}.nii.gz",
            config / f"fold_{fold}" / "validation" / f"{case}.nii.gz",
        )
    (results / "evaluation").rename(tmp_path / "evaluation")
    (results / "evaluation" / "3d_fullres").mkdir(parents=True)
    shutil.move(
        tmp_path / "evaluation" / "per_case.csv",
        results / "evaluation" / "3d_fullres" / "per_case.csv",
    )
    shutil.move(results / "predictions", tmp_path / "predict_out")
    catalog = discover_cases(results)
    assert sorted(catalog.cases) == ["phantom_000", "phantom_001"]
    assert catalog.cases["phantom_001"].prediction.parent.parent.name == "fold_1"
    assert catalog.cases["phantom_000"].metrics["dice"] > 0
    other = discover_cases(results, predictions=tmp_path / "predict_out")
    assert sorted(other.cases) == ["phantom_002"]
