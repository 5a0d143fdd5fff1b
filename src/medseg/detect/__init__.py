"""Detection and instance segmentation: boxes, instance label maps and their metrics.

Boxes follow ``medseg.metrics.boxes`` (``(N, 2 * D)`` corner voxel indices, inclusive ``hi``);
the metrics live in ``medseg.metrics.detection`` and ``medseg.metrics.instances``; instances
from a foreground + distance prediction in ``medseg.detect.instances``. See docs/instances.md.
"""

from medseg.detect.instances import (
    boundary_watershed_instances,
    components_instances,
    distance_target,
    merge_regions,
    watershed_instances,
)
from medseg.metrics.boxes import (
    batched_nms,
    box_area,
    box_iou,
    boxes_from_labels,
    boxes_from_mask,
    check_boxes,
    nms,
)
from medseg.metrics.detection import (
    aggregated_jaccard_index,
    average_precision,
    coco_map,
    counting_error,
    instance_f1,
    match_instances,
    panoptic_quality,
)

__all__ = [
    "aggregated_jaccard_index",
    "average_precision",
    "batched_nms",
    "box_area",
    "box_iou",
    "boxes_from_labels",
    "boxes_from_mask",
    "check_boxes",
    "coco_map",
    "boundary_watershed_instances",
    "components_instances",
    "counting_error",
    "distance_target",
    "instance_f1",
    "match_instances",
    "nms",
    "panoptic_quality",
    "merge_regions",
    "watershed_instances",
]
