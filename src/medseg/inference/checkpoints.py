"""Which trained models exist in a results folder, and which to ensemble.

``RESULTS/<plan>/fold_<k>/checkpoint_{best,latest}.pt``, where a plan is a configuration
(``2d``, ``3d_fullres``, ...) or a variant of one (``2d-attn``, from ``medseg plan --variant``):
:func:`trained_folds` lists one plan's folds, :func:`trained_plans` every plan's,
:func:`find_checkpoints` picks the ensemble (every trained fold of every trained configuration
by default; variants only when named) and :func:`previous_stage_models` the ``3d_lowres``
models a cascade stage needs. Errors list what exists, so a user sees what to train.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from torch import nn

from medseg.errors import ConfigError
from medseg.planning.plan import CONFIGURATIONS, VARIANT_NAME, Plan
from medseg.training import model_from_checkpoint

log = logging.getLogger(__name__)


def trained_folds(
    results: str | os.PathLike[str], configuration: str, checkpoint: str = "best"
) -> list[str]:
    """Fold names (``"0"``, ``"all"``) of ``configuration`` that have
    ``checkpoint_<checkpoint>.pt``."""
    return sorted(
        p.name.removeprefix("fold_")
        for p in (Path(results) / configuration).glob("fold_*")
        if (p / f"checkpoint_{checkpoint}.pt").is_file()
    )


def is_plan_name(name: str) -> bool:
    """Whether ``name`` is a configuration or ``<configuration>-<variant>`` (a plan's name).

    Example:
        >>> is_plan_name("2d-attn"), is_plan_name("3d_fullres"), is_plan_name("evaluation")
        (True, True, False)
    """
    configuration, dash, variant = name.partition("-")
    return configuration in CONFIGURATIONS and (not dash or bool(VARIANT_NAME.fullmatch(variant)))


def _plan_folders(results: Path) -> list[str]:
    """The folders of ``results`` named like a plan: the configurations (in
    ``CONFIGURATIONS`` order), then the variants by name."""
    names = {p.name for p in results.iterdir() if p.is_dir() and is_plan_name(p.name)}
    return [c for c in CONFIGURATIONS if c in names] + sorted(names - set(CONFIGURATIONS))


def trained_plans(
    results: str | os.PathLike[str], checkpoint: str = "best"
) -> dict[str, list[str]]:
    """Plan name -> its trained fold names, for every plan (configuration or variant) with any:
    the configurations first (in ``CONFIGURATIONS`` order), then the variants by name."""
    results = Path(results)
    if not results.is_dir():
        return {}
    found = {name: trained_folds(results, name, checkpoint) for name in _plan_folders(results)}
    return {name: folds for name, folds in found.items() if folds}


def _planned(results: Path) -> list[str] | None:
    """The plan names in ``plans.json`` (None when it is absent or unreadable)."""
    try:
        data = json.loads((results / "plans.json").read_text(encoding="utf-8"))
        return sorted(data["configurations"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _describe_existing(results: Path) -> str:
    rows = []
    for config in _plan_folders(results):
        for fold in sorted((results / config).glob("fold_*")):
            files = sorted(p.name for p in fold.glob("checkpoint_*.pt"))
            rows.append(f"{config}/{fold.name}: {', '.join(files) or 'no checkpoint'}")
    return "; ".join(rows) if rows else "no trained folds"


def find_checkpoints(
    results: str | os.PathLike[str],
    *,
    configurations: Sequence[str] | None = None,
    folds: Sequence[int | str] | None = None,
    checkpoint: Literal["best", "latest"] = "best",
) -> list[Path]:
    """The checkpoint files to ensemble.

    Args:
        results: the results folder.
        configurations: plan names: configurations and variants (``["2d", "2d-attn"]``).
            Default: every configuration with at least one trained fold, without the
            variants (``<configuration>-<variant>``): a variant is ensembled only when named.
        folds: default: every trained fold of each configuration.
        checkpoint: ``"best"`` or ``"latest"``.

    Returns:
        ``RESULTS/<config>/fold_<k>/checkpoint_<checkpoint>.pt`` paths.

    Raises:
        ConfigError: a requested configuration or fold has no such checkpoint, or no
            configuration is trained; the message lists what exists (and the planned names
            when a requested one is not in ``plans.json``).
    """
    results = Path(results)
    if checkpoint not in ("best", "latest"):
        raise ConfigError(f"checkpoint must be 'best' or 'latest', got {checkpoint!r}")
    if not results.is_dir():
        raise ConfigError(f"{results}: results folder does not exist")
    if configurations:
        configs = list(dict.fromkeys(configurations))
        trained = {config: trained_folds(results, config, checkpoint) for config in configs}
    else:
        trained = {
            c: f for c, f in trained_plans(results, checkpoint).items() if c in CONFIGURATIONS
        }
        configs = list(trained)
    if not configs:
        variants = list(trained_plans(results, checkpoint))
        hint = (
            f"; variants are used only when named, e.g. --config {variants[0]}"
            if variants
            else "; train a model first"
        )
        raise ConfigError(
            f"{results}: no checkpoint_{checkpoint}.pt found under <configuration>/fold_<k>/ "
            f"({_describe_existing(results)}){hint}"
        )
    planned = _planned(results)
    paths = []
    for config in configs:
        wanted = [str(f) for f in folds] if folds is not None else trained[config]
        missing = [f for f in wanted if f not in trained[config]]
        if missing or not wanted:
            which = f"fold(s) {', '.join(missing)}" if missing else "any fold"
            unplanned = (
                f"; '{config}' is not in plans.json (planned: {', '.join(planned)})"
                if planned is not None and config not in planned
                else ""
            )
            raise ConfigError(
                f"{results / config}: no checkpoint_{checkpoint}.pt for {which}; "
                f"existing: {_describe_existing(results)}{unplanned}"
            )
        paths += [results / config / f"fold_{f}" / f"checkpoint_{checkpoint}.pt" for f in wanted]
    return paths


def previous_stage_models(
    results: str | os.PathLike[str],
    models: Sequence[tuple[nn.Module, Plan]],
    *,
    folds: Sequence[int | str] | None = None,
    checkpoint: Literal["best", "latest"] = "best",
) -> list[tuple[nn.Module, Plan]] | None:
    """The previous-stage ensemble the cascade models among ``models`` need (None if none do).

    Its folds are ``folds`` when the previous stage has all of them, else every trained fold
    of the previous stage.

    Raises:
        ConfigError: the models' previous stages differ, or it has no trained fold.
    """
    stages = sorted({plan.previous_stage for _, plan in models if plan.previous_stage})
    if not stages:
        return None
    if len(stages) > 1:
        raise ConfigError(f"cannot ensemble cascade models with different previous stages {stages}")
    stage = stages[0]
    trained = trained_folds(results, stage, checkpoint)
    if not trained:
        raise ConfigError(
            f"{Path(results) / stage}: the cascade needs the {stage} models it was trained on, "
            f"but no {stage} fold has checkpoint_{checkpoint}.pt; "
            f"existing: {_describe_existing(Path(results))}"
        )
    wanted = (
        [str(f) for f in folds]
        if folds is not None and all(str(f) in trained for f in folds)
        else trained
    )
    if folds is not None and wanted is trained:
        log.info(
            "the %s stage lacks fold(s) %s: using its trained folds %s", stage, list(folds), trained
        )
    paths = find_checkpoints(results, configurations=[stage], folds=wanted, checkpoint=checkpoint)
    return [model_from_checkpoint(path) for path in paths]
