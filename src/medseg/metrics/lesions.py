"""Lesion-wise detection and segmentation metrics, as the BraTS 2023 challenges define them.

Reference: the BraTS 2023 lesion-wise metrics of R. Saluja et al.
(``github.com/rachitsaluja/BraTS-2023-Metrics``, ``brats_2023_metrics/surface_distance/
brats_metrics.py``, functions ``get_lesion_wise_score`` and ``get_lesion_wise_results``).
Its definition, step by step, and what this module does at each step:

1. **Components.** Reference and prediction masks are split into connected components with
   ``cc3d`` at connectivity 26 (3D). Here: full connectivity by default, 26 in 3D and its 2D
   analogue 8 in 2D (``connectivity=`` takes 6/18/26 or 4/8).
2. **Reference lesions merged by dilation.** BraTS dilates the whole reference mask with
   ``scipy.ndimage.binary_dilation``, structure ``generate_binary_structure(3, 2)`` (the 18
   face and edge neighbours) repeated ``dilation_factor`` times (3 voxels for BraTS-GLI,
   -SSA and -PED, 1 for -MEN and -MET), and labels the dilated mask's 26-connected
   components. Reference voxels take the label of the dilated component they lie in, so
   reference components closer than about twice the dilation form **one** lesion. BraTS
   data are 1 mm isotropic, so its dilation in voxels is a distance in mm; here it is given
   in mm (``dilation_mm``, default 3.0 = BraTS-GLI) and turned into a structuring element
   with the spacing: ``footprint="ellipsoid"`` (default) holds the voxel offsets ``d`` with
   ``sum_i (d_i * spacing_i)^2 <= dilation_mm^2``; ``footprint="brats"`` holds those with
   ``max_i |d_i| * spacing_i <= dilation_mm`` and ``sum_i |d_i| * spacing_i <= 2 *
   dilation_mm``, which on a 1 mm grid with an integer ``dilation_mm = n`` is exactly
   BraTS's 18-neighbour structure applied n times (and the full 8-neighbour one in 2D).
   The ellipsoid is the same distance in every direction; the BraTS polyhedron reaches
   further along diagonals (e.g. offset (2, 2, 2) is within 3 iterations, at 3.46 mm).
3. **Matching.** A predicted component is matched to a reference lesion when it overlaps the
   lesion's dilation (BraTS dilates each merged lesion again with the same structure; that
   is the same set as its dilated component of step 2, which is what is used here). All
   matched components together are the lesion's prediction, **whole**: voxels of a matched
   component outside the dilation count too.

   - *Split lesion* (one reference lesion, several predicted components within its
     dilation): one TP; Dice and HD95 are taken against the union of the components; none
     of them is a false positive.
   - *Merged pair* (one predicted component touching two reference lesions that stay
     separate after step 2): the component is matched to **both**; each lesion is a TP
     scored against the whole component (so both Dice values are lowered by the other
     lesion's part), and the component is no false positive.
4. **Lesion scores.** For a TP lesion: Dice of the lesion against its prediction, and HD95
   between them (BraTS: DeepMind's ``compute_robust_hausdorff(..., 95)``; here medseg's
   ``hd95``, the same definition as the per-case ``hd95`` column: ``hd95_mode`` and
   ``surface`` as in ``evaluate_case``, so lesion and case results agree; ``surface="surfel"``
   with ``hd95_mode="max_directed"`` is DeepMind's definition). A reference lesion without
   a matched component is a **FN**: Dice 0 and HD95 = ``hd95_penalty_mm`` (BraTS: the
   ``inf`` of an empty prediction replaced by 374 mm, about the diagonal of the BraTS
   volume). A predicted component matched to no lesion is a **FP**: Dice 0 and HD95 374 mm.
5. **Small lesions.** Reference lesions (after merging) with volume ``<= min_volume_mm3``
   are left out (BraTS compares the volume in mm^3, from the header spacing, with ``<=``;
   50 for GLI/SSA/MEN/PED, 2 for MET; default 50.0): they are counted neither as TP nor as
   FN and do not enter the means, but the predicted components matched to them are not
   false positives either. False positives are never filtered by size. Here they appear in
   ``lesions`` with kind ``"small"``.
6. **Case scores.** With ``L`` the kept reference lesions and ``FP`` the false positives:
   ``lesion_dice = sum_{l in L} dice_l / (|L| + |FP|)`` and ``lesion_hd95 = (sum_{l in L}
   hd95_l + 374 * |FP|) / (|L| + |FP|)``. When the denominator is 0 (no kept lesion and no
   FP, e.g. both masks empty) BraTS sets Dice 1 and HD95 0; so does this module.
7. **Counts.** ``tp`` counts reference lesions with a match (BraTS ``Num_TP`` = ``gt_tp``),
   ``fn`` the others, ``fp`` the unmatched predicted components (all after the size filter
   of step 5). Detection precision ``tp / (tp + fp)``, recall ``tp / (tp + fn)`` and F1
   ``2 tp / (2 tp + fp + fn)`` are medseg additions (BraTS reports only the counts); they are
   NaN for 0/0, as medseg's overlap metrics. Note that ``tp`` counts reference lesions, so a
   split lesion is one TP, and a merged pair two.

Masks of any shape work in 2D and 3D. A label whose reference is one lesion and whose
prediction has at most one component gives the per-case Dice (unless the lesion is under the
size limit) and the per-case HD95 (unless a penalty applies): ``single_component`` on the
result lets the caller warn that lesion-wise metrics add nothing there.

Steps 1 to 3 (components, dilation, matching) are computed by ``medseg.metrics.lesion_matching``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from medseg.errors import ConfigError
from medseg.metrics.distance import Hd95Mode, check_hd95_mode, percentile_hausdorff
from medseg.metrics.lesion_matching import (
    LesionMatching,
    centroid,
    component_connectivity,
    match_lesions,
    union_slice,
)
from medseg.metrics.surface import SurfaceMode, check_pair, surface_distances

Footprint = Literal["ellipsoid", "brats"]
FOOTPRINTS = ("ellipsoid", "brats")
LesionKind = Literal["tp", "fn", "fp", "small"]
LESION_KINDS = ("tp", "fn", "fp", "small")

DEFAULT_DILATION_MM = 3.0  # BraTS-GLI/SSA/PED: 3 dilation iterations on a 1 mm grid
DEFAULT_MIN_VOLUME_MM3 = 50.0  # BraTS-GLI/SSA/MEN/PED: lesions of <= 50 mm^3 left out
DEFAULT_HD95_PENALTY_MM = 374.0  # BraTS: HD95 of a missed or spurious lesion
_RTOL = 1e-9  # offsets exactly at the dilation distance belong to the footprint


@dataclass(frozen=True)
class Lesion:
    """One reference lesion or one unmatched predicted component.

    Attributes:
        kind: ``"tp"`` (reference lesion with a matched component), ``"fn"`` (missed),
            ``"fp"`` (predicted component matched to no lesion) or ``"small"`` (reference
            lesion of volume ``<= min_volume_mm3``, left out of counts and means).
        lesion_id: reference lesion label (1..n, ``cc3d`` order of the dilated reference)
            for tp/fn/small; predicted component label (1..n_pred) for fp.
        ref_volume_mm3: volume of the reference lesion (0 for fp).
        pred_volume_mm3: volume of the matched components together (the fp component's own).
        dice: Dice of the lesion with its matched components (0 for fn and fp).
        hd95: HD95 in mm between them (``hd95_penalty_mm`` for fn and fp).
        pred_ids: labels of the matched predicted components (the fp component's own label).
        centroid: centre of mass of the lesion (of the component for fp) as array indices.
    """

    kind: LesionKind
    lesion_id: int
    ref_volume_mm3: float
    pred_volume_mm3: float
    dice: float
    hd95: float
    pred_ids: tuple[int, ...]
    centroid: tuple[float, ...]


@dataclass(frozen=True)
class LesionWiseResult:
    """Lesion-wise scores of one case and label (see the module docstring).

    Attributes:
        n_ref: kept reference lesions (``tp + fn``), after merging and the size filter.
        n_pred: connected components of the prediction (all, matched or not).
        n_small: reference lesions left out as too small.
        tp, fp, fn: lesion counts (TP and FN count reference lesions).
        precision, recall, f1: detection scores from the counts (NaN for 0/0).
        lesion_dice: BraTS lesion-wise Dice (1 when there is nothing to score).
        lesion_hd95: BraTS lesion-wise HD95 in mm (0 when there is nothing to score).
        single_component: the reference is one lesion (small or not) and the prediction at
            most one component: lesion-wise scores repeat the per-case ones.
        lesions: one row per reference lesion, then one per false positive.
    """

    n_ref: int
    n_pred: int
    n_small: int
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    lesion_dice: float
    lesion_hd95: float
    single_component: bool
    lesions: tuple[Lesion, ...]


def is_single_component(result: LesionWiseResult) -> bool:
    """True when lesion-wise metrics of ``result`` add nothing to the per-case ones."""
    return result.single_component


def empty_lesion_result() -> LesionWiseResult:
    """The result of two empty masks: no lesion, Dice 1, HD95 0, NaN detection scores.

    Example:
        >>> empty_lesion_result().lesion_dice, empty_lesion_result().tp
        (1.0, 0)
    """
    return _summarize([], n_pred=0, n_lesions=0)


def dilation_footprint(
    spacing: Sequence[float], dilation_mm: float, *, footprint: Footprint = "ellipsoid"
) -> np.ndarray:
    """The structuring element of a dilation by ``dilation_mm`` on a grid of ``spacing``.

    Args:
        spacing: voxel size in mm per array axis.
        dilation_mm: dilation distance in mm (>= 0; 0 gives the single centre voxel).
        footprint: ``"ellipsoid"`` (offsets within ``dilation_mm`` in Euclidean distance) or
            ``"brats"`` (the 18-neighbour structure of BraTS repeated; module docstring).

    Returns:
        A boolean array of odd size per axis, centred on the origin.

    Example:
        >>> dilation_footprint((1.0, 2.0), 2.0).astype(int).tolist()
        [[0, 1, 0], [0, 1, 0], [1, 1, 1], [0, 1, 0], [0, 1, 0]]
    """
    if footprint not in FOOTPRINTS:
        raise ConfigError(f"footprint must be one of {FOOTPRINTS}, got {footprint!r}")
    if not dilation_mm >= 0:
        raise ConfigError(f"dilation_mm must be >= 0, got {dilation_mm}")
    limit = dilation_mm * (1.0 + _RTOL)
    radius = [int(math.floor(limit / s)) for s in spacing]
    grids = np.meshgrid(
        *(np.arange(-r, r + 1) * s for r, s in zip(radius, spacing, strict=True)), indexing="ij"
    )
    if footprint == "ellipsoid":
        return sum(g**2 for g in grids) <= limit**2
    return sum(np.abs(g) for g in grids) <= 2 * limit  # max-norm bound holds by the radius


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


def lesion_wise(
    pred_mask: np.ndarray,
    ref_mask: np.ndarray,
    spacing: Sequence[float],
    *,
    dilation_mm: float = DEFAULT_DILATION_MM,
    min_volume_mm3: float = DEFAULT_MIN_VOLUME_MM3,
    connectivity: int | None = None,
    hd95_penalty_mm: float = DEFAULT_HD95_PENALTY_MM,
    footprint: Footprint = "ellipsoid",
    hd95_mode: Hd95Mode = "max_directed",
    surface: SurfaceMode = "voxel",
    surface_connectivity: int = 1,
    threads: int | None = None,
) -> LesionWiseResult:
    """BraTS 2023 lesion-wise Dice, HD95 and detection counts of one binary mask pair.

    Args:
        pred_mask: ``(*spatial)`` predicted mask (non-zero = foreground), 2D or 3D.
        ref_mask: ``(*spatial)`` reference mask, same shape.
        spacing: voxel size in mm per array axis.
        dilation_mm: matching tolerance in mm: reference lesions are dilated by it to merge
            close lesions and to match predicted components (BraTS-GLI: 3 voxels = 3 mm).
        min_volume_mm3: reference lesions of volume ``<=`` this (mm^3) are left out.
        connectivity: component connectivity, 4/8 (2D) or 6/18/26 (3D); default full.
        hd95_penalty_mm: HD95 of a missed lesion and of a false positive (BraTS: 374 mm).
        footprint: ``"ellipsoid"`` (default) or ``"brats"`` dilation shape (module docstring).
        hd95_mode, surface, surface_connectivity, threads: the per-case ``hd95`` options
            (``evaluate_case``'s ``hd95_mode``, ``surface``, ``connectivity``, ``threads``).

    Returns:
        A ``LesionWiseResult``. Both masks empty: no lesions, Dice 1, HD95 0 (BraTS) and
        NaN detection precision, recall and F1.

    Raises:
        GeometryError: shapes or spacing differ, or the masks are not 2D/3D.
        ConfigError: a negative distance or volume, or an unknown option.

    Example:
        >>> ref = np.zeros((9, 12), bool); ref[1:4, 1:4] = True; ref[5:8, 7:10] = True
        >>> pred = np.zeros_like(ref); pred[1:4, 1:4] = True; pred[0, 11] = True
        >>> r = lesion_wise(pred, ref, (1.0, 1.0), dilation_mm=1.0, min_volume_mm3=0.0)
        >>> (r.tp, r.fn, r.fp), r.lesion_dice, r.lesion_hd95  # (1 + 0 + 0) / 3
        ((1, 1, 1), 0.3333333333333333, 249.33333333333334)
    """
    pred = np.asarray(pred_mask).astype(bool, copy=False)
    ref = np.asarray(ref_mask).astype(bool, copy=False)
    spacing = check_pair(pred, ref, spacing)
    conn = component_connectivity(ref.ndim, connectivity)
    check_hd95_mode(hd95_mode)
    if not min_volume_mm3 >= 0:
        raise ConfigError(f"min_volume_mm3 must be >= 0, got {min_volume_mm3}")
    if not hd95_penalty_mm >= 0:
        raise ConfigError(f"hd95_penalty_mm must be >= 0, got {hd95_penalty_mm}")
    structure = dilation_footprint(spacing, dilation_mm, footprint=footprint)
    matching = match_lesions(pred, ref, structure, conn)
    lesions = _scored_lesions(
        matching,
        spacing,
        min_volume_mm3=min_volume_mm3,
        hd95_penalty_mm=hd95_penalty_mm,
        hd95_mode=hd95_mode,
        surface=surface,
        surface_connectivity=surface_connectivity,
        threads=threads,
    )
    return _summarize(lesions, n_pred=matching.n_pred, n_lesions=matching.n_lesions)


def _scored_lesions(
    m: LesionMatching,
    spacing: tuple[float, ...],
    *,
    min_volume_mm3: float,
    hd95_penalty_mm: float,
    hd95_mode: Hd95Mode,
    surface: SurfaceMode,
    surface_connectivity: int,
    threads: int | None,
) -> list[Lesion]:
    """Steps 4 and 5 (options as in :func:`lesion_wise`): one row per reference lesion (tp, fn
    or small), then one per false positive."""
    voxel_mm3 = float(np.prod(spacing))
    pred_voxels = np.bincount(m.pred_cc.ravel(), minlength=m.n_pred + 1)
    lesions = []
    for lesion_id, pred_ids in m.matches.items():
        ref_box = m.ref_boxes[lesion_id - 1]
        box = union_slice([ref_box, *(m.pred_boxes[i - 1] for i in pred_ids)])
        lesion = m.ref_cc[box] == lesion_id
        found = np.isin(m.pred_cc[box], pred_ids)
        ref_volume = float(np.count_nonzero(lesion)) * voxel_mm3
        if pred_ids:
            dice = 2.0 * np.count_nonzero(lesion & found) / (lesion.sum() + found.sum())
            sd = surface_distances(
                found,
                lesion,
                spacing,
                surface=surface,
                connectivity=surface_connectivity,
                threads=threads,
            )
            hd95 = percentile_hausdorff(sd, 95.0, mode=hd95_mode)
        else:
            dice, hd95 = 0.0, hd95_penalty_mm
        if ref_volume <= min_volume_mm3:
            kind = "small"
        else:
            kind = "tp" if pred_ids else "fn"
        lesions.append(
            Lesion(
                kind=kind,
                lesion_id=lesion_id,
                ref_volume_mm3=ref_volume,
                pred_volume_mm3=float(np.count_nonzero(found)) * voxel_mm3,
                dice=float(dice),
                hd95=float(hd95),
                pred_ids=tuple(pred_ids),
                centroid=centroid(lesion, box),
            )
        )
    matched = m.matched
    for pred_id in range(1, m.n_pred + 1):
        if pred_id in matched:
            continue
        box = m.pred_boxes[pred_id - 1]
        lesions.append(
            Lesion(
                kind="fp",
                lesion_id=pred_id,
                ref_volume_mm3=0.0,
                pred_volume_mm3=float(pred_voxels[pred_id]) * voxel_mm3,
                dice=0.0,
                hd95=float(hd95_penalty_mm),
                pred_ids=(pred_id,),
                centroid=centroid(m.pred_cc[box] == pred_id, box),
            )
        )
    return lesions


def _summarize(lesions: list[Lesion], *, n_pred: int, n_lesions: int) -> LesionWiseResult:
    counts = {kind: sum(lesion.kind == kind for lesion in lesions) for kind in LESION_KINDS}
    tp, fn, fp = counts["tp"], counts["fn"], counts["fp"]
    scored = [lesion for lesion in lesions if lesion.kind != "small"]
    if scored:
        lesion_dice = math.fsum(lesion.dice for lesion in scored) / len(scored)
        lesion_hd95 = math.fsum(lesion.hd95 for lesion in scored) / len(scored)
    else:  # nothing to find and nothing predicted: BraTS scores a perfect case
        lesion_dice, lesion_hd95 = 1.0, 0.0
    return LesionWiseResult(
        n_ref=tp + fn,
        n_pred=n_pred,
        n_small=counts["small"],
        tp=tp,
        fp=fp,
        fn=fn,
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        lesion_dice=lesion_dice,
        lesion_hd95=lesion_hd95,
        single_component=n_lesions == 1 and n_pred <= 1,
        lesions=tuple(lesions),
    )
