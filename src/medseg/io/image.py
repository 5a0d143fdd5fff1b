"""The ``Image`` type: a voxel array with its physical geometry.

Axis order (used everywhere in medseg)
--------------------------------------
``Image.array`` is ``(C, *spatial)`` when the image has a channel axis and ``(*spatial)``
otherwise; the spatial axes are in NumPy/SimpleITK order, i.e. **reversed** with respect to
the ITK index ``(i, j, k)``: a 3D volume is ``(z, y, x)``, a 2D image ``(y, x)`` =
``(rows, columns)``. This is the order ``SimpleITK.GetArrayFromImage`` returns and the one
nnU-Net uses.

``spacing`` (mm) follows the **array** axes: ``spacing[0]`` is the slice thickness of a
``(z, y, x)`` volume. ``origin`` and ``direction`` are physical quantities and follow ITK
(LPS world coordinates, ``x, y, z``): ``origin`` is the world position of the centre of voxel
``array[..., 0, 0, 0]`` and ``direction`` is the row-major ITK direction-cosine matrix whose
column ``d`` is the world direction of ITK index axis ``d`` (array axis ``-1 - d``).

Time axis (cine MRI, 4D CT, ultrasound video)
---------------------------------------------
An image with ``time_interval`` set (seconds between frames, the unit ITK and NIfTI's
``xyzt_units`` default use) is a time series: ``array`` is ``(T, *spatial)``, axis 0 holding
the ``T`` frames where a channel axis would be. A time series has no channel axis (channels
and time together are not supported); ``frame(t)`` gives frame ``t`` as a plain image on the
same grid. Read and write them with ``medseg.io.time_axis.read_time_series`` /
``write_image`` (4D NIfTI, ``pixdim[4]`` is the interval). See ``docs/time_series.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medseg.errors import GeometryError


def _identity(n: int) -> tuple[float, ...]:
    return tuple(float(v) for v in np.eye(n).ravel())


@dataclass
class Image:
    """A voxel array plus spacing, origin and direction (see the module docstring for axes).

    Args:
        array: ``(*spatial)`` or ``(C, *spatial)`` voxels.
        spacing: voxel size in mm per spatial array axis (``(z, y, x)`` order in 3D).
        origin: world (LPS, ``x, y, z``) position of the first voxel centre; zeros by default.
        direction: row-major ``D x D`` ITK direction cosines; identity by default.
        time_interval: seconds between frames for a time series ``(T, *spatial)``; None
            (default) for an image without a time axis.

    Example:
        >>> img = Image(np.zeros((4, 5, 6)), spacing=(5.0, 1.0, 1.0))
        >>> img.spatial_dims, img.spatial_shape, img.num_channels
        (3, (4, 5, 6), 1)
    """

    array: np.ndarray
    spacing: tuple[float, ...]
    origin: tuple[float, ...] = field(default=())
    direction: tuple[float, ...] = field(default=())
    time_interval: float | None = None

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        self.spacing = tuple(float(s) for s in self.spacing)
        d = len(self.spacing)
        if d < 1 or self.array.ndim not in (d, d + 1):
            raise GeometryError(
                f"array of shape {self.array.shape} does not fit spacing {self.spacing}: "
                f"expected {d} spatial axes, optionally after one channel axis"
            )
        if any(not np.isfinite(s) or s <= 0 for s in self.spacing):
            raise GeometryError(f"spacing must be positive and finite, got {self.spacing}")
        self.origin = tuple(float(o) for o in self.origin) if self.origin else (0.0,) * d
        self.direction = tuple(float(v) for v in self.direction) if self.direction else _identity(d)
        if len(self.origin) != d or len(self.direction) != d * d:
            raise GeometryError(
                f"origin {self.origin} / direction {self.direction} do not match {d} spatial dims"
            )
        if self.time_interval is not None:
            self.time_interval = float(self.time_interval)
            if not np.isfinite(self.time_interval) or self.time_interval <= 0:
                raise GeometryError(
                    f"time_interval must be a positive number of seconds, got {self.time_interval}"
                )
            if self.array.ndim != d + 1:
                raise GeometryError(
                    f"a time series needs an array (T, *spatial) with {d} spatial axes, "
                    f"got shape {self.array.shape}"
                )

    @property
    def spatial_dims(self) -> int:
        return len(self.spacing)

    @property
    def has_channels(self) -> bool:
        return self.array.ndim == self.spatial_dims + 1 and self.time_interval is None

    @property
    def has_time(self) -> bool:
        """True for a time series: ``array`` is ``(T, *spatial)``."""
        return self.time_interval is not None

    @property
    def num_frames(self) -> int:
        """``T`` for a time series, 1 otherwise."""
        return self.array.shape[0] if self.has_time else 1

    def frame(self, t: int) -> Image:
        """Frame ``t`` (negative counts from the end) as an image without time axis.

        Raises:
            GeometryError: the image has no time axis, or ``t`` is not a frame index.
        """
        if not self.has_time:
            raise GeometryError(f"image of shape {self.array.shape} has no time axis")
        if not -self.num_frames <= t < self.num_frames:
            raise GeometryError(f"frame {t} does not exist: the series has {self.num_frames}")
        return Image(self.array[t], self.spacing, self.origin, self.direction)

    @property
    def num_channels(self) -> int:
        return self.array.shape[0] if self.has_channels else 1

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[-self.spatial_dims :])

    @property
    def direction_matrix(self) -> np.ndarray:
        d = self.spatial_dims
        return np.asarray(self.direction).reshape(d, d)

    def channels_first(self) -> np.ndarray:
        """The array as ``(C, *spatial)``, adding a channel axis when there is none.

        Raises:
            GeometryError: for a time series (its first axis is time; use ``frame(t)``).
        """
        if self.has_time:
            raise GeometryError(
                f"a time series of {self.num_frames} frames has no channel axis; "
                "take one frame with image.frame(t)"
            )
        return self.array if self.has_channels else self.array[None]

    def with_array(self, array: np.ndarray) -> Image:
        """A new image on the same grid (same spacing/origin/direction) with other voxels; a
        time series keeps its ``time_interval`` when ``array`` still has the time axis."""
        array = np.asarray(array)
        keep = self.has_time and array.ndim == self.spatial_dims + 1
        return Image(
            array, self.spacing, self.origin, self.direction, self.time_interval if keep else None
        )

    def index_to_world(self, index: np.ndarray) -> np.ndarray:
        """World (LPS) coordinates of array indices.

        Args:
            index: ``(N, D)`` indices in array axis order.

        Returns:
            ``(N, D)`` world coordinates ``x, y, z`` in mm.
        """
        index = np.atleast_2d(np.asarray(index, dtype=float))
        itk_index = index[:, ::-1] * np.asarray(self.spacing[::-1])
        return itk_index @ self.direction_matrix.T + np.asarray(self.origin)

    def same_grid(self, other: Image, *, rtol: float = 1e-4, atol: float = 1e-4) -> bool:
        """True when both images have the same spatial shape, spacing, origin and direction."""
        return not grid_mismatches(self, other, rtol=rtol, atol=atol)


def grid_mismatches(a: Image, b: Image, *, rtol: float = 1e-4, atol: float = 1e-4) -> list[str]:
    """Human-readable differences between the grids of ``a`` and ``b`` (empty when equal)."""
    if a.spatial_dims != b.spatial_dims:
        return [f"dimensionality {a.spatial_dims}D vs {b.spatial_dims}D"]
    problems = []
    if a.spatial_shape != b.spatial_shape:
        problems.append(f"shape {a.spatial_shape} vs {b.spatial_shape}")
    if not np.allclose(a.spacing, b.spacing, rtol=rtol, atol=atol):
        problems.append(f"spacing {_fmt(a.spacing)} vs {_fmt(b.spacing)}")
    if not np.allclose(a.origin, b.origin, rtol=rtol, atol=max(atol, 1e-3)):
        problems.append(f"origin {_fmt(a.origin)} vs {_fmt(b.origin)}")
    if not np.allclose(a.direction, b.direction, atol=1e-3):
        problems.append(f"direction {_fmt(a.direction)} vs {_fmt(b.direction)}")
    return problems


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
