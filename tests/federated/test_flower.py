"""A 2-round Flower simulation on tiny 2D phantom sites; its checkpoint serves predict."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("flwr")

from medseg.data.phantoms import generate_dataset  # noqa: E402
from medseg.errors import ConfigError  # noqa: E402
from medseg.federated.run import check_address, run_federated  # noqa: E402
from medseg.federated.sites import split_sites  # noqa: E402
from medseg.inference.checkpoints import find_checkpoints  # noqa: E402
from medseg.inference.predict import predict  # noqa: E402
from medseg.io.formats import read_image  # noqa: E402
from medseg.planning.plan import Plans  # noqa: E402
from medseg.training import model_from_checkpoint  # noqa: E402
from medseg.training.checkpoint import load_checkpoint  # noqa: E402


@pytest.mark.federated
def test_two_round_simulation_checkpoint_predicts(tmp_path):
    data = generate_dataset(tmp_path / "ds", spatial_dims=2, num_cases=9, seed=1)
    shifts = tmp_path / "shift.json"
    shifts.write_text(json.dumps({"sites": [{"gain": 1.5}, {"noise": 0.1, "bias_field": 0.3}]}))
    split_sites(data, tmp_path / "sites", sites=3, shifts=shifts, seed=0)
    out = tmp_path / "results"
    result = run_federated(tmp_path / "sites", out, rounds=2, local_steps=1, cpus=2)
    assert [r["round"] for r in result["rounds"]] == [1, 2]
    assert all(np.isfinite(r["val_dice"]) and r["bytes_up"] > 0 for r in result["rounds"])
    (path,) = find_checkpoints(out, configurations=["2d"])
    model, plan = model_from_checkpoint(path)
    assert plan == Plans.from_json(out / "plans.json")["2d"]
    predicted = predict(data / "imagesTr", tmp_path / "pred", out, mirror=False, progress=False)
    image = read_image(data / "imagesTr" / "phantom_000_0000.nii.gz")
    assert read_image(predicted[0]).spatial_shape == image.spatial_shape
    # privacy: what each reply carried (recorded by the server) is weights and numbers
    shapes = {tuple(plan.patch_size), image.spatial_shape}
    text = (out / "rounds.jsonl").read_text()
    for line in text.splitlines():
        for reply in json.loads(line)["replies"]:
            assert set(reply["metrics"]) == {
                "num-examples",
                "train_loss",
                "site-index",
                "train_seconds",
            }
            assert not any(tuple(s[-2:]) in shapes for s in reply["arrays"].values())
            assert set(reply["arrays"]) == set(model.state_dict())
    assert "phantom_" not in text and str(tmp_path) not in text


def test_non_loopback_needs_certificates():
    check_address("127.0.0.1:9092", None)
    check_address("[::1]:9092", None)
    with pytest.raises(ConfigError, match="10.0.0.5:9092: not a loopback address"):
        check_address("10.0.0.5:9092", None)
    check_address("10.0.0.5:9092", ("ca.pem", "cert.pem", "key.pem"))


@pytest.mark.federated
def test_fedprox_fedbn_and_a_site_dropping_out(tmp_path):
    data = generate_dataset(tmp_path / "ds", spatial_dims=2, num_cases=9, seed=2)
    split_sites(data, tmp_path / "sites", sites=3, seed=0)
    out = tmp_path / "results"
    store = out / "sites" / "site_2" / "preprocessed" / "2d"

    def lose_site_2(server_round, row):  # its disk fails after round 1
        if server_round == 1:
            for f in store.glob("*.npy"):
                f.unlink()

    result = run_federated(
        tmp_path / "sites",
        out,
        rounds=2,
        local_steps=1,
        strategy="fedprox",
        mu=0.1,
        fedbn=True,
        cpus=2,
        on_round=lose_site_2,
    )
    first, second = result["rounds"]
    assert first["sites"] == ["site_0", "site_1", "site_2"] and first["dropped"] == 0
    assert second["sites"] == ["site_0", "site_1"] and second["dropped"] == 1
    assert len(second["replies"]) == 2 and np.isfinite(second["val_dice"])
    (path,) = find_checkpoints(out, configurations=["2d"], checkpoint="latest")
    settings = load_checkpoint(path)["federated"]
    assert settings["strategy"] == "fedprox" and settings["mu"] == 0.1 and settings["fedbn"]


@pytest.mark.federated
def test_fed_compare_end_to_end_on_phantom_hospitals(tmp_path):
    from typer.testing import CliRunner

    from medseg.cli.main import app

    for seed, site in enumerate("abc"):  # other patients per hospital, scanned differently
        args = ["data", "phantoms", str(tmp_path / "sites" / f"site_{site}"), "--dims", "2"]
        args += ["--cases", "4", "--seed", str(seed), "--site", site, "--size", "small"]
        assert CliRunner().invoke(app, args).exit_code == 0
    out = tmp_path / "compare"
    args = ["fed", "compare", str(tmp_path / "sites"), "-o", str(out), "--rounds", "2"]
    result = CliRunner().invoke(app, [*args, "--local-steps", "1", "--cpus", "2"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert saved["steps"] == 3 * 2 * 1  # sites x rounds x local steps, for every approach
    rows = saved["rows"]
    assert {"federated", "centralised", "local site_a", "local site_b", "local site_c"} <= set(rows)
    for row in rows.values():
        dice = list(row["sites"].values())
        assert len(dice) == 3 and row["worst"] == pytest.approx(min(dice))
        assert row["mean"] == pytest.approx(float(np.mean(dice)))
    assert "centralised" in result.output and "worst" in result.output
