"""Segmentation and classification metrics as pure NumPy/SciPy functions.

Main entry points:

- ``evaluate_case(pred, ref, spacing, labels=..., tolerance_mm=..., hd95_mode=...)``: every
  metric of one case, per label or region (``{label: {metric: value}}``).
- ``aggregate(rows)``: mean, std, median and NaN count per label and overall.
- ``binary_metrics``, ``distance_metrics``, ``surface_distances``: the building blocks.
- ``classification_metrics``, ``roc_auc``: classifier scores matching scikit-learn.
- ``rater_agreement``, ``majority_vote``, ``annotation_noise_sweep``.

Definitions, defaults and the empty-mask conventions are documented in the modules
``confusion``, ``surface`` and ``distance`` and in docs/evaluation.md.
"""

from medseg.metrics.aggregate import (
    aggregate,
    bland_altman,
    describe,
    per_image_summary,
    pooled_overlap,
    stratify_by_size,
)
from medseg.metrics.agreement import majority_vote, rater_agreement
from medseg.metrics.annotation_noise import (
    MASK_PERTURBATIONS,
    annotation_noise_sweep,
    summarize_annotation_sweep,
)
from medseg.metrics.case import (
    METRIC_COLUMNS,
    binary_metrics,
    case_rows,
    empty_metrics,
    evaluate_case,
    foreground_labels,
    label_regions,
)
from medseg.metrics.classification import (
    classification_metrics,
    confusion_matrix,
    multiclass_mcc,
    roc_auc,
)
from medseg.metrics.confusion import (
    OVERLAP_METRICS,
    ConfusionCounts,
    accuracy,
    confusion_counts,
    dice,
    f1,
    iou,
    mcc,
    npv,
    overlap_metrics,
    precision,
    recall,
    specificity,
    volume_similarity,
)
from medseg.metrics.distance import (
    DEFAULT_TOLERANCE_MM,
    HD95_MODES,
    Hd95Mode,
    assd,
    average_symmetric_surface_distance,
    distance_metrics,
    hausdorff,
    hausdorff_distance,
    masd,
    normalized_surface_dice,
    nsd,
    percentile_hausdorff,
    summarize_distances,
)
from medseg.metrics.lesions import LesionWiseResult, is_single_component, lesion_wise
from medseg.metrics.measure import (
    SIZE_COLUMNS,
    Measurements,
    measure_label_map,
    size_columns,
    structure_volume,
    structure_volume_ml,
    surface_area,
    voxel_volume,
)
from medseg.metrics.surface import (
    SURFACE_MODES,
    SurfaceDistances,
    SurfaceMode,
    surface_distances,
    surface_voxels,
    surfel_area_table,
    surfel_codes,
)
from medseg.metrics.survival import concordance_index
from medseg.metrics.uncertainty import case_uncertainty, entropy_map, foreground_band

__all__ = [
    "concordance_index",
    "SIZE_COLUMNS",
    "Measurements",
    "bland_altman",
    "measure_label_map",
    "per_image_summary",
    "pooled_overlap",
    "size_columns",
    "stratify_by_size",
    "structure_volume",
    "structure_volume_ml",
    "surface_area",
    "voxel_volume",
    "LesionWiseResult",
    "is_single_component",
    "lesion_wise",
    "DEFAULT_TOLERANCE_MM",
    "HD95_MODES",
    "METRIC_COLUMNS",
    "OVERLAP_METRICS",
    "MASK_PERTURBATIONS",
    "SURFACE_MODES",
    "ConfusionCounts",
    "Hd95Mode",
    "SurfaceDistances",
    "SurfaceMode",
    "accuracy",
    "aggregate",
    "annotation_noise_sweep",
    "assd",
    "average_symmetric_surface_distance",
    "binary_metrics",
    "case_rows",
    "case_uncertainty",
    "classification_metrics",
    "confusion_counts",
    "confusion_matrix",
    "describe",
    "dice",
    "distance_metrics",
    "empty_metrics",
    "entropy_map",
    "evaluate_case",
    "f1",
    "foreground_labels",
    "foreground_band",
    "hausdorff",
    "hausdorff_distance",
    "iou",
    "label_regions",
    "majority_vote",
    "masd",
    "mcc",
    "multiclass_mcc",
    "normalized_surface_dice",
    "npv",
    "nsd",
    "overlap_metrics",
    "percentile_hausdorff",
    "precision",
    "rater_agreement",
    "recall",
    "roc_auc",
    "specificity",
    "summarize_annotation_sweep",
    "summarize_distances",
    "surface_distances",
    "surface_voxels",
    "surfel_area_table",
    "surfel_codes",
    "volume_similarity",
]
