"""``map_cases``: results in order, and no worker outlives its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medseg.data.parallel import _alive, map_cases

_SLOW = """import os, time
from pathlib import Path

def work(pid_file):
    Path(pid_file).write_text(str(os.getpid()), encoding="utf-8")
    time.sleep(120)
"""

_PARENT = """import sys
sys.path.insert(0, sys.argv[1])
import slow
from medseg.data.parallel import map_cases
map_cases(slow.work, sys.argv[2:], jobs=2, progress=False)
"""


def _square(x: int) -> int:
    return x * x


def test_map_cases_returns_results_in_order_with_several_workers() -> None:
    assert map_cases(_square, list(range(7)), jobs=2, progress=False) == [x * x for x in range(7)]


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9 and /proc are POSIX")
def test_workers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    (tmp_path / "slow.py").write_text(_SLOW, encoding="utf-8")
    pid_files = [tmp_path / "worker_0.pid", tmp_path / "worker_1.pid"]
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, str(tmp_path), *map(str, pid_files)])
    workers: list[int] = []
    try:
        assert _wait_for(
            lambda: all(p.exists() and p.read_text(encoding="utf-8") for p in pid_files), 60
        )
        workers = [int(p.read_text(encoding="utf-8")) for p in pid_files]
        assert all(_alive(pid) for pid in workers)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        assert _wait_for(lambda: not any(_alive(pid) for pid in workers), 5)
    finally:
        parent.kill()
        for pid in workers:  # leave nothing behind if the claim fails
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
