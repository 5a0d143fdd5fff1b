"""Run under ``torchrun --nproc_per_node 2``: one DDP step of a small U-Net; rank 0 saves.

Not a test module itself (no ``test_`` prefix): ``test_ddp.py`` launches it.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from torch import nn

from medseg.losses import build_loss
from medseg.nets import build_network
from medseg.training import leave_distributed_run


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
    main(sys.argv[1])
