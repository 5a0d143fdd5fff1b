"""``medseg classify ...``: train, predict, evaluate, explain and report image classifiers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from medseg.cli.options import (
    Split,
    device_option,
    json_object,
    number_option,
    output_file,
    output_folder,
    time_budget_option,
)

console = Console()
app = typer.Typer(no_args_is_help=True, help="Image classification and regression (2D and 3D).")


def _print_headline(name: str, headline: dict) -> None:
    shown = ", ".join(
        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
        for k, v in headline.items()
        if v is not None
    )
    console.print(f"{name}: {shown}")


@app.command("train")
def train_command(
    data: Path = typer.Argument(
        ..., help="Class folders (train/<class>/*), a CSV (path,label[,fold]) or a MedMNIST .npz."
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", callback=output_folder, help="Run folder (created)."
    ),
    net: str = typer.Option(
        "resnet18",
        "--net",
        help="Classifier from `medseg nets list` (e.g. resnet18, densenet121, vit).",
    ),
    net_options: dict[str, Any] = typer.Option(
        None,
        "--net-options",
        parser=json_object,
        metavar="JSON",
        help="Network options as JSON, e.g. '{\"dropout\": 0.2}'.",
    ),
    task: Literal["classification", "regression"] | None = typer.Option(
        None, "--task", help="Default: from the data."
    ),
    pretrained: Path = typer.Option(
        None,
        "--pretrained",
        exists=True,
        dir_okay=False,
        help="Start from these weights (medseg checkpoint or state dict).",
    ),
    freeze: Literal["none", "backbone"] = typer.Option(
        "none", "--freeze", help="backbone: train the head only."
    ),
    backbone_lr: float = number_option(
        None,
        "--backbone-lr-factor",
        help="Backbone learning rate relative to the head (default 0.1 when fine-tuning "
        "pretrained weights).",
    ),
    folds: int = typer.Option(
        1,
        "--folds",
        min=1,
        help="1 = one model; k = k-fold cross-validation (test predictions ensemble the folds).",
    ),
    epochs: int = typer.Option(
        None,
        "--epochs",
        min=1,
        help="Epochs per model (default 30; an upper bound with --time-budget).",
    ),
    time_budget: float = time_budget_option("Total training time, e.g. 10m (shared by the folds)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    lr: float = number_option(1e-3, "--lr", help="Learning rate (AdamW)."),
    augmentation: Literal["none", "light", "nnunet_default"] = typer.Option(
        "light", "--augmentation"
    ),
    balance: Literal["sampler", "loss", "none"] = typer.Option(
        "sampler",
        "--balance",
        help="Class imbalance: sampler (balanced batches), loss (class weights) or none.",
    ),
    loss: Literal["auto", "ce", "mse", "l1", "margin"] = typer.Option(
        "auto",
        "--loss",
        help="auto: cross-entropy; MSE for regression; margin for capsnet.",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the run's checkpoint_latest.pt files."
    ),
    device_name: str = device_option(),
    seed: int = typer.Option(0, "--seed", min=0),
) -> None:
    """Train a classifier (or regressor) on DATA; evaluate its test split; write the report."""
    from medseg.pipeline.classify import classify_train

    summary = classify_train(
        data,
        output,
        network=net,
        network_config=net_options or {},
        task=task,
        pretrained=str(pretrained) if pretrained else None,
        freeze=freeze,
        backbone_lr_factor=backbone_lr,
        folds=folds,
        epochs=epochs if epochs is not None else (10_000 if time_budget else 30),
        time_budget_s=time_budget,
        batch_size=batch_size,
        learning_rate=lr,
        augmentation=augmentation,
        class_weighting=balance,
        loss=loss,
        resume=resume,
        device=device_name,
        seed=seed,
    )
    for fold in summary["folds"]:
        console.print(
            f"fold {fold['fold']}: {fold['epochs']} epochs, {fold['steps']} steps in "
            f"{fold['seconds']} s (stopped by {fold['stopped_by']})"
        )
    for name in ("validation", "cross_validation", "test"):
        if name in summary:
            _print_headline(name, summary[name])
    console.print(f"report: {summary['report']}")


@app.command("predict")
def predict_command(
    run: Path = typer.Argument(..., help="Run folder (or one checkpoint)."),
    data: Path = typer.Argument(..., help="Data in any classification layout."),
    output: Path = typer.Option(
        ..., "--output", "-o", callback=output_file, help="Predictions CSV to write."
    ),
    split: Split = typer.Option("test", "--split", help="Which split of DATA."),
    mirror: bool = typer.Option(
        False, "--mirror", help="Average over mirrored copies (test-time augmentation)."
    ),
    device_name: str = device_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing CSV."),
) -> None:
    """Predict a split of DATA with the run's models (fold ensemble); one row per image."""
    from medseg.pipeline.classify import classify_predict

    path = classify_predict(
        run, data, output, split=split, mirror=mirror, device=device_name, overwrite=overwrite
    )
    console.print(f"wrote {path}")


