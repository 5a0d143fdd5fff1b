"""Datasets: folder layouts, validation, fingerprint, phantoms, sampling and loading."""

from medseg.data.case import Case, read_case
from medseg.data.check import Problem, check_dataset
from medseg.data.classification import (
    ClassificationSet,
    available_splits,
    balanced_sample_weights,
    class_weights,
    load_classification,
    stratified_folds,
)
from medseg.data.dataset import Dataset, load_dataset
from medseg.data.fingerprint import Fingerprint, compute_fingerprint
from medseg.data.phantoms_classification import (
    classification_phantom_arrays,
    make_classification_phantoms,
)

__all__ = [
    "ClassificationSet",
    "available_splits",
    "balanced_sample_weights",
    "class_weights",
    "classification_phantom_arrays",
    "load_classification",
    "make_classification_phantoms",
    "stratified_folds",
    "Case",
    "Dataset",
    "Fingerprint",
    "Problem",
    "check_dataset",
    "compute_fingerprint",
    "load_dataset",
    "read_case",
]
