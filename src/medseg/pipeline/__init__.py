"""The pipeline steps, one Python function each (the CLI calls exactly these):

``plan -> preprocess -> train -> predict -> evaluate -> report``, and ``demo`` for all of them.
"""

from medseg.pipeline.steps import evaluate, plan, predict, preprocess, report, train, validate_fold

__all__ = ["evaluate", "plan", "predict", "preprocess", "report", "train", "validate_fold"]
