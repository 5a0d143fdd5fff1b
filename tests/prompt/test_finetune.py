"""Prompt fine-tuning on the engine: run files, a frozen encoder, resume, reload, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from medseg.cli.main import app
from medseg.errors import ConfigError
from medseg.io import Image, read_image, write_image
from medseg.planning.plan import Plan
from medseg.prompt.apply import segment_with_prompt
from medseg.prompt.finetune import finetune_prompt
from medseg.prompt.finetune_config import PromptConfig
from medseg.prompt.finetune_model import build_prompt_model, load_prompt_run
from medseg.training.checkpoint import build_model, save_checkpoint


def _squares_dataset(root: Path, cases: int = 4) -> Path:
    """2D PNG-free nnU-Net cases: a bright rectangle (label 1) on noise, 24 x 24."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    for k in range(cases):
        label = np.zeros((24, 24), np.uint8)
        label[4 + k : 14 + k, 5 : 16 + k] = 1
        image = 2.0 * label + rng.normal(0, 0.1, label.shape)
        write_image(
            Image(image.astype(np.float32), (1.0, 1.0)), root / "imagesTr" / f"c{k}_0000.nii.gz"
        )
        write_image(Image(label, (1.0, 1.0)), root / "labelsTr" / f"c{k}.nii.gz")
    meta = {
        "name": "squares",
        "channel_names": {"0": "MRI"},
        "file_ending": ".nii.gz",
        "labels": {"background": 0, "square": 1},
        "numTraining": cases,
    }
    (root / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return root


def _config(dataset: Path, **fields) -> PromptConfig:
    options = dict(
        image_size=(32, 32),
        epochs=2,
        steps_per_epoch=3,
        batch_size=2,
        val_fraction=0.25,
        learning_rate=1e-3,
    )
    return PromptConfig(dataset=str(dataset), **{**options, **fields})


def test_finetune_trains_decoder_only_and_reloads(tmp_path):
    config = _config(_squares_dataset(tmp_path / "data"))
    torch.manual_seed(config.seed)
    initial, _ = build_prompt_model(config)
    result = finetune_prompt(config, tmp_path / "run", progress=False)
    assert result.epochs == 2 and result.steps == 6
    run = tmp_path / "run"
    for name in ("checkpoint_best.pt", "checkpoint_latest.pt", "log.csv", "config.json"):
        assert (run / name).is_file()
    split = json.loads((run / "split.json").read_text(encoding="utf-8"))
    assert len(split["val"]) == 1 and not set(split["train"]) & set(split["val"])
    model, loaded_config = load_prompt_run(run, checkpoint="latest")
    assert loaded_config == config
    # the image encoder is bit-identical after training; the decoder moved
    for name, value in initial.image_encoder.state_dict().items():
        assert torch.equal(value, model.image_encoder.state_dict()[name]), name
    moved = [
        n
        for n, v in initial.mask_decoder.state_dict().items()
        if not torch.equal(v, model.mask_decoder.state_dict()[n])
    ]
    assert moved
    # a finished run resumes for more epochs (the epoch count may change, nothing else)
    longer = PromptConfig.from_dict({**config.to_dict(), "epochs": 3})
    assert finetune_prompt(longer, run, resume=True, progress=False).epochs == 3
    other = PromptConfig.from_dict({**config.to_dict(), "epochs": 4, "box_jitter": 2})
    with pytest.raises(ConfigError):
        finetune_prompt(other, run, resume=True, progress=False)
    with pytest.raises(ConfigError):  # a finished run is not overwritten without --resume
        finetune_prompt(config, run, progress=False)


def test_encoder_source_uses_a_medseg_unet_encoder(tmp_path):
    data = _squares_dataset(tmp_path / "data")
    plan = Plan(
        configuration="2d",
        spatial_dims=2,
        spacing=(1.0, 1.0),
        median_shape=(24, 24),
        patch_size=(32, 32),
        batch_size=2,
        normalization=("zscore",),
        intensity={},
        num_classes=2,
        in_channels=1,
        labels={"background": 0, "square": 1},
        network_config={
            "features": [4, 8, 8, 8, 8],
            "strides": [[1, 1], [2, 2], [2, 2], [2, 2], [2, 2]],
        },
    )
    unet = build_model(plan)
    checkpoint = save_checkpoint(
        tmp_path / "seg.pt", network_state=unet.state_dict(), plan=plan.to_dict()
    )
    config = _config(data, source="encoder", encoder=str(checkpoint))
    finetune_prompt(config, tmp_path / "run", progress=False)
    model, _ = load_prompt_run(tmp_path / "run")
    backbone = model.image_encoder.backbone.state_dict()
    for name, value in unet.encoder.state_dict().items():  # the U-Net's encoder, unchanged
        assert torch.equal(value, backbone[name]), name
    image = read_image(next((data / "imagesTr").iterdir()))
    mask, iou = segment_with_prompt(model, config, image, box=[4, 5, 13, 15])
    assert mask.array.shape == (24, 24) and mask.same_grid(image) and np.isfinite(iou)


def test_cli_finetune_then_predict(tmp_path):
    data = _squares_dataset(tmp_path / "data")
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "prompt",
            "finetune",
            str(data),
            "-o",
            str(run),
            "--image-size",
            "32",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--batch-size",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "best validation Dice" in result.output
    image = next((data / "imagesTr").iterdir())
    out = tmp_path / "mask.nii.gz"
    args = [
        "prompt",
        "predict",
        str(image),
        "-m",
        str(run),
        "-o",
        str(out),
        "--box",
        "4,5,13,15",
        "--point",
        "8,8",
        "--point",
        "1,1,neg",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert read_image(out).array.shape == (24, 24)
    again = runner.invoke(app, args)  # never overwrites without --overwrite
    assert again.exit_code != 0 and "--overwrite" in str(again.exception)
    bad = runner.invoke(app, [*args[:7], "--box", "13,5,4,15", "--overwrite"])
    assert bad.exit_code != 0 and "inverted" in str(bad.exception)


def test_cli_evaluate_and_auto(tmp_path):
    data = _squares_dataset(tmp_path / "data")
    run = tmp_path / "run"
    finetune_prompt(_config(data, epochs=1, steps_per_epoch=1), run, progress=False)
    runner = CliRunner()
    summary_path = tmp_path / "summary.json"
    result = runner.invoke(
        app, ["prompt", "evaluate", "-m", str(run), "--clicks", "3", "-o", str(summary_path)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert summary["objects"] == 1  # the one held-out case, one square
    assert len(summary["mean_dice"]) == 3 and 0 <= summary["box_dice"] <= 1
    assert 1 <= summary["noc90"] <= 3
    out = tmp_path / "auto.nii.gz"
    image = next((data / "imagesTr").iterdir())
    result = runner.invoke(
        app,
        [
            "prompt",
            "auto",
            str(image),
            "-m",
            str(run),
            "-o",
            str(out),
            "--points-per-side",
            "4",
            "--pred-iou-thresh",
            "0.01",
        ],
    )
    assert result.exit_code == 0, result.output
    labels = read_image(out)
    count = int(result.output.split(": ")[-1].split(" object")[0])
    assert labels.array.shape == (24, 24) and int(labels.array.max()) <= count
    assert set(np.unique(labels.array)) <= set(range(count + 1))


def test_sam_source_fine_tunes_a_sam_checkpoint(tmp_path):
    from medseg.prompt.sam import sam_architecture

    data = _squares_dataset(tmp_path / "data")
    weights = tmp_path / "sam_tiny.pth"
    torch.save(sam_architecture("tiny").state_dict(), weights)
    config = _config(data, source="sam", weights=str(weights), variant="tiny", image_size=(64, 64))
    finetune_prompt(config, tmp_path / "run", progress=False)
    model, loaded = load_prompt_run(tmp_path / "run")
    assert loaded.resolved_intensity == "sam"
    saved = torch.load(weights, weights_only=True)
    for name, value in model.image_encoder.state_dict().items():  # frozen: as loaded
        assert torch.equal(value, saved[f"image_encoder.{name}"]), name
    image = read_image(next((data / "imagesTr").iterdir()))  # grey, replicated to RGB
    mask, _ = segment_with_prompt(model, loaded, image, points=[[8, 8]])
    assert mask.array.shape == (24, 24)


def test_cached_embeddings_equal_fresh_ones():
    from medseg.prompt.finetune import embed_all
    from medseg.prompt.model import build_promptable

    torch.manual_seed(0)
    model = build_promptable(2, preset="tiny", image_size=(32, 32))
    images = torch.randn(6, 1, 32, 32)
    cached = embed_all(model, images, torch.device("cpu"))  # batches of 4, then 2
    model.eval()
    with torch.no_grad():
        fresh = torch.cat([model.embed(images[i : i + 1]) for i in range(6)])
    assert torch.allclose(cached, fresh, atol=2e-5)  # batched convolutions round differently
    box = torch.tensor([4.0, 4.0, 20.0, 24.0])
    a = model.predict(cached[2:3], box=box, multimask=False).logits
    b = model.predict(fresh[2:3], box=box, multimask=False).logits
    assert torch.allclose(a, b, atol=1e-5)
