"""Which cases the viewer shows: from a results folder or a dataset folder.

* **Results folder** (has ``plans.json``): the images and references come from the dataset
  named by ``plans.json["dataset_path"]``; the predictions from ``--predictions DIR``, else
  ``RESULTS/predictions/``, else the cross-validation predictions
  ``RESULTS/<config>/fold_<k>/validation/`` (the first configuration that has any); Dice and
  HD95 from ``evaluation/per_case.csv`` (``RESULTS/evaluation/``, ``RESULTS/evaluation/
  <config>/`` or beside the predictions); the uncertainty maps of ``medseg predict
  --save-uncertainty`` from ``<predictions>/uncertainty/``. Only cases with a prediction are
  listed.
* **Dataset folder** (anything ``medseg.data.load_dataset`` reads): image and reference label;
  the reference is what a correction starts from. Edits need ``-o OUT`` (never the dataset).

Case ids come from the dataset's list; a request's id is looked up in it, never joined into
a path. A case one of whose files leads (through a symbolic link) outside the allowed
folders is listed with a ``problem`` and none of its files is read.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from medseg.data.dataset import Dataset, load_dataset
from medseg.errors import ConfigError, DatasetError, MedsegError
from medseg.viewer.security import inside

OUTSIDE_PROBLEM = "a file of this case leads outside the allowed folders (refused)"


class ViewerError(MedsegError):
    """A refused request; ``status`` is the HTTP status code the server answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class CaseEntry:
    """One case: its files (None where absent), metrics and a problem that blocks it.

    ``metrics`` holds ``dice`` and ``hd95`` (mean over the labels of ``per_case.csv``, NaN
    when missing) and ``per_label`` ``{label: {dice, hd95}}``.
    """

    case_id: str
    image: Path
    prediction: Path | None = None
    reference: Path | None = None
    metrics: dict = field(default_factory=dict)
    problem: str | None = None
    uncertainty: Path | None = None


@dataclass(frozen=True)
class Catalog:
    """What ``discover_cases`` found."""

    root: Path
    kind: Literal["results", "dataset"]
    dataset: Dataset
    cases: dict[str, CaseEntry]
    output: Path | None
    allowed: tuple[Path, ...]

    @property
    def labels(self) -> dict[str, int]:
        """Label name -> value (plain labels of dataset.json, background included)."""
        return {k: v for k, v in self.dataset.labels.items() if isinstance(v, int)}

    def get(self, case_id: str) -> CaseEntry:
        """The case of that id; ``ViewerError(404)`` without echoing the id."""
        entry = self.cases.get(case_id) if isinstance(case_id, str) else None
        if entry is None:
            raise ViewerError(404, "unknown case")
        if entry.problem:
            raise ViewerError(403, entry.problem)
        return entry


def discover_cases(
    root: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    predictions: str | os.PathLike[str] | None = None,
) -> Catalog:
    """Find the cases of a results or dataset folder (module docstring).

    Args:
        root: a results folder (with ``plans.json``) or a dataset folder.
        output: where corrections and the audit log go; default the results folder, none
            for a dataset folder (read-only unless given).
        predictions: a folder of ``<case><ending>`` label maps (results folders only).

    Raises:
        DatasetError: no dataset, or a results folder whose dataset cannot be read.
        ConfigError: ``output`` inside the dataset folder.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: folder does not exist")
    if (root / "plans.json").exists():
        dataset = load_dataset(_dataset_path(root))
        pred_dir = Path(predictions).resolve() if predictions else _prediction_dir(root)
        kind: Literal["results", "dataset"] = "results"
        out = Path(output).resolve() if output else root
    else:
        dataset, pred_dir, kind = load_dataset(root), None, "dataset"
        out = Path(output).resolve() if output else None
    data_root = dataset.root.resolve()
    if out is not None and inside(out, [data_root]):
        raise ConfigError(f"{out}: edits never go into the dataset folder; choose another -o")
    allowed = tuple(p for p in (root, data_root, pred_dir) if p is not None)
    metrics = _read_metrics(_metrics_file(root, pred_dir))
    cases: dict[str, CaseEntry] = {}
    for case in dataset.cases + dataset.test_cases:
        pred = _prediction_file(pred_dir, case.case_id, dataset.file_ending)
        if kind == "results" and pred is None:
            continue
        uncertainty = _prediction_file(
            pred_dir / "uncertainty" if pred_dir else None, case.case_id, dataset.file_ending
        )
        files = [case.image_paths[0], case.label_path, pred, uncertainty]
        safe = all(p is None or inside(p, list(allowed)) for p in files)
        cases[case.case_id] = CaseEntry(
            case.case_id,
            case.image_paths[0],
            pred,
            case.label_path,
            metrics.get(case.case_id, {"dice": math.nan, "hd95": math.nan, "per_label": {}}),
            None if safe else OUTSIDE_PROBLEM,
            uncertainty,
        )
    if not cases:
        raise DatasetError(f"{root}: no cases to show (no predictions or no images found)")
    return Catalog(root, kind, dataset, cases, out, allowed)


def _dataset_path(root: Path) -> Path:
    plans = root / "plans.json"
    try:
        value = json.loads(plans.read_text(encoding="utf-8")).get("dataset_path")
    except (OSError, ValueError, AttributeError) as err:
        raise DatasetError(f"{plans}: not a readable plans file ({err})") from err
    if not isinstance(value, str) or not value:
        raise DatasetError(f"{plans}: no 'dataset_path'; run medseg plan again")
    path = Path(value)
    return path if path.is_absolute() else root / path


def _prediction_dir(root: Path) -> Path | None:
    if (root / "predictions").is_dir():
        return (root / "predictions").resolve()
    for config in sorted(p for p in root.iterdir() if p.is_dir()):
        folds = sorted(config.glob("fold_*/validation"))
        if folds:
            return folds[0].parent.parent.resolve()  # the configuration: folds pooled
    return None


def _prediction_file(pred_dir: Path | None, case_id: str, ending: str) -> Path | None:
    if pred_dir is None:
        return None
    direct = pred_dir / f"{case_id}{ending}"
    if direct.exists():
        return direct
    for fold in sorted(pred_dir.glob("fold_*/validation")):
        if (fold / f"{case_id}{ending}").exists():
            return fold / f"{case_id}{ending}"
    return None


def _metrics_file(root: Path, pred_dir: Path | None) -> Path | None:
    candidates = [root / "evaluation" / "per_case.csv"]
    if pred_dir is not None:
        candidates += [
            root / "evaluation" / pred_dir.name / "per_case.csv",
            pred_dir / "evaluation" / "per_case.csv",
            pred_dir.parent / "evaluation" / "per_case.csv",
        ]
    return next((p for p in candidates if p.is_file()), None)


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _read_metrics(path: Path | None) -> dict[str, dict]:
    """``{case: {"dice", "hd95", "per_label"}}`` from ``per_case.csv`` (means over labels)."""
    if path is None:
        return {}
    per_case: dict[str, dict] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            entry = per_case.setdefault(row.get("case", ""), {"per_label": {}})
            entry["per_label"][row.get("label", "")] = {
                "dice": _number(row.get("dice")),
                "hd95": _number(row.get("hd95")),
            }
    for entry in per_case.values():
        for key in ("dice", "hd95"):
            values = [v[key] for v in entry["per_label"].values() if not math.isnan(v[key])]
            entry[key] = sum(values) / len(values) if values else math.nan
    return per_case
