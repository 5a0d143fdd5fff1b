"""Training batches from a case store (``medseg.data.case_store``), with background workers.

The case store's format (``<case>.npy``, ``<case>_seg.npy``, ``<case>.json``, memory-mapped)
is described in ``medseg.data.case_store``; ``write_case``, ``list_cases`` and ``load_case``
are re-exported here.

A cascade stage's previous-stage segmentations live in a folder of their own
(``medseg.data.cascade``). Given ``previous_folder``, the loader cuts the same box out of
``<case>_prev.npy`` and appends it to the image patch as one more channel (float32 class indices;
0 outside the case); the training step turns it into one-hot channels (``foreground_one_hot``).

Batches: batch ``k`` is drawn with its own ``np.random.default_rng([seed, k])``, so its content
depends only on ``(seed, k)`` -- not on the number of workers or the backend. ``"thread"``
(default) makes batches in background threads (worker ``w`` makes batches ``w, w + W, ...``,
returned in order); ``"process"`` does the same with a ``torch.utils.data.DataLoader`` over an
``IterableDataset``. On 2 CPU cores threads were as fast or faster (patch cutting is a memory
copy, torch ops release the GIL) and start instantly; processes pay off with many cores or
Python-heavy transforms.
"""

from __future__ import annotations

import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from medseg.data.cascade import PREVIOUS_SUFFIX, load_previous
from medseg.data.case_store import RESERVED_SUFFIXES, list_cases, load_case, write_case
from medseg.data.sampling import CaseArrays, PatchSampler, extract_patch
from medseg.errors import DatasetError

__all__ = [
    "RESERVED_SUFFIXES",
    "Batch",
    "BatchTransform",
    "PatchBatches",
    "ThreadedBatches",
    "list_cases",
    "load_case",
    "make_loader",
    "write_case",
]

Batch = tuple[Tensor, Tensor | None]
BatchTransform = Callable[..., tuple[Tensor, Tensor | None]]


