"""Reading a results folder for the report: plans, training logs, evaluations, case files.

Nothing here raises for a missing or unreadable piece: each loader returns what it found and
a list of problems (one sentence each), which the report states. Only a results path that is
not a folder is an error.

Layout read (see ARCHITECTURE.md)::

    RESULTS/plans.json  dataset.json  [run.json]
    RESULTS/<config>/fold_<k>/log.csv  [run.json]  validation/<case><ending>
    RESULTS/<config>/fold_<k>/evaluation/summary.json   (the fold's validation cases)
    RESULTS/evaluation/<name>/per_case.csv  summary.json   (one per configuration/ensemble)
    RESULTS/evaluation/per_case.csv  summary.json          (a single evaluation, also read)
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.errors import ConfigError
from medseg.fileutil import csv_restore
from medseg.io import IMAGE_EXTENSIONS

EVALUATION_DIR = "evaluation"
_SKIP_DIRS = {EVALUATION_DIR, "preprocessed"}


@dataclass(frozen=True)
class Fold:
    """One trained fold.

    Attributes:
        configuration: the plan's folder name (``3d_fullres``, or a variant's ``2d-attn``).
        name: the fold folder name (``fold_0``, ``fold_all``).
        path: the fold folder.
        log: ``log.csv`` rows with every value as float (NaN where empty); empty if absent.
        evaluation: ``evaluation/summary.json`` of the fold's validation cases (written by
            ``medseg.pipeline.validate_fold``), ``null`` as NaN; None if absent.
    """

    configuration: str
    name: str
    path: Path
    log: list[dict[str, float]] = field(default_factory=list)
    evaluation: dict[str, Any] | None = None

    @property
    def trained(self) -> bool:
        """Whether the fold has a checkpoint (``checkpoint_best.pt`` or ``_latest.pt``)."""
        return any(self.path.glob("checkpoint_*.pt"))


@dataclass(frozen=True)
class Evaluation:
    """One evaluation folder (``per_case.csv`` + ``summary.json``).

    Attributes:
        name: configuration (or ensemble) name; ``"evaluation"`` for ``RESULTS/evaluation``.
        path: the folder.
        summary: ``summary.json`` with ``null`` turned into NaN.
        rows: ``per_case.csv`` rows; ``case`` and ``label`` as str, metrics as float.
    """

    name: str
    path: Path
    summary: dict[str, Any]
    rows: list[dict[str, Any]]

    @property
    def labels(self) -> list[str]:
        """Label names in summary order (falls back to the order in the rows)."""
        names = self.summary.get("labels") or list(self.summary.get("per_label", {}))
        return [str(n) for n in names] or list(dict.fromkeys(r["label"] for r in self.rows))

    @property
    def regions(self) -> dict[str, list[int]]:
        """Label name -> label values it covers (from the evaluation options, else the name)."""
        known = (self.summary.get("options") or {}).get("labels") or {}
        regions = {}
        for name in self.labels:
            values = known.get(name)
            if values is None and name.lstrip("-").isdigit():
                values = [int(name)]
            regions[name] = [int(v) for v in values or []]
        return regions


@dataclass(frozen=True)
class Results:
    """Everything the report reads from a results folder.

    Attributes:
        root: the results folder.
        plans: ``plans.json`` (None if absent or unreadable).
        dataset: ``dataset.json`` (None if absent or unreadable).
        folds: trained folds, sorted by configuration and fold.
        evaluations: evaluations found, sorted by name.
        device: the training device if a ``run.json`` records one, else None.
        problems: files that exist but could not be read, one sentence each.
    """

    root: Path
    plans: dict[str, Any] | None
    dataset: dict[str, Any] | None
    folds: list[Fold]
    evaluations: list[Evaluation]
    device: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def dataset_name(self) -> str:
        """``plans.json``'s dataset name, else ``dataset.json``'s, else the folder name."""
        name = (self.plans or {}).get("dataset_name") or (self.dataset or {}).get("name")
        return str(name) if name else self.root.name

    def label_name(self, label: str) -> str:
        """``"1 (liver)"`` for a label value that ``dataset.json`` names, else ``label``."""
        for name, value in ((self.dataset or {}).get("labels") or {}).items():
            if isinstance(value, int) and str(value) == label and name != label:
                return f"{label} ({name})"
        return label

    @property
    def dataset_path(self) -> Path | None:
        """The dataset folder named in ``plans.json`` (relative paths tried from here and root)."""
        raw = (self.plans or {}).get("dataset_path")
        return resolve_path(raw, self.root) if raw else None


def load_results(results: str | os.PathLike[str]) -> Results:
    """Read what the report needs from ``results``; missing pieces are simply absent.

    Raises:
        ConfigError: ``results`` is not a folder.
    """
    root = Path(results)
    if not root.is_dir():
        raise ConfigError(
            f"{root}: no such results folder; pass the folder given to 'medseg plan -o'"
        )
    problems: list[str] = []
    plans = _read_json(root / "plans.json", problems)
    dataset = _read_json(root / "dataset.json", problems)
    folds = _find_folds(root, problems)
    evaluations = _find_evaluations(root / EVALUATION_DIR, problems)
    device = _recorded_device([root, *(f.path for f in folds)], problems)
    return Results(root, plans, dataset, folds, evaluations, device, problems)


def resolve_path(raw: str | os.PathLike[str], root: Path) -> Path:
    """``raw`` as given if it exists (absolute or from the working folder), else under ``root``."""
    path = Path(raw)
    if path.is_absolute() or path.exists() or not (root / path).exists():
        return path
    return root / path


def _read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        problems.append(f"{path}: could not be read ({err})")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path}: expected a JSON object")
        return None
    return data


def _natural_key(name: str) -> list[Any]:
    """Sort ``fold_10`` after ``fold_2``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _find_folds(root: Path, problems: list[str]) -> list[Fold]:
    folds = []
    for config in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in _SKIP_DIRS):
        for path in sorted(config.glob("fold_*"), key=lambda p: _natural_key(p.name)):
            if path.is_dir():
                summary = _read_json(path / EVALUATION_DIR / "summary.json", problems)
                folds.append(
                    Fold(
                        config.name,
                        path.name,
                        path,
                        _read_log(path / "log.csv", problems),
                        None if summary is None else _nan_for_null(summary),
                    )
                )
    return folds


