"""A time-axis (cine) dataset is refused by ``medseg plan`` with how to train it per frame, and
its 4D images are refused where a 3D image with channels is expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.data import load_dataset
from medseg.data.dataset import read_case
from medseg.data.phantoms_cine import write_cine_dataset
from medseg.errors import DatasetError
from medseg.pipeline import plan


@pytest.fixture(scope="module")
def cine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cine") / "data"
    write_cine_dataset(out, num_cases=2, frames=6, shape=(4, 24, 24), spacing=(6.0, 2.0, 2.0))
    return out


def test_plan_refuses_a_time_axis_dataset_naming_the_per_frame_route(
    cine: Path, tmp_path: Path
) -> None:
    with pytest.raises(DatasetError, match="time-axis dataset.*cine-to-frames"):
        plan(cine, tmp_path / "results", progress=False, jobs=1)
    assert not (tmp_path / "results" / "plans.json").exists()


def test_a_4d_series_read_as_a_3d_case_names_the_file_and_the_frame_command(cine: Path) -> None:
    case = load_dataset(cine).cases[0]
    with pytest.raises(DatasetError, match=rf"{case.image_paths[0].name}.*medseg data frame"):
        read_case(case, num_channels=1)
