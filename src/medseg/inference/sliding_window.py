"""Sliding-window inference: tiles, Gaussian blending and test-time mirroring.

An image of any size is cut into tiles of ``patch_size`` (independent of the image size and
of the training patch, as long as the network accepts it) laid out by
``medseg.data.sampling.grid_slices``: along each axis the tiles are spread evenly from the
first voxel to the last, neighbours sharing at least ``overlap`` of a tile, so every voxel is
covered and the last tile ends exactly at the border (no border artefacts, no partial tiles).
An axis shorter than the patch is padded symmetrically with 0 first and cropped back at the
end; on z-scored images (every medseg normalisation) 0 is the mean intensity, as in nnU-Net.

Blending: each tile's prediction is multiplied by an importance map (``mode="gaussian"``:
``gaussian_importance``, which trusts tile centres more than tile borders, as nnU-Net; or
``"constant"``), accumulated into one preallocated output, and divided by the accumulated
weights at the end. Only ``sw_batch_size`` tiles exist at any time.

What is averaged (``output``):

* ``"probabilities"`` (default): each tile's logits go through a softmax over the class
  axis, then the probabilities are averaged (over mirrorings and overlapping tiles). An
  average of probability maps is again a probability map, and it is what an ensemble of
  models averages too (nnU-Net v1 did the same).
* ``"logits"``: the predictor's raw outputs are averaged (nnU-Net v2 averages logits and
  applies the softmax once afterwards; MONAI's ``sliding_window_inference`` averages whatever
  the predictor returns). Use this for a predictor whose output is not logits, or to compare
  with MONAI.

Test-time mirroring (``mirror_axes``): every tile is also predicted flipped along each subset
of the given spatial axes, flipped back, and the ``2 ** len(mirror_axes)`` predictions are
averaged before blending.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from medseg.data.sampling import grid_slices

BlendMode = Literal["gaussian", "constant"]
OutputKind = Literal["probabilities", "logits"]


def gaussian_importance(
    patch_size: Sequence[int],
    *,
    sigma_scale: float = 1 / 8,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Gaussian importance map of one tile (nnU-Net's blending weights).

    ``w(x) = prod_d exp(-(x_d - c_d)^2 / (2 sigma_d^2))`` with ``sigma_d = patch_d *
    sigma_scale`` and ``c_d = (patch_d - 1) / 2`` (the exact centre, so the map is symmetric
    and a flipped tile gets the same weights; nnU-Net puts the peak on voxel ``patch_d // 2``,
    half a voxel off for even sizes). Normalised to a maximum of 1; values that underflow to 0
    are replaced by the smallest non-zero value (so no voxel gets weight 0 and the blended
    average is never 0/0). MONAI's ``compute_importance_map`` uses the same curve but clamps
    every value below 1e-3 to 1e-3.

    Args:
        patch_size: tile shape ``(*spatial)``.
        sigma_scale: sigma as a fraction of the tile size (nnU-Net and MONAI: 1/8).
        dtype: output dtype (computed in float64 first).
        device: output device.

    Returns:
        ``(*patch_size)`` tensor, positive everywhere, maximum 1.

    Raises:
        ValueError: ``sigma_scale`` not positive, or an empty patch axis.

    Example:
        >>> w = gaussian_importance((5, 4))
        >>> tuple(w.shape), float(w.max()), bool((w > 0).all())
        ((5, 4), 1.0, True)
    """
    if sigma_scale <= 0:
        raise ValueError(f"sigma_scale must be positive, got {sigma_scale}")
    if any(int(p) < 1 for p in patch_size):
        raise ValueError(f"patch_size must be positive, got {tuple(patch_size)}")
    weights = torch.ones((), dtype=torch.float64)
    for axis, p in enumerate(patch_size):
        x = torch.arange(int(p), dtype=torch.float64) - (int(p) - 1) / 2
        curve = torch.exp(-(x**2) / (2 * (int(p) * sigma_scale) ** 2))
        weights = weights[..., None] * curve.reshape([1] * axis + [-1])
    weights = (weights / weights.max()).to(dtype=dtype, device=device)
    zero = weights == 0
    if zero.any():
        weights[zero] = weights[~zero].min()
    return weights


def flip_combinations(
    mirror_axes: Sequence[int] | None, spatial_dims: int
) -> list[tuple[int, ...]]:
    """Every subset of ``mirror_axes`` as tensor dims of a ``(B, C, *spatial)`` batch.

    Args:
        mirror_axes: spatial axes (0 = first spatial axis) to mirror, or None.
        spatial_dims: number of spatial axes.

    Returns:
        ``2 ** len(mirror_axes)`` tuples of dims to flip, the empty tuple (no flip) first.

    Raises:
        ValueError: an axis outside ``[0, spatial_dims)`` or repeated.

    Example:
        >>> flip_combinations((0, 1), 2)
        [(), (2,), (3,), (2, 3)]
    """
    axes = tuple(int(a) for a in (mirror_axes or ()))
    if len(set(axes)) != len(axes) or any(not 0 <= a < spatial_dims for a in axes):
        raise ValueError(
            f"mirror_axes must be distinct spatial axes in [0, {spatial_dims}), got {axes}"
        )
    dims = [a + 2 for a in axes]
    return [combo for r in range(len(dims) + 1) for combo in itertools.combinations(dims, r)]


