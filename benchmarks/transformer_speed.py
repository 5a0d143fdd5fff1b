"""CPU speed of medseg's UNETR against MONAI's at equal configuration.

Forward + backward time per batch (a training step without the optimiser), 2 torch threads,
3D input. Rows: the paper's configuration (ViT-B, feature size 16), and a narrow one (the
``cpu`` preset's widths at MONAI's fixed 12 layers); our ``cpu`` preset itself (4 layers) is
timed alone, as MONAI cannot build it. The two models alternate step by step and the median
is reported, so background load hits both alike. MONAI's attention needs ``einops``.

Usage::

    python benchmarks/transformer_speed.py              # 64^3, 4 timed steps
    python benchmarks/transformer_speed.py --size 96    # the paper's 96^3 patches
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from collections.abc import Callable

import torch

from medseg.nets import count_parameters
from medseg.nets.unetr import UNETR
from nets import interleaved_times, make_step  # benchmarks/nets.py, beside this script

warnings.filterwarnings("ignore")

#: row name -> (our options, MONAI's options)
CONFIGS: dict[str, tuple[dict, dict]] = {
    "base (ViT-B, fs 16)": (
        {"preset": "base"},
        {"feature_size": 16, "hidden_size": 768, "mlp_dim": 3072, "num_heads": 12},
    ),
    "narrow (fs 8, 96 wide, 12 layers)": (
        {"preset": "cpu", "depth": 12},
        {"feature_size": 8, "hidden_size": 96, "mlp_dim": 192, "num_heads": 4},
    ),
}


def interleaved_ms(steps: dict[str, Callable[[], None]], *, iters: int) -> dict[str, float]:
    """Median milliseconds per step (:func:`nets.interleaved_times`, one warm-up round)."""
    times = interleaved_times(steps, iters=iters, warmup=1)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="cube edge (multiple of 16)")
    parser.add_argument("--iters", type=int, default=4, help="timed steps (even)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    from monai.networks.nets import UNETR as MonaiUNETR

    x = torch.randn(1, 1, *(args.size,) * 3)
    print(f"forward + backward, input {tuple(x.shape)}, 2 threads, median of {args.iters}")
    print(f"{'config':36s} {'ours ms':>9s} {'MONAI ms':>9s} {'ours/MONAI':>10s} params ours/MONAI")
    for row, (ours_options, monai_options) in CONFIGS.items():
        torch.manual_seed(0)
        ours = UNETR(3, 1, 2, image_size=args.size, **ours_options)
        monai = MonaiUNETR(1, 2, img_size=args.size, norm_name="instance", **monai_options)
        ms = interleaved_ms(
            {"ours": make_step(ours, x), "monai": make_step(monai, x)}, iters=args.iters
        )
        print(
            f"{row:36s} {ms['ours']:9.0f} {ms['monai']:9.0f} {ms['ours'] / ms['monai']:10.2f} "
            f"{count_parameters(ours):,} / {count_parameters(monai):,}"
        )
    cpu = UNETR(3, 1, 2, image_size=args.size)
    ms = interleaved_ms({"cpu": make_step(cpu, x)}, iters=args.iters)["cpu"]
    size = count_parameters(cpu)
    print(f"{'our cpu preset (4 layers)':36s} {ms:9.0f} {'-':>9s} {'-':>10s} {size:,}")


if __name__ == "__main__":
    main()
