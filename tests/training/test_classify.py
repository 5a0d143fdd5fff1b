"""Training classifiers and regressors: learning, checkpoints, exact resume, budgets, balance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.data.classification import ClassificationSet
from medseg.errors import ConfigError, MedsegError
from medseg.inference.classify import predict_scores
from medseg.planning.classifier import ClassifierConfig, config_for
from medseg.training import fit_classifier, load_checkpoint, load_classifier
from medseg.training.classification import _epoch_order

SMALL = {"features": (4, 8, 16)}


def blob_set(
    n: int, *, seed: int, positive_share: float = 0.5, size: int = 16
) -> ClassificationSet:
    """Class 1: a bright 4x4 square at a random place; class 0: noise only."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < positive_share).astype(np.int64)
    images = rng.normal(0, 0.3, (n, 1, size, size)).astype(np.float32)
    for i in np.flatnonzero(labels):
        y, x = rng.integers(0, size - 4, 2)
        images[i, 0, y : y + 4, x : x + 4] += 1.5
    return ClassificationSet(images, labels, ["absent", "present"], [f"img{i}" for i in range(n)])


def small_config(data: ClassificationSet, **options: object) -> ClassifierConfig:
    defaults = {
        "network_config": SMALL,
        "batch_size": 16,
        "learning_rate": 3e-3,
        "augmentation": "none",
        "epochs": 4,
    }
    return config_for(data, "unet_encoder", **{**defaults, **options})


def test_config_round_trips_and_rejects_bad_options() -> None:
    config = small_config(blob_set(8, seed=0))
    assert ClassifierConfig.from_dict(config.to_dict()) == config
    assert config.class_names == ("absent", "present") and config.image_shape == (16, 16)
    with pytest.raises(ConfigError, match="freeze 'head'"):
        small_config(blob_set(8, seed=0), freeze="head")
    with pytest.raises(ConfigError, match="unknown classifier config key"):
        ClassifierConfig.from_dict({**config.to_dict(), "colour": 1})


def test_a_small_cnn_learns_the_blob_task_and_writes_its_run(tmp_path: Path) -> None:
    train, val = blob_set(160, seed=1), blob_set(60, seed=2)
    result = fit_classifier(
        train, val, tmp_path / "run", small_config(train, epochs=6), progress=False
    )
    assert result.epochs == 6 and result.stopped_by == "epochs"
    for name in (
        "config.json",
        "checkpoint_latest.pt",
        "checkpoint_best.pt",
        "log.csv",
        "curves.png",
    ):
        assert (tmp_path / "run" / name).is_file(), name
    model, config, ckpt = load_classifier(tmp_path / "run" / "checkpoint_best.pt")
    scores = predict_scores(model, val.images, config)
    assert scores.shape == (60, 2) and np.allclose(scores.sum(1), 1, atol=1e-3)
    accuracy = float((scores.argmax(1) == val.labels).mean())
    assert accuracy > 0.9, accuracy
    assert ckpt["best_metric"] > 0.95  # validation AUC


