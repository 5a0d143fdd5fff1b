"""Cross-validation splits, saved once per results folder so every run agrees."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from medseg.errors import ConfigError
from medseg.fileutil import write_json_atomic


def make_splits(
    case_ids: list[str], *, num_folds: int = 5, seed: int = 12345
) -> list[dict[str, list[str]]]:
    """Shuffled k-fold split of ``case_ids`` (nnU-Net uses 5 folds and seed 12345).

    With fewer cases than folds, the number of folds drops to the number of cases.
    """
    ids = sorted(case_ids)
    if len(ids) < 2:
        raise ConfigError(f"cross-validation needs at least 2 cases, got {len(ids)}")
    k = min(num_folds, len(ids))
    order = np.random.default_rng(seed).permutation(len(ids))
    folds = np.array_split(order, k)
    splits = []
    for f in range(k):
        val = sorted(ids[i] for i in folds[f])
        splits.append({"train": sorted(set(ids) - set(val)), "val": val})
    return splits


def load_or_make_splits(
    results: str | os.PathLike[str], case_ids: list[str], *, num_folds: int = 5
) -> list[dict[str, list[str]]]:
    """``RESULTS/splits.json``, created on first use; cases added later are reported."""
    path = Path(results) / "splits.json"
    if path.exists():
        splits = json.loads(path.read_text(encoding="utf-8"))
        known = {c for s in splits for c in s["val"]}
        if known != set(case_ids):
            raise ConfigError(
                f"{path}: splits do not match the preprocessed cases "
                f"(new: {sorted(set(case_ids) - known)[:5]}, "
                f"gone: {sorted(known - set(case_ids))[:5]}); delete splits.json to re-split"
            )
        return splits
    splits = make_splits(case_ids, num_folds=num_folds)
    write_json_atomic(path, splits)
    return splits


def fold_cases(splits: list[dict[str, list[str]]], fold: int | str) -> tuple[list[str], list[str]]:
    """(train, val) case ids of ``fold``; ``"all"`` trains on everything and validates on it too."""
    if fold == "all":
        everything = sorted({c for s in splits for c in s["val"]})
        return everything, everything
    fold = int(fold)
    if not 0 <= fold < len(splits):
        raise ConfigError(f"fold {fold} does not exist; folds 0..{len(splits) - 1} or 'all'")
    return splits[fold]["train"], splits[fold]["val"]
