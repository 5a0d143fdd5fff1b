"""Every refusal of the issue's "Bad input" and "Security" lists, one test each."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from tests.viewer.conftest import TOKEN, client_for, dataset_of, write_like

from medseg.errors import ConfigError
from medseg.io import read_image
from medseg.viewer.app import create_app
from medseg.viewer.security import failure_delay, host_allowed, inside, token_matches

CASE = "phantom_000"
ENDPOINTS = [
    ("GET", "/"),
    ("GET", "/static/viewer.js"),
    ("GET", "/api/session"),
    ("GET", "/api/cases"),
    ("GET", f"/api/cases/{CASE}/meta"),
    ("GET", f"/api/cases/{CASE}/slice"),
    ("POST", f"/api/cases/{CASE}/edit"),
    ("POST", f"/api/cases/{CASE}/save"),
    ("POST", f"/api/cases/{CASE}/accept"),
    ("POST", f"/api/cases/{CASE}/prompt"),
]


@pytest.fixture
def bare(results):
    """A client without the token."""
    with TestClient(create_app(results, token=TOKEN), base_url="http://127.0.0.1") as c:
        yield c


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_no_endpoint_answers_without_the_token(bare, method, url):
    response = bare.request(method, url, json={})
    assert response.status_code == 401
    assert TOKEN not in response.text


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_a_wrong_token_is_403(bare, method, url):
    response = bare.request(method, url, json={}, headers={"x-medseg-token": "wrong"})
    assert response.status_code == 403


def test_first_visit_sets_a_strict_httponly_cookie_then_the_page_loads(bare):
    first = bare.get("/", params={"token": TOKEN}, follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/"
    cookie = first.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = bare.get("/")  # the cookie now carries the token
    assert page.status_code == 200 and "<canvas" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert "access-control-allow-origin" not in page.headers


def test_a_cookie_alone_does_not_authorise_a_change(bare):
    bare.get("/", params={"token": TOKEN})
    assert bare.get("/api/cases").status_code == 200
    response = bare.post(f"/api/cases/{CASE}/accept", json={})
    assert response.status_code == 401


def test_repeated_failures_are_slowed_down(results):
    delays = []

    async def record(seconds):
        delays.append(seconds)

    app = create_app(results, token=TOKEN, sleep=record)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for _ in range(8):
            assert client.get("/api/cases", headers={"x-medseg-token": "x"}).status_code == 403
    assert delays == [failure_delay(n) for n in (6, 7, 8)] == [0.1, 0.2, 0.4]


@pytest.mark.parametrize("host", ["evil.example.com", "127.0.0.1.evil.com", "10.0.0.1:80", ""])
def test_a_foreign_host_header_is_refused(client, host):
    response = client.get("/api/cases", headers={"host": host})
    assert response.status_code == 400


def test_loopback_host_names_are_accepted():
    assert all(host_allowed(h) for h in ("127.0.0.1:8000", "localhost", "[::1]:9000"))
    assert token_matches(TOKEN, TOKEN) and not token_matches("", TOKEN)


def test_unknown_case_is_404(client):
    response = client.get("/api/cases/phantom_999/meta")
    assert response.status_code == 404 and "phantom_999" not in response.text


@pytest.mark.parametrize(
    "case",
    [
        "..%2F..%2Fplans.json",  # ../ encoded
        "%2e%2e%2f%2e%2e%2fplans.json",  # %2e%2e%2f
        "%2Fetc%2Fpasswd",  # absolute
        "..%5C..%5Cplans.json",  # backslashes
        "phantom_000%00.nii.gz",  # NUL byte
    ],
)
def test_traversal_in_any_form_is_refused_without_echo(client, case):
    for url in (f"/api/cases/{case}/meta", f"/api/cases/{case}/slice?index=0", f"/static/{case}"):
        response = client.get(url)
        assert response.status_code in (404, 400), url
        for fragment in ("passwd", "plans", "etc", ".."):
            assert fragment not in response.text
    assert client.post(f"/api/cases/{case}/save", json={"base_version": 0}).status_code == 404
    response = client.get(f"/api/cases/{CASE}/slice?index={case}")  # FastAPI would echo it
    assert response.status_code == 400 and "index" in response.text
    for fragment in ("passwd", "plans", "etc", ".."):
        assert fragment not in response.text


def test_a_symlink_leading_outside_is_refused(results, tmp_path):
    outside = tmp_path / "outside.nii.gz"
    shutil.copy(results / "predictions" / f"{CASE}.nii.gz", outside)
    (results / "predictions" / f"{CASE}.nii.gz").unlink()
    os.symlink(outside, results / "predictions" / f"{CASE}.nii.gz")
    assert not inside(results / "predictions" / f"{CASE}.nii.gz", [results])
    with client_for(results) as client:
        row = next(r for r in client.get("/api/cases").json()["cases"] if r["id"] == CASE)
        assert "outside" in row["problem"]
        for url in (f"/api/cases/{CASE}/meta", f"/api/cases/{CASE}/slice?layer=prediction"):
            response = client.get(url)
            assert response.status_code == 403 and str(tmp_path) not in response.text


@pytest.mark.parametrize(("plane", "index"), [("axial", 32), ("coronal", 64), ("axial", -1)])
def test_slice_index_out_of_range_is_400(client, plane, index):
    response = client.get(f"/api/cases/{CASE}/slice", params={"plane": plane, "index": index})
    assert response.status_code == 400 and "outside" in response.text


def test_unknown_plane_and_layer_are_400(client):
    assert client.get(f"/api/cases/{CASE}/slice", params={"plane": "oblique"}).status_code == 400
    assert client.get(f"/api/cases/{CASE}/slice", params={"layer": "../x"}).status_code == 400


def test_a_label_not_in_dataset_json_is_refused(client):
    body = {
        "op": "brush",
        "plane": "axial",
        "index": 1,
        "points": [[3, 3]],
        "radius_mm": 2.0,
        "label": 9,
    }
    response = client.post(f"/api/cases/{CASE}/edit", json=body)
    assert response.status_code == 400 and "not in dataset.json" in response.text


def test_a_prediction_on_another_grid_is_flagged_and_its_overlay_refused(results):
    path = results / "predictions" / f"{CASE}.nii.gz"
    pred = read_image(path)
    write_like(path, np.asarray(pred.array)[:, :-2], pred)  # two rows fewer
    with client_for(results) as client:
        row = next(r for r in client.get("/api/cases").json()["cases"] if r["id"] == CASE)
        assert "shape" in row["problem"]
        assert "prediction" not in client.get(f"/api/cases/{CASE}/meta").json()["layers"]
        overlay = client.get(f"/api/cases/{CASE}/slice", params={"layer": "prediction"})
        assert overlay.status_code == 409
        assert client.get(f"/api/cases/{CASE}/slice").status_code == 200


def test_oversized_and_non_json_bodies_are_refused(client):
    big = client.post(f"/api/cases/{CASE}/edit", content=b"x" * (2 << 20))
    assert big.status_code == 413
    bad = client.post(f"/api/cases/{CASE}/edit", content=b"not json")
    assert bad.status_code == 400


def test_edits_never_go_into_the_dataset_folder(results, tmp_path):
    dataset = dataset_of(results)
    with pytest.raises(ConfigError, match="dataset folder"):
        create_app(dataset, output=dataset / "edits")
    with client_for(dataset) as client:  # no -o: read-only
        assert client.get("/api/session").json()["read_only"] is True
        assert client.post(f"/api/cases/{CASE}/accept", json={}).status_code == 403
    with client_for(dataset, output=tmp_path / "out") as client:
        assert client.post(f"/api/cases/{CASE}/accept", json={}).status_code == 200
    assert (tmp_path / "out" / "corrections" / CASE / "status.json").exists()
