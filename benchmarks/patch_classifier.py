"""Segmentation as centre-pixel classification of patches vs medseg's U-Net, same data, same
training time.

Montgomery chest X-rays (``../shared/data/montgomery_cxr``, lungs, downsampled to
``--size``^2): the first ``--train`` cases train, the next ``--val`` cases are scored. Both
models train on the engine for the same wall-clock ``--budget`` (seconds) on the CPU with one
thread: the patch classifier on class-balanced 33x33 patches (``fit_patch_classifier``), the
U-Net (``features 16..128``, Dice + CE, AdamW 1e-3, batches of 4 whole images). Reported per
model: parameters, optimiser steps taken, Dice on the validation cases, and inference time per
case: the patch classifier both patch by patch (the seeds' sliding window) and as its fully
convolutional equivalent (the same labels; patch by patch is timed on ``--patch-cases``
cases only, it is that slow).

    .venv/bin/python benchmarks/patch_classifier.py --budget 120 --size 128
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from medseg.losses import DiceCELoss
from medseg.nets import build_network, count_parameters
from medseg.training.engine import Task, run_training
from medseg.training.patch_classifier import (
    PatchTrainingConfig,
    fit_patch_classifier,
    foreground_dice,
    normalize_image,
)

warnings.filterwarnings("ignore")
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "montgomery_cxr"


def load(size: int, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The first ``count`` cases as ``(1, size, size)`` float images and ``(size, size)`` labels."""
    images, labels = [], []
    for path in sorted((DATA / "imagesTr").glob("*.png"))[:count]:
        label_path = DATA / "labelsTr" / path.name.replace("_0000.png", ".png")
        image = Image.open(path).convert("F").resize((size, size), Image.BILINEAR)
        label = Image.open(label_path).resize((size, size), Image.NEAREST)
        images.append(np.asarray(image, dtype=np.float32)[None])
        labels.append((np.asarray(label) > 0).astype(np.int64))
    return images, labels


def train_unet(images, labels, run_dir: Path, budget: float) -> tuple[torch.nn.Module, int]:
    torch.manual_seed(0)
    net = build_network(
        "unet", spatial_dims=2, in_channels=1, out_channels=2, features=(16, 32, 64, 128)
    )
    x = torch.stack([normalize_image(i) for i in images])
    y = torch.as_tensor(np.stack(labels))[:, None]
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss_fn = DiceCELoss()

    def batches(epoch: int):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        return [order[i : i + 4] for i in range(0, len(order) - 3, 4)]

    task = Task(
        model=net,
        optimizer=optimizer,
        batches=batches,
        loss=lambda index: loss_fn(net(x[index]), y[index]),
        validate=lambda use_bf16, rows: {},
        score=lambda row: -row["train_loss"],
        set_learning_rate=lambda step, fraction: None,
    )
    result = run_training(
        task, run_dir, epochs=10_000, use_bf16=False, time_budget_s=budget, progress=False
    )
    return net.eval(), result.steps


def timed(function, images) -> tuple[list[np.ndarray], float]:
    start = time.perf_counter()
    with torch.no_grad():
        outputs = [function(normalize_image(i)[None]) for i in images]
    return outputs, (time.perf_counter() - start) / len(images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds per model")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--train", type=int, default=24)
    parser.add_argument("--val", type=int, default=8)
    parser.add_argument("--patch", type=int, default=33)
    parser.add_argument(
        "--patch-cases", type=int, default=2, help="cases timed patch by patch (slow)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    images, labels = load(args.size, args.train + args.val)
    train = (images[: args.train], labels[: args.train])
    val = (images[args.train :], labels[args.train :])
    table = Table(title=f"Montgomery lungs {args.size}^2, {args.budget:g} s training, 1 thread")
    for column in ("model", "params", "steps", "val Dice", "s / case"):
        table.add_column(column)
    with tempfile.TemporaryDirectory() as tmp:
        config = PatchTrainingConfig(
            patch_size=args.patch, batch_size=128, batches_per_epoch=20, epochs=10_000
        )
        result = fit_patch_classifier(
            *train, Path(tmp) / "patch", config, time_budget_s=args.budget, progress=False,
            device="cpu", amp=False,
        )  # fmt: skip
        patch_net = config.build_network()
        state = torch.load(Path(tmp) / "patch" / "checkpoint_latest.pt", weights_only=True)
        patch_net.load_state_dict(state["network_state"])
        patch_net.eval()
        for method, cases in (("dense", len(val[0])), ("patches", args.patch_cases)):
            segment = lambda x, m=method: patch_net.segment(x, method=m)[0]  # noqa: E731
            preds, seconds = timed(segment, val[0][:cases])
            pairs = zip(preds, val[1][:cases], strict=True)
            dice = np.mean([foreground_dice(p.numpy(), g, 2) for p, g in pairs])
            name = f"patch_classifier ({method}, {cases} cases)"
            params = f"{count_parameters(patch_net):,}"
            table.add_row(name, params, str(result.steps), f"{dice:.3f}", f"{seconds:.3f}")
        unet, steps = train_unet(*train, Path(tmp) / "unet", args.budget)
        preds, seconds = timed(lambda x: unet(x).argmax(1)[0], val[0])
        pairs = zip(preds, val[1], strict=True)
        dice = np.mean([foreground_dice(p.numpy(), g, 2) for p, g in pairs])
        table.add_row(
            "unet", f"{count_parameters(unet):,}", str(steps), f"{dice:.3f}", f"{seconds:.3f}"
        )
    Console().print(table)


if __name__ == "__main__":
    main()
