"""Review workflow: audit chain, export to a dataset, a scripted review of 20 cases."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import SimpleITK as sitk
from tests.viewer.conftest import client_for, make_results

from medseg.data.dataset import load_dataset
from medseg.errors import ConfigError, OverwriteError
from medseg.viewer import export_reviewed, verify_audit
from medseg.viewer.storage import sha256_file

BRUSH = {
    "op": "brush",
    "plane": "axial",
    "index": 12,
    "points": [[10, 10], [10, 30]],
    "radius_mm": 3.0,
    "label": 1,
}


def review(client, case, *, correct: bool) -> None:
    client.get(f"/api/cases/{case}/meta")
    if correct:
        assert client.post(f"/api/cases/{case}/edit", json=BRUSH).status_code == 200
        base = client.get(f"/api/cases/{case}/meta").json()["edit"]["base_version"]
        assert (
            client.post(f"/api/cases/{case}/save", json={"base_version": base}).status_code == 200
        )
    assert client.post(f"/api/cases/{case}/accept", json={}).status_code == 200


def test_audit_log_records_saves_and_accepts_with_hashes(client, results):
    review(client, "phantom_001", correct=True)
    review(client, "phantom_002", correct=False)
    lines = (results / "audit.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["action"] for e in entries] == ["save", "accept", "accept"]
    save = entries[0]
    assert save["user"] == "tester" and save["case"] == "phantom_001" and save["version"] == 1
    assert save["sha256"] == sha256_file(results / "corrections" / "phantom_001" / "v1.nii.gz")
    assert save["changed"]["organ"] > 0 and save["seconds"] >= 0
    assert save["time"].endswith("+00:00")
    assert entries[1]["prev"] == entries[0]["hash"] and entries[0]["prev"] == "0" * 64
    assert entries[1]["case"] == "phantom_001"
    check = verify_audit(results / "audit.jsonl")
    assert check.ok and check.lines == 3 and check.head == entries[-1]["hash"]


def test_audit_check_finds_an_edited_line(client, results):
    for case in ("phantom_000", "phantom_001", "phantom_002"):
        review(client, case, correct=False)
    path = results / "audit.jsonl"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"user": "tester"', '"user": "someone"')
    path.write_text("\n".join(lines) + "\n")
    check = verify_audit(path)
    assert not check.ok and check.first_bad == 2 and "hash" in check.reason


def test_audit_check_finds_a_removed_line(client, results):
    for case in ("phantom_000", "phantom_001", "phantom_002"):
        review(client, case, correct=False)
    path = results / "audit.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[2]]) + "\n")
    check = verify_audit(path)
    assert not check.ok and check.first_bad == 2 and "chain" in check.reason


def test_export_writes_reviewed_cases_as_an_msd_dataset(client, results, tmp_path):
    review(client, "phantom_000", correct=True)
    review(client, "phantom_001", correct=False)
    out = tmp_path / "reviewed"
    assert export_reviewed(results, out, user="tester") == ["phantom_000", "phantom_001"]
    dataset = load_dataset(out)
    assert dataset.layout == "msd" and [c.case_id for c in dataset.cases] == [
        "phantom_000",
        "phantom_001",
    ]
    corrected = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / "phantom_000.nii.gz")))
    v1 = sitk.GetArrayFromImage(
        sitk.ReadImage(str(results / "corrections" / "phantom_000" / "v1.nii.gz"))
    )
    np.testing.assert_array_equal(corrected, v1)
    accepted = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labelsTr" / "phantom_001.nii.gz")))
    pred = sitk.GetArrayFromImage(
        sitk.ReadImage(str(results / "predictions" / "phantom_001.nii.gz"))
    )
    np.testing.assert_array_equal(accepted, pred)
    assert dataset.labels["organ"] == 1
    assert json.loads((results / "audit.jsonl").read_text().splitlines()[-1])["action"] == "export"
    with pytest.raises(OverwriteError):
        export_reviewed(results, out)


def test_export_without_reviews_is_refused(results, tmp_path):
    with pytest.raises(ConfigError, match="no accepted or corrected"):
        export_reviewed(results, tmp_path / "out")


def test_scripted_review_of_20_cases(tmp_path):
    results = make_results(tmp_path, num_cases=20, evaluate=False, fov_mm=(40.0, 48.0, 48.0))
    start = time.perf_counter()
    with client_for(results) as client:
        cases = [
            row["id"] for row in client.get("/api/cases", params={"sort": "dice"}).json()["cases"]
        ]
        for k, case in enumerate(cases):
            for plane in ("axial", "coronal", "sagittal"):
                assert (
                    client.get(
                        f"/api/cases/{case}/slice", params={"plane": plane, "index": 10}
                    ).status_code
                    == 200
                )
            review(client, case, correct=k % 4 == 0)
        statuses = [r["status"] for r in client.get("/api/cases").json()["cases"]]
    elapsed = time.perf_counter() - start
    print(f"\nscripted review of 20 phantom cases (15 accepted, 5 corrected): {elapsed:.2f} s")  # noqa: T201
    assert statuses.count("accepted") == 15 and statuses.count("corrected") == 5
    assert verify_audit(results / "audit.jsonl").lines == 25
