"""The ``plan`` pipeline step: check, fingerprint and plan a dataset into a results folder."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from medseg.data import check_dataset, compute_fingerprint, load_dataset
from medseg.data.dataset import Dataset
from medseg.data.slide_dataset import is_slide_dataset
from medseg.errors import ConfigError, DatasetError, OverwriteError
from medseg.fileutil import check_writable
from medseg.planning.calibrate import fit_to_time_budget
from medseg.planning.choices import PlanChoices, apply_choices, check_choice_names
from medseg.planning.intensity_options import (
    check_intensity_channels,
    parse_channels,
    with_intensity_corrections,
)
from medseg.planning.laterality import find_laterality
from medseg.planning.plan import Plan, Plans
from medseg.planning.planner import plan_dataset
from medseg.planning.preprocessing import preprocessing_hash


def plan(
    dataset: str | os.PathLike[str],
    results: str | os.PathLike[str],
    *,
    device: str = "cpu",
    memory_gb: float = 4.0,
    time_budget_s: float | None = None,
    precision: str | None = None,
    choices: PlanChoices | None = None,
    variant: str | None = None,
    n4: Sequence[int] | str = (),
    histogram: Sequence[int] | str = (),
    jobs: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    slide_tiles: dict[str, Any] | None = None,
) -> Plans:
    """Check the dataset, then write ``RESULTS/{dataset.json, fingerprint.json, plans.json}``.

    Args:
        dataset: the dataset folder (any layout ``load_dataset`` reads).
        results: the results folder (created).
        device: ``"cpu"`` or ``"cuda"``: the device the plan is sized for.
        memory_gb: memory budget for one training step.
        time_budget_s: training time budget: step times are measured (and bf16 decided) in
            a child process, epochs and configuration fit it (``medseg.planning.calibrate``).
        precision: ``"bf16"`` or ``"fp32"`` for every configuration (default: decided per
            configuration, see ``Plan.precision``).
        choices: network, loss, sampling, optimiser, augmentation, mirroring, elastic and
            ``--set`` values instead of the planner's (``medseg.planning.choices``).
        variant: the choices go to ``<configuration>-<variant>`` plans of every configuration
            but the cascade's second stage, next to those in ``results`` (planned first when
            there are none), sharing their case store where preprocessing is the same.
        n4, histogram: image channels (or ``"0,1"``, ``"all"``) given N4 bias-field
            correction / histogram matching before normalisation (in the variant only, with
            ``variant``); see ``medseg.planning.intensity_options``.
        slide_tiles: for a slide dataset (``dataset.json`` with ``"slides"``): options of
            ``medseg.planning.slide.plan_slides`` (mpp, tile_size, tiles_per_slide, ...).

    Raises:
        DatasetError: the dataset has problems (all listed in the message).
        OverwriteError: ``plans.json`` (or, with ``variant``, that variant) exists and
            ``overwrite`` is False.
        ConfigError: ``results`` already holds plans of a different dataset; a bad choice.
    """
    if is_slide_dataset(dataset):  # tiles are extracted first, then planned by this function
        return _plan_slides(dataset, results, slide_tiles, locals())
    choices = choices or PlanChoices()
    check_choice_names(choices)
    results, dataset_path = Path(results), Path(dataset).resolve()
    existing = results / "plans.json"
    previous = _previous_plans(existing, dataset_path)
    ds = _refuse_time_series(load_dataset(dataset_path), dataset_path)
    corrections = _corrections(ds, n4, histogram, jobs=jobs)
    if previous is not None and variant is not None:
        plans = _with_variant(previous, variant, choices, corrections, existing, overwrite)
        plans.to_json(existing)
        return plans
    check_writable(existing, overwrite=overwrite)
    # with a variant, the base configurations are planned plain and the choices go to it
    plain = variant is not None
    base_choices, base_corrections = (PlanChoices(), None) if plain else (choices, corrections)
    _refuse_problems(ds, jobs=jobs, progress=progress)
    fingerprint = compute_fingerprint(ds, jobs=jobs, progress=progress)
    plans = plan_dataset(
        fingerprint, str(dataset_path), device=device, memory_gb=memory_gb, **find_laterality(ds)
    )
    plans = _with_choices(plans, base_choices, base_corrections)
    if precision is not None:
        plans = with_precision(plans, precision)
    if time_budget_s is not None:
        plans = fit_to_time_budget(
            plans, time_budget_s, device=device, precision_forced=precision is not None
        )
    plans = replace(plans, configurations={**plans.configurations, **_variants(previous)})
    if variant is not None:
        plans = _with_variant(plans, variant, choices, corrections, existing, overwrite)
    # written only now: a bad choice above leaves the results folder as it was
    _write_results(results, dataset_path, fingerprint, plans)
    return plans


_PLAN_OPTIONS = (
    "device", "memory_gb", "time_budget_s", "precision", "choices", "variant", "n4",
    "histogram", "jobs", "overwrite", "progress",
)  # fmt: skip


def _refuse_time_series(ds: Dataset, dataset_path: Path) -> Dataset:
    from medseg.data.temporal import is_time_series_dataset

    if is_time_series_dataset(ds):
        raise DatasetError(
            f"{dataset_path}: a time-axis dataset (4D images); train per frame: medseg data "
            f"cine-to-frames {dataset_path} -o FRAMES --context 1, then medseg plan FRAMES"
        )
    return ds


def _plan_slides(
    dataset: str | os.PathLike[str],
    results: str | os.PathLike[str],
    slide_tiles: dict[str, Any] | None,
    given: dict[str, Any],
) -> Plans:
    from medseg.planning.slide import plan_slides  # it imports this module

    options = {name: given[name] for name in _PLAN_OPTIONS}
    return plan_slides(dataset, results, **(slide_tiles or {}), **options)


def _write_results(results: Path, dataset_path: Path, fingerprint: Any, plans: Plans) -> None:
    results.mkdir(parents=True, exist_ok=True)
    fingerprint.to_json(results / "fingerprint.json")
    if (dataset_path / "dataset.json").exists():
        shutil.copyfile(dataset_path / "dataset.json", results / "dataset.json")
    plans.to_json(results / "plans.json")


def _with_choices(
    plans: Plans, choices: PlanChoices, corrections: Callable[[Plans], Plans] | None
) -> Plans:
    """Every configuration with the choices and intensity corrections applied."""
    if not choices.empty:
        configs = {k: apply_choices(p, choices) for k, p in plans.configurations.items()}
        plans = replace(plans, configurations=configs)
    return plans if corrections is None else corrections(plans)


def _previous_plans(path: Path, dataset_path: Path) -> Plans | None:
    """The plans already in ``path`` (None: none), which must be of this dataset."""
    if not path.exists():
        return None
    previous = Plans.from_json(path)
    if Path(previous.dataset_path).resolve() != dataset_path:
        raise ConfigError(
            f"{path.parent}: results folder belongs to dataset {previous.dataset_path}, "
            f"not {dataset_path}; use another results folder"
        )
    return previous


def _refuse_problems(ds: Dataset, *, jobs: int | None, progress: bool) -> None:
    """Raise one ``DatasetError`` listing the dataset's problems (``medseg data check``)."""
    problems = check_dataset(ds, jobs=jobs, progress=progress)
    if problems:
        listing = "; ".join(str(p) for p in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        raise DatasetError(
            f"{ds.root}: {len(problems)} problem(s) found, run 'medseg data check': {listing}{more}"
        )


def _variants(previous: Plans | None) -> dict[str, Plan]:
    """The variant plans of the existing plans (kept when the base is planned again)."""
    if previous is None:
        return {}
    return {k: p for k, p in previous.configurations.items() if p.variant}


def _corrections(
    ds: Dataset, n4: Sequence[int] | str, histogram: Sequence[int] | str, *, jobs: int | None
) -> Callable[[Plans], Plans] | None:
    """What sets the N4 / histogram-matching fields of plans (None: neither is asked); the
    channels are checked here, before any image is read."""
    n4, histogram = _intensity_channels(ds, n4, histogram)
    if not (n4 or histogram):
        return None
    return partial(with_intensity_corrections, dataset=ds, n4=n4, histogram=histogram, jobs=jobs)


def _intensity_channels(
    ds: Dataset, n4: Sequence[int] | str, histogram: Sequence[int] | str
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The N4 and histogram-matching channels as indices, checked before anything is read."""
    count = len(ds.channel_names)
    n4 = parse_channels(n4, count, option="--n4") if isinstance(n4, str) else tuple(n4)
    histogram = (
        parse_channels(histogram, count, option="--histogram-matching")
        if isinstance(histogram, str)
        else tuple(histogram)
    )
    if n4 or histogram:
        normalization = tuple(
            "ct" if name.strip().lower() == "ct" else "zscore" for name in ds.channel_names.values()
        )
        check_intensity_channels(ds.channel_names, normalization, n4=n4, histogram=histogram)
    return n4, histogram


def _with_variant(
    plans: Plans,
    variant: str,
    choices: PlanChoices,
    corrections: Callable[[Plans], Plans] | None,
    path: Path,
    overwrite: bool,
) -> Plans:
    """``<configuration>-<variant>`` of every configuration but the cascade's second stage,
    sharing the base configuration's case store unless ``corrections`` (N4, histogram
    matching) change its preprocessing (see :func:`plan`)."""
    if choices.empty and corrections is None:
        raise ConfigError(
            f"variant '{variant}' changes nothing; give --network, --loss, --sampling, "
            "--optimizer, --augment, --mirror-axes, --elastic or --set"
        )
    added = {}
    for name, base in plans.configurations.items():
        if base.variant or base.previous_stage:
            continue
        # named first (so its own name validates), then pointed at the base's case store
        v = apply_choices(replace(base, variant=variant, data_configuration=None), choices)
        if corrections is not None:
            v = corrections(replace(plans, configurations={v.name: v}))[v.name]
        same_data = preprocessing_hash(v) == preprocessing_hash(base)
        v = replace(
            v,
            data_configuration=base.store_configuration if same_data else None,
            reasons={**v.reasons, "variant": f"variant '{variant}' of {name}"},
        )
        if v.name in plans.configurations and not overwrite:
            raise OverwriteError(f"{path}: variant {v.name} exists; use --overwrite to replace it")
        added[v.name] = v
    return replace(plans, configurations={**plans.configurations, **added})


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
            "loss": f"{p.loss} {p.loss_config}" if p.loss_config else p.loss,
            "sampling": p.sampling,
            "augmentation": f"{p.augmentation}, elastic p={p.elastic:g}",
            "mirror_axes": "all" if p.mirror_axes is None else list(p.mirror_axes),
        }
        if p.ignore_label is not None:
            values["ignore_label"] = p.ignore_label
        for key, value in values.items():
            lines.append(f"  {key}: {value}")
            if key in p.reasons:
                lines.append(f"      why: {p.reasons[key]}")
        for key, reason in p.reasons.items():
            if key not in values:
                lines.append(f"  {key}: {reason}")
    return "\n".join(lines)