def _pad_to_patch(image: Tensor, patch_size: Sequence[int]) -> tuple[Tensor, tuple[slice, ...]]:
    """Pad axes shorter than the patch symmetrically with 0; return the crop that undoes it."""
    before = [max(p - n, 0) // 2 for n, p in zip(image.shape[2:], patch_size, strict=True)]
    after = [max(p - n, 0) - b for n, p, b in zip(image.shape[2:], patch_size, before, strict=True)]
    crop = tuple(slice(b, b + n) for b, n in zip(before, image.shape[2:], strict=True))
    if not any(before) and not any(after):
        return image, crop
    pad = [v for b, a in zip(reversed(before), reversed(after), strict=True) for v in (b, a)]
    return F.pad(image, pad, mode="constant", value=0.0), crop


def _tile_grid(
    shape: tuple[int, ...], patch: tuple[int, ...], overlap: float
) -> list[tuple[slice, ...]]:
    """``grid_slices`` without repeats (a tiny patch with a large overlap repeats positions
    after rounding; predicting them twice would change nothing but the run time)."""
    unique = {
        tuple(s.start for s in tile): tile for tile in grid_slices(shape, patch, overlap=overlap)
    }
    return list(unique.values())


def _predict_tiles(
    predictor: Callable[[Tensor], Tensor],
    tiles: Tensor,
    flips: list[tuple[int, ...]],
    output: OutputKind,
    patch_size: tuple[int, ...],
) -> Tensor:
    """``(n, K, *patch)`` float32 prediction of ``(n, C, *patch)`` tiles, mirror-averaged."""
    total: Tensor | None = None
    for dims in flips:
        pred = predictor(tiles.flip(dims) if dims else tiles)
        if not isinstance(pred, Tensor):
            raise TypeError(
                f"the predictor must return one tensor (B, K, *spatial), "
                f"got {type(pred).__name__}; call model.eval() on a network with deep supervision"
            )
        if (
            pred.ndim != tiles.ndim
            or tuple(pred.shape[2:]) != patch_size
            or pred.shape[0] != tiles.shape[0]
        ):
            raise ValueError(
                f"the predictor mapped tiles {tuple(tiles.shape)} to {tuple(pred.shape)}; "
                f"expected ({tiles.shape[0]}, K, *{patch_size})"
            )
        pred = pred.float()
        if output == "probabilities":
            pred = torch.softmax(pred, dim=1)
        if dims:
            pred = pred.flip(dims)
        total = pred if total is None else total.add_(pred)
    assert total is not None  # flips always holds the identity
    return total.div_(len(flips)) if len(flips) > 1 else total


def _check_arguments(
    image: Tensor, patch: tuple[int, ...], mode: str, output: str, sw_batch_size: int
) -> None:
    if image.ndim != len(patch) + 2:
        raise ValueError(
            f"image must be (B, C, *spatial) with {len(patch)} spatial axes for patch {patch}, "
            f"got shape {tuple(image.shape)}"
        )
    if mode not in ("gaussian", "constant"):
        raise ValueError(f"mode must be 'gaussian' or 'constant', got {mode!r}")
    if output not in ("probabilities", "logits"):
        raise ValueError(f"output must be 'probabilities' or 'logits', got {output!r}")
    if sw_batch_size < 1:
        raise ValueError(f"sw_batch_size must be at least 1, got {sw_batch_size}")


def _blend_weights(
    patch: tuple[int, ...],
    shape: tuple[int, ...],
    tiles: list[tuple[slice, ...]],
    mode: BlendMode,
    sigma_scale: float,
    *,
    device: torch.device,
    output_device: torch.device,
) -> tuple[Tensor, Tensor]:
    """``(weight, weight_sum)``: one tile's importance map ``(*patch)`` on ``device``, and the
    sum of the maps of all ``tiles`` ``(*shape)`` on ``output_device``."""
    if mode == "gaussian":
        weight = gaussian_importance(patch, sigma_scale=sigma_scale, device=device)
    else:
        weight = torch.ones(patch, device=device)
    weight_sum = torch.zeros(shape, dtype=torch.float32, device=output_device)
    weight_out = weight.to(output_device)
    for tile in tiles:
        weight_sum[tile] += weight_out
    return weight, weight_sum


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast when ``amp`` and ``device`` is CUDA; nothing otherwise."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _blend_tiles(
    padded: Tensor,
    tiles: list[tuple[slice, ...]],
    predict: Callable[[Tensor], Tensor],
    *,
    sw_batch_size: int,
    device: torch.device,
    output_device: torch.device,
    progress: bool,
) -> Tensor:
    """``(B, K, *spatial)`` float32 on ``output_device``: the sum of ``predict`` (weighted
    predictions ``(n, K, *patch)`` of ``(n, C, *patch)`` tiles) over the ``tiles`` of every
    batch item of ``padded``, ``sw_batch_size`` tiles per call (mixing batch items)."""
    items = [(b, tile) for b in range(padded.shape[0]) for tile in tiles]
    chunks = range(0, len(items), sw_batch_size)
    result: Tensor | None = None
    for start in tqdm(chunks, desc="sliding window", disable=not progress):
        chunk = items[start : start + sw_batch_size]
        batch = torch.stack([padded[b][(slice(None), *tile)] for b, tile in chunk]).to(device)
        pred = predict(batch).to(output_device)
        if result is None:  # a normal tensor (not an inference tensor) so callers may edit it
            with torch.inference_mode(False):
                result = torch.zeros(
                    (padded.shape[0], pred.shape[1], *padded.shape[2:]),
                    dtype=torch.float32,
                    device=output_device,
                )
        for (b, tile), tile_pred in zip(chunk, pred, strict=True):
            result[b][(slice(None), *tile)] += tile_pred
    assert result is not None  # grid_slices returns at least one tile
    return result


