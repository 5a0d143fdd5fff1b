"""Time budgets and precision: measure a plan's training step on this machine, safely.

On a CPU, nnU-Net's 250,000 steps are out of reach; what matters is how many steps fit in the
time the user has. ``measure_step_seconds`` times real forward+backward+optimiser steps of
the planned network at the planned patch and batch (no guessing), and
``fit_to_time_budget`` turns a budget into epochs and picks the configuration: 3D full
resolution when it affords enough steps to converge, else 2D, and a narrower network when
even 2D would get too few steps.

A native kernel can crash or hang on some CPUs under bf16 autocast (on an Intel Xeon with
AMX, a ``ConvTranspose3d`` backward at an ACDC 3D patch died with a segmentation fault, or
never finished), which would take the user's run down with it. So the steps are measured in
a child process (:func:`probe_step_seconds`): when it dies or does not answer, the plan
trains in float32 instead, and the plan says why (``plan.precision``, ``--explain``).
:func:`decide_bf16` makes the same decision when training starts on a plan that was never
probed.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
from dataclasses import dataclass, replace
from typing import Any

import torch

from medseg.device import autocast, bf16_supported
from medseg.errors import MedsegError
from medseg.nets import build_network
from medseg.planning.plan import Plan, Plans
from medseg.planning.recipe import plan_loss

log = logging.getLogger(__name__)

# Steps a configuration needs to be worth choosing (seen on Hippocampus and phantoms: 2D
# U-Nets reach most of their Dice within ~1-2k steps; 3D patches carry more context per step
# but need more steps to converge).
MIN_STEPS = {"3d_fullres": 2000, "3d_lowres": 2000, "3d_cascade_fullres": 2000, "2d": 600}
OVERHEAD = 0.85  # share of the budget left for steps after validation and checkpoints
#: A float32 probe that has not answered by then is taken as hung (a real CPU step takes seconds).
PROBE_TIMEOUT_S = 600.0
BF16_TIMEOUT_MIN_S = 60.0
#: a working bf16 step is at most a few times slower than float32 (and usually faster)
BF16_TIMEOUT_FACTOR = 5.0


def measure_step_seconds(
    plan: Plan, *, device: str = "cpu", steps: int = 3, use_bf16: bool | None = None
) -> float:
    """Median wall time of ``steps`` training steps (after one warm-up) of ``plan``, in this
    process; ``use_bf16`` None: bf16 autocast where the device supports it natively."""
    dev = torch.device(device)
    use_bf16 = bf16_supported(dev) if use_bf16 is None else use_bf16
    model = build_network(
        plan.network,
        spatial_dims=plan.spatial_dims,
        in_channels=plan.in_channels,
        out_channels=plan.num_classes,
        **plan.network_config,
    ).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = plan_loss(plan)
    image = torch.randn(plan.batch_size, plan.in_channels, *plan.patch_size, device=dev)
    label = torch.randint(0, plan.num_classes, (plan.batch_size, 1, *plan.patch_size), device=dev)
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast(dev, use_bf16):
            loss = loss_fn(model(image), label, image)
        loss.backward()
        optimizer.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


@dataclass(frozen=True)
class ProbeResult:
    """A step measured in a child process: ``seconds``, or None and what went wrong."""

    seconds: float | None
    failure: str = ""


_PROBED: dict[
    tuple[Any, ...], dict[str, ProbeResult]
] = {}  # same plan shape, same machine: measured once


def _probe_child(
    conn: Any, plan: dict[str, Any], device: str, steps: int, precisions: tuple[str, ...]
) -> None:
    for precision in precisions:  # one answer each, in order: the parent times each one out
        try:
            seconds = measure_step_seconds(
                Plan.from_dict(plan), device=device, steps=steps, use_bf16=precision == "bf16"
            )
            conn.send(("ok", seconds))
        except Exception as err:  # reported to the parent, which decides
            conn.send(("error", f"{type(err).__name__}: {err}"))


def probe_step_seconds(
    plan: Plan,
    *,
    device: str = "cpu",
    steps: int = 3,
    bf16: bool = True,
    timeout_s: float = PROBE_TIMEOUT_S,
) -> dict[str, ProbeResult]:
    """:func:`measure_step_seconds` in a child process, in float32 and then (``bf16``) in bf16,
    so a crash in a native kernel (a segmentation fault, an abort) or a hang cannot take this
    process down.

    The float32 step is the trusted baseline (``timeout_s``); the bf16 steps get at most
    ``BF16_TIMEOUT_FACTOR`` (5) times its time, at least 60 s (a JIT warm-up), so a hung kernel is
    noticed in minutes rather than never. The child is spawned:
    a forked child of a process that has used OpenMP can hang in its first parallel region.
    Results are remembered per plan shape, device and steps.

    Returns:
        ``{"fp32": ProbeResult, "bf16": ProbeResult}`` (``"bf16"`` only with ``bf16``); a failed
        one has ``seconds`` None and says how the child died ("was killed by signal 11
        (SIGSEGV)", "did not finish within 60 s", ...).
    """
    precisions = ("fp32", "bf16") if bf16 else ("fp32",)
    key = (
        plan.network,
        repr(plan.network_config),
        plan.patch_size,
        plan.batch_size,
        plan.in_channels,
        plan.num_classes,
        plan.loss,
        repr(plan.loss_config),
        str(device),
        steps,
        precisions,
    )
    if key not in _PROBED:
        _PROBED[key] = _run_probe(plan, str(device), steps, precisions, timeout_s)
    return _PROBED[key]


def _run_probe(
    plan: Plan, device: str, steps: int, precisions: tuple[str, ...], timeout_s: float
) -> dict[str, ProbeResult]:
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(
        target=_probe_child, args=(send, plan.to_dict(), device, steps, precisions), daemon=True
    )
    child.start()
    send.close()
    results: dict[str, ProbeResult] = {}
    timeout = timeout_s
    for precision in precisions:
        answer = _receive(receive, timeout)
        if answer is None:
            break
        kind, value = answer
        results[precision] = (
            ProbeResult(value) if kind == "ok" else ProbeResult(None, f"failed ({value})")
        )
        if kind == "ok":  # the next (bf16) measurement: a few times the float32 one at most
            timeout = max(BF16_TIMEOUT_MIN_S, BF16_TIMEOUT_FACTOR * value * (steps + 1))
    child.join(timeout=5 if len(results) == len(precisions) else 1)
    hung = child.is_alive()
    if hung:
        child.kill()
        child.join()
    receive.close()
    for precision in precisions[len(results) :]:
        if hung:
            results[precision] = ProbeResult(None, f"did not finish within {timeout:.0f} s")
        elif child.exitcode is not None and child.exitcode < 0:
            name = signal.Signals(-child.exitcode).name
            results[precision] = ProbeResult(
                None, f"was killed by signal {-child.exitcode} ({name})"
            )
        else:
            results[precision] = ProbeResult(None, f"exited with code {child.exitcode}")
    return results


def _receive(connection: Any, timeout: float) -> tuple[str, Any] | None:
    try:
        return connection.recv() if connection.poll(timeout) else None
    except EOFError:  # the child died before answering
        return None


def decide_bf16(plan: Plan, device: torch.device) -> tuple[bool, str]:
    """Whether training ``plan`` on ``device`` uses bf16 autocast, and why.

    ``plan.precision`` decides when planning set it; ``"auto"`` means bf16 where the device
    supports it natively, after one bf16 step of the plan ran in a child process (on a CPU).
    """
    if plan.precision == "fp32":
        return False, "the plan says fp32"
    if not bf16_supported(device):
        return False, f"{device} has no native bf16"
    if plan.precision == "bf16" or device.type != "cpu":
        return True, f"the plan says {plan.precision}; {device} supports bf16 natively"
    probe = probe_step_seconds(plan, device=str(device), steps=1)["bf16"]
    if probe.seconds is None:
        log.warning(
            "%s: a bf16 training step %s in a child process (a native-kernel fault or hang on "
            "this CPU); training in float32 instead",
            plan.configuration,
            probe.failure,
        )
        return False, f"a bf16 step {probe.failure} in a child process; float32 instead"
    return True, "a bf16 step ran in a child process on this machine"


def _measured(plan: Plan, device: str, forced: bool) -> tuple[Plan, float]:
    """The plan's step time, measured in a child process; a plan whose bf16 step crashes or
    hangs is switched to float32 (unless the user forced bf16)."""
    use_bf16 = plan.precision == "bf16" or (
        plan.precision == "auto" and bf16_supported(torch.device(device))
    )
    probes = probe_step_seconds(plan, device=device, bf16=use_bf16)
    if use_bf16 and probes["bf16"].seconds is None:
        failure = probes["bf16"].failure
        if forced:
            raise MedsegError(
                f"{plan.configuration}: a bf16 training step {failure} on {device} "
                "(drop --precision bf16)"
            )
        log.warning(
            "%s: a bf16 training step %s in a child process (a native-kernel fault or hang on "
            "this CPU); this plan trains in float32",
            plan.configuration,
            failure,
        )
        reason = (
            f"a bf16 step {failure} in a child process on {device} (a native-kernel fault or "
            "hang); float32 instead (override with --precision)"
        )
        plan, use_bf16 = (
            replace(plan, precision="fp32", reasons={**plan.reasons, "precision": reason}),
            False,
        )
    probe = probes["bf16" if use_bf16 else "fp32"]
    if probe.seconds is None:
        raise MedsegError(
            f"{plan.configuration}: a float32 training step {probe.failure} on {device}"
        )
    if plan.precision == "auto":
        reason = (
            "a bf16 step ran in a child process on this machine"
            if use_bf16
            else f"{device} has no native bf16"
        )
        plan = replace(
            plan,
            precision="bf16" if use_bf16 else "fp32",
            reasons={**plan.reasons, "precision": reason},
        )
    return plan, probe.seconds


def _narrower(plan: Plan) -> Plan:
    features = [max(4, f // 2) for f in plan.network_config["features"]]
    return replace(plan, network_config={**plan.network_config, "features": features})


def fit_to_time_budget(
    plans: Plans, budget_s: float, *, device: str = "cpu", precision_forced: bool = False
) -> Plans:
    """Set each plan's epochs from the measured step time and pick a configuration.

    Each step is measured in a child process (:func:`probe_step_seconds`), which also fixes
    each plan's ``precision``.

    Args:
        precision_forced: the plans' precision was chosen by the user (``--precision``): a
            crashing bf16 step is then an error rather than a switch to float32.

    Returns:
        New ``Plans`` with ``num_epochs`` and ``precision`` per configuration, ``recommended``
        set, and ``time_budget`` and ``precision`` reasons saying what was measured and traded.

    Raises:
        MedsegError: a training step fails even in float32.
    """
    configs: dict[str, Plan] = {}
    affordable: dict[str, int] = {}
    for name, plan in plans.configurations.items():
        plan, seconds = _measured(plan, device, precision_forced)
        narrowed = ""
        while (
            name == "2d"
            and budget_s * OVERHEAD / seconds < MIN_STEPS["2d"]
            and plan.network_config["features"][0] > 4
        ):
            plan, seconds = _measured(_narrower(plan), device, precision_forced)
            narrowed = (
                f"; features halved to {plan.network_config['features']} to afford more steps"
            )
        steps = int(budget_s * OVERHEAD / seconds)
        affordable[name] = steps
        epochs = max(1, steps // plan.steps_per_epoch)
        reason = (
            f"measured {seconds:.3f} s per step on {device} ({plan.precision}): {steps} steps "
            f"({epochs} epochs of {plan.steps_per_epoch}) fit in {budget_s:.0f} s{narrowed}"
        )
        configs[name] = replace(
            plan, num_epochs=epochs, reasons={**plan.reasons, "time_budget": reason}
        )
    ranked = [n for n in ("3d_fullres", "2d", "3d_lowres") if n in affordable]
    recommended = next(
        (n for n in ranked if affordable[n] >= MIN_STEPS[n]),
        "2d" if "2d" in affordable else ranked[0],
    )
    note = (
        f"recommended '{recommended}': the first of {ranked} that affords its minimum steps "
        f"({', '.join(f'{n} {affordable[n]}/{MIN_STEPS[n]}' for n in ranked)})"
    )
    configs = {
        n: replace(p, reasons={**p.reasons, "configuration_choice": note})
        for n, p in configs.items()
    }
    return replace(plans, configurations=configs, recommended=recommended)
