"""Several processes under ``torchrun``: start, agree, leave together.

The same training code runs in one process or under ``torchrun --nproc_per_node N`` (DDP:
gloo on CPU, nccl on CUDA). Ranks must agree on every decision that ends a loop (a rank that
stops alone leaves the others waiting in an all-reduce for ever), so such decisions go
through :func:`any_rank`.
"""

from __future__ import annotations

import atexit
import os
import sys

import torch
import torch.distributed as dist


def init_distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        # torn down at exit, not after each fit, so one process can train several folds
        atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def local_device(device: torch.device, world: int) -> torch.device:
    """Each rank's own GPU under torchrun (``LOCAL_RANK``); the CPU is shared."""
    if world > 1 and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def any_rank(flag: bool, world: int) -> bool:
    """True when ``flag`` is true on any rank (an all-reduce; no-op in one process)."""
    if world == 1:
        return flag
    value = torch.tensor([float(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def finish_distributed(world: int) -> None:
    """Ranks leave together; a rank that exits while gloo still talks to it aborts the job."""
    if world > 1 and dist.is_initialized():
        dist.barrier()


def leave_distributed_run() -> None:
    """End a finished ``torchrun`` process at once: barrier, flush, ``os._exit(0)``.

    A normal exit tears gloo down in C++ destructors, and a worker thread still joinable
    there aborts the process ("terminate called without an active exception", SIGABRT; seen
    here in about 1 of 15 runs on a loaded machine, even after ``destroy_process_group``).
    Every output is already written (atomically) when this is called; a no-op in one process.
    """
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
