"""CPU speed of our Swin-UNet against MONAI's SwinUNETR at a comparable configuration.

Both get the same Swin encoder settings: patch 2, embedding width 24, depths (2, 2, 2, 2),
heads (3, 6, 12, 24), window 7, MLP ratio 4, and grids padded up to the window (ours with
``pad_to_window=True``; MONAI always pads). Forward + backward of one batch (a training step
without the optimiser), 2 torch threads, the two models alternating round by round; the
median is reported with the median of the per-round ratios.

The architectures differ, so the numbers compare implementations of similar cost, not equal
networks:

* SwinUNETR (Hatamizadeh et al. 2022) merges after every one of its 4 stages (5 resolutions,
  deepest 1/32) and decodes with a **CNN**: residual conv blocks on the input and on every
  encoder level, transposed-conv up-sampling, instance norm. Most of its time at full and
  half resolution is convolutions.
* Ours (Swin-Unet, Cao et al. 2021) is a pure transformer: 3 merges (deepest 1/16), a Swin
  decoder with patch expanding and linear skip fusion, and a final patch expanding + 1x1
  convolution. Ours masks padded tokens out of the attention; MONAI lets them take part.

Usage::

    python benchmarks/swin_speed.py            # about 2 minutes on 2 idle cores
    python benchmarks/swin_speed.py --quick    # smaller inputs, fewer repeats
"""

from __future__ import annotations

import argparse
import statistics
import warnings

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from medseg.nets import count_parameters
from medseg.nets.swin_unet import SwinUNet
from nets import interleaved_times, make_step, paired_ratio  # benchmarks/nets.py, beside

warnings.filterwarnings("ignore")

SWIN = {"depths": (2, 2, 2, 2), "heads": (3, 6, 12, 24), "window": 7}


def _channel_move(x: torch.Tensor, pattern: str) -> torch.Tensor:
    """The only ``einops.rearrange`` patterns SwinUNETR uses: moving channels first <-> last
    (``"b c h w -> b h w c"`` and back), for when einops (optional in MONAI) is missing."""
    source = pattern.split("->")[0].split()
    return x.movedim(-1, 1) if source[-1] == "c" else x.movedim(1, -1)


def models(spatial_dims: int) -> tuple[nn.Module, nn.Module]:
    from monai.networks.nets import SwinUNETR, swin_unetr
    from monai.utils import optional_import

    if not optional_import("einops")[1]:
        swin_unetr.rearrange = _channel_move

    ours = SwinUNet(spatial_dims, 1, 2, patch_size=2, embed_dim=24, pad_to_window=True, **SWIN)
    monai = SwinUNETR(
        1, 2, patch_size=2, feature_size=24, depths=SWIN["depths"], num_heads=SWIN["heads"],
        window_size=SWIN["window"], spatial_dims=spatial_dims,
    )  # fmt: skip
    return ours, monai


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer repeats")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    shapes = {2: (1, 1, 128, 128), 3: (1, 1, 64, 64, 32)} if args.quick else {
        2: (1, 1, 224, 224), 3: (1, 1, 64, 64, 64)
    }  # fmt: skip
    repeats = 2 if args.quick else 3
    table = Table(title="Swin-UNet (ours) vs MONAI SwinUNETR: forward + backward, 2 threads")
    for column in ("input", "ours params", "MONAI params", "ours ms", "MONAI ms", "ours/MONAI"):
        table.add_column(column, justify="right")
    for spatial_dims, shape in shapes.items():
        ours, monai = models(spatial_dims)
        x = torch.randn(shape)
        times = interleaved_times(
            {"ours": make_step(ours, x), "monai": make_step(monai, x)}, iters=repeats, warmup=1
        )
        ratio = paired_ratio(times["ours"], times["monai"])
        table.add_row(
            str(tuple(shape)),
            f"{count_parameters(ours):,}",
            f"{count_parameters(monai):,}",
            f"{statistics.median(times['ours']):.0f}",
            f"{statistics.median(times['monai']):.0f}",
            f"{ratio:.2f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