def sliding_window_inference(
    image: Tensor,
    predictor: Callable[[Tensor], Tensor],
    patch_size: Sequence[int],
    *,
    overlap: float = 0.5,
    mode: BlendMode = "gaussian",
    sigma_scale: float = 1 / 8,
    output: OutputKind = "probabilities",
    sw_batch_size: int = 4,
    device: torch.device | str | None = None,
    output_device: torch.device | str = "cpu",
    mirror_axes: Sequence[int] | None = None,
    amp: bool = True,
    progress: bool = False,
) -> Tensor:
    """Predict a whole image tile by tile and blend the tiles (see the module docstring).

    Args:
        image: ``(B, C, *spatial)`` input (any device; tiles are moved to ``device`` one
            batch at a time, so a large image can stay on the CPU).
        predictor: maps ``(n, C, *patch_size)`` to ``(n, K, *patch_size)`` logits, e.g. a
            network in eval mode.
        patch_size: tile shape (one entry per spatial axis); may differ from the training
            patch but must suit the network (e.g. a multiple of ``required_divisor``).
        overlap: fraction of a tile shared with each neighbour, in ``[0, 1)``.
        mode: ``"gaussian"`` (``gaussian_importance``) or ``"constant"`` blending weights.
        sigma_scale: Gaussian sigma as a fraction of the tile size.
        output: ``"probabilities"`` (softmax per tile, then average) or ``"logits"``
            (average the predictor's outputs).
        sw_batch_size: tiles per predictor call (tiles of different batch items are mixed).
        device: where the predictor runs (default: ``image.device``).
        output_device: where the result is accumulated (default CPU).
        mirror_axes: spatial axes (0 = first spatial axis) for test-time mirroring, or None.
        amp: bf16 autocast when ``device`` is CUDA (ignored on the CPU).
        progress: show a progress bar over tile batches.

    Returns:
        ``(B, K, *spatial)`` float32 on ``output_device``: blended probabilities or logits.

    Raises:
        ValueError: wrong image rank, bad ``overlap``/``mode``/``output``/``sw_batch_size``/
            ``mirror_axes``, or a predictor output of the wrong shape.

    Example:
        >>> x = torch.randn(1, 2, 7, 9)
        >>> y = sliding_window_inference(x, lambda t: t, (4, 4), output="logits")
        >>> bool(torch.allclose(x, y, atol=1e-6))
        True
    """
    patch = tuple(int(p) for p in patch_size)
    _check_arguments(image, patch, mode, output, sw_batch_size)
    flips = flip_combinations(mirror_axes, len(patch))
    device = torch.device(device) if device is not None else image.device
    output_device = torch.device(output_device)

    padded, crop = _pad_to_patch(image, patch)
    shape = tuple(padded.shape[2:])
    tiles = _tile_grid(shape, patch, overlap)
    weight, weight_sum = _blend_weights(
        patch, shape, tiles, mode, sigma_scale, device=device, output_device=output_device
    )
    with torch.inference_mode(), _autocast(device, amp):
        result = _blend_tiles(
            padded,
            tiles,
            lambda batch: _predict_tiles(predictor, batch, flips, output, patch).mul_(weight),
            sw_batch_size=sw_batch_size,
            device=device,
            output_device=output_device,
            progress=progress,
        )
        result.div_(weight_sum)
    if any(s.start > 0 or s.stop < n for s, n in zip(crop, shape, strict=True)):
        result = result[(slice(None), slice(None), *crop)].clone()
    return result
