"""Listed (moving, fixed) pairs: frames of the same subject, or an explicit ``pairs.json``.

``RegistrationConfig.pairs = "same-subject"`` pairs the cases whose ids match
``pair_pattern``, a regular expression with the named groups ``subject`` and ``frame``
(:data:`DEFAULT_PAIR_PATTERN`: ``<subject>_frame<NN>``, ACDC's naming, where ``frame01`` is
end-diastole and ``frame02`` end-systole). Every subject must have exactly two frames; the
**moving** one is ``moving_frame`` when given, else the first in sorted order (frames of
digits compare as numbers: ACDC's ED, ``frame01``, onto ES); ``both_directions`` adds the
reverse pairs. A ``pairs.json`` file lists the pairs instead: ``[["moving_id",
"fixed_id"], ...]`` (or ``{"moving": ..., "fixed": ...}`` objects).

Both images of a pair must share their grid (shape and spacing); every case is then padded
or cropped about its centre to the run's one shape (``RegistrationConfig.shape``), the same
offsets for both frames, so a pair stays aligned voxel for voxel. Listed pairs are split by
subject (:func:`split_pairs`): no subject is in both training and validation.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from medseg.errors import ConfigError, DatasetError

DEFAULT_PAIR_PATTERN = r"^(?P<subject>.+)_frame(?P<frame>\d+)$"
PAIR_MODES = ("random", "same-subject")

Pair = tuple[str, str]


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled; it must have the named groups ``subject`` and ``frame``."""
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise ConfigError(f"pair pattern {pattern!r} is not a regular expression ({err})") from None
    missing = {"subject", "frame"} - set(compiled.groupindex)
    if missing:
        raise ConfigError(
            f"pair pattern {pattern!r} lacks the named group(s) {sorted(missing)}: write e.g. "
            f"{DEFAULT_PAIR_PATTERN!r}"
        )
    return compiled


def _frame_key(frame: str) -> tuple[int, int | str]:
    return (0, int(frame)) if frame.isdigit() else (1, frame)


def same_subject_pairs(
    case_ids: Sequence[str],
    pattern: str = DEFAULT_PAIR_PATTERN,
    *,
    moving_frame: str | None = None,
    both_directions: bool = False,
) -> list[Pair]:
    """``(moving, fixed)`` pairs of the two frames of each subject, in subject order.

    Example:
        >>> same_subject_pairs(["p1_frame01", "p1_frame02", "p2_frame02", "p2_frame10"])
        [('p1_frame01', 'p1_frame02'), ('p2_frame02', 'p2_frame10')]

    Raises:
        DatasetError: no case matches, cases that do not match (named), a subject with one
            frame (its case and the missing partner named) or more than two, a
            ``moving_frame`` a subject lacks.
    """
    compiled = compile_pattern(pattern)
    frames: dict[str, dict[str, str]] = defaultdict(dict)
    unmatched = []
    for case_id in case_ids:
        match = compiled.search(case_id)
        if match is None:
            unmatched.append(case_id)
            continue
        frames[match["subject"]][match["frame"]] = case_id
    if not frames:
        raise DatasetError(
            f"no same-subject pairs: none of the {len(case_ids)} case ids (e.g. "
            f"{', '.join(list(case_ids)[:3]) or 'none'}) matches --pair-pattern {pattern!r} "
            "(named groups 'subject' and 'frame')"
        )
    if unmatched:
        raise DatasetError(
            f"{len(unmatched)} case id(s) do not match --pair-pattern {pattern!r}: "
            f"{', '.join(unmatched[:5])}; exclude them or widen the pattern"
        )
    pairs = []
    for subject in sorted(frames):
        pairs.extend(_subject_pairs(subject, frames[subject], moving_frame, both_directions))
    return pairs


