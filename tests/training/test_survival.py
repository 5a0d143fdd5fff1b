"""Training deep Cox models on the engine: phantoms whose lesion size sets the hazard are
learnt (held-out C-index near the true risk's), event-stratified batches, the run folder,
resuming, predicting in order, and the errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.data.phantoms_survival import survival_phantom_arrays
from medseg.errors import ConfigError, DatasetError, MedsegError
from medseg.metrics.survival import concordance_index
from medseg.training.survival import (
    EventStratifiedBatches,
    SurvivalConfig,
    config_for,
    fit_survival,
    load_survival_model,
    predict_risk,
)

SMALL_NET = {"features": [4, 8]}


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Small tensors: one thread each (threads only wait for each other on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _fit(run: Path, n: int = 48, epochs: int = 2, resume: bool = False, **options) -> tuple:
    data = survival_phantom_arrays(n, size=16, seed=3)
    config = config_for(
        data.images, epochs=epochs, batch_size=16, encoder_config=SMALL_NET, **options
    )
    result = fit_survival(
        data.images,
        data.time,
        data.event,
        run,
        config,
        device="cpu",
        progress=False,
        resume=resume,
    )
    return data, config, result


def test_phantoms_are_learnt_close_to_the_true_risk(tmp_path: Path) -> None:
    train = survival_phantom_arrays(128, size=24, seed=0)
    val = survival_phantom_arrays(120, size=24, seed=0, split="test")
    config = config_for(train.images, epochs=4, batch_size=32, learning_rate=3e-3)
    result = fit_survival(
        train.images,
        train.time,
        train.event,
        tmp_path / "run",
        config,
        val=(val.images, val.time, val.event),
        device="cpu",
        progress=False,
    )
    ceiling = concordance_index(val.time, val.log_risk, val.event)
    risk = predict_risk(tmp_path / "run", val.images, device="cpu")
    c_index = concordance_index(val.time, risk, val.event)
    assert c_index > 0.7 and c_index > ceiling - 0.08, (c_index, ceiling)
    assert result.best_metric == pytest.approx(c_index, abs=0.02)  # bf16 validation vs fp32
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert "val_c_index" in log[0] and len(log) == 1 + result.epochs


def test_the_run_folder_rebuilds_the_model(tmp_path: Path) -> None:
    data, config, _ = _fit(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert SurvivalConfig.from_dict(saved) == config
    model, loaded = load_survival_model(tmp_path / "run", checkpoint="latest")
    assert loaded == config and not model.training
    assert config.intensity_mean == pytest.approx([float(data.images.mean())], rel=1e-5)


def test_predictions_keep_the_order_and_shape(tmp_path: Path) -> None:
    data, _, _ = _fit(tmp_path / "run")
    risk = predict_risk(tmp_path / "run", data.images[:10], device="cpu")
    reverse = predict_risk(tmp_path / "run", data.images[:10][::-1], device="cpu")
    single = predict_risk(tmp_path / "run", data.images[3:4], device="cpu")
    assert risk.shape == (10,) and risk.dtype == np.float64
    np.testing.assert_allclose(reverse, risk[::-1], rtol=1e-5, atol=1e-6)
    assert single[0] == pytest.approx(risk[3], abs=1e-5)
    assert np.ptp(risk) > 0  # not a constant
    with pytest.raises(DatasetError, match="do not match"):
        predict_risk(tmp_path / "run", np.zeros((2, 1, 8, 8), np.float32))


def test_ctrl_c_then_resume_continues_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medseg.training.run_state as run_state

    _fit(tmp_path / "straight", epochs=3)
    plot = run_state.plot_curves

    def interrupt_after_epoch_2(rows: list, path: Path, panels: object) -> None:
        plot(rows, path, panels)
        if rows[-1]["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(run_state, "plot_curves", interrupt_after_epoch_2)
    with pytest.raises(MedsegError, match="interrupted.*--resume"):
        _fit(tmp_path / "split", epochs=3)
    monkeypatch.setattr(run_state, "plot_curves", plot)
    _, _, result = _fit(tmp_path / "split", epochs=3, resume=True)
    assert result.epochs == 3
    logs = [(tmp_path / run / "log.csv").read_text().splitlines() for run in ("straight", "split")]
    losses = [[line.split(",")[2] for line in log[1:]] for log in logs]
    assert len(losses[0]) == 3 and losses[0] == losses[1]
    a = torch.load(tmp_path / "straight" / "checkpoint_latest.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "checkpoint_latest.pt", weights_only=True)
    for key, value in a["network_state"].items():
        assert torch.equal(value, b["network_state"][key]), key


def test_a_second_run_into_the_same_folder_needs_resume(tmp_path: Path) -> None:
    _fit(tmp_path / "run", epochs=1)
    with pytest.raises(ConfigError):
        _fit(tmp_path / "run", epochs=1)
    with pytest.raises(ConfigError):  # another config cannot resume
        _fit(tmp_path / "run", epochs=2, resume=True, learning_rate=0.5)


def test_batches_hold_the_events_share_and_each_case_once() -> None:
    event = np.array([1] * 30 + [0] * 70)  # 30 % events, in a block
    config = SurvivalConfig(batch_size=20, image_shape=[8, 8])
    batches = EventStratifiedBatches(event, config)
    epoch = list(batches(0))
    assert [len(b) for b in epoch] == [20] * 5
    assert sorted(np.concatenate(epoch).tolist()) == list(range(100))
    assert all(int(event[b].sum()) in (5, 6, 7) for b in epoch)  # 6 each on average
    assert all(np.array_equal(a, b) for a, b in zip(epoch, batches(0), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(epoch, batches(1), strict=True))


def test_a_batch_with_fewer_than_two_events_is_dropped() -> None:
    event = np.array([1, 1, 1] + [0] * 37)
    batches = list(EventStratifiedBatches(event, SurvivalConfig(batch_size=20))(0))
    assert len(batches) == 1 and int(event[batches[0]].sum()) >= 2


def test_bad_outcomes_and_configs_are_refused(tmp_path: Path) -> None:
    images = np.zeros((4, 1, 16, 16), np.float32)
    cases = [
        ([1.0, 2.0, 3.0, np.nan], [1, 1, 0, 0], "finite"),
        ([1.0, 2.0, 3.0, -1.0], [1, 1, 0, 0], "finite and >= 0"),
        ([1.0, 2.0, 3.0, 4.0], [1, 1, 2, 0], "0 or 1"),
        ([1.0, 2.0, 3.0, 4.0], [1, 0, 0, 0], "needs >= 2"),
        ([1.0, 2.0, 3.0], [1, 1, 0], "4 images but 3 times"),
    ]
    for time, event, message in cases:
        with pytest.raises(DatasetError, match=message):
            fit_survival(images, np.array(time), np.array(event), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="no log-risk output"):
        SurvivalConfig(network="resnet18")
    with pytest.raises(ConfigError, match="batch_size"):
        SurvivalConfig(batch_size=1)
    with pytest.raises(ConfigError, match="unknown survival setting"):
        SurvivalConfig.from_dict({"lr": 0.1})
