"""``predict --executor ray``: many cases on Ray actors that each hold the models once.

The driver (``medseg.inference.predict``) loads the models, checks the output folder and the
run record (``medseg.inference.resume``) as for a local run, then hands the cases to
``run_on_ray``:

- one actor per GPU of the cluster when the run's device is CUDA, else one per CPU (or
  ``jobs``); the run (models, options) goes to Ray's object store once and each actor
  deserialises it once;
- cases are sent largest first (input bytes), one at a time per actor, so the driver holds at
  most one pending case per actor; each actor reads its case, predicts it and writes its
  outputs (atomic writes: a killed actor leaves no half-written output) or keeps an existing
  output that verifies (an interrupted run continues);
- a failed case (an error, or its actor killed: a new actor takes its place) is tried once
  more, then listed in ``OUT/failures.csv`` with its error while the others go on.

The outputs are the same files as a local run's.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from medseg.data.dataset import Case
from medseg.data.executor import (
    Backend,
    connect_ray,
    guarded_call,
    run_backend,
    summary_line,
    write_failures,
)
from medseg.errors import DatasetError

log = logging.getLogger(__name__)


class CaseWorker:
    """A Ray actor's state: the run (models loaded once), predicting one case per call."""

    def __init__(self, run: Any) -> None:
        self.run = run

    def predict(self, item: tuple[Case, Path, set[Path], bool]) -> Any:
        """``guarded_call`` of ``predict_or_keep`` on ``(case, target, existing, overwrite)``."""
        return guarded_call(self._predict, item)

    def _predict(self, item: tuple[Case, Path, set[Path], bool]) -> tuple[bool, Any]:
        from medseg.inference.predict import predict_or_keep

        case, target, existing, overwrite = item
        return predict_or_keep(self.run, case, target, existing, overwrite=overwrite)


class _ActorBackend(Backend):
    """One case in flight per actor; an idle actor takes the next case."""

    def __init__(self, ray: Any, run: Any, workers: int, use_gpu: bool) -> None:
        self.ray = ray
        self.workers = workers
        self.actor_class = ray.remote(
            num_cpus=0 if use_gpu else 1,
            num_gpus=1 if use_gpu else 0,
            max_restarts=0,  # a dead actor is replaced (below); the driver retries its case
        )(CaseWorker)
        self.run_ref = ray.put(run)
        self.actors = [self.actor_class.remote(self.run_ref) for _ in range(workers)]
        self.idle = list(self.actors)
        self.refs: dict[Any, tuple[int, Any]] = {}

    def submit(self, index: int, item: Any) -> None:
        actor = self.idle.pop()
        self.refs[actor.predict.remote(item)] = (index, actor)

    def finished(self) -> list[tuple[int, bool, Any, str | None, Any]]:
        ready, _ = self.ray.wait(list(self.refs), num_returns=1)
        out = []
        for ref in ready:
            index, actor = self.refs.pop(ref)
            try:
                out.append((index, *self.ray.get(ref)))
            except Exception as err:  # noqa: BLE001  # the actor died: that case failed
                first = str(err).splitlines()[0] if str(err) else ""
                out.append((index, False, None, f"{type(err).__name__}: {first}", None))
                actor = self._replace(actor)  # D: a new actor (loads the run) takes its place
            self.idle.append(actor)
        return out

    def _replace(self, actor: Any) -> Any:
        self.ray.kill(actor)
        fresh = self.actor_class.remote(self.run_ref)
        self.actors = [fresh if a is actor else a for a in self.actors]
        return fresh

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)


def worker_count(ray: Any, use_gpu: bool, jobs: int | None) -> int:
    """Actors: one per GPU (``use_gpu``) or per CPU of the cluster; ``jobs`` caps it."""
    resources = ray.cluster_resources()
    available = int(resources.get("GPU" if use_gpu else "CPU", 0))
    if available < 1:
        kind = "GPU" if use_gpu else "CPU"
        raise DatasetError(f"the Ray cluster has no {kind} for predict workers ({resources})")
    return max(1, min(available, jobs or available))


def run_on_ray(
    run: Any,
    cases: list[Case],
    targets: list[Path],
    existing: set[Path],
    *,
    overwrite: bool,
    progress: bool,
    address: str | None,
    jobs: int | None,
) -> tuple[int, list[dict[str, Any]], DatasetError | None]:
    """Predict ``cases`` into ``targets`` on Ray actors (module docstring).

    Returns:
        ``(cases kept, uncertainty rows in case order, error)`` like the local loop; the
        error (to raise once the rows are written) when some cases failed twice
        (``failures.csv`` lists them), else None.
    """
    start = time.perf_counter()
    ray = connect_ray(address, num_cpus=jobs)
    use_gpu = run.device.type == "cuda"
    workers = worker_count(ray, use_gpu, jobs)
    order = sorted(range(len(cases)), key=lambda i: (-_input_bytes(cases[i]), i))
    items = [
        (cases[i], targets[i], _existing_for(run, cases[i], targets[i], existing), overwrite)
        for i in order
    ]
    kept, rows, failed = 0, {}, []
    backend = _ActorBackend(ray, run, min(workers, max(1, len(items))), use_gpu)
    for outcome in run_backend(
        backend,
        None,  # type: ignore[arg-type]  # the actors hold the function
        items,
        retries=1,
        max_in_flight=backend.workers,
        ordered=False,
        desc="predict",
        progress=progress,
    ):
        case = items[outcome.index][0]
        if not outcome.ok:
            failed.append((case.case_id, str(outcome.error), outcome.attempts))
            continue
        was_kept, row = outcome.value  # type: ignore[misc]
        kept += was_kept
        if row is not None:
            rows[order[outcome.index]] = {"case": case.case_id, **row}
    output_dir = targets[0].parent if targets else Path(".")
    failures = write_failures(output_dir, sorted(failed))
    seconds = time.perf_counter() - start
    done = len(items) - len(failed) - kept
    log.info(
        "predict on Ray (%d workers): %s",
        workers,
        summary_line(done, len(failed), kept, seconds),
    )
    error = None
    if failed:
        error = DatasetError(
            f"{failures}: {len(failed)} of {len(cases)} case(s) failed (first: {failed[0][0]}: "
            f"{failed[0][1]}); the others were predicted, a second run predicts only the rest"
        )
    return kept, [rows[i] for i in sorted(rows)], error


def _existing_for(run: Any, case: Case, target: Path, existing: set[Path]) -> set[Path]:
    """The outputs of ``case`` among ``existing`` (what its actor needs to know)."""
    from medseg.inference.predict import uncertainty_path

    mine = {target, uncertainty_path(target, case.case_id)}
    return {path for path in existing if path in mine}


def _input_bytes(case: Case) -> int:
    """The case's input size on disk: larger cases go first, so none is left for the end."""
    try:
        return sum(path.stat().st_size for path in case.image_paths)
    except OSError:
        return 0
