"""Safe writing: atomic replace, the no-overwrite rule, a full disk reported in one line, file
modes, stale temporaries, folder locks and formula-safe CSV cells."""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from medseg import fileutil
from medseg.errors import DiskFullError, LockedError, OverwriteError
from medseg.fileutil import (
    atomic_path,
    check_writable,
    csv_restore,
    csv_safe,
    remove_stale_temporaries,
    run_lock,
    write_text_atomic,
)


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text(encoding="utf-8") == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_check_writable_refuses_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("keep", encoding="utf-8")
    with pytest.raises(OverwriteError, match="--overwrite"):
        check_writable(tmp_path / "x", overwrite=False)
    assert check_writable(tmp_path / "x", overwrite=True) == tmp_path / "x"


def test_a_full_disk_names_the_file_and_keeps_the_previous_version(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    target.write_text("previous", encoding="utf-8")
    with pytest.raises(DiskFullError, match="checkpoint.pt: disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half", encoding="utf-8")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text(encoding="utf-8") == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_torch_save_failing_for_space_is_a_disk_full_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_save(obj: object, f: object) -> None:
        raise RuntimeError(
            "[enforce fail at inline_container.cc] . PytorchStreamWriter failed writing file "
            "data/0: file write failed"
        )

    monkeypatch.setattr(torch, "save", failing_save)
    from medseg.training import save_checkpoint

    with pytest.raises(DiskFullError, match="disk full"):
        save_checkpoint(tmp_path / "c.pt", network_state={}, plan={})
    assert not list(tmp_path.iterdir())


def test_the_cli_reports_a_full_disk_in_one_line(tmp_path: Path) -> None:
    # an OSError(ENOSPC) escaping any command becomes one line on stderr and exit code 1
    code = (
        "import errno, medseg.cli.main as m\n"
        "def boom():\n    raise OSError(errno.ENOSPC, 'No space left on device', 'out/x.nii.gz')\n"
        "m.app = boom\nm.run()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "out/x.nii.gz: disk full" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- file mode


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_follow_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    fileutil._umask.cache_clear()
    try:
        write_text_atomic(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
        fileutil._umask.cache_clear()
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == mode


# ---------------------------------------------------------------- stale temporaries


def _age(path: Path, *, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def _killed_write(folder: Path, name: str) -> Path:
    """A process killed inside ``atomic_path`` (``os._exit``: no clean-up runs)."""
    code = (
        "import os, sys\nfrom medseg.fileutil import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_text('half')\n    os._exit(9)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(folder / name)], check=False, timeout=60)
    (left,) = [p for p in folder.iterdir() if p.name != name]
    return left


def test_a_later_run_removes_the_temporary_a_killed_write_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    left = _killed_write(tmp_path, "checkpoint_best.pt")
    assert left.name.startswith(".checkpoint_best.") and left.name.endswith(".tmp.pt")
    assert remove_stale_temporaries(tmp_path) == []  # it may be a write of this process
    monkeypatch.setattr(fileutil, "_PROCESS_START", time.time() + 1)  # a run started later
    assert remove_stale_temporaries(tmp_path) == []  # too recent: a writer may be about to open it
    _age(left, seconds=120)
    assert remove_stale_temporaries(tmp_path) == [left]
    assert list(tmp_path.iterdir()) == []


def test_remove_stale_temporaries_keeps_user_files_links_and_open_temporaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keep = [
        ".notes.txt",
        "case.k3j_9x2a.tmp.nii.gz",
        ".case.abc.tmp.nii.gz",
        ".case.K3J_9X2A.tmp.gz",
        ".case.k3j_9x2a.temp.gz",
    ]
    for name in keep:
        (tmp_path / name).write_text("user data", encoding="utf-8")
    link = tmp_path / ".link.k3j_9x2a.tmp.nii.gz"
    link.symlink_to(tmp_path / ".notes.txt")
    os.utime(link, (time.time() - 120,) * 2, follow_symlinks=False)
    held = tmp_path / ".held.a1b2c3d4.tmp.npz"
    held.write_text("being written", encoding="utf-8")
    stale = tmp_path / "sub" / ".case_1.zz__0099.tmp.nii.gz"
    stale.parent.mkdir()
    stale.write_text("half", encoding="utf-8")
    for path in [*(tmp_path / name for name in keep), held, stale]:
        _age(path, seconds=120)
    monkeypatch.setattr(fileutil, "_PROCESS_START", time.time() + 1)
    with open(held, "rb"):  # a writer still has it open
        assert remove_stale_temporaries(tmp_path) == []  # not recursive by default
        assert remove_stale_temporaries(tmp_path, recursive=True) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [*keep, ".link.k3j_9x2a.tmp.nii.gz", held.name, "sub"]
    )


# ---------------------------------------------------------------- folder locks

_HOLD = """import os, sys, time
from medseg.fileutil import run_lock
with run_lock(sys.argv[1], "trained"):
    ready, tell = os.pipe()
    child = os.fork()  # like a pool worker
    if child == 0:  # fork returns here after the at-fork hook closed the child's lock copy
        os.write(tell, b"x")
        time.sleep(120)
        os._exit(0)
    os.read(ready, 1)  # print only once the child runs, so the kill below leaves no holder
    print(child, flush=True)
    time.sleep(120)
"""


def test_a_held_lock_refuses_a_second_run_naming_the_holder_until_it_is_killed(
    tmp_path: Path,
) -> None:
    script = tmp_path / "hold_fold.py"
    script.write_text(_HOLD, encoding="utf-8")
    fold = tmp_path / "fold_0"
    holder = subprocess.Popen(
        [sys.executable, str(script), str(fold)], stdout=subprocess.PIPE, text=True
    )
    child = 0
    try:
        assert holder.stdout is not None
        child = int(holder.stdout.readline())
        pattern = (
            rf"fold_0 is being trained by pid {holder.pid} \(hold_fold.py .*fold_0\) "
            r"since \d\d:\d\d"
        )
        with pytest.raises(LockedError, match=pattern + "; wait for it to finish or stop it"):
            with run_lock(fold, "trained"):
                pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        os.kill(child, 0)  # the forked child still runs, and does not hold the lock
        with run_lock(fold, "trained") as lock:  # the kernel released it with the process
            assert f'"pid": {os.getpid()}' in lock.read_text(encoding="utf-8")
        assert lock.read_text(encoding="utf-8") == ""  # emptied on release, kept as a file
    finally:
        holder.kill()
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


def test_a_lock_is_refused_within_one_process_and_free_again_after_the_block(
    tmp_path: Path,
) -> None:
    with run_lock(tmp_path, "written"):
        with pytest.raises(LockedError, match=rf"being written by pid {os.getpid()}"):
            with run_lock(tmp_path, "written"):
                pass
    with run_lock(tmp_path, "written"):
        pass


# ---------------------------------------------------------------- CSV cells


def test_csv_safe_quotes_formulas_and_keeps_numbers() -> None:
    assert csv_safe('=HYPERLINK("http://x","y")') == '\'=HYPERLINK("http://x","y")'
    formulas = ("@x", "+cmd", "-2+3", "\t=1")
    assert [csv_safe(v) for v in formulas] == ["'@x", "'+cmd", "'-2+3", "'\t=1"]
    assert [csv_safe(v) for v in ("-1.5", "+3", "-inf", "case_1", "", -1.5, 7)] == [
        "-1.5",
        "+3",
        "-inf",
        "case_1",
        "",
        -1.5,
        7,
    ]


@pytest.mark.parametrize("value", ["=1+1", "'=1+1", "''@x", "'plain", "-1.5", "'-1.5", "a=b"])
def test_csv_restore_undoes_csv_safe(value: str) -> None:
    text = io.StringIO()
    csv.writer(text).writerow([csv_safe(value)])
    (cell,) = next(csv.reader(io.StringIO(text.getvalue())))
    assert csv_restore(cell) == value
