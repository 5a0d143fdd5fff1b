"""``medseg nets list`` prints every network with 2D and 3D parameter counts."""

from __future__ import annotations

from typer.testing import CliRunner

from medseg.cli.nets import app
from medseg.nets import build_network, count_parameters, list_networks


def test_nets_list_prints_every_network_with_parameter_counts() -> None:
    result = CliRunner().invoke(app, ["list"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for name in list_networks():
        assert name in result.output
    unet_2d = count_parameters(build_network("unet", spatial_dims=2, in_channels=1, out_channels=2))
    unet_3d = count_parameters(build_network("unet", spatial_dims=3, in_channels=1, out_channels=2))
    assert f"{unet_2d:,}" in result.output and f"{unet_3d:,}" in result.output