@app.command("evaluate")
def evaluate_command(
    predictions: Path = typer.Argument(
        ..., help="Predictions CSV (with the reference 'label' column)."
    ),
    output: Path = typer.Option(
        None,
        "--output",
        "-o",
        callback=output_folder,
        help="Folder for metrics.json, confusion.png, roc.png (default: the CSV's).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Confusion matrix, ROC AUC; ACC, sensitivity, specificity, PPV, NPV, F1, MCC per class.

    Per-class values and their macro averages.
    """
    from medseg.pipeline.classify import classify_evaluate

    summary = classify_evaluate(predictions, output, overwrite=overwrite)
    if summary["task"] == "regression":
        _print_headline("regression", {k: summary[k] for k in ("mae", "rmse", "r2", "pearson")})
        return
    table = Table("class", "ACC", "sens", "spec", "PPV", "NPV", "F1", "MCC", "AUC", "n")
    rows = [*summary["per_class"].items(), ("macro", {**summary["macro"], "support": summary["n"]})]
    for name, values in rows:
        auc = summary["per_class_auc"].get(name, summary["roc_auc"])
        table.add_row(
            name,
            *(
                f"{values[k]:.3f}"
                for k in ("accuracy", "recall", "specificity", "precision", "npv", "f1", "mcc")
            ),
            f"{auc:.3f}" if auc is not None else "n/a",
            str(values["support"]),
        )
    console.print(table)
    console.print(
        f"accuracy {summary['accuracy']:.3f}, MCC {summary['mcc']:.3f}; "
        "wrote metrics.json, confusion.png, roc.png"
    )


@app.command("explain")
def explain_command(
    run: Path = typer.Argument(..., help="Run folder."),
    data: Path = typer.Argument(..., help="Data in any classification layout."),
    output: Path = typer.Option(
        None,
        "--output",
        "-o",
        callback=output_folder,
        help="Folder for the overlays (default RUN/explain).",
    ),
    split: Split = typer.Option("test", "--split"),
    count: int = typer.Option(
        8, "--count", "-n", min=1, help="Images to explain (spread over the classes)."
    ),
    method: Literal["auto", "gradcam", "saliency"] = typer.Option(
        "auto", "--method", help="auto: Grad-CAM for CNNs, saliency for ViT and CapsNet."
    ),
    layer: str = typer.Option(
        None,
        "--layer",
        help="Module Grad-CAM explains, e.g. backbone.layer3 (default: the last feature map).",
    ),
    device_name: str = device_option(),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Write Grad-CAM (or saliency) overlays: where the network finds its evidence."""
    from medseg.pipeline.classify import classify_explain

    paths = classify_explain(
        run,
        data,
        split=split,
        out=output,
        count=count,
        method=method,
        layer=layer,
        device=device_name,
        overwrite=overwrite,
    )
    console.print(f"wrote {len(paths)} overlays to {paths[0].parent if paths else output}")


@app.command("report")
def report_command(
    run: Path = typer.Argument(..., help="Run folder."),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Write RUN/report.html (metrics, confusion matrix, ROC, curves, explanations)."""
    from medseg.pipeline.classify import classify_report

    console.print(f"wrote {classify_report(run, overwrite=overwrite)}")


@app.command("phantoms")
def phantoms_command(
    output: Path = typer.Argument(
        ...,
        callback=output_folder,
        help="Folder to create (train/<class>/, test/<class>/, masks/).",
    ),
    n_per_class: int = typer.Option(
        100, "--n-per-class", min=1, help="Training images per class (the test split: a quarter)."
    ),
    dims: int = typer.Option(2, "--dims", min=2, max=3, help="2 (PNG) or 3 (NIfTI)."),
    size: int = typer.Option(
        None, "--size", min=16, help="Image side in pixels (default 64 in 2D, 32 in 3D)."
    ),
    kind: Literal["lesion", "shape"] = typer.Option(
        "lesion", "--kind", help="lesion (present/absent) or shape (benign/malignant)."
    ),
    seed: int = typer.Option(0, "--seed", min=0),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Generate a classification phantom set whose deciding region (the lesion) is known."""
    from medseg.data import make_classification_phantoms

    make_classification_phantoms(
        output,
        n_per_class=n_per_class,
        spatial_dims=dims,
        size=size,
        kind=kind,
        seed=seed,
        overwrite=overwrite,
    )
    console.print(f"wrote {output}")


@app.command("demo")
def demo_command(
    output: Path = typer.Option(
        Path("medseg_classify_demo"),
        "--out",
        "-o",
        callback=output_folder,
        help="Folder for the data and the run.",
    ),
    net: str = typer.Option("resnet18", "--net"),
    dims: int = typer.Option(2, "--dims", min=2, max=3),
    epochs: int = typer.Option(8, "--epochs", min=1),
    n_per_class: int = typer.Option(150, "--n-per-class", min=1),
    device_name: str = device_option(),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Phantoms -> train -> evaluate -> Grad-CAM -> report; measures Grad-CAM localisation."""
    from medseg.pipeline.classify import classify_demo

    summary = classify_demo(
        output,
        network=net,
        spatial_dims=dims,
        n_per_class=n_per_class,
        epochs=epochs,
        device=device_name,
        overwrite=overwrite,
    )
    _print_headline("test", summary["test"])
    where = summary["localisation"]
    console.print(
        f"Grad-CAM mass inside the lesion: {where['gradcam_mass_inside_lesion']:.1%}, "
        f"{where['enrichment']:.1f}x the lesion's share of the image "
        f"({where['lesion_area_fraction']:.1%})"
    )
    console.print(f"report: {summary['report']}")
