"""Robustness of a trained ensemble to image degradations (the seeds' definition).

Lecture 003 defines robustness as "the degradation in performance with respect to varying
noise levels or other imaging artefacts". ``robustness`` measures exactly that: every case
is degraded by each perturbation of ``medseg.transforms.degrade`` (noise, bias field, blur,
low resolution, contrast) at each level, predicted by the trained ensemble
(``medseg.inference.predict_case``, the models ``medseg predict`` would use) and scored
against its reference with ``medseg.metrics.evaluate_case`` (Dice and HD95 per label).
Level 0 (the unchanged image) is predicted once per case and shared by every perturbation.

This is not ``medseg.metrics.annotation_noise_sweep``, which perturbs the *reference mask* to
show how a metric reacts to rater disagreement; here the reference is fixed and the *image*
changes, so the drop is the model's.

Outputs in ``out``:

- ``robustness.csv``: one row per perturbation, level, case and label: ``perturbation,
  level, parameter, case, label, dice, hd95`` (level 0 rows repeated under every perturbation,
  with the same values, so each perturbation's curve is complete).
- ``robustness.json``: options, and per perturbation and level the physical parameter and,
  per label and for ``"all"`` (each case's mean over labels first), mean, std and ``n`` of
  Dice and HD95, the NaN count, and the Dice drop and HD95 increase from level 0.
- ``robustness.png``: mean Dice and HD95 (``"all"``) against the level, one line per
  perturbation, error bars one standard deviation over cases.

The summary, the CSV text, the figure and ``load_robustness`` are in
``medseg.evaluation.robustness_summary``.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from medseg.errors import ConfigError, DatasetError, GeometryError
from medseg.evaluation.robustness_summary import (
    format_robustness_csv,
    robustness_figure,
    summarize_robustness,
)
from medseg.fileutil import atomic_path, check_writable, write_json_atomic
from medseg.transforms.degrade import (
    DEFAULT_LEVELS,
    PERTURBATIONS,
    degrade,
    level_severity,
    perturbation_parameter,
)

ALL_PERTURBATIONS = ("noise", "bias", "blur", "lowres", "contrast")
OUTPUT_FILES = ("robustness.csv", "robustness.json", "robustness.png")


@dataclass(frozen=True)
class _Task:
    """One case's work: everything a worker process needs (picklable)."""

    case_index: int
    results: str
    configurations: tuple[str, ...] | None
    folds: tuple[str, ...] | None
    checkpoint: str
    perturbations: tuple[str, ...]
    levels: int
    seed: int
    mirror: bool
    overlap: float
    device: str | None
    postprocess: bool
    input_dir: str
    ref_path: str


_MODELS: dict[tuple[Any, ...], Any] = {}  # per process: the loaded ensemble, loaded once


def _ensemble(task: _Task) -> tuple[list[Any], list[Any] | None, dict[str, Any] | None]:
    from medseg.inference.checkpoints import find_checkpoints, previous_stage_models
    from medseg.inference.postprocess import load_postprocessing
    from medseg.training import model_from_checkpoint

    key = (task.results, task.configurations, task.folds, task.checkpoint, task.postprocess)
    if key not in _MODELS:
        models = [
            model_from_checkpoint(path)
            for path in find_checkpoints(
                task.results,
                configurations=task.configurations,
                folds=task.folds,
                checkpoint=task.checkpoint,  # type: ignore[arg-type]
            )
        ]
        previous = previous_stage_models(
            task.results,
            models,
            folds=task.folds,
            checkpoint=task.checkpoint,  # type: ignore[arg-type]
        )
        decision = load_postprocessing(task.results) if task.postprocess else None
        _MODELS.clear()
        _MODELS[key] = (models, previous, decision)
    return _MODELS[key]


def case_rng(seed: int, case_id: str, perturbation: str, level: int) -> np.random.Generator:
    """The generator of one degradation: a function of the seed, the case id, the
    perturbation and the level only (the same whatever the order, ``--cases`` or ``--jobs``).

    Example:
        >>> first = case_rng(0, "case_0", "noise", 1).random()
        >>> first == case_rng(0, "case_0", "noise", 1).random()
        True
        >>> first == case_rng(0, "case_1", "noise", 1).random()
        False
    """
    words = [seed, zlib.crc32(case_id.encode()), zlib.crc32(perturbation.encode()), level]
    return np.random.default_rng(words)


