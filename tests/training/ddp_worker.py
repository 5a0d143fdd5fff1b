"""Run under ``torchrun --nproc_per_node 2``; rank 0 saves what the test compares.

``ddp_worker.py OUT``: one DDP step of a small U-Net (``test_ddp.py``).
``ddp_worker.py --equal OUT``: rank r takes samples r::2 of a fixed 2B batch, float64, a few
engine steps (``test_ddp_scale.py``). ``ddp_worker.py --validate RESULTS OUT``: the
segmentation task's sharded validation row. ``ddp_worker.py --elastic RESULTS``: under
``--max-restarts 1``, a worker dies after epoch 1 and the restarted group resumes.

Not a test module itself (no ``test_`` prefix): the tests launch it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from medseg.losses import build_loss
from medseg.nets import build_network
from medseg.planning.plan import Plans
from medseg.training import leave_distributed_run
from medseg.training.distributed import init_distributed
from medseg.training.engine import Precision, Task, train_step
from medseg.training.segmentation import FoldData, PatchBatches, fit, segmentation_task

EQUAL_STEPS = 3


def batch_for(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + rank)
    image = torch.randn(2, 1, 16, 16, generator=g)
    label = (torch.rand(2, 1, 16, 16, generator=g) > 0.5).long()
    return image, label


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return build_network(
        "unet", spatial_dims=2, in_channels=1, out_channels=2, features=(4, 8), norm="instance"
    )


def samples(total: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch of ``total`` (= 2B) float64 images ``(2B, 1, 16, 16)`` and labels."""
    g = torch.Generator().manual_seed(7)
    image = torch.randn(total, 1, 16, 16, generator=g, dtype=torch.float64)
    label = (image + 0.5 * torch.randn(image.shape, generator=g, dtype=torch.float64) > 0).long()
    return image, label


def train_equal(
    model: nn.Module, network: nn.Module, image: torch.Tensor, label: torch.Tensor
) -> dict[str, torch.Tensor]:
    """``EQUAL_STEPS`` engine steps (clip + SGD with Nesterov momentum) with a per-voxel mean
    cross-entropy: a mean of equal-sized ranks' means is the whole batch's mean."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    task = Task(
        model=model,
        optimizer=optimizer,
        network=network,
        batches=lambda epoch: [],
        loss=lambda batch: nn.functional.cross_entropy(network(batch[0]), batch[1][:, 0]),
        validate=lambda bf16, rows: {},
        score=lambda row: 0.0,
        set_learning_rate=lambda step, fraction: None,
    )
    parameters = list(model.parameters())
    for _ in range(EQUAL_STEPS):
        train_step(task, (image, label), Precision(torch.device("cpu"), False), parameters)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def main_equal(out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = make_model().double()
    image, label = samples()
    state = train_equal(
        model, nn.parallel.DistributedDataParallel(model), image[rank::world], label[rank::world]
    )
    if rank == 0:
        torch.save(state, out)
    leave_distributed_run()


def validation_row(results: str) -> dict[str, float]:
    """The 2d plan's validation row (3 fixed patches, seed 0) on fold 0, in this process."""
    rank, world = init_distributed()
    plan = Plans.from_json(Path(results) / "plans.json")["2d"]
    data = FoldData.open(Path(results), plan, 0)
    batches = PatchBatches(data, plan, torch.device("cpu"), 1, 0, 0, 0, rank=rank, world=world)
    task = segmentation_task(plan, batches, 1, val_batches=3)
    with torch.no_grad():  # a confident, non-trivial prediction: any foreground logit helps
        for p in task.model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return task.validate(False, [])


def main_elastic(results: str) -> None:
    """Attempt 0 trains epoch 1 (saved), then rank 1 dies; torchrun restarts the group, which
    resumes from ``checkpoint_latest.pt`` and trains epoch 2 (``--resume`` on every start)."""
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    epochs = 1 if attempt == 0 else 2
    fit(results, "2d", 0, epochs=epochs, steps_per_epoch=2, resume=True, num_workers=0,
        val_batches=2, progress=False)  # fmt: skip
    if attempt == 0 and dist.get_rank() == 1:
        os._exit(3)  # the checkpoint of epoch 1 is on disk: fit ends with a barrier
    leave_distributed_run()  # attempt 0, rank 0: the barrier fails when rank 1 is gone


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = make_model()
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
    image, label = batch_for(rank)
    loss = build_loss("dice_ce")(ddp(image), label)
    loss.backward()
    optimizer.step()
    if rank == 0:
        torch.save(model.state_dict(), out)
    leave_distributed_run()  # the same exit as `medseg train` under torchrun


if __name__ == "__main__":
    if sys.argv[1] == "--equal":
        main_equal(sys.argv[2])
    elif sys.argv[1] == "--elastic":
        main_elastic(sys.argv[2])
    elif sys.argv[1] == "--validate":
        row = validation_row(sys.argv[2])
        if dist.get_rank() == 0:
            with open(sys.argv[3], "w", encoding="utf-8") as f:
                json.dump(row, f)
        leave_distributed_run()
    else:
        main(sys.argv[1])
