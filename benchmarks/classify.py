"""Classification: accuracy within a CPU budget on MedMNIST, and speed against MONAI.

Accuracy (``--accuracy``): trains on the official train split of each ``.npz`` in
``../shared/data`` (validation on its val split, best checkpoint by validation AUC), then
reports ACC and ROC AUC on the test split, next to the MedMNIST v2 paper's figures where the
set is the official one (Yang et al., Scientific Data 10:41, 2023, Table 3;
``pneumoniamnist_balanced`` is a class-balanced subsample, so it has no published comparison).

Speed (``--speed``): forward + backward time per batch of our ``resnet18``, ``densenet121`` and
``vit`` (tiny) against MONAI's ``resnet18``, ``DenseNet121`` and ``ViT`` at the same input,
models alternating iteration by iteration (median of paired ratios, as ``benchmarks/nets.py``).

    .venv/bin/python benchmarks/classify.py --speed
    .venv/bin/python benchmarks/classify.py --accuracy --budget 20m --net resnet18
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from medseg.cli.options import parse_duration
from medseg.nets import build_network, count_parameters

sys.path.insert(0, str(Path(__file__).parent))
from nets import interleaved_times, make_step, paired_ratio  # noqa: E402  (the sibling benchmark's helpers)

warnings.filterwarnings("ignore")
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
console = Console()

#: MedMNIST v2 (Yang et al. 2023), Table 3, test split: (AUC, ACC).
PUBLISHED = {
    "adrenalmnist3d": {"ResNet-18 (3D)": (0.827, 0.721), "ResNet-50 (3D)": (0.828, 0.745)},
}
DATASETS = {
    "adrenalmnist3d": "adrenalmnist3d/adrenalmnist3d.npz",
    "pneumoniamnist_balanced": "pneumoniamnist_balanced/pneumoniamnist.npz",
}


def speed(spatial_dims: int, *, iters: int, batch: int) -> Table:
    from monai.networks.nets import DenseNet121, ViT, resnet18

    size = 32 if spatial_dims == 3 else 128  # DenseNet-121's five halvings need 29 voxels or more
    x = torch.randn(batch, 1, *(size,) * spatial_dims)
    patch = 8 if spatial_dims == 3 else 16
    pairs = [
        (
            "resnet18",
            build_network("resnet18", spatial_dims=spatial_dims, in_channels=1, out_channels=2),
            # MONAI's stem stride defaults to 1 (4x the work of the ResNet paper's stride-2 stem):
            # match the paper
            "MONAI resnet18",
            resnet18(
                spatial_dims=spatial_dims, n_input_channels=1, num_classes=2, conv1_t_stride=2
            ),
        ),
        (
            "densenet121",
            build_network("densenet121", spatial_dims=spatial_dims, in_channels=1, out_channels=2),
            "MONAI DenseNet121",
            DenseNet121(spatial_dims=spatial_dims, in_channels=1, out_channels=2),
        ),
        (
            "vit tiny",
            build_network(
                "vit",
                spatial_dims=spatial_dims,
                in_channels=1,
                out_channels=2,
                image_size=(size,) * spatial_dims,
                patch_size=patch,
                size="tiny",
            ),
            "MONAI ViT",
            ViT(
                in_channels=1,
                img_size=(size,) * spatial_dims,
                patch_size=(patch,) * spatial_dims,
                hidden_size=192,
                mlp_dim=768,
                num_layers=12,
                num_heads=3,
                classification=True,
                num_classes=2,
                spatial_dims=spatial_dims,
            ),
        ),
    ]
    table = Table(
        title=f"{spatial_dims}D, batch {batch} x 1 x {size}^{spatial_dims}: forward + backward, ms "
        f"(median of {iters})"
    )
    for column in ("ours", "params", "ms", "peer", "params ", "ms ", "ours / peer"):
        table.add_column(column)
    for name, ours, peer_name, peer in pairs:
        ours.train()
        peer.train()
        times = interleaved_times(
            {"ours": make_step(ours, x), "peer": make_step(_logits(peer), x)}, iters=iters, warmup=2
        )
        table.add_row(
            name,
            f"{count_parameters(ours) / 1e6:.2f} M",
            f"{statistics.median(times['ours']):.0f}",
            peer_name,
            f"{count_parameters(peer) / 1e6:.2f} M",
            f"{statistics.median(times['peer']):.0f}",
            f"{paired_ratio(times['ours'], times['peer']):.2f}",
        )
    return table


def _logits(model: torch.nn.Module) -> torch.nn.Module:
    """MONAI's ViT returns (logits, hidden states): keep the logits."""

    class First(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.model(x)
            return out[0] if isinstance(out, tuple) else out

    return First()


def accuracy(datasets: list[str], *, budget_s: float, net: str, out: Path) -> Table:
    from medseg.pipeline.classify import classify_train

    table = Table(title=f"test split, {budget_s / 60:.0f} min CPU training per set, {net}")
    for column in ("dataset", "epochs", "ACC", "AUC", "published (AUC / ACC)"):
        table.add_column(column)
    for name in datasets:
        path = SHARED / DATASETS[name]
        if not path.is_file():
            console.print(f"[yellow]{path} not found: skipped")
            continue
        summary = classify_train(
            path,
            out / name,
            network=net,
            epochs=10_000,
            time_budget_s=budget_s,
            batch_size=32,
            learning_rate=1e-3,
            augmentation="light",
        )
        test = summary["test"]
        published = (
            "; ".join(f"{k} {a:.3f} / {c:.3f}" for k, (a, c) in PUBLISHED.get(name, {}).items())
            or "n/a"
        )
        table.add_row(
            name,
            str(summary["folds"][0]["epochs"]),
            f"{test['accuracy']:.3f}",
            f"{test['roc_auc']:.3f}",
            published,
        )
        console.print(json.dumps({name: summary["test"], "fold": summary["folds"][0]}, default=str))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--accuracy", action="store_true")
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--budget", default="20m", help="training time per dataset")
    parser.add_argument("--net", default="resnet18")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument(
        "--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)"
    )
    args = parser.parse_args()
    if not (args.speed or args.accuracy):
        args.speed = args.accuracy = True
    torch.manual_seed(0)
    if args.speed:
        for dims, batch in ((2, 16), (3, 16)):
            console.print(speed(dims, iters=args.iters, batch=batch))
    if args.accuracy:
        budget = parse_duration(args.budget)
        assert budget is not None
        if args.out is not None:
            console.print(accuracy(args.datasets, budget_s=budget, net=args.net, out=args.out))
        else:
            with tempfile.TemporaryDirectory() as tmp:
                console.print(accuracy(args.datasets, budget_s=budget, net=args.net, out=Path(tmp)))


if __name__ == "__main__":
    main()
