"""``medseg classic METHOD``, ``medseg classic list`` and ``medseg classic benchmark``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.cli.main import app
from medseg.data.phantom_config import PhantomConfig
from medseg.data.phantoms import generate_dataset
from medseg.errors import ConfigError
from medseg.io import Image, read_image, write_image
from medseg.pipeline.classic_run import parse_method_options


def _square(path: Path, value: float = 100.0) -> Path:
    array = np.zeros((16, 20), np.float32)
    array[4:12, 5:15] = value
    array += np.random.default_rng(0).normal(0, 3, array.shape).astype(np.float32)
    return write_image(Image(array, (1.0, 1.0)), path)


def test_otsu_on_a_file_writes_the_thresholded_square(tmp_path: Path) -> None:
    image = _square(tmp_path / "img.nii.gz")
    result = CliRunner().invoke(
        app, ["classic", "otsu", "-i", str(image), "-o", str(tmp_path / "seg.nii.gz")]
    )
    assert result.exit_code == 0, result.output
    segmentation = read_image(tmp_path / "seg.nii.gz").array
    expected = np.zeros((16, 20), bool)
    expected[4:12, 5:15] = True
    np.testing.assert_array_equal(segmentation > 0, expected)
    assert "wrote 1 label map" in result.output


def test_region_growing_on_a_folder_with_seeds_and_typed_options(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    _square(tmp_path / "in" / "a_0000.nii.gz")
    _square(tmp_path / "in" / "b_0000.nii.gz", value=50.0)
    args = ["classic", "region_grow", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out")]
    result = CliRunner().invoke(
        app, [*args, "--seed", "8,10", "--set", "lower=25", "--set", "upper=200"]
    )
    assert result.exit_code == 0, result.output
    for case in ("a", "b"):
        grown = read_image(tmp_path / "out" / f"{case}.nii.gz").array > 0
        assert grown.sum() == 8 * 10 and grown[8, 10]
    # no seed: one clear error naming the option
    result = CliRunner().invoke(app, [*args, "--overwrite"])
    assert isinstance(result.exception, ConfigError) and "--seed" in str(result.exception)


def test_an_unknown_method_lists_the_registered_ones(tmp_path: Path) -> None:
    image = _square(tmp_path / "img.nii.gz")
    result = CliRunner().invoke(
        app, ["classic", "watershed", "-i", str(image), "-o", str(tmp_path / "s.nii.gz")]
    )
    assert isinstance(result.exception, ConfigError)
    message = str(result.exception)
    assert "otsu" in message and "region_grow" in message and "\n" not in message


def test_a_bad_seed_stops_at_parse_time(tmp_path: Path) -> None:
    image = _square(tmp_path / "img.nii.gz")
    result = CliRunner().invoke(
        app,
        ["classic", "region_grow", "-i", str(image), "-o", str(tmp_path / "s.nii.gz")]
        + ["--seed", "8,x"],
    )
    assert result.exit_code == 2 and "--seed" in result.output


def test_options_are_typed_by_the_method_signature() -> None:
    assert parse_method_options("otsu", ["classes=3"]) == {"classes": 3}
    assert parse_method_options("region_grow", ["mode=confidence", "lower=none"]) == {
        "mode": "confidence",
        "lower": None,
    }
    with pytest.raises(ConfigError, match="expected int"):
        parse_method_options("otsu", ["classes=two"])
    with pytest.raises(ConfigError, match="confidence"):
        parse_method_options("region_grow", ["mode=fuzzy"])
    with pytest.raises(ConfigError, match="valid options"):
        parse_method_options("otsu", ["bins=3"])


def test_list_shows_every_method_with_its_options() -> None:
    result = CliRunner().invoke(app, ["classic", "list"])
    assert result.exit_code == 0, result.output
    assert "otsu:" in result.output and "region_grow:" in result.output
    assert "classes" in result.output


def test_benchmark_prints_and_writes_the_table(tmp_path: Path) -> None:
    config = PhantomConfig(fov_mm=(40.0, 40.0))
    data = generate_dataset(tmp_path / "p", spatial_dims=2, num_cases=3, seed=2, config=config)
    out = tmp_path / "bench"
    result = CliRunner().invoke(
        app,
        ["classic", "benchmark", str(data), "-o", str(out), "--methods", "otsu,region_grow"]
        + ["--cases", "1", "--set", "region_grow.multiplier=3"],
    )
    assert result.exit_code == 0, result.output
    assert "| otsu | foreground |" in result.output
    assert "| region_grow * | foreground |" in result.output
    table = json.loads((out / "classic_benchmark.json").read_text("utf-8"))
    assert len(table["evaluated_cases"]) == 1
    assert (out / "region_grow" / "evaluation" / "per_case.csv").is_file()


def test_benchmark_passes_cnn_minutes_and_refuses_a_tiny_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medseg.pipeline.classic as classic_pipeline

    seen: dict[str, object] = {}

    def fake_benchmark(dataset, out, **options):
        seen.update(options)
        return {"rows": []}

    monkeypatch.setattr(classic_pipeline, "classic_benchmark", fake_benchmark)
    monkeypatch.setattr(classic_pipeline, "format_table", lambda table: "table")
    args = ["classic", "benchmark", str(tmp_path), "-o", str(tmp_path / "bench")]
    result = CliRunner().invoke(app, [*args, "--cnn-minutes", "2.5"])
    assert result.exit_code == 0, result.output
    assert seen["cnn_minutes"] == 2.5
    refused = CliRunner().invoke(app, [*args, "--cnn-minutes", "0"], env={"COLUMNS": "200"})
    assert refused.exit_code == 2
    assert "--cnn-minutes" in refused.output