def _score_case(task: _Task, step: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Predict one case at level 0 and at every perturbation's levels 1.., and score each."""
    from medseg.data.dataset import read_case
    from medseg.inference.ensemble import label_values, predict_case
    from medseg.inference.inputs import checked_input, find_input_cases
    from medseg.inference.postprocess import apply_postprocessing
    from medseg.io import read_image
    from medseg.metrics import evaluate_case

    case = find_input_cases(task.input_dir)[task.case_index]
    models, previous, decision = _ensemble(task)
    image, _ = read_case(case)
    image = checked_input(case, image, models[0][1].image_channels)
    reference = read_image(task.ref_path)
    ref = np.asarray(reference.array)
    if ref.shape != image.spatial_shape:
        raise GeometryError(
            f"{task.ref_path}: shape {ref.shape} differs from case {case.case_id}'s image "
            f"{image.spatial_shape}"
        )
    if not np.array_equal(ref, np.round(ref)):
        raise DatasetError(f"{task.ref_path}: holds non-integer values; expected a label map")
    ref = ref.astype(np.int64)
    labels = [v for v in label_values(models[0][1]) if v != 0]

    def score(array: np.ndarray) -> dict[str, dict[str, float]]:
        _, label = predict_case(
            models,
            image.with_array(array),
            overlap=task.overlap,
            mirror=task.mirror,
            device=task.device,
            previous_stage=previous,
        )
        pred = label.array
        if decision is not None:
            pred = apply_postprocessing(pred, decision)
        metrics = evaluate_case(pred, ref, image.spacing, labels=labels, threads=1)
        if step is not None:
            step()
        return metrics

    baseline = score(image.array)
    rows = []
    for name in task.perturbations:
        for level in range(task.levels):
            severity = level_severity(level, task.levels)
            if level == 0:
                metrics = baseline
            else:
                rng = case_rng(task.seed, case.case_id, name, level)
                degraded = degrade(image.array, image.spacing, name, severity=severity, rng=rng)
                metrics = score(degraded)
            for label_name, values in metrics.items():
                rows.append(
                    {
                        "perturbation": name,
                        "level": level,
                        "parameter": perturbation_parameter(name, severity),
                        "case": case.case_id,
                        "label": label_name,
                        "dice": float(values["dice"]),
                        "hd95": float(values["hd95"]),
                    }
                )
    return rows


def robustness(
    results: str | os.PathLike[str],
    images: str | os.PathLike[str],
    refs: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    perturbations: Sequence[str] = ALL_PERTURBATIONS,
    levels: int = DEFAULT_LEVELS,
    configurations: Sequence[str] | None = None,
    folds: Sequence[int | str] | None = None,
    checkpoint: Literal["best", "latest"] = "best",
    cases: int | None = None,
    seed: int = 0,
    mirror: bool = True,
    overlap: float = 0.5,
    postprocess: bool = True,
    device: str | None = None,
    jobs: int = 1,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Score the trained ensemble on degraded copies of each case (module docstring).

    Args:
        results: the results folder with the trained folds (as ``medseg predict -m``).
        images: input images (``CASE_0000<ending>``... or a dataset folder; see
            ``find_input_cases``).
        refs: reference label maps ``CASE<ending>`` (e.g. ``labelsTr``).
        out: output folder (created).
        perturbations: names in ``medseg.transforms.degrade.PERTURBATIONS``.
        levels: levels per perturbation (>= 2), level ``i`` at severity ``i / (levels - 1)``.
        configurations, folds, checkpoint: which models (``find_checkpoints``).
        cases: only the first ``cases`` cases (sorted by id); None: all.
        seed: seed of the noise and bias fields (each case, perturbation and level gets its
            own generator, ``case_rng``).
        mirror, overlap, postprocess, device: as for ``medseg predict``.
        jobs: worker processes over cases (each loads the ensemble once); 1 runs here.
        overwrite: replace existing output files.
        progress: a progress bar over case x perturbation x level predictions.

    Returns:
        The ``robustness.json`` content: ``{"options", "n_cases", "cases", "perturbations"}``
        (``summarize_robustness``).

    Raises:
        ConfigError: unknown perturbation, ``levels`` < 2, ``cases`` or ``jobs`` < 1, a
            negative seed, no models.
        DatasetError: no input images, or a case without a reference (listed).
        GeometryError: a reference whose shape differs from its image's.
        OverwriteError: an output file exists and ``overwrite`` is False.
    """
    perturbations = _check_options(perturbations, levels=levels, cases=cases, jobs=jobs, seed=seed)
    for name in OUTPUT_FILES:
        check_writable(Path(out) / name, overwrite=overwrite)
    template = _Task(
        case_index=-1,
        results=str(results),
        configurations=tuple(configurations) if configurations else None,
        folds=tuple(str(f) for f in folds) if folds else None,
        checkpoint=checkpoint,
        perturbations=perturbations,
        levels=levels,
        seed=seed,
        mirror=mirror,
        overlap=overlap,
        device=device,
        postprocess=postprocess,
        input_dir=str(images),
        ref_path="",
    )
    case_ids, tasks = _case_tasks(template, refs, cases=cases)
    _ensemble(tasks[0])  # load (and check) the models before any long work
    rows = _score_cases(tasks, jobs=jobs, progress=progress)
    summary = _robustness_json(template, case_ids, rows)
    _write_outputs(Path(out), rows, summary)
    return summary


def _check_options(
    perturbations: Sequence[str],
    *,
    levels: int,
    cases: int | None,
    jobs: int,
    seed: int,
) -> tuple[str, ...]:
    """``robustness``'s option checks (``Raises`` there); returns the perturbations without
    repeats, in the order given."""
    perturbations = tuple(dict.fromkeys(perturbations))
    if not perturbations:
        raise ConfigError("give at least one perturbation, e.g. --perturb noise,blur")
    for name in perturbations:
        PERTURBATIONS.get(name)  # unknown names raise ConfigError listing the valid ones
    level_severity(0, levels)  # checks levels >= 2
    if cases is not None and cases < 1:
        raise ConfigError(f"cases must be >= 1, got {cases}")
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    return perturbations


def _case_tasks(
    template: _Task, refs: str | os.PathLike[str], *, cases: int | None
) -> tuple[list[str], list[_Task]]:
    """The chosen cases' ids and one task each (``template`` with the case and its reference).

    Raises:
        DatasetError: no input images, or a chosen case without a reference (listed).
    """
    from medseg.evaluation.cases import case_files
    from medseg.inference.inputs import find_input_cases

    found = find_input_cases(template.input_dir)
    chosen = list(range(len(found)))[: cases or None]
    references = case_files(refs)
    missing = [found[i].case_id for i in chosen if found[i].case_id not in references]
    if missing:
        raise DatasetError(
            f"{refs}: no reference for {len(missing)} case(s): {', '.join(missing[:5])}"
        )
    tasks = [
        replace(template, case_index=i, ref_path=str(references[found[i].case_id])) for i in chosen
    ]
    return [found[i].case_id for i in chosen], tasks


def _score_cases(tasks: Sequence[_Task], *, jobs: int, progress: bool) -> list[dict[str, Any]]:
    """Every task's rows (``_score_case``), here or in ``jobs`` worker processes, sorted by
    perturbation (in the order given), level and case."""
    perturbations = tasks[0].perturbations
    per_case = 1 + len(perturbations) * (tasks[0].levels - 1)
    rows_by_case: dict[int, list[dict[str, Any]]] = {}
    with tqdm(
        total=len(tasks) * per_case, desc="robustness", disable=not progress, leave=False
    ) as bar:
        if jobs == 1 or len(tasks) == 1:
            for task in tasks:
                rows_by_case[task.case_index] = _score_case(task, lambda: bar.update(1))
        else:
            from medseg.data.parallel import exit_with_parent

            with ProcessPoolExecutor(
                max_workers=jobs, initializer=exit_with_parent, initargs=(os.getpid(),)
            ) as pool:
                futures = {pool.submit(_score_case, task): task for task in tasks}
                for future in as_completed(futures):
                    rows_by_case[futures[future].case_index] = future.result()
                    bar.update(per_case)
    rows = [row for task in tasks for row in rows_by_case[task.case_index]]
    order = {name: k for k, name in enumerate(perturbations)}
    rows.sort(key=lambda r: (order[r["perturbation"]], r["level"], r["case"]))
    return rows


def _robustness_json(
    template: _Task, case_ids: list[str], rows: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """``robustness.json``'s content: the options of ``template`` (as lists), the cases and
    ``summarize_robustness(rows)``."""
    options = {
        "results": template.results,
        "perturbations": list(template.perturbations),
        "levels": template.levels,
        "seed": template.seed,
        "mirror": template.mirror,
        "overlap": template.overlap,
        "postprocess": template.postprocess,
        "configurations": list(template.configurations) if template.configurations else None,
        "folds": list(template.folds) if template.folds else None,
        "checkpoint": template.checkpoint,
    }
    return {
        "options": options,
        "n_cases": len(case_ids),
        "cases": case_ids,
        "perturbations": summarize_robustness(rows),
    }


def _write_outputs(out: Path, rows: Sequence[dict[str, Any]], summary: dict[str, Any]) -> None:
    """``robustness.csv``, ``.json`` and ``.png`` in ``out`` (created), each atomically."""
    from medseg.evaluation.folders import json_safe

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "robustness.csv") as tmp:
        tmp.write_text(format_robustness_csv(rows), encoding="utf-8")
    write_json_atomic(out / "robustness.json", json_safe(summary))
    figure = robustness_figure(summary["perturbations"])
    with atomic_path(out / "robustness.png") as tmp:
        figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


__all__ = [
    "ALL_PERTURBATIONS",
    "case_rng",
    "robustness",
]