def _read_log(path: Path, problems: list[str]) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [{k: _as_float(v) for k, v in row.items() if k} for row in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        problems.append(f"{path}: could not be read ({err})")
        return []


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _find_evaluations(folder: Path, problems: list[str]) -> list[Evaluation]:
    if not folder.is_dir():
        return []
    candidates = [(folder.name, folder)] + [
        (p.name, p)
        for p in sorted(folder.iterdir(), key=lambda p: _natural_key(p.name))
        if p.is_dir()
    ]
    found = []
    for name, path in candidates:
        summary = _read_json(path / "summary.json", problems)
        if summary is None:
            continue
        found.append(
            Evaluation(
                name, path, _nan_for_null(summary), _read_rows(path / "per_case.csv", problems)
            )
        )
    return found


def _nan_for_null(obj: Any) -> Any:
    """``summary.json`` writes NaN as ``null``; turn it back into NaN."""
    if isinstance(obj, dict):
        return {k: _nan_for_null(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_for_null(v) for v in obj]
    return math.nan if obj is None else obj


def _read_rows(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    if not path.is_file():
        problems.append(f"{path}: missing, so there are no per-case figures for this evaluation")
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [
                {
                    k: (csv_restore(str(v)) if k in ("case", "label") else _as_float(v))
                    for k, v in row.items()
                    if k
                }
                for row in csv.DictReader(f)
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        problems.append(f"{path}: could not be read ({err})")
        return []


def _recorded_device(folders: list[Path], problems: list[str]) -> str | None:
    """The ``device`` of the first ``run.json`` that records one (training writes none yet)."""
    devices = []
    for folder in folders:
        run = _read_json(folder / "run.json", problems)
        if run and run.get("device"):
            devices.append(str(run["device"]))
    return ", ".join(dict.fromkeys(devices)) or None


def rank_cases(rows: list[dict[str, Any]]) -> list[tuple[str, float]]:
    """Cases sorted best first by their mean Dice over labels (NaN labels skipped).

    Cases whose every label has a NaN Dice are left out; ties break by case id.

    Example:
        >>> rank_cases([{"case": "a", "dice": 0.5}, {"case": "b", "dice": 0.9}])
        [('b', 0.9), ('a', 0.5)]
    """
    per_case: dict[str, list[float]] = {}
    for row in rows:
        per_case.setdefault(str(row["case"]), []).append(float(row.get("dice", math.nan)))
    means = []
    for case, values in per_case.items():
        kept = [v for v in values if not math.isnan(v)]
        if kept:
            means.append((case, float(np.mean(kept))))
    return sorted(means, key=lambda item: (-item[1], item[0]))


def pick_cases(ranked: list[tuple[str, float]]) -> list[tuple[str, str, float]]:
    """``(roles, case, mean Dice)`` for the best, median and worst case of ``ranked``.

    A case holding several roles (fewer than three cases) appears once, e.g. ``"median,
    worst"``. The median is the lower middle (index ``n // 2`` of the best-first list).

    Example:
        >>> pick_cases([("a", 0.9), ("b", 0.5)])
        [('best', 'a', 0.9), ('median, worst', 'b', 0.5)]
    """
    if not ranked:
        return []
    roles: dict[int, list[str]] = {}
    for role, index in (("best", 0), ("median", len(ranked) // 2), ("worst", len(ranked) - 1)):
        roles.setdefault(index, []).append(role)
    return [(", ".join(names), *ranked[index]) for index, names in roles.items()]


def find_case_file(folders: list[Path], names: list[str]) -> Path | None:
    """The first ``folder/name<ext>`` that exists, for any image extension."""
    for folder in folders:
        for name in names:
            for ext in IMAGE_EXTENSIONS:
                if (folder / f"{name}{ext}").is_file():
                    return folder / f"{name}{ext}"
    return None


def case_paths(results: Results, evaluation: Evaluation, case: str) -> dict[str, Path | None]:
    """Where the image, reference and prediction of ``case`` are, None for any not found.

    The prediction comes from the summary's ``pred_dir``, else ``<name>/fold_*/validation``;
    the reference from ``ref_dir``, else the dataset's ``labelsTr``; the image from the
    dataset's ``imagesTr/<case>_0000<file_ending>`` (or ``images/<case>.*`` for 2D folders).
    """
    summary, dataset = evaluation.summary, results.dataset_path
    pred_dirs = (
        [resolve_path(summary["pred_dir"], results.root)]
        if isinstance(summary.get("pred_dir"), str)
        else []
    )
    pred_dirs += [
        f.path / "validation" for f in results.folds if f.configuration == evaluation.name
    ]
    ref_dirs = (
        [resolve_path(summary["ref_dir"], results.root)]
        if isinstance(summary.get("ref_dir"), str)
        else []
    )
    image_path = None
    if dataset is not None:
        ref_dirs.append(dataset / "labelsTr")
        ending = (results.dataset or {}).get("file_ending")
        if ending and (dataset / "imagesTr" / f"{case}_0000{ending}").is_file():
            image_path = dataset / "imagesTr" / f"{case}_0000{ending}"
        else:
            image_path = find_case_file(
                [dataset / "imagesTr", dataset / "images"], [f"{case}_0000", case]
            )
    return {
        "image": image_path,
        "reference": find_case_file(ref_dirs, [case]),
        "prediction": find_case_file(pred_dirs, [case]),
    }
