"""Time budgets: measure a plan's training step on this machine, then spend the budget.

On a CPU, nnU-Net's 250,000 steps are out of reach; what matters is how many steps fit in the
time the user has. ``measure_step_seconds`` times real forward+backward+optimiser steps of
the planned network at the planned patch and batch (no guessing), and
``fit_to_time_budget`` turns a budget into epochs and picks the configuration: 3D full
resolution when it affords enough steps to converge, else 2D, and a narrower network when
even 2D would get too few steps.
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch

from medseg.device import bf16_supported
from medseg.losses import build_loss
from medseg.losses.deep_supervision import DeepSupervisionLoss
from medseg.nets import build_network
from medseg.planning.plan import Plan, Plans

# Steps a configuration needs to be worth choosing (seen on Hippocampus and phantoms: 2D
# U-Nets reach most of their Dice within ~1-2k steps; 3D patches carry more context per step
# but need more steps to converge).
MIN_STEPS = {"3d_fullres": 2000, "3d_lowres": 2000, "3d_cascade_fullres": 2000, "2d": 600}
OVERHEAD = 0.85  # share of the budget left for steps after validation and checkpoints


def measure_step_seconds(plan: Plan, *, device: str = "cpu", steps: int = 3) -> float:
    """Median wall time of ``steps`` training steps (after one warm-up) of ``plan``, with the
    same bf16 autocast decision as training."""
    dev = torch.device(device)
    use_amp = bf16_supported(dev)
    model = build_network(plan.network, spatial_dims=plan.spatial_dims, in_channels=plan.in_channels,
                          out_channels=plan.num_classes, **plan.network_config).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = DeepSupervisionLoss(build_loss(plan.loss))
    image = torch.randn(plan.batch_size, plan.in_channels, *plan.patch_size, device=dev)
    label = torch.randint(0, plan.num_classes, (plan.batch_size, 1, *plan.patch_size), device=dev)
    times = []
    for i in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = loss_fn(model(image), label)
        loss.backward()
        optimizer.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _narrower(plan: Plan) -> Plan:
    features = [max(4, f // 2) for f in plan.network_config["features"]]
    return replace(plan, network_config={**plan.network_config, "features": features})


def fit_to_time_budget(plans: Plans, budget_s: float, *, device: str = "cpu") -> Plans:
    """Set each plan's epochs from the measured step time and pick a configuration.

    Returns:
        New ``Plans`` with ``num_epochs`` per configuration, ``recommended`` set, and a
        ``time_budget`` reason in every plan saying what was measured and traded.
    """
    configs: dict[str, Plan] = {}
    affordable: dict[str, int] = {}
    for name, plan in plans.configurations.items():
        seconds = measure_step_seconds(plan, device=device)
        narrowed = ""
        while name == "2d" and budget_s * OVERHEAD / seconds < MIN_STEPS["2d"] and plan.network_config["features"][0] > 4:
            plan = _narrower(plan)
            seconds = measure_step_seconds(plan, device=device)
            narrowed = f"; features halved to {plan.network_config['features']} to afford more steps"
        steps = int(budget_s * OVERHEAD / seconds)
        affordable[name] = steps
        epochs = max(1, steps // plan.steps_per_epoch)
        reason = (f"measured {seconds:.3f} s per step on {device}: {steps} steps ({epochs} epochs of "
                  f"{plan.steps_per_epoch}) fit in {budget_s:.0f} s{narrowed}")
        configs[name] = replace(plan, num_epochs=epochs, reasons={**plan.reasons, "time_budget": reason})
    ranked = [n for n in ("3d_fullres", "2d", "3d_lowres") if n in affordable]
    recommended = next((n for n in ranked if affordable[n] >= MIN_STEPS[n]), "2d" if "2d" in affordable else ranked[0])
    note = (f"recommended '{recommended}': the first of {ranked} that affords its minimum steps "
            f"({', '.join(f'{n} {affordable[n]}/{MIN_STEPS[n]}' for n in ranked)})")
    configs = {n: replace(p, reasons={**p.reasons, "configuration_choice": note}) for n, p in configs.items()}
    return replace(plans, configurations=configs, recommended=recommended)
