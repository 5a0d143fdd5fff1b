"""A viewer session: the cases, their volumes and rendered slices, the working copies.

``ViewerSession`` holds everything the HTTP layer (``medseg.viewer.app``) needs and nothing
of HTTP: it raises ``ViewerError(status, message)`` for refused requests. Review actions
(edit, save, accept, prompt) live in ``medseg.viewer.review``.

Layers of a slice: ``image`` (windowed greyscale), ``prediction``, ``reference``, ``edit``
(the working copy), ``uncertainty`` (``medseg predict --save-uncertainty``'s normalised
entropy, [0, 1] as 0..255) and ``diff`` (prediction against reference: 1 where the prediction has
a label the reference does not, a false positive; 2 where the reference has a label the
prediction misses, a false negative). Label layers are PNGs whose grey value is the label
value; the page colours them.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

from medseg.errors import MedsegError
from medseg.io import read_geometry
from medseg.viewer.audit import AUDIT_FILE, AuditLog
from medseg.viewer.cases import CaseEntry, Catalog, ViewerError
from medseg.viewer.edits import WorkingCopy
from medseg.viewer.security import inside
from medseg.viewer.storage import latest_version, read_status, versions
from medseg.viewer.volumes import (
    PERCENTILE_PRESETS,
    PLANES,
    WINDOW_PRESETS,
    SliceCache,
    Volume,
    encode_png,
    load_volume,
    plane_slice,
    plane_spacing,
    slice_count,
    to_uint8,
    window_range,
)

log = logging.getLogger(__name__)

MAX_WORKING = 4
LAYERS = ("image", "prediction", "reference", "edit", "diff", "uncertainty")
SORT_KEYS = ("id", "dice", "hd95", "status")


class ViewerSession:
    """State of one ``medseg view`` server.

    Args:
        catalog: the cases (``medseg.viewer.cases.discover_cases``).
        user: name written to the audit log.
        read_only: refuse every edit, save and accept.
        prompt: ``(model, PromptConfig)`` of a promptable model, or None (prompts refused).
        prefetch: neighbouring slices rendered ahead on each side.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        user: str,
        read_only: bool = False,
        prompt: tuple | None = None,
        prefetch: int = 2,
    ) -> None:
        self.catalog = catalog
        self.user = user
        self.read_only = read_only or catalog.output is None
        self.prompt = prompt
        self.cache = SliceCache(prefetch=prefetch)
        self.cache_dir = Path(tempfile.mkdtemp(prefix="medseg-viewer-"))
        self.audit = AuditLog(catalog.output / AUDIT_FILE) if catalog.output else None
        self.working: OrderedDict[str, WorkingCopy] = OrderedDict()
        self.opened: dict[str, float] = {}
        self._volumes: dict[tuple[str, str], Volume] = {}
        self._geometry: dict[str, str | None] = {}
        self._locks: dict[str, threading.RLock] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop the prefetch thread and remove the cache folder."""
        self.cache.close()
        shutil.rmtree(self.cache_dir, ignore_errors=True)

    def case_lock(self, case_id: str) -> threading.RLock:
        with self._lock:
            return self._locks.setdefault(case_id, threading.RLock())

    # ------------------------------------------------------------ files

    def case_dir(self, case_id: str) -> Path:
        """``OUT/corrections/<case>`` (the id comes from the case list; checked inside OUT)."""
        if self.catalog.output is None:
            raise ViewerError(403, "read-only session: no output folder")
        path = self.catalog.output / "corrections" / case_id
        if not inside(path, [self.catalog.output]):
            raise ViewerError(403, "refused: the corrections folder leads outside the output")
        return path

    def volume(self, entry: CaseEntry, layer: str) -> Volume:
        """The memory-mapped volume of ``image``, ``prediction`` or ``reference``."""
        files = {
            "image": entry.image,
            "prediction": entry.prediction,
            "reference": entry.reference,
            "uncertainty": entry.uncertainty,
        }
        path = files[layer]
        if path is None:
            raise ViewerError(404, f"this case has no {layer}")
        problem = self.geometry_problem(entry)
        if layer != "image" and problem and f"the {layer}'s" in problem:
            raise ViewerError(409, f"overlay refused: {problem}")
        key = (entry.case_id, layer)
        with self.case_lock(entry.case_id):
            if key not in self._volumes:
                try:
                    labels = layer in ("prediction", "reference")
                    self._volumes[key] = load_volume(path, self.cache_dir, labels=labels)
                except MedsegError as err:
                    log.warning("%s", err)  # the path stays in the server's log
                    raise ViewerError(
                        422, f"the {layer} of this case cannot be read ({type(err).__name__})"
                    ) from err
            return self._volumes[key]

    def geometry_problem(self, entry: CaseEntry) -> str | None:
        """Why the prediction or reference does not lie on the image's grid, or None."""
        if entry.case_id not in self._geometry:
            self._geometry[entry.case_id] = _grid_problem(entry)
        return self._geometry[entry.case_id]

    # ------------------------------------------------------------ listing

    def status(self, case_id: str) -> dict:
        if self.catalog.output is None:
            return {"status": "unreviewed"}
        return read_status(self.case_dir(case_id))

    def list_cases(self, sort: str = "id") -> list[dict]:
        """One row per case; ``sort`` ``dice`` (lowest first), ``hd95`` (highest first),
        ``status`` or ``id``; cases without the metric last."""
        if sort not in SORT_KEYS:
            raise ViewerError(400, f"sort must be one of {', '.join(SORT_KEYS)}")
        rows = []
        for case_id, entry in self.catalog.cases.items():
            row = {
                "id": case_id,
                "dice": _json_number(entry.metrics.get("dice")),
                "hd95": _json_number(entry.metrics.get("hd95")),
                "problem": entry.problem,
            }
            if not entry.problem:
                row["problem"] = self.geometry_problem(entry)
                row["status"] = self.status(case_id)["status"]
                row["versions"] = self.versions(case_id)
            rows.append(row)
        return sorted(rows, key=_sort_key(sort))

    def versions(self, case_id: str) -> list[int]:
        return [] if self.catalog.output is None else versions(self.case_dir(case_id))

    def meta(self, case_id: str) -> dict:
        """Shape, spacing, planes, layers, windows, labels, status and edit state of a case."""
        entry = self.catalog.get(case_id)
        image = self.volume(entry, "image")
        self.opened.setdefault(case_id, time.monotonic())
        shape = image.array.shape
        planes = {}
        for plane in PLANES:
            shown = plane_slice(image.array, plane, 0).shape
            row_mm, col_mm = plane_spacing(image.spacing3, plane)
            planes[plane] = {
                "count": slice_count(shape, plane),
                "rows": shown[0],
                "cols": shown[1],
                "row_mm": row_mm,
                "col_mm": col_mm,
            }
        layers = ["image", "edit"]
        problem = self.geometry_problem(entry)
        for layer in ("prediction", "reference", "uncertainty"):
            if getattr(entry, layer) is not None and not (problem and f"the {layer}'s" in problem):
                layers.append(layer)
        if "prediction" in layers and "reference" in layers:
            layers.append("diff")
        wc = self.working.get(case_id)
        return {
            "id": case_id,
            "shape": list(shape),
            "spatial_dims": image.spatial_dims,
            "spacing": list(image.spacing3),
            "planes": planes,
            "layers": layers,
            "windows": [*WINDOW_PRESETS, *PERCENTILE_PRESETS],
            "default_window": self.default_window(),
            "labels": self.catalog.labels,
            "status": self.status(case_id),
            "versions": self.versions(case_id),
            "metrics": _json_metrics(entry.metrics),
            "problem": problem,
            "edit": edit_state(wc, self, case_id),
        }

    def default_window(self) -> str:
        names = " ".join(self.catalog.dataset.channel_names.values()).upper()
        return "ct_soft_tissue" if "CT" in names.split() else "mri"

    # ------------------------------------------------------------ slices

    def base_mask(self, entry: CaseEntry) -> tuple[np.ndarray, int]:
        """The mask an edit starts from: the newest saved version, else the prediction, else
        the reference, else empty; and its version number (0 unless a saved version)."""
        image = self.volume(entry, "image")
        newest = latest_version(self.case_dir(entry.case_id)) if self.catalog.output else 0
        if newest:
            path = self.case_dir(entry.case_id) / f"v{newest}.nii.gz"
            return np.asarray(load_volume(path, self.cache_dir, labels=True).array), newest
        for layer in ("prediction", "reference"):
            if getattr(entry, layer) is not None:
                return np.asarray(self.volume(entry, layer).array), 0
        return np.zeros(image.array.shape, dtype=np.uint8), 0

    def working_copy(self, case_id: str) -> WorkingCopy:
        """The case's working copy, created from ``base_mask`` on first use. At most
        ``MAX_WORKING`` are kept: the least recently used without unsaved edits go first."""
        entry = self.catalog.get(case_id)
        with self.case_lock(case_id):
            if case_id not in self.working:
                base, version = self.base_mask(entry)
                spacing = self.volume(entry, "image").spacing3
                self.working[case_id] = WorkingCopy(base, spacing, version)
                self._evict_working(keep=case_id)
            self.working.move_to_end(case_id)
            return self.working[case_id]

    def _evict_working(self, keep: str) -> None:
        for other in list(self.working):
            if len(self.working) <= MAX_WORKING:
                return
            wc = self.working[other]
            if other != keep and not (wc.array != wc.base).any():
                del self.working[other]

    def slice_png(self, case_id: str, plane: str, index: int, layer: str, **window) -> bytes:
        """PNG bytes of one displayed slice (``window``: ``window``, ``center``, ``width``)."""
        entry = self.catalog.get(case_id)
        if plane not in PLANES:
            raise ViewerError(400, f"plane must be one of {', '.join(PLANES)}")
        if layer not in LAYERS:
            raise ViewerError(400, f"layer must be one of {', '.join(LAYERS)}")
        image = self.volume(entry, "image")
        count = slice_count(image.array.shape, plane)
        if not 0 <= index < count:
            raise ViewerError(400, f"slice index {index} is outside 0..{count - 1} of {plane}")
        if layer == "edit":
            wc = self.working_copy(case_id)
            return encode_png(np.ascontiguousarray(plane_slice(wc.array, plane, index)))
        render = self._renderer(entry, plane, layer, image, window)
        key = (case_id, layer, plane, render.window)
        data = self.cache.get((*key, index), lambda: render(index))
        for step in range(1, self.cache.prefetch + 1):
            for neighbour in (index + step, index - step):
                if 0 <= neighbour < count:
                    self.cache.schedule((*key, neighbour), lambda n=neighbour: render(n))
        return data

    def _renderer(self, entry: CaseEntry, plane: str, layer: str, image: Volume, window: dict):
        if window.get("window") not in (None, *WINDOW_PRESETS, *PERCENTILE_PRESETS):
            raise ViewerError(400, "unknown window preset")
        if layer == "image":
            low, high = window_range(
                image, window.get("window"), window.get("center"), window.get("width")
            )

            def render(index: int) -> bytes:
                return encode_png(
                    to_uint8(plane_slice(image.array, plane, index), low, high), level=0
                )

            render.window = (round(low, 4), round(high, 4))  # type: ignore[attr-defined]
            return render
        if layer == "uncertainty":
            values = self.volume(entry, layer)

            def render(index: int) -> bytes:  # [0, 1] -> 0..255
                return encode_png(to_uint8(plane_slice(values.array, plane, index), 0.0, 1.0))

        elif layer == "diff":
            pred, ref = self.volume(entry, "prediction"), self.volume(entry, "reference")

            def render(index: int) -> bytes:
                p, r = plane_slice(pred.array, plane, index), plane_slice(ref.array, plane, index)
                diff = np.where(p != r, np.where(p != 0, 1, 2), 0).astype(np.uint8)
                return encode_png(diff)

        else:
            labels = self.volume(entry, layer)

            def render(index: int) -> bytes:
                return encode_png(np.ascontiguousarray(plane_slice(labels.array, plane, index)))

        render.window = None  # type: ignore[attr-defined]
        return render


