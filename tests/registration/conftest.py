"""A small 2D registration phantom shared by the registration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.data.phantoms_registration import generate_registration_dataset


@pytest.fixture(scope="session")
def phantom_2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_registration_dataset(
        tmp_path_factory.mktemp("registration_phantom") / "ds", spatial_dims=2, num_cases=12
    )
