"""``medseg data phantoms --site``: simulated hospitals whose scanners differ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.cli.main import app
from medseg.data import load_dataset
from medseg.data.phantom_config import PhantomConfig
from medseg.errors import ConfigError
from medseg.io import read_image


def test_site_presets_change_what_they_say() -> None:
    base = PhantomConfig()
    assert base.at_site("a", spatial_dims=3) == base
    b = base.at_site("b", spatial_dims=3)
    assert b.noise_std == pytest.approx(3 * base.noise_std) and b.bias_strength == 0.5
    c = base.at_site("c", spatial_dims=3)
    _, spacing = base.fov_and_spacing(3)
    assert c.fov_and_spacing(3)[1] == (3 * spacing[0], *spacing[1:])
    assert c.contrast == pytest.approx(0.6 * base.contrast)
    with pytest.raises(ConfigError, match="site must be one of a, b, c"):
        base.at_site("z", spatial_dims=2)


def test_sites_from_the_cli_differ_as_scanners_do(tmp_path: Path) -> None:
    arrays = {}
    for site in ("a", "b", "c"):
        out = tmp_path / site
        args = ["data", "phantoms", str(out), "--dims", "2", "--cases", "2", "--site", site]
        result = CliRunner().invoke(app, [*args, "--size", "small"])
        assert result.exit_code == 0, result.output
        image = read_image(load_dataset(out).cases[0].image_paths[0])
        arrays[site] = image
    assert arrays["c"].spacing[0] == pytest.approx(3 * arrays["a"].spacing[0])
    assert arrays["c"].spacing[1:] == arrays["a"].spacing[1:]
    # the same anatomy (seed) on the same grid: site b adds noise and a bias field
    difference = arrays["b"].array.astype(float) - arrays["a"].array.astype(float)
    assert np.abs(difference).mean() > 0.01
    assert arrays["b"].array.shape == arrays["a"].array.shape