def edit_state(wc: WorkingCopy | None, session: ViewerSession, case_id: str) -> dict:
    """The edit fields of ``meta`` and of every review answer."""
    if wc is None:
        newest = latest_version(session.case_dir(case_id)) if session.catalog.output else 0
        return {"base_version": newest, "can_undo": False, "can_redo": False, "generation": 0}
    return {
        "base_version": wc.base_version,
        "can_undo": wc.can_undo,
        "can_redo": wc.can_redo,
        "generation": wc.generation,
    }


def _grid_problem(entry: CaseEntry) -> str | None:
    try:
        shape, image = read_geometry(entry.image)
        for layer in ("prediction", "reference", "uncertainty"):
            path = getattr(entry, layer)
            if path is None:
                continue
            other_shape, other = read_geometry(path)
            d = len(other_shape)
            if tuple(shape[-d:]) != tuple(other_shape):
                return f"the {layer}'s shape {other_shape} differs from the image's {shape}"
            if not np.allclose(image.spacing[-d:], other.spacing, rtol=1e-4, atol=1e-4):
                return f"the {layer}'s spacing {other.spacing} differs from the image's"
            if len(image.origin) == d and not np.allclose(image.origin, other.origin, atol=1e-3):
                return f"the {layer}'s origin {other.origin} differs from the image's"
    except MedsegError as err:
        return f"cannot read the case's files ({type(err).__name__})"
    return None


def _json_number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def _json_metrics(metrics: dict) -> dict:
    per_label = {
        k: {m: _json_number(v) for m, v in row.items()}
        for k, row in metrics.get("per_label", {}).items()
    }
    return {
        "dice": _json_number(metrics.get("dice")),
        "hd95": _json_number(metrics.get("hd95")),
        "per_label": per_label,
    }


def _sort_key(sort: str):
    if sort == "dice":
        return lambda r: (r["dice"] is None, r["dice"] or 0.0, r["id"])
    if sort == "hd95":
        return lambda r: (r["hd95"] is None, -(r["hd95"] or 0.0), r["id"])
    if sort == "status":
        return lambda r: (r.get("status") or "", r["id"])
    return lambda r: r["id"]
