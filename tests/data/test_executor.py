"""``medseg.data.executor`` without Ray: order, retries, failures, the in-flight bound, the
errors for a missing Ray or an address that does not answer; ``SampleSketch``; the phantom
size presets."""

from __future__ import annotations

import socket
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from medseg.data import compute_fingerprint, load_dataset
from medseg.data import fingerprint as fingerprint_module
from medseg.data.executor import (
    Backend,
    check_executor,
    connect_ray,
    import_ray,
    run_backend,
    run_cases,
    write_failures,
)
from medseg.data.parallel import imap_cases, map_cases
from medseg.data.phantom_config import PhantomConfig
from medseg.data.sample_sketch import SampleSketch
from medseg.errors import ConfigError, DatasetError


def _square_or_fail(item: int, bad: int = -1) -> int:
    if item == bad:
        raise DatasetError(f"case {item} is corrupt")
    return item * item


@pytest.mark.parametrize("jobs", [1, 2])
def test_local_run_cases_in_order(jobs):
    outcomes = list(run_cases(_square_or_fail, list(range(7)), jobs=jobs, progress=False))
    assert [o.value for o in outcomes] == [i * i for i in range(7)]
    assert [o.index for o in outcomes] == list(range(7))
    assert all(o.ok and o.attempts == 1 for o in outcomes)


def test_failure_retried_then_collected_while_others_finish():
    fn = partial(_square_or_fail, bad=3)
    outcomes = list(run_cases(fn, list(range(6)), jobs=2, retries=1, progress=False))
    failed = [o for o in outcomes if not o.ok]
    assert [o.index for o in failed] == [3]
    assert failed[0].attempts == 2
    assert failed[0].error == "DatasetError: case 3 is corrupt"
    assert isinstance(failed[0].exception, DatasetError)
    assert [o.value for o in outcomes if o.ok] == [0, 1, 4, 16, 25]


def test_map_cases_raises_the_case_error_and_imap_streams():
    with pytest.raises(DatasetError, match="case 2 is corrupt"):
        map_cases(partial(_square_or_fail, bad=2), [0, 1, 2], jobs=1, progress=False)
    stream = imap_cases(_square_or_fail, [1, 2, 3], jobs=1, progress=False)
    assert next(stream) == 1  # a generator: results arrive one by one
    assert list(stream) == [4, 9]


class _ReversedBackend(Backend):
    """Finishes the most recent submission first and records the most items ever pending."""

    def __init__(self) -> None:
        self.workers = 2
        self.pending: list[tuple[int, int]] = []
        self.submitted = 0

    def submit(self, index: int, item: int) -> None:
        self.pending.append((index, item))
        self.submitted += 1

    def finished(self):
        index, item = self.pending.pop()
        return [(index, True, item * 10, None, None)]


def test_driver_bounds_items_in_flight_and_restores_order():
    backend = _ReversedBackend()
    items = list(range(50))
    stream = run_backend(
        backend,
        None,
        items,
        retries=0,
        max_in_flight=4,
        ordered=True,
        desc="x",
        progress=False,
    )
    seen = []
    for outcome in stream:
        seen.append(outcome.value)
        assert backend.submitted <= len(seen) + 4  # never more than 4 ahead of the consumer
    assert seen == [10 * i for i in items]


def test_unordered_yields_every_item_once():
    backend = _ReversedBackend()
    outcomes = list(
        run_backend(
            backend,
            None,
            list(range(9)),
            retries=0,
            max_in_flight=3,
            ordered=False,
            desc="x",
            progress=False,
        )
    )
    assert sorted(o.index for o in outcomes) == list(range(9))
    assert outcomes[0].index == 2  # the last of the first three submitted finished first


def test_bad_executor_or_address_is_a_config_error():
    with pytest.raises(ConfigError, match="local, ray"):
        check_executor("dask")
    with pytest.raises(ConfigError, match="ray://HOST:PORT"):
        check_executor("ray", "http://x")
    with pytest.raises(ConfigError, match="--executor ray only"):
        check_executor("local", "auto")
    check_executor("ray", "ray://10.0.0.1:10001")
    check_executor("ray", "auto")


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match="cluster"):
        import_ray()
    with pytest.raises(ConfigError, match="cluster"):
        list(run_cases(_square_or_fail, [1], executor="ray", progress=False))


def test_silent_address_is_a_clear_error_fast():
    pytest.importorskip("ray")
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="does not answer"):
        connect_ray(f"ray://127.0.0.1:{port}")
    assert time.perf_counter() - start < 30


def test_write_failures_csv_and_removal(tmp_path: Path):
    path = write_failures(tmp_path, [("case_1", "DatasetError: bad, truly", 2)])
    assert path.read_text().splitlines() == [
        "case,error,attempts",
        'case_1,"DatasetError: bad, truly",2',
    ]
    write_failures(tmp_path, [])
    assert not path.exists()


def test_sketch_keeps_all_samples_while_they_fit():
    rng = np.random.default_rng(0)
    parts = [rng.normal(size=n) for n in (5, 300, 40)]
    sketch = SampleSketch(capacity=400)
    for i, part in enumerate(parts):
        sketch.add(part, i)
    assert sketch.exact
    np.testing.assert_array_equal(sketch.values(), np.concatenate(parts))


def test_sketch_beyond_capacity_is_a_uniform_subset():
    rng = np.random.default_rng(1)
    parts = [rng.normal(size=2_000) for _ in range(50)]  # 100,000 samples
    sketch = SampleSketch(capacity=10_000)
    for i, part in enumerate(parts):
        sketch.add(part, i)
    kept = sketch.values()
    every = np.concatenate(parts)
    assert kept.size == 10_000 and not sketch.exact
    assert np.isin(kept, every).all()
    assert (sketch.minimum, sketch.maximum) == (every.min(), every.max())
    # quantiles of 10,000 uniform samples: standard error about 0.0125 (median) of N(0, 1)
    for q in (0.5, 50, 99.5):
        assert abs(np.percentile(kept, q) - np.percentile(every, q)) < 0.1
    again = SampleSketch(capacity=10_000)
    for i, part in enumerate(parts):
        again.add(part, i)
    np.testing.assert_array_equal(again.values(), kept)  # deterministic


def test_fingerprint_with_a_small_sketch_stays_close(tiny_dataset, monkeypatch):
    dataset = load_dataset(tiny_dataset)
    exact = compute_fingerprint(dataset, jobs=1, progress=False)
    monkeypatch.setattr(fingerprint_module, "SampleSketch", partial(SampleSketch, capacity=50))
    sketched = compute_fingerprint(dataset, jobs=1, progress=False)
    for channel, stats in exact.intensity.items():
        spread = stats["percentile_99_5"] - stats["percentile_00_5"]
        for key in ("mean", "median"):
            assert abs(sketched.intensity[channel][key] - stats[key]) < 0.25 * spread
        assert sketched.intensity[channel]["min"] == stats["min"]
        assert sketched.intensity[channel]["max"] == stats["max"]
    assert sketched.cases == exact.cases


def test_phantom_size_presets():
    assert PhantomConfig().sized("small", spatial_dims=3).grid(3)[0] == (16, 16, 16)
    assert PhantomConfig().sized("hippocampus", spatial_dims=3).grid(3)[0] == (36, 50, 35)
    assert PhantomConfig().sized("small", spatial_dims=2).grid(2)[0] == (32, 32)
    assert PhantomConfig().sized("default", spatial_dims=3) == PhantomConfig()
    with pytest.raises(ConfigError, match="small"):
        PhantomConfig().sized("huge", spatial_dims=3)
