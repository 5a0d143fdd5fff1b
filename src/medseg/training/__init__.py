"""Training: the loop, optimisers and schedules, checkpoints, resume, DDP, logs and curves."""

from medseg.training.checkpoint import (
    build_model,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from medseg.training.loop import FitResult, fit, fold_dir
from medseg.training.splits import fold_cases, load_or_make_splits, make_splits

__all__ = [
    "FitResult",
    "build_model",
    "fit",
    "fold_cases",
    "fold_dir",
    "load_checkpoint",
    "load_or_make_splits",
    "make_splits",
    "model_from_checkpoint",
    "save_checkpoint",
]
