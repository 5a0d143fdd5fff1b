"""``medseg view`` commands (the typer app of ``medseg.cli.view``)."""

from __future__ import annotations

import re
import socket

import pytest
from tests.viewer.conftest import client_for
from typer.testing import CliRunner

from medseg.cli import view as view_cli
from medseg.errors import ConfigError
from medseg.viewer import serve as serve_module
from medseg.viewer.serve import bind_socket, remote_hosts

runner = CliRunner()


def test_view_prints_a_loopback_url_with_a_fresh_token(results, monkeypatch):
    served = []
    monkeypatch.setattr(serve_module, "serve", lambda app, sock: served.append(sock))
    result = runner.invoke(view_cli.app, [str(results), "--port", "0", "--user", "dr who"])
    assert result.exit_code == 0, result.output
    url = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=([\w-]+)", result.output)
    assert url and int(url.group(1)) == served[0].getsockname()[1]
    assert len(url.group(2)) >= 43  # 32 random bytes, base64url
    served[0].close()


def test_a_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} .* in use"):
            bind_socket("127.0.0.1", port)


def test_a_remote_host_needs_allow_remote_and_warns():
    with pytest.raises(ConfigError, match="--allow-remote"):
        remote_hosts("0.0.0.0", allow_remote=False)
    with pytest.warns(UserWarning, match="not encrypted"):
        assert "10.1.2.3" in remote_hosts("10.1.2.3", allow_remote=True)
    assert remote_hosts("127.0.0.1", allow_remote=False) == frozenset()


def test_bad_host_and_user_values_are_usage_errors(results):
    assert runner.invoke(view_cli.app, [str(results), "--host", "a/b"]).exit_code == 2
    assert runner.invoke(view_cli.app, [str(results), "--user", "x" * 80]).exit_code == 2
    assert runner.invoke(view_cli.app, [str(results), "--port", "70000"]).exit_code == 2


def test_export_and_verify_audit_commands(results, tmp_path):
    with client_for(results) as client:
        client.post("/api/cases/phantom_000/accept", json={})
        client.post("/api/cases/phantom_001/accept", json={})
    out = tmp_path / "reviewed"
    result = runner.invoke(view_cli.app, ["export", str(results), "-o", str(out)])
    assert result.exit_code == 0 and "2 reviewed cases" in result.output
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == [
        "phantom_000.nii.gz",
        "phantom_001.nii.gz",
    ]
    ok = runner.invoke(view_cli.app, ["verify-audit", str(results)])
    assert ok.exit_code == 0 and "3 lines, chain intact" in ok.output
    log = results / "audit.jsonl"
    log.write_text(log.read_text().replace("phantom_001", "phantom_002"))
    broken = runner.invoke(view_cli.app, ["verify-audit", str(results)])
    assert isinstance(broken.exception, ConfigError) and "line 2" in str(broken.exception)
