"""Several processes under ``torchrun``: start, agree, leave together.

The same training code runs in one process or under ``torchrun --nproc_per_node N`` (DDP:
gloo on CPU, nccl on CUDA). Ranks must agree on every decision that ends a loop (a rank that
stops alone leaves the others waiting in an all-reduce for ever), so such decisions go
through :func:`any_rank`. Validation is sharded (:func:`shard`) and its sums reduced
(:func:`all_reduce_sum`), so every rank gets the one-process result. Ranks other than 0 log
errors only. ``docs/distributed.md`` has the commands (one machine, several, elastic) and
what rank 0 writes.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys

import numpy as np
import torch
import torch.distributed as dist


def init_distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
        if restart == 0:
            dist.init_process_group(backend)
        else:  # an elastic restart: the old attempt's addresses are still in the store
            store, rank, _ = next(dist.rendezvous("env://"))
            store = dist.PrefixStore(f"medseg_attempt_{restart}", store)
            dist.init_process_group(backend, store=store, rank=rank, world_size=world)
        # torn down at exit, not after each fit, so one process can train several folds
        atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
        if dist.get_rank() != 0:  # logs from rank 0 only: the others would repeat them
            logging.getLogger("medseg").setLevel(logging.ERROR)
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


def shard(items: list, rank: int, world: int) -> list:
    """This rank's share of ``items``: ``items[rank::world]`` (all of them in one process)."""
    return items[rank::world]


def all_reduce_sum(values: np.ndarray, world: int) -> np.ndarray:
    """Element-wise sum over ranks (float64, so counts stay exact); a no-op in one process."""
    if world == 1:
        return values
    total = torch.from_numpy(np.asarray(values, dtype=np.float64).copy())
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.numpy()


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
