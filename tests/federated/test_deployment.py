"""Flower's deployment runtime as real processes: a SuperLink and two SuperNodes on
127.0.0.1 (free ports, ``--insecure``), ``medseg``'s apps submitted with ``flwr run``; every
process is bounded by timeouts and stopped by its process group id."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("flwr")

from medseg.data.phantom_config import PhantomConfig  # noqa: E402
from medseg.data.phantoms import generate_dataset  # noqa: E402
from medseg.errors import ConfigError  # noqa: E402
from medseg.federated.deploy import flower_tool, run_deployed, write_app  # noqa: E402
from medseg.federated.privacy import dp_epsilon  # noqa: E402
from medseg.federated.sites import split_sites  # noqa: E402
from medseg.inference.checkpoints import find_checkpoints  # noqa: E402
from medseg.training import model_from_checkpoint  # noqa: E402
from medseg.training.checkpoint import load_checkpoint  # noqa: E402

START_TIMEOUT = 60.0  # seconds for a process to listen on its port
RUN_TIMEOUT = 600.0  # seconds for the whole federated run (a hang guard, not a timing)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            pytest.fail(f"{process.args[0]} exited {process.returncode}: {text}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"{process.args[0]} not listening on {port} after {START_TIMEOUT} s")


def start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """A process in its own process group (so it and the app processes it starts can be
    stopped together), its output in ``log``."""
    with open(log, "wb") as f:
        return subprocess.Popen(
            args, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def descendants(pid: int) -> list[int]:
    """The process ids below ``pid`` (Linux ``/proc``; empty elsewhere): the SuperExec the
    SuperLink starts runs in a session of its own, out of the SuperLink's group."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill(pid: int, sig: int, group: bool = False) -> None:
    try:
        (os.killpg if group else os.kill)(pid, sig)
    except ProcessLookupError:
        pass


def stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to each process group and every descendant by id, then SIGKILL to what is
    left; each wait bounded."""
    below = {p.pid: descendants(p.pid) for p in processes}
    for process in processes:
        _kill(process.pid, signal.SIGTERM, group=True)
        for pid in below[process.pid]:
            _kill(pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            _kill(process.pid, signal.SIGKILL, group=True)
            process.wait(timeout=15)
        for pid in below[process.pid]:
            _kill(pid, signal.SIGKILL)


@pytest.mark.slow
@pytest.mark.federated
def test_superlink_and_two_supernodes_train_two_rounds(tmp_path):
    small = PhantomConfig().sized("small", spatial_dims=2)  # 32 x 32: a small network
    data = generate_dataset(tmp_path / "ds", spatial_dims=2, num_cases=6, seed=3, config=small)
    split_sites(data, tmp_path / "sites", sites=2, seed=0)
    out = (tmp_path / "results").resolve()
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "FLWR_HOME": str(tmp_path / "flwr_home")}
    link_port = free_port()
    superlink = [flower_tool("flower-superlink"), "--insecure", "--host", "127.0.0.1"]
    superlink += ["--port", str(link_port), "--disable-runtime-dependency-installation"]
    processes = [start(superlink, tmp_path / "superlink.log", env)]
    try:
        wait_listening(link_port, processes[0], tmp_path / "superlink.log")
        for i in range(2):
            node_port = free_port()
            site = out / "sites" / f"site_{i}"
            node = [flower_tool("flower-supernode"), "--insecure"]
            node += ["--superlink", f"127.0.0.1:{link_port}", "--port", str(node_port)]
            node += ["--node-config", f"partition-id={i} site-results='{site}'"]
            processes.append(start(node, tmp_path / f"supernode_{i}.log", env))
            wait_listening(node_port, processes[-1], tmp_path / f"supernode_{i}.log")
        result = run_deployed(
            tmp_path / "sites",
            out,
            superlink=f"127.0.0.1:{link_port}",
            rounds=2,
            local_steps=1,
            dp_clip=10.0,  # client-side DP through the run config; tiny noise
            dp_noise=0.001,
            timeout=RUN_TIMEOUT,
            poll=1.0,
        )
    finally:
        stop(processes)
    assert all(p.poll() is not None for p in processes)
    assert [r["round"] for r in result["rounds"]] == [1, 2]
    assert all(r["sites"] == ["site_0", "site_1"] and r["bytes_up"] > 0 for r in result["rounds"])
    (path,) = find_checkpoints(out, configurations=["2d"], checkpoint="latest")
    model, _ = model_from_checkpoint(path)
    checkpoint = load_checkpoint(path)
    settings = checkpoint["federated"]
    assert checkpoint["epoch"] == 2 and settings["rounds"] == 2
    assert settings["dp_epsilon"] == pytest.approx(dp_epsilon(0.001, 2, 1e-5))
    text = (out / "rounds.jsonl").read_text()  # what left the sites: weights and numbers
    for line in text.splitlines():
        for reply in json.loads(line)["replies"]:
            assert set(reply["arrays"]) == set(model.state_dict())
            assert math.isnan(reply["metrics"]["train_loss"])  # withheld under DP
    assert str(tmp_path) not in text and "phantom_" not in text


def test_the_app_names_medseg_apps_and_carries_the_settings(tmp_path):
    from flwr.common.config import get_project_config  # Flower's own reader

    folder = write_app(tmp_path / "app", {"results": "/r", "local-steps": 3, "fedbn": True})
    config = get_project_config(folder)["tool"]["flwr"]["app"]
    assert config["config"] == {"results": "/r", "local-steps": 3, "fedbn": True}
    from medseg.federated import flower

    for ref in config["components"].values():
        module, name = ref.split(":")
        assert module == flower.__name__ and hasattr(flower, name)


def test_a_network_address_needs_certificates(tmp_path):
    with pytest.raises(ConfigError, match="10.1.2.3:9093: not a loopback address"):
        run_deployed(tmp_path / "sites", tmp_path / "out", superlink="10.1.2.3:9093")
    assert not (tmp_path / "out").exists()  # refused before anything was written
