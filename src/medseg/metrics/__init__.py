"""Segmentation and classification metrics as pure NumPy/SciPy functions.

Main entry points:

- ``evaluate_case(pred, ref, spacing, labels=..., tolerance_mm=..., hd95_mode=...)``: every
  metric of one case, per label or region (``{label: {metric: value}}``).
- ``aggregate(rows)``: mean, std, median and NaN count per label and overall.
- ``binary_metrics``, ``distance_metrics``, ``surface_distances``: the building blocks.
- ``classification_metrics``, ``roc_auc``: classifier scores matching scikit-learn.
- ``rater_agreement``, ``majority_vote``, ``robustness_sweep``.

Definitions, defaults and the empty-mask conventions are documented in the modules
``confusion``, ``surface`` and ``distance`` and in docs/evaluation.md.
"""

from medseg.metrics.aggregate import aggregate, describe
from medseg.metrics.agreement import majority_vote, rater_agreement
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
from medseg.metrics.robustness import PERTURBATIONS, robustness_sweep, summarize_sweep
from medseg.metrics.surface import (
    SURFACE_MODES,
    SurfaceDistances,
    SurfaceMode,
    surface_distances,
    surface_voxels,
    surfel_area_table,
    surfel_codes,
)

__all__ = [
    "DEFAULT_TOLERANCE_MM",
    "HD95_MODES",
    "METRIC_COLUMNS",
    "OVERLAP_METRICS",
    "PERTURBATIONS",
    "SURFACE_MODES",
    "ConfusionCounts",
    "Hd95Mode",
    "SurfaceDistances",
    "SurfaceMode",
    "accuracy",
    "aggregate",
    "assd",
    "average_symmetric_surface_distance",
    "binary_metrics",
    "case_rows",
    "classification_metrics",
    "confusion_counts",
    "confusion_matrix",
    "describe",
    "dice",
    "distance_metrics",
    "empty_metrics",
    "evaluate_case",
    "f1",
    "foreground_labels",
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
    "robustness_sweep",
    "roc_auc",
    "specificity",
    "summarize_distances",
    "summarize_sweep",
    "surface_distances",
    "surface_voxels",
    "surfel_area_table",
    "surfel_codes",
    "volume_similarity",
]
