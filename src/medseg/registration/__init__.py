"""Learnt deformable registration (VoxelMorph) and the operations on displacement fields.

* :mod:`.warp`: ``warp(image, flow, mode=)`` (N-D, ``grid_sample``), ``flow_mm`` /
  ``flow_voxels``, ``integrate_velocity`` (scaling and squaring), ``compose``;
* :mod:`.jacobian`: ``jacobian_determinant``, ``folding_percent``;
* :mod:`.train`: ``fit_registration`` on the shared training engine (:mod:`.config`: the
  run's ``RegistrationConfig`` and ``RegistrationModel``; :mod:`.data`: normalised, padded
  volumes; :mod:`.pairs`: listed pairs, e.g. ED -> ES frames of the same subject);
* :mod:`.apply`: ``register_pair`` -> warped image, warped labels, and a displacement field
  SimpleITK reads as a ``DisplacementFieldTransform``.

Flows are ``(B, D, *spatial)`` in voxels, channel ``d`` along array axis ``d``; warping pulls
back: ``warp(moving, flow)(p) = moving(p + flow(p))``. ``docs/registration.md`` has the
conventions and the benchmark.
"""

from medseg.registration.jacobian import folding_percent, jacobian_determinant
from medseg.registration.warp import (
    check_flow,
    compose,
    flow_mm,
    flow_voxels,
    identity_grid,
    integrate_velocity,
    warp,
)

__all__ = [
    "check_flow",
    "compose",
    "flow_mm",
    "flow_voxels",
    "folding_percent",
    "identity_grid",
    "integrate_velocity",
    "jacobian_determinant",
    "warp",
]
