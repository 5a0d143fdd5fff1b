"""Run in a fresh process: peak resident memory of two training steps of a plan (MB, JSON)."""

import json
import sys
from pathlib import Path

import torch

from medseg.losses import build_loss
from medseg.losses.deep_supervision import DeepSupervisionLoss
from medseg.nets import build_network
from medseg.planning import Plan


def main() -> None:
    torch.set_num_threads(1)
    plan = Plan.from_dict(json.loads(sys.argv[1]))
    model = build_network(
        plan.network,
        spatial_dims=plan.spatial_dims,
        in_channels=plan.in_channels,
        out_channels=plan.num_classes,
        **plan.network_config,
    )
    optimizer = torch.optim.AdamW(model.parameters())
    loss_fn = DeepSupervisionLoss(build_loss(plan.loss))
    image = torch.randn(plan.batch_size, plan.in_channels, *plan.patch_size)
    label = torch.randint(0, plan.num_classes, (plan.batch_size, 1, *plan.patch_size))
    Path("/proc/self/clear_refs").write_text(
        "5", encoding="utf-8"
    )  # reset the high-water mark (VmHWM) to now
    base = _status_kb("VmRSS")
    for _ in range(2):
        optimizer.zero_grad()
        loss_fn(model(image), label).backward()
        optimizer.step()
    peak = _status_kb("VmHWM")
    sys.stdout.write(
        json.dumps(
            {"base_mb": base / 1024, "peak_mb": peak / 1024, "step_mb": (peak - base) / 1024}
        )
    )


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


if __name__ == "__main__":
    main()