def _subject_pairs(
    subject: str, frames: dict[str, str], moving_frame: str | None, both: bool
) -> list[Pair]:
    if len(frames) != 2:
        (only,) = frames.values() if len(frames) == 1 else (None,)
        what = (
            f"{only} has no partner frame (subject {subject!r}: the other frame is missing)"
            if only
            else f"subject {subject!r} has {len(frames)} frames {sorted(frames.values())}"
        )
        raise DatasetError(f"same-subject pairs need exactly two frames per subject: {what}")
    order = sorted(frames, key=_frame_key)
    if moving_frame is not None:
        if moving_frame not in frames:
            raise DatasetError(
                f"subject {subject!r} has frames {order}, not the moving frame {moving_frame!r}"
            )
        order = [moving_frame, *(f for f in order if f != moving_frame)]
    pair = (frames[order[0]], frames[order[1]])
    return [pair, (pair[1], pair[0])] if both else [pair]


def read_pairs_file(path: str | os.PathLike[str], case_ids: Sequence[str]) -> list[Pair]:
    """The ``(moving, fixed)`` pairs a JSON file lists (module docstring), every id a case.

    Raises:
        DatasetError: unreadable JSON, a malformed entry, an unknown case id (named).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: cannot read the pairs file ({err})") from None
    if not isinstance(data, list) or not data:
        raise DatasetError(f"{path}: expected a non-empty JSON list of [moving, fixed] pairs")
    known, pairs = set(case_ids), []
    for i, entry in enumerate(data):
        if isinstance(entry, dict):
            entry = [entry.get("moving"), entry.get("fixed")]
        if not (
            isinstance(entry, list) and len(entry) == 2 and all(isinstance(e, str) for e in entry)
        ):
            raise DatasetError(f"{path}: entry {i} is not a [moving, fixed] pair of case ids")
        unknown = [e for e in entry if e not in known]
        if unknown:
            raise DatasetError(f"{path}: entry {i} names unknown case(s) {unknown}")
        pairs.append((entry[0], entry[1]))
    return pairs


def split_pairs(
    pairs: Sequence[Pair], val_fraction: float, seed: int
) -> tuple[list[Pair], list[Pair]]:
    """Training and validation pairs, split by subject: pairs sharing a case stay together
    (a seeded permutation of the groups; the last ``val_fraction`` of them validate, at least
    one when ``val_fraction > 0``)."""
    groups: list[set[str]] = []
    for pair in pairs:
        hit = [g for g in groups if g & set(pair)]
        merged = set(pair).union(*hit)
        groups = [g for g in groups if not g & set(pair)] + [merged]
    groups.sort(key=lambda g: sorted(g))
    count = 0 if val_fraction == 0 else max(1, round(val_fraction * len(groups)))
    if len(groups) - count < 1:
        raise ConfigError(
            f"{len(groups)} subject(s) leave none to train on after holding out {count}; lower "
            "val_fraction or add pairs"
        )
    order = np.random.default_rng(seed).permutation(len(groups))
    held = set().union(*(groups[i] for i in order[len(groups) - count :]))
    return [p for p in pairs if p[0] not in held], [p for p in pairs if p[0] in held]


def check_pair_shapes(pairs: Sequence[Pair], shapes: dict[str, tuple[int, ...]], root: str) -> None:
    """Refuses a pair whose two images differ in shape (they must share one grid)."""
    odd = [f"{m} {shapes[m]} / {f} {shapes[f]}" for m, f in pairs if shapes[m] != shapes[f]]
    if odd:
        raise DatasetError(
            f"{root}: the images of a pair must share their grid, these differ in shape: "
            f"{', '.join(odd[:3])}"
        )


class ListedPairBatches:
    """An epoch's ``steps_per_epoch`` batches of ``(moving, fixed)`` rows drawn (seeded, with
    replacement) from listed training pairs."""

    def __init__(
        self, rows: dict[str, int], pairs: Sequence[Pair], batch_size: int, steps: int, seed: int
    ):
        self.moving = torch.tensor([rows[m] for m, _ in pairs])
        self.fixed = torch.tensor([rows[f] for _, f in pairs])
        self.batch_size, self.steps, self.seed = batch_size, steps, seed

    def __call__(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        for _ in range(self.steps):
            chosen = torch.randint(len(self.moving), (self.batch_size,), generator=generator)
            yield self.moving[chosen], self.fixed[chosen]
