"""Inference: sliding windows, test-time augmentation, ensembling, export to original geometry."""

from medseg.inference.checkpoints import find_checkpoints, previous_stage_models, trained_folds
from medseg.inference.classify import (
    ClassificationPrediction,
    find_classifier_checkpoints,
    predict_classification,
    read_predictions,
    write_predictions,
)
from medseg.inference.crf import apply_crf_decision, dense_crf
from medseg.inference.ensemble import label_values, predict_case, predict_preprocessed
from medseg.inference.explain import (
    find_cam_layer,
    grad_cam,
    mass_inside,
    peak_slice,
    saliency,
    save_overlay,
)
from medseg.inference.export import label_image, probabilities_to_label, probabilities_to_original
from medseg.inference.inputs import find_input_cases
from medseg.inference.postprocess import (
    POSTPROCESSING_FILE,
    apply_postprocessing,
    choose_crf,
    choose_postprocessing,
    dice_score,
    fill_holes,
    keep_largest_component,
    load_postprocessing,
)
from medseg.inference.predict import predict
from medseg.inference.sliding_window import (
    flip_combinations,
    gaussian_importance,
    sliding_window_inference,
)

__all__ = [
    "apply_crf_decision",
    "choose_crf",
    "dense_crf",
    "ClassificationPrediction",
    "find_cam_layer",
    "find_classifier_checkpoints",
    "grad_cam",
    "mass_inside",
    "peak_slice",
    "predict_classification",
    "read_predictions",
    "saliency",
    "save_overlay",
    "write_predictions",
    "POSTPROCESSING_FILE",
    "apply_postprocessing",
    "choose_postprocessing",
    "dice_score",
    "fill_holes",
    "find_checkpoints",
    "previous_stage_models",
    "trained_folds",
    "find_input_cases",
    "flip_combinations",
    "gaussian_importance",
    "keep_largest_component",
    "label_image",
    "label_values",
    "load_postprocessing",
    "predict",
    "predict_case",
    "predict_preprocessed",
    "probabilities_to_label",
    "probabilities_to_original",
    "sliding_window_inference",
]
