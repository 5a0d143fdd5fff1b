"""The MNI ICBM152 2009a T1 template with grey/white-matter labels, read offline from nilearn.

The default atlas of :func:`medseg.classic.atlas.multi_atlas` for brain MRI (extra ``atlas``).
"""

from __future__ import annotations

import logging

import numpy as np

from medseg.classic.common import label_image
from medseg.errors import ConfigError
from medseg.io import Image

_LOG = logging.getLogger(__name__)

MNI152_NOTICE = (
    "MNI ICBM152 non-linear symmetric 2009a atlas. Copyright (C) 1993-2009 Louis Collins, "
    "McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill University. "
    "Permission to use, copy, modify, and distribute this software and its documentation for "
    "any purpose and without fee is hereby granted, provided that the above copyright notice "
    "appear in all copies. The authors and McGill University make no representations about "
    "the suitability of this software for any purpose. It is provided 'as is' without express "
    "or implied warranty. The authors are not responsible for any data loss, equipment damage, "
    "property loss, or injury to subjects or patients resulting from the use or misuse of this "
    "software package. References: Fonov et al., NeuroImage 47 (2009) S102 and NeuroImage 54 "
    "(2011) 313-327; Collins et al., NeuroImage 10 (1999) 233."
)


def _nifti_to_image(nifti: object) -> Image:
    """A nibabel NIfTI image (RAS affine, ``(i, j, k)`` data) as a medseg ``Image`` (LPS)."""
    affine = np.asarray(nifti.affine, dtype=np.float64)  # type: ignore[attr-defined]
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    linear = ras_to_lps @ affine[:3, :3]
    spacing_ijk = np.linalg.norm(linear, axis=0)
    direction = linear / spacing_ijk
    data = np.asarray(nifti.get_fdata(dtype=np.float32))  # type: ignore[attr-defined]
    return Image(
        np.ascontiguousarray(data.T),
        tuple(spacing_ijk[::-1]),
        tuple(ras_to_lps @ affine[:3, 3]),
        tuple(direction.ravel()),
    )


def mni152(resolution_mm: float = 2) -> tuple[Image, Image]:
    """The MNI ICBM152 2009a T1 template and its grey/white-matter labels (offline, nilearn).

    Reads the templates bundled in nilearn (``load_mni152_template``,
    ``load_mni152_gm_template``, ``load_mni152_wm_template``; 197 x 233 x 189 at 1 mm,
    resampled by nilearn to ``resolution_mm``). Labels: 0 background, 1 grey matter, 2 white
    matter, the larger of the GM/WM probabilities where their sum exceeds 0.5 (GM on ties).
    There is no CSF map and no labelled structure.

    Copyright notice of the atlas (also :data:`MNI152_NOTICE`): Copyright (C) 1993-2009 Louis
    Collins, McConnell Brain Imaging Centre, Montreal Neurological Institute, McGill
    University. Permission to use, copy, modify, and distribute this software and its
    documentation for any purpose and without fee is hereby granted, provided that the above
    copyright notice appear in all copies. The authors and McGill University make no
    representations about the suitability of this software for any purpose. It is provided
    "as is" without express or implied warranty.

    Args:
        resolution_mm: isotropic voxel size in mm (nilearn resamples the 1 mm files).

    Returns:
        ``(t1, labels)``: float32 T1 and uint8 labels, ``(z, y, x)`` arrays on the same grid
        (LPS geometry converted from the NIfTI RAS affine).

    Raises:
        ConfigError: nilearn is missing (install the ``atlas`` extra) or a bad resolution.
    """
    if not resolution_mm > 0:
        raise ConfigError(f"mni152: resolution_mm must be positive, got {resolution_mm}")
    try:
        from nilearn import datasets
    except ImportError as err:
        raise ConfigError(
            f"mni152 needs nilearn ({err}); install the extra: pip install 'medseg[atlas]'"
        ) from None
    except AttributeError as err:  # e.g. a recent nilearn under the packaging<26 flwr pins
        raise ConfigError(
            f"mni152: nilearn fails to import ({err}); recent nilearn needs packaging >= 26, "
            "which the 'federated' extra's flwr forbids: keep them in separate environments"
        ) from None
    t1 = _nifti_to_image(datasets.load_mni152_template(resolution=resolution_mm))
    grey = _nifti_to_image(datasets.load_mni152_gm_template(resolution=resolution_mm)).array
    white = _nifti_to_image(datasets.load_mni152_wm_template(resolution=resolution_mm)).array
    labels = np.where(grey + white > 0.5, np.where(white > grey, 2, 1), 0)
    _LOG.info("%s", MNI152_NOTICE)  # the licence asks for the notice wherever the atlas goes
    return t1, label_image(t1, labels)
