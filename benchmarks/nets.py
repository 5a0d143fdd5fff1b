"""CPU speed of medseg networks against MONAI's, and of CPU execution options.

Measures forward + backward time per batch (training step without the optimiser) at equal
input and (nearly) equal parameter count:

* ``UNet`` (nnU-Net plan)      vs MONAI ``DynUNet``   (same filters, strides, instance norm)
* ``UNet`` (max-pool plan)     vs MONAI ``BasicUNet`` (same widths, max-pool, instance norm)
* ``AttentionUNet``            vs MONAI ``AttentionUnet``

then our U-Net with ``channels_last`` memory format, ``torch.compile`` and bf16 autocast.
Models alternate iteration by iteration and the median is reported, so background load hits
both sides alike. Prints tables; it is a script, not a test.

Usage::

    python benchmarks/nets.py                 # about 6 minutes on 2 idle cores
    python benchmarks/nets.py --quick         # smaller inputs, fewer iterations
    python benchmarks/nets.py --no-compile    # skip torch.compile (slow to compile)
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from medseg.nets import AttentionUNet, UNet, count_parameters

warnings.filterwarnings("ignore")


def make_step(model: nn.Module, x: torch.Tensor, *, bf16: bool = False) -> Callable[[], None]:
    """One training step without the optimiser: forward, a scalar loss, backward."""

    def step() -> None:
        model.zero_grad(set_to_none=True)
        context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with context:
            out = model(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        out.float().square().mean().backward()

    return step


def interleaved_times(
    steps: dict[str, Callable[[], None]], *, iters: int, warmup: int
) -> dict[str, list[float]]:
    """Milliseconds per step, running the candidates alternately (order reversed every other
    round), so that background load and drift hit all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for i in range(warmup + iters):
        for name in names if i % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            steps[name]()
            if i >= warmup:
                times[name].append(1000 * (time.perf_counter() - start))
    return times


def paired_ratio(ours: list[float], peer: list[float]) -> float:
    """Median of the per-round ratios (each round times both back to back)."""
    return statistics.median(a / b for a, b in zip(ours, peer, strict=True))


def peer_pairs(spatial_dims: int) -> list[tuple[str, nn.Module, str, nn.Module]]:
    from monai.networks.nets import AttentionUnet, BasicUNet, DynUNet

    filters = (32, 64, 128, 256, 320)
    return [
        (
            "UNet (nnU-Net plan)",
            UNet(spatial_dims, 1, 2, features=filters),
            "DynUNet",
            DynUNet(
                spatial_dims, 1, 2, kernel_size=[3] * 5, strides=[1, 2, 2, 2, 2],
                upsample_kernel_size=[2] * 4, filters=list(filters),
                norm_name=("INSTANCE", {"affine": True}),
            ),
        ),
        (
            "UNet (max-pool plan)",
            UNet(spatial_dims, 1, 2, features=(32, 32, 64, 128, 256), downsample="maxpool"),
            "BasicUNet",
            BasicUNet(spatial_dims, 1, 2, features=(32, 32, 64, 128, 256, 32)),
        ),
        (
            "AttentionUNet (2 convs/level)",
            AttentionUNet(
                spatial_dims, 1, 2, features=(16, 32, 64, 128, 256), norm="batch", act="relu",
            ),
            "AttentionUnet",
            AttentionUnet(
                spatial_dims, 1, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2),
            ),
        ),
        (
            "AttentionUNet (1 conv/level)",
            AttentionUNet(
                spatial_dims, 1, 2, features=(16, 32, 64, 128, 256), norm="batch", act="relu",
                decoder_blocks_per_stage=1,
            ),
            "AttentionUnet",
            AttentionUnet(
                spatial_dims, 1, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2),
            ),
        ),
    ]  # fmt: skip


def compare_peers(console: Console, shapes: dict[int, tuple[int, ...]], iters: int) -> None:
    table = Table(
        title="Forward + backward per batch, CPU (median ms; ratio = median paired ratio)"
    )
    for col in ("dims", "input", "medseg", "params", "ms", "MONAI", "params", "ms", "ratio"):
        table.add_column(col, justify="right" if col in ("params", "ms", "ratio") else "left")
    for spatial_dims, shape in shapes.items():
        x = torch.randn(shape)
        for ours_name, ours, peer_name, peer in peer_pairs(spatial_dims):
            torch.manual_seed(0)
            times = interleaved_times(
                {"ours": make_step(ours.train(), x), "peer": make_step(peer.train(), x)},
                iters=iters,
                warmup=2,
            )
            ms = {name: statistics.median(values) for name, values in times.items()}
            table.add_row(
                f"{spatial_dims}D", "x".join(map(str, shape)), ours_name,
                f"{count_parameters(ours):,}", f"{ms['ours']:.0f}",
                peer_name, f"{count_parameters(peer):,}", f"{ms['peer']:.0f}",
                f"{paired_ratio(times['ours'], times['peer']):.2f}",
            )  # fmt: skip
            console.print(f"  done: {spatial_dims}D {ours_name} vs {peer_name}")
    console.print(table)


def compare_options(
    console: Console, shapes: dict[int, tuple[int, ...]], iters: int, compile_: bool
) -> None:
    table = Table(
        title="Our U-Net (nnU-Net plan): CPU execution options (median ms; median paired speed-up)"
    )
    for col in ("dims", "input", "option", "ms", "speed-up"):
        table.add_column(col, justify="right" if col in ("ms", "speed-up") else "left")
    for spatial_dims, shape in shapes.items():
        fmt = torch.channels_last if spatial_dims == 2 else torch.channels_last_3d
        x = torch.randn(shape)
        unets = [UNet(spatial_dims, 1, 2, features=(32, 64, 128, 256, 320)) for _ in range(4)]
        variants = {
            "fp32 (baseline)": make_step(unets[0], x),
            "channels_last": make_step(
                unets[1].to(memory_format=fmt), x.contiguous(memory_format=fmt)
            ),
            "bf16 autocast": make_step(unets[2], x, bf16=True),
        }
        if compile_:
            # a fresh cache: otherwise the 3D call recompiles with dynamic shapes
            torch._dynamo.reset()
            compiled = torch.compile(unets[3], dynamic=False)
            start = time.perf_counter()
            make_step(compiled, x)()
            console.print(
                f"  torch.compile {spatial_dims}D: first step {time.perf_counter() - start:.0f} s"
            )
            variants["torch.compile"] = make_step(compiled, x)
        times = interleaved_times(variants, iters=iters, warmup=2)
        base = times["fp32 (baseline)"]
        for name, values in times.items():
            table.add_row(
                f"{spatial_dims}D", "x".join(map(str, shape)), name,
                f"{statistics.median(values):.0f}", f"{1 / paired_ratio(values, base):.2f}x",
            )  # fmt: skip
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--iters", type=int, default=6, help="timed iterations per model")
    parser.add_argument("--quick", action="store_true", help="small inputs and 3 iterations")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console(width=150)
    if args.quick:
        shapes, iters = {2: (2, 1, 64, 64), 3: (1, 1, 32, 32, 32)}, 3
    else:
        shapes, iters = {2: (4, 1, 128, 128), 3: (1, 1, 48, 48, 48)}, args.iters
    console.print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    compare_peers(console, shapes, iters)
    compare_options(console, shapes, iters, compile_=not args.no_compile)


if __name__ == "__main__":
    main()
