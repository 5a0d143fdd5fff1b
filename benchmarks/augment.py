"""Augmentation and loader throughput: medseg vs TorchIO and MONAI on CPU.

The same pipeline in each library -- affine (rotation +-15 deg, scale 0.85-1.25) + elastic
deformation, flips, gamma, Gaussian noise, Gaussian blur, every transform applied -- on
batches of 2 x 1 x 128^3 (3-D) and 32 x 1 x 256^2 (2-D) with a label map. medseg transforms
the batch at once with one sampling grid; TorchIO (``Compose`` on ``Subject``) and MONAI
(dictionary transforms; ``Rand3DElasticd`` does affine + elastic in one resampling, MONAI's
fastest path) go sample by sample. Runs are interleaved across libraries and the best run is
reported, so background load hits all of them alike.

Then the loader: batches/s of 2 x 1 x 128^3 patches from memory-mapped cases (no workers,
2 threads, 2 processes; with and without augmentation in the workers), next to the time of
one training step of a small 3-level 3-D conv net.

Usage::

    python benchmarks/augment.py            # ~3-5 minutes on 2 cores
    python benchmarks/augment.py --quick    # fewer repeats, smaller loader run (~1-2 minutes)
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medseg.data.loader import make_loader, write_case
from medseg.transforms import (
    Compose,
    RandomFlip,
    RandomGamma,
    RandomGaussianBlur,
    RandomGaussianNoise,
    RandomSpatial,
)

warnings.filterwarnings("ignore")


def medseg_pipeline(seed: int = 0) -> Compose:
    return Compose(
        [
            RandomSpatial(
                p_rotation=1.0,
                rotation_deg=(-15.0, 15.0),
                p_scale=1.0,
                scale=(0.85, 1.25),
                p_elastic=1.0,
                elastic_std_vox=(2.0, 5.0),
                elastic_control_points=7,
            ),
            RandomFlip(p=0.5),
            RandomGamma(gamma=(0.7, 1.5), p=1.0),
            RandomGaussianNoise(std=(0.0, 0.1), p=1.0),
            RandomGaussianBlur(sigma=(0.5, 1.0), p=1.0),
        ],
        seed=seed,
    )


def torchio_runner(dims: int) -> Callable[[torch.Tensor, torch.Tensor], None] | None:
    try:
        import torchio as tio
    except ImportError:
        return None
    if dims == 3:
        pipeline = tio.Compose(
            [
                tio.RandomAffine(scales=(0.85, 1.25), degrees=15, p=1),
                tio.RandomElasticDeformation(num_control_points=7, max_displacement=7.5, p=1),
                tio.RandomFlip(axes=(0, 1, 2), flip_probability=0.5),
                tio.RandomGamma(log_gamma=(-0.36, 0.4), p=1),
                tio.RandomNoise(std=(0, 0.1), p=1),
                tio.RandomBlur(std=(0.5, 1.0), p=1),
            ]
        )
    else:  # 2-D images are (C, W, H, 1) in TorchIO: act in the first two axes only
        pipeline = tio.Compose(
            [
                tio.RandomAffine(
                    scales=(0.85, 1.25, 0.85, 1.25, 1, 1), degrees=(0, 0, 0, 0, -15, 15), p=1
                ),
                tio.RandomElasticDeformation(
                    num_control_points=7, max_displacement=(7.5, 7.5, 0), p=1
                ),
                tio.RandomFlip(axes=(0, 1), flip_probability=0.5),
                tio.RandomGamma(log_gamma=(-0.36, 0.4), p=1),
                tio.RandomNoise(std=(0, 0.1), p=1),
                tio.RandomBlur(std=(0.5, 1.0, 0.5, 1.0, 0, 0), p=1),
            ]
        )

    def run(image: torch.Tensor, label: torch.Tensor) -> None:
        for b in range(image.shape[0]):
            img, lab = (
                (image[b], label[b]) if dims == 3 else (image[b, ..., None], label[b, ..., None])
            )
            pipeline(tio.Subject(image=tio.ScalarImage(tensor=img), label=tio.LabelMap(tensor=lab)))

    return run


def monai_runner(dims: int) -> Callable[[torch.Tensor, torch.Tensor], None] | None:
    try:
        from monai import transforms as mt
    except ImportError:
        return None
    keys = ("image", "label")
    angle = math.pi / 12
    if dims == 3:
        elastic = mt.Rand3DElasticd(
            keys,
            sigma_range=(5, 8),
            magnitude_range=(50, 150),
            prob=1.0,
            rotate_range=(angle,) * 3,
            scale_range=(0.2,) * 3,
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
        )
    else:
        elastic = mt.Rand2DElasticd(
            keys,
            spacing=(36, 36),
            magnitude_range=(2, 5),
            prob=1.0,
            rotate_range=(angle,),
            scale_range=(0.2, 0.2),
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
        )
    sigma = {f"sigma_{a}": (0.5, 1.0) for a in "xyz"[:dims]}
    pipeline = mt.Compose(
        [
            elastic,
            *[mt.RandFlipd(keys, prob=0.5, spatial_axis=d) for d in range(dims)],
            mt.RandAdjustContrastd("image", prob=1.0, gamma=(0.7, 1.5)),
            mt.RandGaussianNoised("image", prob=1.0, std=0.1),
            mt.RandGaussianSmoothd("image", prob=1.0, **sigma),
        ]
    )

    def run(image: torch.Tensor, label: torch.Tensor) -> None:
        for b in range(image.shape[0]):
            pipeline({"image": image[b], "label": label[b]})

    return run


def time_interleaved(
    runners: dict[str, Callable[[], None]], repeats: int
) -> dict[str, tuple[float, float]]:
    """Best wall-clock and best CPU seconds per call, interleaved, after one warm-up each.

    The minimum is the least disturbed by other processes on a shared machine (as ``timeit``);
    CPU time (all threads of this process) is a cross-check that background load barely moves.
    """
    for run in runners.values():
        run()
    wall: dict[str, list[float]] = {name: [] for name in runners}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: (min(wall[name]), min(cpu[name])) for name in runners}


def augmentation_table(repeats: int) -> list[tuple[str, int, dict[str, tuple[float, float]]]]:
    rows = []
    for dims, batch, size in ((3, 2, 128), (2, 32, 256)):
        gen = torch.Generator().manual_seed(0)
        image = torch.randn(batch, 1, *[size] * dims, generator=gen)
        label = (torch.rand(batch, 1, *[size] * dims, generator=gen) > 0.7).to(torch.int16)
        pipeline = medseg_pipeline()
        runners: dict[str, Callable[[], None]] = {
            "medseg": lambda p=pipeline, i=image, lab=label: p(i, lab)
        }
        for name, factory in (("TorchIO", torchio_runner), ("MONAI", monai_runner)):
            run = factory(dims)
            if run is not None:
                runners[name] = lambda r=run, i=image, lab=label: r(i, lab)
        seconds = time_interleaved(runners, repeats)
        rows.append((f"{dims}-D {batch} x 1 x {size}^{dims}", batch, seconds))
    return rows


class SmallNet(nn.Module):
    """A plain 3-level 3-D conv encoder-decoder (8-16-32 features) for step timing."""

    def __init__(self, channels: int = 1, classes: int = 2) -> None:
        super().__init__()

        def block(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv3d(i, o, 3, padding=1),
                nn.InstanceNorm3d(o),
                nn.LeakyReLU(),
                nn.Conv3d(o, o, 3, padding=1),
                nn.InstanceNorm3d(o),
                nn.LeakyReLU(),
            )

        self.enc1, self.enc2, self.enc3 = block(channels, 8), block(8, 16), block(16, 32)
        self.up2, self.dec2 = nn.ConvTranspose3d(32, 16, 2, 2), block(32, 16)
        self.up1, self.dec1 = nn.ConvTranspose3d(16, 8, 2, 2), block(16, 8)
        self.head = nn.Conv3d(8, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(nn.functional.max_pool3d(e1, 2))
        e3 = self.enc3(nn.functional.max_pool3d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(e3), e2], 1))
        return self.head(self.dec1(torch.cat([self.up1(d2), e1], 1)))


def train_step_seconds(steps: int) -> float:
    net = SmallNet()
    optimiser = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    image, label = torch.randn(2, 1, 128, 128, 128), torch.randint(0, 2, (2, 128, 128, 128))
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = nn.functional.cross_entropy(net(image), label)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def loader_table(folder: Path, num_batches: int) -> list[tuple[str, float]]:
    rows = []
    configs = [
        ("no workers", 0, "process", None),
        ("2 threads", 2, "thread", None),
        ("2 processes", 2, "process", None),
        ("2 threads + augmentation", 2, "thread", medseg_pipeline()),
        ("2 processes + augmentation", 2, "process", medseg_pipeline()),
    ]
    for name, workers, backend, transform in configs:
        loader = make_loader(
            folder,
            patch_size=(128, 128, 128),
            batch_size=2,
            num_batches=num_batches + 1,
            num_workers=workers,
            backend=backend,
            transform=transform,
            seed=0,
        )  # type: ignore[arg-type]
        iterator = iter(loader)
        next(iterator)  # worker start-up and first batch are not counted
        start = time.perf_counter()
        count = sum(1 for _ in iterator)
        rows.append((name, count / (time.perf_counter() - start)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and loader batches")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    torch.set_num_threads(args.threads)
    repeats, num_batches, steps = (3, 6, 1) if args.quick else (5, 20, 2)

    print(f"augmentation, CPU, {args.threads} threads, best of {repeats} interleaved runs")
    print(
        f"{'batch':<22}{'library':<9}{'wall s':>8}{'samples/s':>11}{'cpu s':>8}"
        f"{'medseg speed-up (wall)':>24}{'(cpu)':>7}"
    )
    for label, batch, seconds in augmentation_table(repeats):
        ours_wall, ours_cpu = seconds["medseg"]
        for name, (wall, cpu) in seconds.items():
            print(
                f"{label:<22}{name:<9}{wall:>8.3f}{batch / wall:>11.2f}{cpu:>8.2f}"
                f"{wall / ours_wall:>23.1f}x{cpu / ours_cpu:>6.1f}x"
            )

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for i in range(4 if args.quick else 8):
            label = np.zeros((160, 160, 160), dtype=np.int8)
            label[60:100, 50:110, 70:100] = 1
            label[75:80, 75:80, 80:85] = 2
            write_case(
                tmp, f"case_{i:03d}", rng.normal(size=(1, 160, 160, 160)).astype(np.float32), label
            )
        print(
            f"\nloader, 2 x 1 x 128^3 patches from memory-mapped 160^3 cases, {num_batches} batches"
        )
        for name, rate in loader_table(Path(tmp), num_batches):
            print(f"{name:<30}{rate:>8.2f} batches/s")
    step = train_step_seconds(steps)
    print(f"{'train step (3-level conv net)':<30}{1 / step:>8.2f} steps/s ({step:.2f} s/step)")


if __name__ == "__main__":
    main()