def test_ctrl_c_then_resume_continues_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medseg.training.run_state as run_state

    train, val = blob_set(48, seed=3), blob_set(16, seed=4)
    config = small_config(train, augmentation="light", epochs=3)
    fit_classifier(train, val, tmp_path / "straight", config, amp=False, progress=False)
    plot = run_state.plot_curves

    def interrupt_after_epoch_2(rows: list, path: Path, panels: object) -> None:
        plot(rows, path, panels)
        if rows[-1]["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(run_state, "plot_curves", interrupt_after_epoch_2)
    with pytest.raises(MedsegError, match="interrupted.*--resume"):
        fit_classifier(train, val, tmp_path / "split", config, amp=False, progress=False)
    monkeypatch.setattr(run_state, "plot_curves", plot)
    with pytest.raises(ConfigError, match="--resume"):
        fit_classifier(train, val, tmp_path / "split", config, amp=False, progress=False)
    fit_classifier(train, val, tmp_path / "split", config, resume=True, amp=False, progress=False)
    a = load_checkpoint(tmp_path / "straight" / "checkpoint_latest.pt", kind="classification")
    b = load_checkpoint(tmp_path / "split" / "checkpoint_latest.pt", kind="classification")
    assert a["epoch"] == b["epoch"] == 3 and a["step"] == b["step"]
    for name, value in a["network_state"].items():
        torch.testing.assert_close(b["network_state"][name], value, rtol=0, atol=0)


def test_resume_refuses_another_configuration(tmp_path: Path) -> None:
    train = blob_set(32, seed=5)
    fit_classifier(train, None, tmp_path / "run", small_config(train), epochs=1, progress=False)
    with pytest.raises(ConfigError, match="another plan or configuration"):
        fit_classifier(
            train,
            None,
            tmp_path / "run",
            small_config(train, learning_rate=0.1),
            epochs=2,
            resume=True,
            progress=False,
        )


def test_a_time_budget_stops_training(tmp_path: Path) -> None:
    train = blob_set(64, seed=6)
    result = fit_classifier(
        train,
        None,
        tmp_path / "run",
        small_config(train),
        epochs=10_000,
        time_budget_s=2.0,
        progress=False,
    )
    assert result.stopped_by == "time_budget" and 1 <= result.epochs < 10_000
    assert result.seconds < 10


def test_the_balanced_sampler_evens_out_a_rare_class() -> None:
    labels = np.array([0] * 95 + [1] * 5)
    config = small_config(
        ClassificationSet(
            np.zeros((100, 1, 16, 16), np.float32), labels, ["a", "b"], [str(i) for i in range(100)]
        )
    )
    counts = np.zeros(2)
    for epoch in range(20):
        order = _epoch_order(labels, config, torch.Generator().manual_seed(epoch))
        counts += np.bincount(labels[order.numpy()], minlength=2)
    assert 0.4 < counts[1] / counts.sum() < 0.6  # 5 % of the data, about half of what is seen
    plain = _epoch_order(
        labels,
        ClassifierConfig(**{**config.__dict__, "class_weighting": "none"}),
        torch.Generator().manual_seed(0),
    )
    assert sorted(plain.tolist()) == list(
        range(100)
    )  # without balancing, each image once per epoch


def test_regression_learns_a_continuous_target(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    n, size = 160, 16
    radius = rng.uniform(2, 7, n).astype(np.float32)
    yy, xx = np.mgrid[:size, :size] - size / 2
    images = np.stack(
        [
            (np.hypot(yy, xx) < r).astype(np.float32) + rng.normal(0, 0.1, (size, size))
            for r in radius
        ]
    )
    data = ClassificationSet(
        images[:, None].astype(np.float32),
        radius,
        [],
        [str(i) for i in range(n)],
        task="regression",
    )
    train, val = data.subset(np.arange(120)), data.subset(np.arange(120, 160))
    config = small_config(train, epochs=12, learning_rate=3e-3)
    assert config.resolved_loss == "mse" and config.num_outputs == 1
    fit_classifier(train, val, tmp_path / "run", config, progress=False)
    model, config, _ = load_classifier(tmp_path / "run" / "checkpoint_best.pt")
    predicted = predict_scores(model, val.images, config)[:, 0]
    mae = float(np.abs(predicted - val.labels[:, 0]).mean())
    baseline = float(np.abs(train.labels.mean() - val.labels[:, 0]).mean())
    assert mae < 0.5 * baseline, (mae, baseline)


def _overflow_loss(monkeypatch: pytest.MonkeyPatch, overflows: object) -> list[int]:
    """Make the classifier's loss infinite on the calls where ``overflows(call number)``."""
    import medseg.training.classification as classification

    make, calls = classification._loss_function, []

    def overflowing(*args: object) -> object:
        loss = make(*args)

        def wrapped(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            calls.append(1)
            value = loss(outputs, targets)
            return value * float("inf") if overflows(len(calls)) else value

        return wrapped

    monkeypatch.setattr(classification, "_loss_function", overflowing)
    return calls


def test_a_step_with_non_finite_gradients_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _overflow_loss(monkeypatch, lambda n: n == 2)
    assert calls == []
    train = blob_set(64, seed=8)
    fit_classifier(
        train, None, tmp_path / "run", small_config(train, epochs=1), amp=False, progress=False
    )
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint_latest.pt", kind="classification")
    assert ckpt["log"][0]["skipped_steps"] == 1 and ckpt["step"] == 4
    assert all(
        torch.isfinite(v).all() for v in ckpt["network_state"].values() if v.is_floating_point()
    )


def test_bf16_that_keeps_overflowing_falls_back_to_float32(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _overflow_loss(monkeypatch, lambda n: n <= 4)  # 4 steps per epoch here
    assert calls == []
    train = blob_set(64, seed=9)
    fit_classifier(
        train, None, tmp_path / "run", small_config(train, epochs=2), amp=True, progress=False
    )
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint_latest.pt", kind="classification")
    assert [row["bf16"] for row in ckpt["log"]] == [True, False] and ckpt["amp"] is False
    assert [row["skipped_steps"] for row in ckpt["log"]] == [4, 0]
