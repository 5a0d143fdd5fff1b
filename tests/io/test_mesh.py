"""Surface meshes of label maps: area of a voxelised sphere, watertightness, world position."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from medseg.errors import ConfigError, OverwriteError
from medseg.io import Image
from medseg.io.mesh import label_meshes, write_meshes

trimesh = pytest.importorskip("trimesh")
pytest.importorskip("skimage")

RADIUS = 15.0  # mm
SPACING = (2.0, 0.8, 1.0)  # (z, y, x) mm: anisotropic
# a rotation about the world z axis by 30 degrees, and x/z swapped: a non-identity direction
_C, _S = math.cos(math.pi / 6), math.sin(math.pi / 6)
DIRECTION = np.array([[0.0, -_S, _C], [0.0, _C, _S], [1.0, 0.0, 0.0]])  # rows: world x, y, z
ORIGIN = (-40.0, 12.5, 100.0)


def sphere_image() -> tuple[Image, np.ndarray]:
    """A voxelised sphere of radius 15 mm (label 1) on an anisotropic, rotated grid; returns
    the image and the sphere's centre in world mm."""
    shape = tuple(int(math.ceil(2 * RADIUS / s)) + 6 for s in SPACING)
    grid = Image(np.zeros(shape, np.uint8), SPACING, ORIGIN, tuple(DIRECTION.ravel()))
    index = np.indices(shape).reshape(3, -1).T
    world = grid.index_to_world(index)
    centre = grid.index_to_world(((np.array(shape) - 1) / 2 + [0.3, 0.2, -0.1])[None])[0]
    inside = np.linalg.norm(world - centre, axis=1) <= RADIUS
    return grid.with_array(inside.reshape(shape).astype(np.uint8)), centre


def test_direction_is_a_rotation_with_reflection() -> None:
    assert np.allclose(DIRECTION @ DIRECTION.T, np.eye(3))  # the test grid is orthonormal


def test_plain_marching_cubes_overestimates_sphere_area_but_keeps_volume() -> None:
    image, _ = sphere_image()
    mesh = label_meshes(image)[1]
    area_error = mesh.area / (4 * math.pi * RADIUS**2) - 1
    assert 0.05 < area_error < 0.2  # the voxel staircase (measured: +14 %)
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * RADIUS**3, rel=0.01)


def test_smoothed_sphere_area_within_3_percent_watertight_and_centred_in_world() -> None:
    image, centre = sphere_image()
    mesh = label_meshes(image, smoothing_iterations=50)[1]
    assert mesh.area == pytest.approx(4 * math.pi * RADIUS**2, rel=0.03)
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * RADIUS**3, rel=0.01)  # outward normals
    assert mesh.is_watertight
    np.testing.assert_allclose(mesh.vertices.mean(axis=0), centre, atol=0.1)
    radii = np.linalg.norm(mesh.vertices - centre, axis=1)
    assert abs(radii.mean() - RADIUS) < 0.5


def test_mesh_touching_the_border_is_closed() -> None:
    mask = np.zeros((4, 5, 6), np.uint8)
    mask[:, :3, :] = 2  # touches four faces of the volume
    mesh = label_meshes(Image(mask, (1.0, 2.0, 3.0)))[2]
    assert mesh.is_watertight
    # iso-level 0.5 lies half-way to the (padded) outside voxel centres on every side, so the
    # box spans n voxels * spacing per axis, in world x, y, z = array x, y, z reversed
    np.testing.assert_allclose(mesh.extents, [6 * 3.0, 3 * 2.0, 4 * 1.0], atol=1e-6)


def test_write_meshes_one_file_per_label_and_single_file_for_one(tmp_path: Path) -> None:
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[1:3, 1:3, 1:3] = 1
    mask[3:5, 3:5, 3:5] = 4
    image = Image(mask, (1.0, 1.0, 1.0))
    written = write_meshes(image, tmp_path / "out.stl", names={1: "liver", 4: "tumour core"})
    assert [p.name for p in written] == ["out_liver.stl", "out_tumour_core.stl"]
    back = trimesh.load(written[1])
    assert back.is_watertight and back.volume > 0
    one = write_meshes(image, tmp_path / "one.ply", labels=[4])
    assert one == [tmp_path / "one.ply"] and trimesh.load(one[0]).is_watertight
    with pytest.raises(OverwriteError):
        write_meshes(image, tmp_path / "one.ply", labels=[4])
    assert write_meshes(image, tmp_path / "one.ply", labels=[4], overwrite=True) == one
    with pytest.raises(ConfigError, match="unsupported mesh format"):
        write_meshes(image, tmp_path / "out.vtk")


def test_empty_mask_warns_and_writes_nothing(tmp_path: Path) -> None:
    image = Image(np.zeros((4, 4, 4), np.uint8), (1.0, 1.0, 1.0))
    with pytest.warns(UserWarning, match="no foreground"):
        assert write_meshes(image, tmp_path / "empty.stl") == []
    assert not any(tmp_path.iterdir())


def test_missing_mesh_extra_names_the_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "trimesh", None)  # import trimesh now fails
    with pytest.raises(ConfigError, match=r'trimesh is missing.*pip install "medseg\[mesh\]"'):
        label_meshes(Image(np.ones((2, 2, 2), np.uint8), (1.0, 1.0, 1.0)))