class _CaseCache(Sequence[CaseArrays]):
    """Cases opened on first use; at most ``max_open`` stay mapped (each map holds a file).

    With ``previous_folder``, each case's ``<case>_prev.npy`` is opened along with it
    (``previous(index)``) and checked against the image's spatial shape.
    """

    def __init__(
        self,
        folder: Path,
        case_ids: Sequence[str],
        *,
        max_open: int = 128,
        previous_folder: Path | None = None,
    ) -> None:
        self.folder, self.case_ids, self.max_open = folder, list(case_ids), max_open
        self.previous_folder = previous_folder
        self._open: OrderedDict[int, tuple[CaseArrays, np.ndarray | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.case_ids)

    def _get(self, index: int) -> tuple[CaseArrays, np.ndarray | None]:
        if index in self._open:
            self._open.move_to_end(index)
            return self._open[index]
        case = load_case(self.folder, self.case_ids[index])
        previous = None
        if self.previous_folder is not None:
            previous = load_previous(self.previous_folder, case.case_id)
            if previous.shape[1:] != case.image.shape[1:]:
                raise DatasetError(
                    f"{self.previous_folder / (case.case_id + PREVIOUS_SUFFIX)}: "
                    f"shape {previous.shape[1:]} differs from the case's {case.image.shape[1:]} "
                    f"in {self.folder}; predict the previous stage again"
                )
        self._open[index] = (case, previous)
        if len(self._open) > self.max_open:
            self._open.popitem(last=False)
        return case, previous

    def __getitem__(self, index: int) -> CaseArrays:  # type: ignore[override]
        return self._get(index)[0]

    def previous(self, index: int) -> np.ndarray:
        previous = self._get(index)[1]
        if previous is None:
            raise ValueError("no previous_folder was given")
        return previous


class PatchBatches(IterableDataset):
    """An iterable of ``(image, label)`` patch batches from a case store.

    Args:
        folder: the case store.
        sampler: how patches are placed (``PatchSampler``).
        batch_size: patches per batch.
        case_ids: the cases to use (e.g. one fold's training cases); default all.
        num_batches: batches per iteration; None iterates forever.
        transform: optional batch transform called as ``transform(image, label,
            generator=...)`` inside the worker (e.g. a ``medseg.transforms`` pipeline).
        seed: base seed; batch ``k`` depends only on ``(seed, k)``.
        previous_folder: folder of ``<case>_prev.npy`` previous-stage segmentations; their
            patches are appended to the image as its last channel (module docstring).
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        sampler: PatchSampler,
        batch_size: int,
        *,
        case_ids: Sequence[str] | None = None,
        num_batches: int | None = None,
        transform: BatchTransform | None = None,
        seed: int = 0,
        previous_folder: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.case_ids = list(case_ids) if case_ids is not None else list_cases(self.folder)
        if not self.case_ids:
            raise DatasetError(f"{self.folder}: no cases (<case>.npy) in the case store")
        self.sampler, self.batch_size = sampler, int(batch_size)
        self.num_batches, self.transform, self.seed = num_batches, transform, int(seed)
        self.previous_folder = Path(previous_folder) if previous_folder is not None else None
        self._cases: _CaseCache | None = None

    @property
    def cases(self) -> _CaseCache:
        if self._cases is None:  # opened lazily, so each worker process maps its own files
            self._cases = _CaseCache(
                self.folder, self.case_ids, previous_folder=self.previous_folder
            )
        return self._cases

    def batch(self, index: int) -> Batch:
        """Batch number ``index``: ``(B, C, *patch)`` float32 and ``(B, 1, *patch)`` int64
        (or None); ``C`` counts the previous-stage channel when there is one."""
        rng = np.random.default_rng([self.seed, index])
        image, label, boxes = self.sampler.sample(self.cases, self.batch_size, rng)
        if self.previous_folder is not None:
            previous = [
                extract_patch(
                    self.cases.previous(box.case_index), None, box.start, self.sampler.patch_size
                )[0]
                for box in boxes
            ]
            image = np.concatenate([image, np.stack(previous)], axis=1)
        image_t = torch.from_numpy(image)
        label_t = None if label is None else torch.from_numpy(label.astype(np.int64))
        if self.transform is not None:
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            image_t, label_t = self.transform(image_t, label_t, generator=generator)
        return image_t, label_t

    def indices(self, worker: int, num_workers: int) -> Iterator[int]:
        index = worker
        while self.num_batches is None or index < self.num_batches:
            yield index
            index += num_workers

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        for index in self.indices(worker, workers):
            yield self.batch(index)


def _single_thread_worker(_: int) -> None:
    torch.set_num_threads(1)


class ThreadedBatches:
    """Produce ``PatchBatches`` in background threads, returned in batch order."""

    def __init__(self, dataset: PatchBatches, *, num_workers: int = 2, prefetch: int = 2) -> None:
        self.dataset, self.num_workers, self.prefetch = (
            dataset,
            max(1, num_workers),
            max(1, prefetch),
        )

    def __iter__(self) -> Iterator[Batch]:
        stop = threading.Event()
        queues: list[queue.Queue] = [
            queue.Queue(maxsize=self.prefetch) for _ in range(self.num_workers)
        ]

        def put(w: int, item: object) -> bool:
            while not stop.is_set():
                try:
                    queues[w].put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work(w: int) -> None:
            try:
                for index in self.dataset.indices(w, self.num_workers):
                    if not put(w, self.dataset.batch(index)):
                        return
            except Exception as err:  # handed to the consumer, which re-raises it
                put(w, err)
                return
            put(w, StopIteration())

        threads = [
            threading.Thread(target=work, args=(w,), daemon=True) for w in range(self.num_workers)
        ]
        for thread in threads:
            thread.start()
        try:
            w = 0
            while True:
                item = queues[w].get()
                if isinstance(item, StopIteration):
                    return
                if isinstance(item, Exception):
                    raise item
                yield item
                w = (w + 1) % self.num_workers
        finally:
            stop.set()  # producers notice within 0.1 s and exit


def make_loader(
    folder: str | os.PathLike[str],
    *,
    patch_size: Sequence[int],
    batch_size: int,
    case_ids: Sequence[str] | None = None,
    mode: Literal["oversample", "balanced", "uniform"] = "oversample",
    oversample_foreground: float = 1 / 3,
    keep_inside: bool = True,
    image_pad: Literal["zero", "min"] = "zero",
    label_pad: int = 0,
    num_batches: int | None = None,
    transform: BatchTransform | None = None,
    num_workers: int = 2,
    backend: Literal["process", "thread"] = "thread",
    start_method: Literal["spawn", "forkserver", "fork"] = "spawn",
    prefetch: int = 2,
    pin_memory: bool = False,
    seed: int = 0,
    previous_folder: str | os.PathLike[str] | None = None,
) -> PatchBatches | DataLoader | ThreadedBatches:
    """An iterable of ``(image, label)`` training batches from a case store.

    Args:
        folder: case store (format in the module docstring).
        patch_size: patch spatial shape.
        batch_size: patches per batch.
        case_ids: cases to draw from (default all).
        mode, oversample_foreground, keep_inside, image_pad, label_pad: see ``PatchSampler``.
        num_batches: batches per pass; None is endless.
        transform: batch transform run in the workers (None: augment on the training device).
        num_workers: background workers; 0 makes batches in the calling thread.
        backend: "thread" (default; measured as fast or faster on 2 cores, see
            ``docs/augmentation.md``: cutting patches is a memory copy and torch releases the
            GIL) or "process" (torch ``DataLoader`` workers, one torch thread each; for many
            cores or Python-heavy transforms).
        start_method: how worker processes start. "spawn" (default) costs about a second per
            worker once, but is safe; "fork" starts instantly but a child forked while the
            parent's OpenMP/BLAS threads are busy can hang.
        prefetch: batches each worker prepares ahead.
        pin_memory: pin batches for faster host-to-GPU copies ("process" backend).
        seed: batch ``k`` depends only on ``(seed, k)``, whatever the workers and backend.
        previous_folder: folder of previous-stage ``<case>_prev.npy`` files (cascade): each
            image patch gets the matching patch of it as a last channel.

    Returns:
        An iterable yielding ``(B, C, *patch)`` float32 and ``(B, 1, *patch)`` int64 tensors
        (label None for unlabelled cases).

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> _ = write_case(folder, "a", np.zeros((1, 8, 8)), np.zeros((8, 8), np.int8))
        >>> image, label = next(
        ...     iter(make_loader(folder, patch_size=(4, 4), batch_size=2, num_workers=0))
        ... )
        >>> tuple(image.shape), label.dtype
        ((2, 1, 4, 4), torch.int64)
    """
    sampler = PatchSampler(
        patch_size,
        mode=mode,
        oversample_foreground=oversample_foreground,
        keep_inside=keep_inside,
        image_pad=image_pad,
        label_pad=label_pad,
    )
    dataset = PatchBatches(
        folder,
        sampler,
        batch_size,
        case_ids=case_ids,
        num_batches=num_batches,
        transform=transform,
        seed=seed,
        previous_folder=previous_folder,
    )
    return _in_background(dataset, num_workers, backend, start_method, prefetch, pin_memory)


def _in_background(
    dataset: PatchBatches,
    num_workers: int,
    backend: str,
    start_method: str,
    prefetch: int,
    pin_memory: bool,
) -> PatchBatches | DataLoader | ThreadedBatches:
    """``dataset`` made by ``num_workers`` background workers of ``backend`` (see
    ``make_loader``); with no workers, ``dataset`` itself."""
    if num_workers == 0:
        return dataset
    if backend == "thread":
        return ThreadedBatches(dataset, num_workers=num_workers, prefetch=prefetch)
    if backend != "process":
        raise ValueError(f"backend must be 'process' or 'thread', got {backend!r}")
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        prefetch_factor=prefetch,
        persistent_workers=True,
        pin_memory=pin_memory,
        worker_init_fn=_single_thread_worker,
        multiprocessing_context=start_method,
    )
