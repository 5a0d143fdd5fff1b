"""Folder-level evaluation: predictions vs references -> per_case.csv + summary.json.

``evaluate_folders(pred_dir, ref_dir, out_dir, ...)`` is the function behind
``medseg evaluate``; ``measure_folder(pred_dir, out_csv, ...)`` the one behind
``medseg measure`` (volumes and components, no reference); ``match_cases`` pairs files by
case id; ``parse_labels`` reads the ``--labels`` option. The metrics themselves live in
``medseg.metrics``.
"""

from medseg.evaluation.cases import (
    CasePair,
    CaseResult,
    case_files,
    evaluate_pair,
    match_cases,
    read_pair,
)
from medseg.evaluation.folders import (
    CSV_COLUMNS,
    dataset_summaries,
    evaluate_folders,
    format_csv,
    json_safe,
)
from medseg.evaluation.labels import parse_labels
from medseg.evaluation.measure import measure_folder
from medseg.evaluation.pool import run_cases

__all__ = [
    "CSV_COLUMNS",
    "CasePair",
    "CaseResult",
    "case_files",
    "dataset_summaries",
    "evaluate_folders",
    "evaluate_pair",
    "format_csv",
    "json_safe",
    "match_cases",
    "measure_folder",
    "parse_labels",
    "read_pair",
    "run_cases",
]
