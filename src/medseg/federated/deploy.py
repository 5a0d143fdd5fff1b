"""``medseg fed run --superlink HOST:PORT``: a federation on Flower's deployment runtime.

Flower 1.42's deployment runtime runs three kinds of long-lived processes: one SuperLink
(``flower-superlink``: the Fleet, Control and Runtime APIs on one HTTP port), one SuperNode
per site (``flower-supernode --superlink HOST:PORT --node-config ...``), and, per run and
per message, a ServerApp or ClientApp process they start themselves. A run is submitted
with ``flwr run APP CONNECTION``: ``APP`` is a Flower App folder (a ``pyproject.toml``
whose ``[tool.flwr.app.components]`` name the apps) and ``CONNECTION`` a SuperLink
connection in the Flower configuration file (``$FLWR_HOME/config.toml``).

:func:`run_deployed` does what ``run_federated`` does before training (check, plan,
preprocess, ``federation.json``), then writes ``RESULTS/flower/app/pyproject.toml``, whose
components are :data:`medseg.federated.flower.server` and ``.client`` and whose run config
carries the settings, and ``RESULTS/flower/config.toml`` (the connection), submits the run
with the ``flwr`` CLI and polls ``flwr list`` until it finishes (or stops it after
``timeout`` seconds). Each SuperNode names its site in its node config:
``partition-id=I site-results='RESULTS/sites/site_I'`` (the site's preprocessed cases; on
a real deployment, a folder on the site's machine). The SuperLink must run with
``--disable-runtime-dependency-installation`` (medseg and torch are already installed; by
default Flower 1.42 would ``uv sync`` the app's dependencies from the network).

Nothing here imports Flower: it drives Flower's command-line tools.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from medseg.errors import ConfigError
from medseg.federated.aggregate import FederatedError
from medseg.federated.run import check_address, prepare_run

CONNECTION = "medseg"
COMPONENTS = {
    "serverapp": "medseg.federated.flower:server",
    "clientapp": "medseg.federated.flower:client",
}
FINISHED = "finished"
LIST_EVERY = 30.0  # seconds between two `flwr list` calls while a run goes on


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string


def write_app(folder: Path, run_config: dict[str, Any]) -> Path:
    """A Flower App folder whose components are medseg's deployed apps and whose run config
    (``[tool.flwr.app.config]``) is ``run_config``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    config = "\n".join(f"{k} = {_toml_value(v)}" for k, v in run_config.items())
    components = "\n".join(f'{k} = "{v}"' for k, v in COMPONENTS.items())
    (folder / "pyproject.toml").write_text(
        "[project]\n"
        'name = "medseg-federated"\nversion = "1.0.0"\n'
        'description = "medseg federated training (the apps live in the installed medseg)"\n'
        'license = "Apache-2.0"\ndependencies = []\n\n'
        '[tool.flwr.app]\npublisher = "medseg"\n\n'
        f"[tool.flwr.app.components]\n{components}\n\n"
        f"[tool.flwr.app.config]\n{config}\n",
        encoding="utf-8",
    )
    return folder


def write_connection(home: Path, superlink: str, root_certificates: str | None) -> Path:
    """``home/config.toml`` with the SuperLink connection ``medseg`` (the default)."""
    home.mkdir(parents=True, exist_ok=True)
    security = (
        f"root-certificates = {json.dumps(str(Path(root_certificates).resolve()))}"
        if root_certificates
        else "insecure = true"
    )
    path = home / "config.toml"
    path.write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n'
        f'[superlink.{CONNECTION}]\naddress = "{superlink}"\n{security}\n',
        encoding="utf-8",
    )
    return path


