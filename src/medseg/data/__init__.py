"""Datasets: folder layouts, validation, fingerprint, phantoms, sampling and loading."""

from medseg.data.check import Problem, check_dataset
from medseg.data.dataset import Case, Dataset, load_dataset, read_case
from medseg.data.fingerprint import Fingerprint, compute_fingerprint

__all__ = [
    "Case",
    "Dataset",
    "Fingerprint",
    "Problem",
    "check_dataset",
    "compute_fingerprint",
    "load_dataset",
    "read_case",
]
