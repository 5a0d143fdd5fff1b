"""Continue an interrupted ``predict``: which outputs already in the folder can be kept.

``predict`` writes ``OUT/.medseg_predict.json`` (the *run record*: a fingerprint of the
models' weights and plans, and the options that change the output) before its first case.
When it runs again into the same folder without ``overwrite``:

- no output exists yet: the record is (re)written and every case is predicted;
- outputs exist and the record matches this run (same models, same options): each existing
  output is verified (``output_problem``) and kept if it passes, predicted again (with a
  warning naming the reason) if not; the cases without an output are predicted;
- outputs exist and there is no record, or it names other models or options: nothing is
  predicted, ``OverwriteError`` (an output of another model, or a user's file, is never
  replaced without ``overwrite``).

With ``overwrite`` every case is predicted again and the record rewritten.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.lib import format as npy_format
from torch import nn

from medseg.errors import MedsegError, OverwriteError
from medseg.fileutil import write_json_atomic
from medseg.io import Image, grid_mismatches, read_image
from medseg.planning.plan import Plan

RUN_FILE = ".medseg_predict.json"


def models_fingerprint(models: Sequence[tuple[nn.Module, Plan]]) -> str:
    """A hash of every model's plan and weights (independent of the models' order and of
    where the checkpoint files lie): equal fingerprints mean the same ensemble."""
    digests = []
    for model, plan in models:
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps(plan.to_dict(), sort_keys=True, default=str).encode("utf-8"))
        for name, tensor in model.state_dict().items():
            flat = tensor.detach().cpu().contiguous().reshape(-1)
            h.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
            h.update(flat.view(torch.uint8).numpy())
        digests.append(h.hexdigest())
    return hashlib.blake2b("".join(sorted(digests)).encode(), digest_size=16).hexdigest()


def outputs_to_verify(
    output_dir: Path, outputs: Sequence[Path], run: dict[str, Any], *, overwrite: bool
) -> set[Path]:
    """Decide what to do with the outputs already in ``output_dir`` (module docstring) and
    write the run record.

    Args:
        output_dir: the prediction folder (exists; its ``run_lock`` is held).
        outputs: every file this run will write (label maps, ``.npz``).
        run: what identifies the run: ``{"models": models_fingerprint(...), **options}``,
            JSON-serialisable.
        overwrite: predict everything again.

    Returns:
        The existing outputs, to verify before a case is skipped (empty with ``overwrite``).

    Raises:
        OverwriteError: outputs exist, ``overwrite`` is False, and they were not written by
            this same run (no record, or another model or options).
    """
    existing = [path for path in outputs if path.exists()]
    record_path = output_dir / RUN_FILE
    if existing and not overwrite:
        record = _read_record(record_path)
        if record != json.loads(json.dumps(run)):
            why = (
                "by a predict run with other models or options"
                if record is not None
                else "by something other than an interrupted medseg predict"
            )
            others = f" (and {len(existing) - 1} more output(s))" if len(existing) > 1 else ""
            raise OverwriteError(
                f"{existing[0]}: already exists{others}, written {why}; pass "
                "--overwrite to replace them, or choose another output folder"
            )
        return set(existing)
    write_json_atomic(record_path, run)
    return set()


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def output_problem(
    target: Path, image: Image, values: Sequence[int], probabilities: Path | None = None
) -> str | None:
    """Why an existing label map (and ``.npz``) cannot be kept for ``image``; None if it can.

    Checks: the label map reads as an image with ``image``'s grid (shape, spacing, origin,
    direction), one channel and only the label ``values``; the ``.npz`` (when given) holds
    ``probabilities`` of shape ``(len(values), *image.spatial_shape)`` and ``label_values``
    equal to ``values``.
    """
    try:
        label = read_image(target)
    except MedsegError as err:
        return f"it cannot be read ({err})"
    if label.num_channels != 1:
        return f"it has {label.num_channels} channels, not 1"
    mismatches = grid_mismatches(label, image)
    if mismatches:
        return f"its grid differs from the input's ({'; '.join(mismatches)})"
    unknown = sorted(set(np.unique(label.array).tolist()) - set(values))
    if unknown:
        return f"it holds values {unknown} that are not labels of the model {list(values)}"
    if probabilities is not None:
        expected = (len(values), *image.spatial_shape)
        problem = _npz_problem(probabilities, expected, values)
        if problem:
            return f"{probabilities.name} {problem}"
    return None


def _npz_problem(path: Path, shape: tuple[int, ...], values: Sequence[int]) -> str | None:
    """Check the ``.npz`` without loading the probabilities (their array header only)."""
    if not path.is_file():
        return "is missing"
    try:
        with zipfile.ZipFile(path) as archive:
            with archive.open("probabilities.npy") as member:
                version = npy_format.read_magic(member)
                read_header = (
                    npy_format.read_array_header_1_0
                    if version == (1, 0)
                    else npy_format.read_array_header_2_0
                )
                found, _, _ = read_header(member)
        stored = np.load(path, allow_pickle=False)["label_values"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        return f"cannot be read ({err})"
    if tuple(found) != shape:
        return f"has probabilities of shape {tuple(found)}, expected {shape}"
    if stored.tolist() != list(values):
        return f"has label values {stored.tolist()}, expected {list(values)}"
    return None
