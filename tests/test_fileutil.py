"""Safe writing: atomic replace, the no-overwrite rule, and a full disk reported in one line."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medseg.errors import DiskFullError, OverwriteError
from medseg.fileutil import atomic_path, check_writable, write_text_atomic


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_check_writable_refuses_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("keep")
    with pytest.raises(OverwriteError, match="--overwrite"):
        check_writable(tmp_path / "x", overwrite=False)
    assert check_writable(tmp_path / "x", overwrite=True) == tmp_path / "x"


def test_a_full_disk_names_the_file_and_keeps_the_previous_version(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    target.write_text("previous")
    with pytest.raises(DiskFullError, match="checkpoint.pt: disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_torch_save_failing_for_space_is_a_disk_full_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_save(obj: object, f: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(torch, "save", failing_save)
    from medseg.training import save_checkpoint

    with pytest.raises(DiskFullError, match="disk full"):
        save_checkpoint(tmp_path / "c.pt", network_state={}, plan={})
    assert not list(tmp_path.iterdir())


def test_the_cli_reports_a_full_disk_in_one_line(tmp_path: Path) -> None:
    # an OSError(ENOSPC) escaping any command becomes one line on stderr and exit code 1
    code = ("import errno, medseg.cli.main as m\n"
            "def boom():\n    raise OSError(errno.ENOSPC, 'No space left on device', 'out/x.nii.gz')\n"
            "m.app = boom\nm.run()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "out/x.nii.gz: disk full" in result.stderr and "Traceback" not in result.stderr
