"""Which trained models exist in a results folder, and which to ensemble.

``RESULTS/<configuration>/fold_<k>/checkpoint_{best,latest}.pt``: :func:`trained_folds` lists
them, :func:`find_checkpoints` picks the ensemble (every trained fold of every trained
configuration by default) and :func:`previous_stage_models` the ``3d_lowres`` models a cascade
stage needs. Errors list what exists, so a user sees what to train.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from torch import nn

from medseg.errors import ConfigError
from medseg.planning.plan import CONFIGURATIONS, Plan
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


def _trained(results: Path, checkpoint: str) -> dict[str, list[str]]:
    """Configuration -> its trained fold names, for the configurations with any."""
    found = {config: trained_folds(results, config, checkpoint) for config in CONFIGURATIONS}
    return {config: folds for config, folds in found.items() if folds}


def _describe_existing(results: Path) -> str:
    rows = []
    for config in CONFIGURATIONS:
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
        configurations: default: every configuration with at least one trained fold.
        folds: default: every trained fold of each configuration.
        checkpoint: ``"best"`` or ``"latest"``.

    Returns:
        ``RESULTS/<config>/fold_<k>/checkpoint_<checkpoint>.pt`` paths.

    Raises:
        ConfigError: a requested configuration or fold has no such checkpoint, or nothing
            is trained; the message lists what exists.
    """
    results = Path(results)
    if checkpoint not in ("best", "latest"):
        raise ConfigError(f"checkpoint must be 'best' or 'latest', got {checkpoint!r}")
    if not results.is_dir():
        raise ConfigError(f"{results}: results folder does not exist")
    trained = _trained(results, checkpoint)
    configs = list(configurations) if configurations else list(trained)
    if not configs:
        raise ConfigError(
            f"{results}: no checkpoint_{checkpoint}.pt found under <configuration>/fold_<k>/ "
            f"({_describe_existing(results)}); train a model first"
        )
    paths = []
    for config in configs:
        wanted = [str(f) for f in folds] if folds is not None else trained.get(config, [])
        missing = [f for f in wanted if f not in trained.get(config, [])]
        if missing or not wanted:
            which = f"fold(s) {', '.join(missing)}" if missing else "any fold"
            raise ConfigError(
                f"{results / config}: no checkpoint_{checkpoint}.pt for {which}; "
                f"existing: {_describe_existing(results)}"
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
    trained = _trained(Path(results), checkpoint).get(stage, [])
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
