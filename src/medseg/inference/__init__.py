"""Inference: sliding windows, test-time augmentation, ensembling, export to original geometry."""

from medseg.inference.export import label_image, probabilities_to_label, probabilities_to_original

__all__ = ["label_image", "probabilities_to_label", "probabilities_to_original"]
