"""A site's trainer without Flower: FedBN keeps its normalisation layers, the rest is global."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.data.phantoms import generate_dataset
from medseg.federated.local import SiteTrainer
from medseg.federated.run import prepare_sites
from medseg.federated.sites import split_sites


@pytest.fixture(scope="module")
def site_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("fed")
    data = generate_dataset(root / "ds", spatial_dims=2, num_cases=6, seed=4)
    split_sites(data, root / "sites", sites=2)
    _, site_dirs, _ = prepare_sites(root / "sites", root / "out", "2d")
    return site_dirs


@pytest.mark.parametrize("fedbn", [False, True])
def test_fedbn_keeps_norm_layers_local(site_results, fedbn):
    site = SiteTrainer(site_results[0], "2d", local_steps=1, rounds=2, fedbn=fedbn)
    start = {k: v.numpy().copy() for k, v in site.task.model.state_dict().items()}
    arrays, metrics = site.train(start, 1)
    assert metrics["num-examples"] == site.num_examples and np.isfinite(metrics["train_loss"])
    assert bool(site.keep) == fedbn
    norm = "encoder.stages.0.0.1.weight"
    conv = "encoder.stages.0.0.0.weight"
    sent = {k: np.full_like(v, 7) if v.dtype.kind == "f" else v for k, v in arrays.items()}
    site.evaluate(sent)
    state = site.task.model.state_dict()
    assert np.all(state[conv].numpy() == 7)  # the global weights are used
    if fedbn:
        assert norm in site.keep and conv not in site.keep
        np.testing.assert_array_equal(state[norm].numpy(), arrays[norm])  # kept local
    else:
        assert np.all(state[norm].numpy() == 7)


def test_pooled_sites_train_on_the_union_of_their_training_cases(site_results, tmp_path):
    import json

    from medseg.federated.compare import pool_sites
    from medseg.planning.plan import Plans
    from medseg.training.segmentation import FoldData

    pooled = pool_sites(site_results, tmp_path / "pooled", "2d")
    plan = Plans.from_json(pooled / "plans.json")["2d"]
    data = FoldData.open(pooled, plan, 0)
    splits = [json.loads((Path(d) / "splits.json").read_text())[0] for d in site_results]
    assert data.train_ids == sorted(sum((s["train"] for s in splits), []))
    assert data.val_ids == sorted(sum((s["val"] for s in splits), []))


def test_a_dp_site_sends_a_clipped_noised_update_and_no_loss(site_results):
    from medseg.federated.privacy import update_norm

    site = SiteTrainer(site_results[0], "2d", local_steps=2, rounds=2, dp_clip=1e-3)
    start = {k: v.numpy().copy() for k, v in site.task.model.state_dict().items()}
    arrays, metrics = site.train(start, 1)
    update = {
        k: arrays[k].astype(np.float64) - start[k] for k in arrays if start[k].dtype.kind == "f"
    }
    assert update_norm(update) <= 1e-3 * (1 + 1e-4)  # the clip (no noise: z = 0)
    assert np.isnan(metrics["train_loss"])  # the loss is not covered by the accounting: withheld
    noisy = SiteTrainer(site_results[0], "2d", local_steps=1, rounds=1, dp_clip=1e-3, dp_noise=1.0)
    sent, _ = noisy.train(start, 1)
    noise = np.concatenate([(sent[k] - start[k]).ravel() for k in update])
    assert noise.std() == pytest.approx(1e-3, rel=0.05)  # z * C per entry, the update's share tiny
