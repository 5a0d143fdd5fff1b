"""Phantom results folders for the viewer tests (small 3D phantoms, 32 x 64 x 64)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from medseg.data.phantom_config import PhantomConfig  # noqa: E402
from medseg.data.phantoms import generate_dataset  # noqa: E402
from medseg.evaluation.folders import evaluate_folders  # noqa: E402
from medseg.io import Image, read_image, write_image  # noqa: E402
from medseg.viewer.app import create_app  # noqa: E402

TOKEN = "test-token-0123456789"
HOST = {"host": "127.0.0.1"}


def make_results(
    root: Path, num_cases: int = 3, *, evaluate: bool = True, fov_mm: tuple | None = None
) -> Path:
    """``root/ds`` (phantoms) and ``root/res``: plans.json, predictions (the reference with
    its first 6 rows of every slice cleared), evaluation/per_case.csv."""
    config = PhantomConfig(fov_mm=fov_mm) if fov_mm else None
    dataset = generate_dataset(root / "ds", num_cases=num_cases, seed=3, config=config)
    results = root / "res"
    (results / "predictions").mkdir(parents=True)
    (results / "plans.json").write_text(json.dumps({"dataset_path": str(dataset)}))
    for k, label_path in enumerate(sorted((dataset / "labelsTr").glob("*.nii.gz"))):
        label = read_image(label_path)
        pred = np.array(label.array)
        pred[:, : 20 + 4 * (k % 5), :] = 0  # a different error per case: different Dice
        write_image(label.with_array(pred), results / "predictions" / label_path.name)
    if evaluate:
        evaluate_folders(
            results / "predictions", dataset / "labelsTr", results / "evaluation", jobs=1
        )
    return results


def dataset_of(results: Path) -> Path:
    return Path(json.loads((results / "plans.json").read_text())["dataset_path"])


def write_like(path: Path, array: np.ndarray, like: Image, **geometry) -> None:
    image = Image(array, geometry.get("spacing", like.spacing), like.origin, like.direction)
    write_image(image, path, overwrite=True)


def client_for(root: Path, **options) -> TestClient:
    app = create_app(root, token=TOKEN, user="tester", **options)
    client = TestClient(app, base_url="http://127.0.0.1")
    client.headers.update({"x-medseg-token": TOKEN})
    return client


@pytest.fixture(scope="session")
def results_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_results(tmp_path_factory.mktemp("viewer"))


@pytest.fixture
def results(results_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the results folder (the phantom dataset is shared, read-only)."""
    return Path(shutil.copytree(results_template, tmp_path / "res"))


@pytest.fixture
def client(results: Path) -> TestClient:
    with client_for(results) as c:
        yield c
