"""Files a user hands medseg are data, never code: a crafted checkpoint whose unpickling would run
a payload is refused by every command that reads weights, and the payload never runs.

The payload (``os.mkdir(MARKER)``) is what an attacker's ``__reduce__`` would do with a worse
function; a command that unpickled the file with ``weights_only=False`` creates MARKER.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.data.phantom_config import PhantomConfig
from medseg.data.phantoms import generate_dataset
from medseg.data.phantoms_classification import make_classification_phantoms
from medseg.errors import ConfigError, UnsafeFileError
from medseg.pipeline import plan, preprocess
from medseg.planning import planner
from medseg.planning.plan import Plans
from medseg.training.checkpoint import load_checkpoint, rng_state, set_rng_state
from medseg.training.splits import make_splits

pytestmark = pytest.mark.slow
SMALL_NET = {
    "features": [4, 8],
    "kernel_sizes": [[3, 3, 3], [3, 3, 3]],
    "strides": [[1, 1, 1], [2, 2, 2]],
}


class Payload:
    """Unpickling this calls ``os.mkdir(marker)``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def craft(path: Path, marker: Path, **extra: object) -> Path:
    """A checkpoint that looks like medseg's, with the payload in its plan and config."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "network_state": {"w": torch.zeros(1)},
            "plan": Payload(marker),
            "classifier_config": Payload(marker),
            "epoch": 1,
            **extra,
        },
        path,
    )
    return path


def _medseg(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "medseg.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
        env=env,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A planned + preprocessed 3D phantom set (with a cascade stage) and a classification set."""
    root = tmp_path_factory.mktemp("unsafe")
    data = generate_dataset(
        root / "data",
        spatial_dims=3,
        num_cases=4,
        seed=0,
        config=PhantomConfig(spacing=(4.0, 4.0, 4.0)),
    )
    results = root / "results"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            planner, "LOWRES_FACTOR", 0.5
        )  # force a 3d_lowres + cascade plan on 16^3 phantoms
        plans = plan(data, results, progress=False)
    small = {
        n: replace(p, network_config={**p.network_config, **SMALL_NET}, batch_size=2)
        if p.spatial_dims == 3
        else p
        for n, p in plans.configurations.items()
    }
    Plans(plans.dataset_name, plans.dataset_path, small).to_json(results / "plans.json")
    preprocess(results, configurations=["3d_lowres", "3d_fullres"], jobs=1, progress=False)
    (results / "splits.json").write_text(
        json.dumps(make_splits([f"phantom_{i:03d}" for i in range(4)], num_folds=2)),
        encoding="utf-8",
    )
    classes = make_classification_phantoms(root / "classes", n_per_class=4, spatial_dims=2, size=16)
    return {"root": root, "data": data, "results": results, "classes": classes}


def _command(name: str, world: dict[str, Path], marker: Path, tmp: Path) -> list[object]:
    """Put the crafted file where the command reads weights; return the command line."""
    results, classes = world["results"], world["classes"]
    if name == "predict":
        craft(results / "3d_fullres" / "fold_0" / "checkpoint_best.pt", marker)
        return [
            "predict",
            "-i",
            world["data"] / "imagesTr",
            "-o",
            tmp / "out",
            "-m",
            results,
            "--config",
            "3d_fullres",
        ]
    if name == "train --resume":
        craft(results / "3d_fullres" / "fold_1" / "checkpoint_latest.pt", marker)
        return [
            "train",
            results,
            "--config",
            "3d_fullres",
            "--fold",
            "1",
            "--resume",
            "--epochs",
            "1",
        ]
    if name == "prepare-cascade":
        craft(results / "3d_lowres" / "fold_0" / "checkpoint_best.pt", marker)
        return ["prepare-cascade", results]
    if name == "classify train --pretrained":
        return [
            "classify",
            "train",
            classes,
            "-o",
            tmp / "run",
            "--pretrained",
            craft(tmp / "w.pt", marker),
            "--epochs",
            "1",
        ]
    if name == "classify train --resume":
        craft(tmp / "run" / "fold_0" / "checkpoint_latest.pt", marker)
        return ["classify", "train", classes, "-o", tmp / "run", "--resume", "--epochs", "1"]
    craft(tmp / "run" / "fold_0" / "checkpoint_best.pt", marker)
    if name == "classify predict":
        return ["classify", "predict", tmp / "run", classes, "-o", tmp / "p.csv"]
    return ["classify", "explain", tmp / "run", classes]


@pytest.mark.parametrize(
    "name",
    [
        "predict",
        "train --resume",
        "prepare-cascade",
        "classify train --pretrained",
        "classify train --resume",
        "classify predict",
        "classify explain",
    ],
)
def test_a_crafted_checkpoint_is_refused_and_its_payload_never_runs(
    name: str, world: dict[str, Path], tmp_path: Path
) -> None:
    marker = tmp_path / "payload_ran"
    done = _medseg(*_command(name, world, marker, tmp_path))
    assert not marker.exists(), f"{name}: the payload ran"
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert (
        lines[-1].startswith("error: ")
        and "refused" in lines[-1]
        and "Traceback" not in done.stderr
    )


def test_load_checkpoint_names_the_file_and_the_objects_it_refuses(tmp_path: Path) -> None:
    marker = tmp_path / "payload_ran"
    path = craft(tmp_path / "evil.pt", marker)
    for kind in ("segmentation", "classification", "weights"):
        with pytest.raises(UnsafeFileError, match=r"evil\.pt: refused.*mkdir"):
            load_checkpoint(path, kind=kind)
    assert not marker.exists()


def test_a_checkpoint_holds_only_tensors_and_plain_values(tmp_path: Path) -> None:
    torch.save({"network_state": {}, "plan": {}, "rng_state": rng_state()}, tmp_path / "c.pt")
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "c.pt") == []


def test_rng_state_round_trips_through_a_safe_checkpoint(tmp_path: Path) -> None:
    np.random.seed(3)
    torch.manual_seed(3)
    torch.save({"network_state": {}, "plan": {}, "rng_state": rng_state()}, tmp_path / "c.pt")
    expected = (np.random.rand(3), torch.rand(3))
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng_state"])
    np.testing.assert_array_equal(np.random.rand(3), expected[0])
    torch.testing.assert_close(torch.rand(3), expected[1], rtol=0, atol=0)


def test_an_older_checkpoint_with_numpy_rng_arrays_still_loads(tmp_path: Path) -> None:
    np.random.seed(7)
    old = {
        "python": __import__("random").getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    torch.save({"network_state": {}, "plan": {}, "rng_state": old}, tmp_path / "old.pt")
    expected = np.random.rand(2)
    set_rng_state(load_checkpoint(tmp_path / "old.pt")["rng_state"])
    np.testing.assert_array_equal(np.random.rand(2), expected)


def test_a_corrupt_or_foreign_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match=r"junk\.pt: cannot read checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ConfigError, match="expected a dict"):
        load_checkpoint(tmp_path / "list.pt")
    torch.save({"network_state": {}}, tmp_path / "noplan.pt")
    with pytest.raises(ConfigError, match="no plan"):
        load_checkpoint(tmp_path / "noplan.pt")
