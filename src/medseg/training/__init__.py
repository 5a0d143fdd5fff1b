"""Training: one engine (step, budgets, checkpoints, resume, DDP, logs, curves) and the tasks on it.

- ``engine``: :class:`~medseg.training.engine.Task` and
  :func:`~medseg.training.engine.run_training`;
- ``segmentation``: :func:`fit`, one configuration and fold of a results folder;
- ``classification``: :func:`fit_classifier`, image classifiers and regressors;
- ``checkpoint``: the one door for reading weight files (:func:`load_checkpoint`), building
  models from plans and checkpoints.
"""

from medseg.training.checkpoint import (
    build_classifier,
    build_model,
    load_checkpoint,
    load_classifier,
    model_from_checkpoint,
    save_checkpoint,
)
from medseg.training.classification import fit_classifier
from medseg.training.distributed import leave_distributed_run
from medseg.training.engine import RunResult, Task, run_training
from medseg.training.segmentation import fit, fold_dir
from medseg.training.splits import fold_cases, load_or_make_splits, make_splits

__all__ = [
    "RunResult",
    "Task",
    "build_classifier",
    "build_model",
    "fit",
    "fit_classifier",
    "fold_cases",
    "fold_dir",
    "leave_distributed_run",
    "load_checkpoint",
    "load_classifier",
    "load_or_make_splits",
    "make_splits",
    "model_from_checkpoint",
    "run_training",
    "save_checkpoint",
]
