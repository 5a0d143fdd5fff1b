"""The ``mri_artefacts`` preset: nnU-Net's default augmentation plus MRI acquisition artefacts.

Motion, ghosting and spikes (``medseg.transforms.mri_artefacts``) are applied first, at low
probability, to the image as loaded (they happen at acquisition, before any geometry change of
the training pipeline), then :func:`medseg.transforms.presets.nnunet_default`. The label is
never changed by the artefacts. See ``docs/mri_artefacts.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

from medseg.transforms.base import Compose
from medseg.transforms.grid import LabelMode
from medseg.transforms.mri_artefacts import RandomGhosting, RandomMotion, RandomSpike
from medseg.transforms.presets import nnunet_default

#: Per-sample probabilities of the artefacts (``p`` replaces them all when given).
ARTEFACT_PROBABILITIES = {"motion": 0.1, "ghosting": 0.1, "spike": 0.05}


def mri_artefacts(
    spatial_dims: int,
    p: float | None = None,
    *,
    patch_size: Sequence[int] | None = None,
    mirror_axes: Sequence[int] | None = None,
    label_mode: LabelMode = "nearest",
    intensity_channels: Sequence[int] | None = None,
    p_elastic: float = 0.0,
    seed: int | None = None,
) -> Compose:
    """nnU-Net's default augmentation preceded by MRI artefacts.

    The artefacts, with their per-sample probabilities: rigid motion (``RandomMotion``: 2
    moved copies, +-10 deg per plane, +-5 voxels, 0.1), ghosting (``RandomGhosting``: 4-10
    ghosts, intensity 0.5-1, 0.1) and a spike (``RandomSpike``: amplitude 0.1-0.5 of the DC
    term, 0.05); the phase-encoding axis is drawn per sample.

    Args:
        spatial_dims, p, patch_size, mirror_axes, label_mode, intensity_channels, p_elastic,
            seed: as :func:`medseg.transforms.presets.nnunet_default` (``p`` also replaces the
            artefacts' probabilities; ``intensity_channels`` limits them too).

    Returns:
        The pipeline (``Compose``).
    """
    base = nnunet_default(
        spatial_dims,
        p,
        patch_size=patch_size,
        mirror_axes=mirror_axes,
        label_mode=label_mode,
        intensity_channels=intensity_channels,
        p_elastic=p_elastic,
    )

    def prob(name: str) -> float:
        return ARTEFACT_PROBABILITIES[name] if p is None else p

    channels = None if intensity_channels is None else list(intensity_channels)
    artefacts = [
        RandomMotion(degrees=10.0, translation=5.0, p=prob("motion"), channels=channels),
        RandomGhosting(intensity=(0.5, 1.0), p=prob("ghosting"), channels=channels),
        RandomSpike(intensity=(0.1, 0.5), p=prob("spike"), channels=channels),
    ]
    return Compose([*artefacts, *base.transforms], seed=seed)


__all__ = ["ARTEFACT_PROBABILITIES", "mri_artefacts"]