def flower_tool(name: str) -> str:
    """The path of Flower's command-line tool ``name`` (beside this Python, else on PATH)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise ConfigError(f"{name}: Flower's command-line tool is not installed (pip install flwr)")
    return found


def _flwr(args: list[str], home: Path, timeout: float) -> dict[str, Any]:
    """Run ``flwr ARGS --format json`` with ``FLWR_HOME=home``; its JSON answer."""
    env = {**os.environ, "FLWR_HOME": str(home)}
    try:
        done = subprocess.run(
            [flower_tool("flwr"), *args, "--format", "json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FederatedError(f"flwr {args[0]}: no answer in {timeout:.0f} s") from None
    try:
        answer = json.loads(done.stdout[done.stdout.find("{") :])
    except ValueError:
        answer = {}
    if done.returncode or not answer.get("success", False):
        text = (answer.get("error-message") or done.stderr or done.stdout).strip()
        raise FederatedError(f"flwr {args[0]} failed: {text.splitlines()[-1] if text else '?'}")
    return answer


def run_deployed(
    sites_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    superlink: str,
    root_certificates: str | None = None,
    timeout: float = 3600.0,
    poll: float = 2.0,
    **options: Any,
) -> dict[str, Any]:
    """Train over the sites on a running SuperLink and its SuperNodes (module docstring).

    Args:
        superlink: the SuperLink's address ``HOST:PORT``; a non-loopback one needs
            ``root_certificates`` (the CA that signed the SuperLink's TLS certificate).
        timeout: seconds the run may take (including waiting for the SuperNodes) before it
            is stopped (``flwr stop``) and a FederatedError raised.
        options: those of :func:`~.run.prepare_run` (config, rounds, local_steps, ...).

    Returns:
        ``{"rounds": [...], "run_id", "submit_seconds", "seconds"}``.
    """
    check_address(superlink, (root_certificates,) if root_certificates else None)
    out = Path(out).resolve()
    _, _, settings = prepare_run(sites_dir, out, **options)
    run_config = {"results": str(out), **{k: v for k, v in settings.items() if k != "sites"}}
    app = write_app(out / "flower" / "app", {k.replace("_", "-"): v for k, v in run_config.items()})
    home = out / "flower" / "home"
    write_connection(home, superlink, root_certificates)
    started = time.perf_counter()
    run_id = _flwr(["run", str(app), CONNECTION], home, 120)["run-id"]
    submitted = time.perf_counter() - started
    status = _wait(run_id, home, out / "federation.json", started + timeout, poll)
    if status != f"{FINISHED}:completed":
        details = json.dumps(_flwr(["list", "--run-id", run_id], home, 60)["runs"][0])
        raise FederatedError(f"{out}: Flower run {run_id} ended {status}: {details}")
    saved = json.loads((out / "federation.json").read_text(encoding="utf-8"))
    seconds = time.perf_counter() - started
    return {
        "rounds": saved["rounds_log"],
        "run_id": run_id,
        "submit_seconds": submitted,
        "seconds": seconds,
    }


def _wait(run_id: str, home: Path, done: Path, deadline: float, poll: float) -> str:
    """Wait until the run finishes (its status) or ``deadline`` passes (then the run is
    stopped and a FederatedError raised). Watches for the server's ``done`` file every
    ``poll`` seconds and asks ``flwr list`` (a few seconds of CPU) every ``LIST_EVERY``."""
    asked = -math.inf
    while True:
        finished = _finished(done)
        if finished or time.perf_counter() - asked > LIST_EVERY:
            asked = time.perf_counter()
            runs = _flwr(["list", "--run-id", run_id], home, 60)["runs"]
            status = str(runs[0]["status"]) if runs else "unknown"
            if status.startswith(FINISHED):
                return status
        if time.perf_counter() > deadline:
            try:
                _flwr(["stop", run_id], home, 60)
            except FederatedError as err:  # the timeout is the message that matters
                status += f"; {err}"
            raise FederatedError(
                f"Flower run {run_id} did not finish in time (status {status}); stopped. "
                "Are the SuperNodes connected (one per site)?"
            )
        time.sleep(poll)


def _finished(path: Path) -> bool:
    try:
        return "rounds_log" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
