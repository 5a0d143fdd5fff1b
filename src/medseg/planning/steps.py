"""The ``plan`` pipeline step: check, fingerprint and plan a dataset into a results folder."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

from medseg.data import check_dataset, compute_fingerprint, load_dataset
from medseg.errors import ConfigError, DatasetError
from medseg.fileutil import check_writable
from medseg.planning.calibrate import fit_to_time_budget
from medseg.planning.plan import Plans
from medseg.planning.planner import plan_dataset


def plan(
    dataset: str | os.PathLike[str],
    results: str | os.PathLike[str],
    *,
    device: str = "cpu",
    memory_gb: float = 4.0,
    time_budget_s: float | None = None,
    precision: str | None = None,
    jobs: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Plans:
    """Check the dataset, then write ``RESULTS/{dataset.json, fingerprint.json, plans.json}``.

    Args:
        dataset: the dataset folder (any layout ``load_dataset`` reads).
        results: the results folder (created).
        device: ``"cpu"`` or ``"cuda"``: the device the plan is sized for.
        memory_gb: memory budget for one training step.
        time_budget_s: training time budget; when given, the step time of each
            configuration is measured here (in a child process, which also decides bf16 or
            float32: see ``medseg.planning.calibrate``) and epochs/configuration are chosen
            to fit it.
        precision: ``"bf16"`` or ``"fp32"`` for every configuration (default: decided per
            configuration, see ``Plan.precision``).

    Raises:
        DatasetError: the dataset has problems (all listed in the message).
        OverwriteError: ``plans.json`` exists and ``overwrite`` is False.
        ConfigError: ``results`` already holds plans of a different dataset.
    """
    results = Path(results)
    dataset_path = Path(dataset).resolve()
    existing = results / "plans.json"
    if existing.exists():
        previous = Plans.from_json(existing)
        if Path(previous.dataset_path).resolve() != dataset_path:
            raise ConfigError(
                f"{results}: results folder belongs to dataset {previous.dataset_path}, "
                f"not {dataset_path}; use another results folder"
            )
    check_writable(existing, overwrite=overwrite)
    ds = load_dataset(dataset_path)
    problems = check_dataset(ds, jobs=jobs, progress=progress)
    if problems:
        listing = "; ".join(str(p) for p in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        raise DatasetError(
            f"{dataset_path}: {len(problems)} problem(s) found, run 'medseg data check': "
            f"{listing}{more}"
        )
    results.mkdir(parents=True, exist_ok=True)
    fingerprint = compute_fingerprint(ds, jobs=jobs, progress=progress)
    fingerprint.to_json(results / "fingerprint.json")
    if (dataset_path / "dataset.json").exists():
        shutil.copyfile(dataset_path / "dataset.json", results / "dataset.json")
    plans = plan_dataset(fingerprint, str(dataset_path), device=device, memory_gb=memory_gb)
    if precision is not None:
        plans = with_precision(plans, precision)
    if time_budget_s is not None:
        plans = fit_to_time_budget(
            plans, time_budget_s, device=device, precision_forced=precision is not None
        )
    plans.to_json(existing)
    return plans


def with_precision(plans: Plans, precision: str) -> Plans:
    """Every configuration set to train in ``precision`` (``"bf16"`` or ``"fp32"``).

    Raises:
        ConfigError: another value.
    """
    if precision not in ("bf16", "fp32"):
        raise ConfigError(f"precision must be bf16 or fp32, got {precision!r}")
    reason = f"{precision}: set by --precision"
    configs = {
        name: replace(p, precision=precision, reasons={**p.reasons, "precision": reason})
        for name, p in plans.configurations.items()
    }
    return replace(plans, configurations=configs)


def explain(plans: Plans) -> str:
    """A readable account of every planned value and why it was chosen."""
    lines = [f"plans for {plans.dataset_name} ({plans.dataset_path})"]
    if plans.recommended:
        lines.append(f"recommended configuration: {plans.recommended}")
    for name, p in plans.configurations.items():
        lines.append(f"\n[{name}]")
        cfg = p.network_config
        values = {
            "spacing": p.spacing,
            "normalization": p.normalization,
            "patch_size": p.patch_size,
            "batch_size": p.batch_size,
            "network_config": (
                f"{p.network} features={cfg.get('features')} strides={cfg.get('strides')}"
            ),
            "optimizer": f"{p.optimizer} lr={p.learning_rate} wd={p.weight_decay} {p.lr_schedule}",
            "precision": p.precision,
        }
        for key, value in values.items():
            lines.append(f"  {key}: {value}")
            if key in p.reasons:
                lines.append(f"      why: {p.reasons[key]}")
        for key, reason in p.reasons.items():
            if key not in values:
                lines.append(f"  {key}: {reason}")
    return "\n".join(lines)
