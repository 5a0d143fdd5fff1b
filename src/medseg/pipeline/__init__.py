"""The pipeline steps, one Python function each (the CLI calls exactly these):

``plan -> preprocess -> train -> predict -> evaluate -> report``, and ``demo`` for all of them;
``prepare_cascade`` between the two stages of the cascade; ``classify_*`` for classification.
"""

from medseg.evaluation import evaluate_folders as evaluate
from medseg.inference.predict import predict
from medseg.pipeline.cascade import prepare_cascade
from medseg.pipeline.classify import (
    classify_demo,
    classify_evaluate,
    classify_explain,
    classify_predict,
    classify_report,
    classify_train,
)
from medseg.pipeline.steps import train, validate_fold
from medseg.planning.preprocessing import preprocess
from medseg.planning.steps import plan
from medseg.report import build_report as report

__all__ = [
    "classify_demo",
    "classify_evaluate",
    "classify_explain",
    "classify_predict",
    "classify_report",
    "classify_train",
    "evaluate",
    "plan",
    "predict",
    "prepare_cascade",
    "preprocess",
    "report",
    "train",
    "validate_fold",
]
