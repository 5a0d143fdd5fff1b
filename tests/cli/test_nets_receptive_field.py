"""``medseg nets receptive-field NAME [--plan RESULTS]`` prints each stage's receptive field."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from medseg.cli.main import app
from medseg.planning.plan import Plan, Plans


def _anisotropic_plans(results: Path) -> None:
    plan = Plan(
        configuration="3d_fullres",
        spatial_dims=3,
        spacing=(3.0, 0.5, 0.5),
        median_shape=(20, 100, 100),
        patch_size=(16, 64, 64),
        batch_size=2,
        normalization=("zscore",),
        intensity={},
        num_classes=2,
        in_channels=1,
        labels={"background": 0, "organ": 1},
        network_config={
            "features": [4, 8, 16],
            "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
            "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]],
        },
    )
    results.mkdir()
    Plans("toy", str(results), {"3d_fullres": plan}).to_json(results / "plans.json")


def _rows(output: str) -> dict[str, list[str]]:
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if cells and cells[0].startswith(("encoder", "decoder")):
            rows[cells[0]] = cells[1:]
    return rows


def test_the_plan_s_anisotropic_kernels_strides_and_spacing_are_used(tmp_path: Path) -> None:
    _anisotropic_plans(tmp_path / "results")
    result = CliRunner().invoke(
        app,
        ["nets", "receptive-field", "unet", "--plan", str(tmp_path / "results")],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    rows = _rows(result.output)
    # hand count in tests/nets/test_receptive_field.py (HAND_3D_Z, HAND_2D)
    assert rows["encoder 0"][:2] == ["1 x 5 x 5", "3 x 2.5 x 2.5"]
    assert rows["encoder 2"][:3] == ["11 x 23 x 23", "33 x 11.5 x 11.5", "2 x 4 x 4"]
    assert rows["decoder 0"][:2] == ["15 x 35 x 35", "45 x 17.5 x 17.5"]
    assert "3d_fullres" in result.output


def test_without_a_plan_the_default_network_at_1_mm(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["nets", "receptive-field", "unet", "--dims", "2"], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    rows = _rows(result.output)
    # default: 5 stages, 3x3, strides 2: encoder 4 = 1 + 2*(1+1) + 4*(2+4+8) + 2*16 = 95
    assert rows["encoder 4"][:2] == ["95 x 95", "95 x 95"]
    assert rows["decoder 0"][0] == "155 x 155"


def test_a_network_other_than_the_plan_s_is_one_line_error(tmp_path: Path) -> None:
    _anisotropic_plans(tmp_path / "results")
    result = CliRunner().invoke(
        app, ["nets", "receptive-field", "residual_unet", "--plan", str(tmp_path / "results")]
    )
    assert result.exit_code == 1
    assert "uses network 'unet', not 'residual_unet'" in str(result.exception)


def test_an_unknown_network_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["nets", "receptive-field", "unetx"], terminal_width=200)
    assert result.exit_code == 2 and "unknown network 'unetx'" in result.output
