"""Classical segmentation baselines (need only io and data)."""

from medseg.classic.threshold import otsu_segmentation, otsu_threshold, threshold

__all__ = ["otsu_segmentation", "otsu_threshold", "threshold"]
