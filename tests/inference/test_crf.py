"""Dense CRF (mean field, Krähenbühl & Koltun 2011) against a brute-force numpy reference."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from medseg.errors import ConfigError, DatasetError
from medseg.inference.crf import bilateral_filter, dense_crf, gaussian_filter_mm


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(0))
    return (e / e.sum(0)).astype(np.float32)


def _reference_weights(shape, spacing, reach, sigma):
    """Dense ``(N, N)`` spatial weights exp(-d^2 / 2 sigma^2) for voxel pairs whose offset is
    within ``reach`` voxels on every axis (0 elsewhere), written pair by pair."""
    points = list(itertools.product(*[range(n) for n in shape]))
    weights = np.zeros((len(points), len(points)))
    for a, p in enumerate(points):
        for b, q in enumerate(points):
            if all(abs(i - j) <= r for i, j, r in zip(p, q, reach, strict=True)):
                d2 = sum(((i - j) * s) ** 2 for i, j, s in zip(p, q, spacing, strict=True))
                weights[a, b] = math.exp(-d2 / (2 * sigma**2))
    return weights


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (2.0, 0.5)])
def test_gaussian_filter_equals_the_pairwise_sum(spacing) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((2, 7, 9))
    sigma = 1.3
    reach = [math.ceil(3 * sigma / s) for s in spacing]
    weights = _reference_weights((7, 9), spacing, reach, sigma)
    expected = (weights @ x.reshape(2, -1).T).T.reshape(x.shape)
    got = gaussian_filter_mm(torch.tensor(x), spacing, sigma).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_bilateral_filter_equals_the_pairwise_sum_without_self() -> None:
    rng = np.random.default_rng(1)
    q, image = rng.random((2, 6, 7)), rng.random((2, 6, 7))
    spacing, alpha, beta = (1.0, 2.0), 1.5, 0.4
    reach = [math.ceil(2 * alpha / s) for s in spacing]  # the documented window, stride 1
    spatial = _reference_weights((6, 7), spacing, reach, alpha)
    feats = image.reshape(2, -1).T
    appearance = np.exp(-((feats[:, None] - feats[None]) ** 2).sum(-1) / (2 * beta**2))
    weights = spatial * appearance
    np.fill_diagonal(weights, 0.0)
    expected = (weights @ q.reshape(2, -1).T).T.reshape(q.shape)
    got = bilateral_filter(
        torch.tensor(q), torch.tensor(image), spacing, theta_alpha_mm=alpha, theta_beta=beta
    ).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def _reference_mean_field(p, image, spacing, iterations, normalize, wg, gamma, wb, alpha, beta):
    """Mean field written from the paper's update with dense (N, N) kernels, Potts model;
    ``normalize`` divides each kernel's rows by their sum (the kernel-weighted mean)."""
    c, shape = p.shape[0], p.shape[1:]
    kg = _reference_weights(shape, spacing, [math.ceil(3 * gamma / s) for s in spacing], gamma)
    ks = _reference_weights(shape, spacing, [math.ceil(2 * alpha / s) for s in spacing], alpha)
    feats = image.reshape(image.shape[0], -1).T
    feats = (feats - feats.mean(0)) / feats.std(0, ddof=1)
    kb = ks * np.exp(-((feats[:, None] - feats[None]) ** 2).sum(-1) / (2 * beta**2))
    kernel = np.zeros_like(kg)
    for weight, k in ((wg, kg), (wb, kb)):
        np.fill_diagonal(k, 0.0)
        kernel += weight * (k / k.sum(1, keepdims=True) if normalize else k)
    unary = -np.log(np.maximum(p.reshape(c, -1), 1e-8))
    q = p.reshape(c, -1).astype(np.float64)
    for _ in range(iterations):
        message = q @ kernel.T  # (C, N): sum_j k(i, j) Q_j(l)
        energy = unary + np.array([message.sum(0) - message[k] for k in range(c)])  # Potts
        q = np.exp(-energy - (-energy).max(0))
        q /= q.sum(0)
    return q.reshape(p.shape)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("shape,spacing", [((5, 6), (1.0, 1.5)), ((3, 4, 5), (2.0, 1.0, 1.0))])
def test_mean_field_equals_the_dense_reference_in_2d_and_3d(shape, spacing, normalize) -> None:
    rng = np.random.default_rng(2)
    p = _softmax(rng.normal(size=(3, *shape)) * 2)
    image = rng.random((1, *shape)).astype(np.float32)
    settings = {"w_gaussian": 1.5, "theta_gamma_mm": 1.2, "w_bilateral": 2.0,
                "theta_alpha_mm": 1.0, "theta_beta": 0.7}  # fmt: skip
    got = dense_crf(p, image, spacing=spacing, iterations=3, normalize=normalize, **settings)
    expected = _reference_mean_field(
        p.astype(np.float64), image.astype(np.float64), spacing, 3, normalize, *settings.values()
    )
    np.testing.assert_allclose(got, expected, atol=2e-5)


@pytest.mark.parametrize("shape", [(12, 10), (4, 6, 5)])
def test_zero_pairwise_weights_give_the_argmax_of_the_input(shape) -> None:
    rng = np.random.default_rng(3)
    p = _softmax(rng.normal(size=(3, *shape)))
    q = dense_crf(p, None, spacing=(1.0,) * len(shape), w_gaussian=0.0, w_bilateral=0.0)
    np.testing.assert_array_equal(q.argmax(0), p.argmax(0))
    np.testing.assert_allclose(q, p, atol=1e-6)


