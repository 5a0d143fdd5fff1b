"""Stain shift: Dice lost when a model trained on one stain is tested on another, per arm.

Issue 22's target: a model trained on one phantom stain and tested on another loses at least
half less Dice with Macenko normalisation or HED augmentation than without.

Data: phantom H&E slides (``medseg.data.phantoms_slide``, labels 0 glass, 1 stroma,
2 gland, 3 nucleus), read back through ``medseg.io.slide.open_slide``: a training slide
(stain "default", geometry seed 0) and a test slide (geometry seed 1) written twice, once in
the "default" stain and once "shifted" (other H/E vectors, stronger haematoxylin, paler
eosin, darker glass), so both test sets share their labels and only the stain differs.
Tiles of ``--tile`` pixels at 0.5 um/pixel.

Model: a small 2-D U-Net (``unet``, ``--features``), Dice + CE, AdamW, poly decay, trained
through the shared engine (``medseg.training.engine.run_training``) for ``--steps`` steps
per arm (``--budget``: a wall-clock cap), with flips and quarter turns in every arm. Arms:

* ``none``: no stain handling;
* ``macenko``: ``MacenkoNormalizer`` fitted on the training tiles, applied to every tile
  (training and test, as preprocessing would);
* ``hed``: ``RandomHEDStain`` (sigma ``--hed-sigma``) in training;
* ``pathology``: the ``pathology`` preset (HED 0.05, colour jitter, grey, geometry).

Printed: foreground Dice (mean over classes 1-3, pooled over the tiles) on same-stain and
shifted-stain test tiles, and the drop. Usage::

    python benchmarks/stain_shift.py                  # 4 arms x 600 steps, ~8 min CPU
    python benchmarks/stain_shift.py --steps 100 --arms none,macenko   # quick look
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medseg.data.phantoms_slide import phantom_slide
from medseg.io.slide import open_slide
from medseg.losses.registry import build_loss
from medseg.nets.registry import build_network
from medseg.training.engine import Task, run_training
from medseg.training.schedule import run_lr_factor, set_lr
from medseg.transforms import (
    Compose,
    MacenkoNormalizer,
    RandomFlip,
    RandomHEDStain,
    RandomRot90,
    pathology,
)

CLASSES = 4


def read_tiles(folder: Path, name: str, stain: str, seed: int, size: int, tile: int):
    """Write a phantom slide; return its tiles ``(N, 3, t, t)`` float 0..255 and labels
    ``(N, 1, t, t)`` int64 (tiles with at least 10 % tissue)."""
    info = phantom_slide(folder / f"{name}.ome.tif", size=(size, size), stain=stain, seed=seed)
    with open_slide(info.path) as slide, open_slide(info.label_path) as labels:
        image = slide.read_region(0, 0, 0, size, size)
        label = labels.read_region(0, 0, 0, size, size)[..., 0]
    n = size // tile
    images = image[: n * tile, : n * tile].reshape(n, tile, n, tile, 3).transpose(0, 2, 4, 1, 3)
    labels_ = label[: n * tile, : n * tile].reshape(n, tile, n, tile).transpose(0, 2, 1, 3)
    images, labels_ = images.reshape(-1, 3, tile, tile), labels_.reshape(-1, 1, tile, tile)
    keep = (labels_ > 0).mean(axis=(1, 2, 3)) >= 0.1
    return (
        torch.from_numpy(np.ascontiguousarray(images[keep])).float(),
        torch.from_numpy(np.ascontiguousarray(labels_[keep])).long(),
    )


def train(images, labels, augment, run_dir: Path, args) -> torch.nn.Module:
    """Train a small U-Net on ``images / 255`` through the shared engine."""
    torch.manual_seed(0)
    model = build_network(
        "unet", spatial_dims=2, in_channels=3, out_channels=CLASSES, features=args.features
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    loss_fn = build_loss("dice_ce")
    steps_per_epoch = 20

    def batches(epoch: int):
        g = torch.Generator().manual_seed(epoch)
        for _ in range(steps_per_epoch):
            index = torch.randint(0, len(images), (args.batch,), generator=g)
            yield images[index], labels[index]

    def prepare(batch):
        x, y = augment(*batch)
        return x / 255.0, y

    task = Task(
        model=model,
        optimizer=optimizer,
        batches=batches,
        loss=lambda batch: loss_fn(model(batch[0]), batch[1]),
        validate=lambda use_bf16, rows: {},
        score=lambda row: -float(row["train_loss"]),
        set_learning_rate=lambda step, fraction: set_lr(
            optimizer, args.lr, run_lr_factor(step, args.steps, "poly", fraction)
        ),
        prepare=prepare,
    )
    result = run_training(
        task,
        run_dir,
        epochs=max(1, args.steps // steps_per_epoch),
        use_bf16=False,
        time_budget_s=args.budget,
        progress=False,
    )
    return model.eval(), result


@torch.no_grad()
def foreground_dice(model: torch.nn.Module, images, labels) -> tuple[float, list[float]]:
    """Mean Dice of classes 1..3 present in ``labels``, pooled over all tiles, and the Dice
    per class (NaN where absent)."""
    pred = torch.cat([model(x / 255.0).argmax(1) for x in images.split(32)])
    truth = labels[:, 0]
    scores = []
    for k in range(1, CLASSES):
        p, t = pred == k, truth == k
        present = bool(t.any())
        scores.append(2 * float((p & t).sum()) / float(p.sum() + t.sum()) if present else np.nan)
    return float(np.nanmean(scores)), scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=1536, help="slide edge (pixels)")
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--steps", type=int, default=600, help="training steps per arm")
    parser.add_argument("--budget", type=float, default=900.0, help="wall-clock cap (s) per arm")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--features", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--hed-sigma", type=float, default=0.05)
    parser.add_argument("--arms", default="none,macenko,hed,pathology")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # 1: no spinning threads on a shared machine
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train_x, train_y = read_tiles(folder, "train", "default", 0, args.size, args.tile)
        same_x, same_y = read_tiles(folder, "test", "default", 1, args.size, args.tile)
        shift_x, shift_y = read_tiles(folder, "test_shifted", "shifted", 1, args.size, args.tile)
        counts = torch.bincount(train_y.flatten(), minlength=CLASSES) / train_y.numel()
        print(
            f"class shares (train) {[round(float(c), 3) for c in counts]}; "
            f"tiles: {len(train_x)} train, {len(same_x)} test x 2 stains "
            f"({args.tile} px, {time.perf_counter() - start:.0f} s to write and read)"
        )
        geometry = Compose([RandomFlip(p=0.5), RandomRot90(p=0.5)])
        rows = []
        for arm in args.arms.split(","):
            tx, sx, hx, augment = train_x, same_x, shift_x, geometry
            if arm == "macenko":
                normalizer = MacenkoNormalizer().fit(train_x)
                tx, sx, hx = (torch.cat([normalizer(b) for b in t.split(64)]) for t in (tx, sx, hx))
            elif arm == "hed":
                hed = RandomHEDStain(sigma_alpha=args.hed_sigma, sigma_beta=args.hed_sigma)
                augment = Compose([hed, RandomFlip(p=0.5), RandomRot90(p=0.5)])
            elif arm == "pathology":
                augment = pathology(2)
            elif arm != "none":
                raise SystemExit(f"unknown arm {arm!r}; valid: none, macenko, hed, pathology")
            clock = time.process_time()
            model, result = train(tx, train_y, augment, folder / f"run_{arm}", args)
            same, same_k = foreground_dice(model, sx, same_y)
            shifted, shifted_k = foreground_dice(model, hx, shift_y)
            rows.append((arm, same, shifted))
            print(
                f"  {arm}: {result.steps} steps ({result.stopped_by}), {result.seconds:.0f} s "
                f"wall, {time.process_time() - clock:.0f} s CPU; Dice per class (stroma, gland, "
                f"nucleus) same {np.round(same_k, 3).tolist()}, shifted "
                f"{np.round(shifted_k, 3).tolist()}",
                flush=True,
            )
    print(f"\n{'arm':<10} {'Dice same':>10} {'Dice shifted':>13} {'drop':>7} {'drop / none':>12}")
    base = next((same - shifted for arm, same, shifted in rows if arm == "none"), None)
    for arm, same, shifted in rows:
        ratio = f"{(same - shifted) / base:.2f}" if base else "-"
        print(f"{arm:<10} {same:>10.3f} {shifted:>13.3f} {same - shifted:>7.3f} {ratio:>12}")
    print(
        f"\n{args.steps} steps per arm (cap {args.budget:.0f} s), U-Net features "
        f"{args.features}, batch {args.batch}, tile {args.tile}, slide {args.size}^2; total "
        f"{time.perf_counter() - start:.0f} s wall, {time.process_time():.0f} s CPU"
    )


if __name__ == "__main__":
    main()
