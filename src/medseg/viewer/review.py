"""Review actions on a case: edit the working copy, save a version, accept, prompt.

Each function takes the ``ViewerSession`` and the request's JSON body (already parsed),
checks it (``ViewerError(400)`` for bad input, ``403`` in a read-only session, ``409`` for a
stale base or a disabled prompt model) and returns the JSON answer. Saves and accepts are
written to the audit log with the voxels changed per label and the seconds spent on the case.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from medseg.errors import DiskFullError, MedsegError
from medseg.viewer.cases import ViewerError
from medseg.viewer.session import ViewerSession, edit_state
from medseg.viewer.storage import StaleVersionError, latest_version, save_version, write_status
from medseg.viewer.volumes import PLANES, plane_slice, slice_count

EDIT_OPS = ("brush", "eraser", "undo", "redo", "fill_holes", "keep_largest")
MAX_POINTS = 2000
MAX_RADIUS_MM = 100.0


def _writable(session: ViewerSession) -> None:
    if session.read_only:
        raise ViewerError(403, "read-only session: edits, saves and accepts are refused")


def _label(session: ViewerSession, value: Any, *, allow_zero: bool = False) -> int:
    labels = session.catalog.labels
    if not isinstance(value, int) or isinstance(value, bool):
        raise ViewerError(400, "label must be an integer value from dataset.json")
    if value not in labels.values() or (value == 0 and not allow_zero):
        valid = sorted(v for v in labels.values() if v or allow_zero)
        raise ViewerError(400, f"label {value} is not in dataset.json labels {valid}")
    return value


def _slice_args(session: ViewerSession, case_id: str, body: dict) -> tuple[str, int]:
    plane, index = body.get("plane"), body.get("index")
    if plane not in PLANES:
        raise ViewerError(400, f"plane must be one of {', '.join(PLANES)}")
    shape = session.working_copy(case_id).array.shape
    count = slice_count(shape, plane)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
        raise ViewerError(400, f"slice index must be an integer in 0..{count - 1} of {plane}")
    return plane, index


def _points(value: Any, *, limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    if not isinstance(value, list) or not 0 < len(value) <= limit:
        raise ViewerError(400, f"points must be a list of 1..{limit} [row, col] pairs")
    out = []
    for point in value:
        if (
            not isinstance(point, list)
            or len(point) != 2
            or not all(isinstance(v, int | float) and np.isfinite(v) for v in point)
        ):
            raise ViewerError(400, "each point must be [row, col] numbers")
        out.append((float(point[0]), float(point[1])))
    return out


def edit(session: ViewerSession, case_id: str, body: dict) -> dict:
    """Apply one operation (``op``: brush, eraser, undo, redo, fill_holes, keep_largest)."""
    _writable(session)
    op = body.get("op")
    if op not in EDIT_OPS:
        raise ViewerError(400, f"op must be one of {', '.join(EDIT_OPS)}")
    wc = session.working_copy(case_id)
    with session.case_lock(case_id):
        if op == "undo":
            changed = wc.undo()
        elif op == "redo":
            changed = wc.redo()
        elif op in ("fill_holes", "keep_largest"):
            label = _label(session, body.get("label"))
            changed = getattr(wc, op)(label)
        else:
            plane, index = _slice_args(session, case_id, body)
            radius = body.get("radius_mm")
            if not isinstance(radius, int | float) or not 0 < radius <= MAX_RADIUS_MM:
                raise ViewerError(400, f"radius_mm must be a number in (0, {MAX_RADIUS_MM}]")
            label = _label(session, body.get("label"), allow_zero=op == "eraser")
            points = _points(body.get("points"))
            changed = wc.paint(plane, index, points, float(radius), label, mode=op)
    return {"changed": changed, "edit": edit_state(wc, session, case_id)}


def _seconds(session: ViewerSession, case_id: str) -> float:
    start = session.opened.get(case_id)
    return round(time.monotonic() - start, 3) if start is not None else 0.0


def _changed_names(session: ViewerSession, changed: dict[int, int]) -> dict[str, int]:
    names = {v: k for k, v in session.catalog.labels.items()}
    return {names.get(v, str(v)): n for v, n in sorted(changed.items())}


def save(session: ViewerSession, case_id: str, body: dict) -> dict:
    """Save the working copy as the next version; ``base_version`` must be the newest."""
    _writable(session)
    base = body.get("base_version")
    if not isinstance(base, int) or isinstance(base, bool) or base < 0:
        raise ViewerError(400, "base_version must be a non-negative integer")
    entry = session.catalog.get(case_id)
    wc = session.working_copy(case_id)
    image = session.volume(entry, "image")
    with session.case_lock(case_id):
        case_dir = session.case_dir(case_id)
        try:
            saved = save_version(case_dir, image.to_image(wc.array), base_version=base)
        except StaleVersionError as err:
            raise ViewerError(409, str(err)) from err
        except DiskFullError as err:
            raise ViewerError(
                507, "disk full while saving; the previous version is intact"
            ) from err
        except (OSError, MedsegError) as err:
            raise ViewerError(
                500, f"save failed ({type(err).__name__}); earlier versions intact"
            ) from err
        changed = _changed_names(session, wc.changed_per_label())
        wc.base_version = saved.version
        wc.base = wc.array.copy()
        status = {"status": "corrected", "version": saved.version, "user": session.user}
        write_status(case_dir, status)
        session.audit.append(
            user=session.user,
            case=case_id,
            action="save",
            version=saved.version,
            sha256=saved.sha256,
            changed=changed,
            seconds=_seconds(session, case_id),
        )
    return {
        "version": saved.version,
        "sha256": saved.sha256,
        "file": f"corrections/{case_id}/v{saved.version}.nii.gz",
        "status": status,
        "edit": edit_state(wc, session, case_id),
    }


def accept(session: ViewerSession, case_id: str, body: dict) -> dict:
    """Mark the case reviewed: ``accepted`` (no saved version) or ``corrected`` (the newest
    version). Unsaved edits are refused (save them or undo them first)."""
    _writable(session)
    session.catalog.get(case_id)
    wc = session.working.get(case_id)
    if wc is not None and (wc.array != wc.base).any():
        raise ViewerError(409, "the case has unsaved edits: save or undo them before accepting")
    with session.case_lock(case_id):
        case_dir = session.case_dir(case_id)
        newest = latest_version(case_dir)
        kind = "corrected" if newest else "accepted"
        status = {"status": kind, "version": newest, "user": session.user}
        write_status(case_dir, status)
        session.audit.append(
            user=session.user,
            case=case_id,
            action="accept",
            version=newest,
            sha256=None,
            changed={},
            seconds=_seconds(session, case_id),
        )
    return {"status": status}


def prompt(session: ViewerSession, case_id: str, body: dict) -> dict:
    """Refine the working copy on one slice with the promptable model: positive/negative
    ``points`` ``[[row, col], ...]`` with ``point_labels`` (1/0) and/or a ``box``
    ``[row0, col0, row1, col1]`` in displayed pixels; the answer replaces ``label`` there."""
    if session.prompt is None:
        raise ViewerError(409, "no promptable model: start medseg view with --prompt-model RUN")
    _writable(session)
    from medseg.io import Image
    from medseg.prompt.apply import segment_with_prompt

    plane, index = _slice_args(session, case_id, body)
    label = _label(session, body.get("label"))
    entry = session.catalog.get(case_id)
    image = session.volume(entry, "image")
    shown = np.array(plane_slice(image.array, plane, index), dtype=np.float32)
    points = _points(body["points"], limit=50) if body.get("points") else None
    box = body.get("box")
    if box is not None and (not isinstance(box, list) or len(box) != 4):
        raise ViewerError(400, "box must be [row0, col0, row1, col1]")
    labels = body.get("point_labels") or ([1] * len(points) if points else None)
    model, config = session.prompt
    try:
        mask, iou = segment_with_prompt(
            model, config, Image(shown, (1.0, 1.0)), box=box, points=points, point_labels=labels
        )
    except MedsegError as err:
        raise ViewerError(400, f"prompt refused: {err}") from err
    wc = session.working_copy(case_id)
    with session.case_lock(case_id):
        changed = wc.replace_slice(plane, index, np.asarray(mask.array) > 0, label)
    return {"changed": changed, "iou": iou, "edit": edit_state(wc, session, case_id)}