def test_crf_removes_isolated_noise_from_a_square() -> None:
    truth = np.zeros((64, 64), bool)
    truth[16:48, 16:48] = True
    rng = np.random.default_rng(0)
    noisy_image = truth + rng.normal(0, 0.5, truth.shape)
    fg = np.clip(1 / (1 + np.exp(-(noisy_image - 0.5) * 4)), 1e-4, 1 - 1e-4)
    p = np.stack([1 - fg, fg]).astype(np.float32)
    q = dense_crf(p, noisy_image[None], spacing=(1.0, 1.0))
    before, after = (p.argmax(0) != truth).mean(), (q.argmax(0) != truth).mean()
    assert before > 0.05 and after < before / 2
    np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-5)


def test_bilateral_term_without_an_image_is_one_clear_error() -> None:
    p = np.full((2, 4, 4), 0.5, np.float32)
    with pytest.raises(ConfigError, match="bilateral .* needs the image"):
        dense_crf(p, None, spacing=(1.0, 1.0))
    with pytest.raises(ConfigError, match="bilateral .* needs the image"):
        dense_crf(p, np.zeros((0, 4, 4)), spacing=(1.0, 1.0))


def test_a_shape_mismatch_is_refused() -> None:
    p = np.full((2, 4, 4), 0.5, np.float32)
    with pytest.raises(DatasetError, match=r"image of shape \(1, 4, 5\) does not match"):
        dense_crf(p, np.zeros((1, 4, 5)), spacing=(1.0, 1.0))
    with pytest.raises(DatasetError, match="2 spatial axes"):
        dense_crf(p[0], None, spacing=(1.0, 1.0), w_bilateral=0.0)


def test_probabilities_that_do_not_sum_to_one_are_refused() -> None:
    scores = np.array([[[2.0, 1.0]], [[0.5, 3.0]]], np.float32)
    with pytest.raises(DatasetError, match="do not sum to 1"):
        dense_crf(scores, np.zeros((1, 1, 2)), spacing=(1.0, 1.0))
    with pytest.raises(DatasetError, match=">= 0"):
        dense_crf(-np.ones((2, 1, 2), np.float32), None, spacing=(1.0, 1.0), w_bilateral=0)


def _crf_folders(tmp_path, truths, noisy_images, probabilities):
    from medseg.io import Image, write_image

    folders = [tmp_path / name for name in ("probs", "images", "refs")]
    for folder in folders:
        folder.mkdir()
    for i, (truth, image, p) in enumerate(zip(truths, noisy_images, probabilities, strict=True)):
        np.savez(folders[0] / f"case{i}.npz", probabilities=p, label_values=np.array([0, 1]),
                 spacing=np.array([1.0, 1.0]))  # fmt: skip
        write_image(
            Image(image.astype(np.float32), (1.0, 1.0)), folders[1] / f"case{i}_0000.nii.gz"
        )
        write_image(Image(truth.astype(np.uint8), (1.0, 1.0)), folders[2] / f"case{i}.nii.gz")
    return folders


def _noisy_cases(truths, seed):
    rng = np.random.default_rng(seed)
    images, probabilities = [], []
    for truth in truths:
        image = truth + rng.normal(0, 0.5, truth.shape)
        fg = np.clip(1 / (1 + np.exp(-(image - 0.5) * 4)), 1e-4, 1 - 1e-4)
        images.append(image)
        probabilities.append(np.stack([1 - fg, fg]).astype(np.float32))
    return images, probabilities


def test_choose_crf_takes_it_where_it_raises_dice_and_merges_the_decision(tmp_path) -> None:
    import json

    from medseg.inference.postprocess import choose_crf

    truths = []
    for shift in (0, 6):
        truth = np.zeros((48, 48), bool)
        truth[8 + shift : 36 + shift, 10:38] = True
        truths.append(truth)
    folders = _crf_folders(tmp_path, truths, *_noisy_cases(truths, 5))
    out = tmp_path / "postprocessing.json"
    out.write_text(json.dumps({"keep_largest_component": [1], "fill_holes": []}))
    decision = choose_crf(*folders, [1], settings={"iterations": 5}, out_path=out)
    dice = decision["crf_dice"]["1"]
    assert decision["crf"] == {"iterations": 5} and dice["after"] > dice["before"]
    stored = json.loads(out.read_text())
    assert stored["keep_largest_component"] == [1] and stored["crf"] == {"iterations": 5}


def test_choose_crf_refuses_it_where_it_erases_thin_lines(tmp_path) -> None:
    from medseg.inference.postprocess import choose_crf

    truth = np.zeros((40, 40), bool)
    truth[:, 5::8] = True  # one-voxel lines, exactly predicted: smoothing can only hurt
    p = np.stack([np.where(truth, 0.3, 0.9), np.where(truth, 0.7, 0.1)]).astype(np.float32)
    folders = _crf_folders(tmp_path, [truth], [np.zeros((40, 40))], [p])
    decision = choose_crf(*folders, [1], settings={"w_bilateral": 0.0, "w_gaussian": 5.0})
    assert decision["crf"] is None
    assert decision["crf_dice"]["1"]["after"] < decision["crf_dice"]["1"]["before"] == 1.0
