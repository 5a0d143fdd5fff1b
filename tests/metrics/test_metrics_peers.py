"""Agreement with MedPy, MONAI and DeepMind ``surface-distance`` under each named definition.

Random blob pairs in 2D and 3D with anisotropic spacing:

- MedPy (``hd``, ``hd95`` pooled, ``assd``) = our ``surface="voxel"``, ``hd95_mode="pooled"``,
  with face (``connectivity=1``) and full connectivity.
- MONAI (``compute_hausdorff_distance``, ``compute_average_surface_distance(symmetric=True)``,
  ``compute_surface_dice``) = ``surface="voxel"``, ``hd95_mode="max_directed"``; MONAI returns
  float32, hence the 1e-6 relative tolerance.
- DeepMind ``surface_distance`` = ``surface="surfel"``, ``hd95_mode="max_directed"``, MASD = the
  mean of its two directed averages, NSD = its surface Dice.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medseg.metrics import distance_metrics

# the peers use deprecated SciPy/MONAI namespaces; that is not what these tests check
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

CASES = [
    ((24, 30), (0.8, 1.3), 0),
    ((24, 30), (1.0, 1.0), 1),
    ((10, 14, 16), (3.0, 0.7, 0.9), 2),
    ((12, 12, 12), (1.0, 1.0, 1.0), 3),
]


def _pair(shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ref = ndimage.binary_opening(rng.random(shape) < 0.6)
    pred = ref ^ (ndimage.binary_dilation(ref) & (rng.random(shape) < 0.4))  # boundary noise
    pred[tuple(rng.integers(0, s) for s in shape)] = True  # and a stray voxel
    return pred, ref


@pytest.mark.parametrize(("shape", "spacing", "seed"), CASES)
@pytest.mark.parametrize("full", [False, True])
def test_medpy_hd_hd95_assd_match_the_pooled_voxel_definition(shape, spacing, seed, full) -> None:
    binary = pytest.importorskip("medpy.metric.binary")
    pred, ref = _pair(shape, seed)
    connectivity = len(shape) if full else 1
    ours = distance_metrics(pred, ref, spacing, hd95_mode="pooled", connectivity=connectivity)
    theirs = {
        "hd": binary.hd(pred, ref, spacing, connectivity),
        "hd95": binary.hd95(pred, ref, spacing, connectivity),
        "assd": binary.assd(pred, ref, spacing, connectivity),
    }
    assert {k: ours[k] for k in theirs} == pytest.approx(theirs, rel=1e-9, abs=1e-9)


def _monai_onehot(mask: np.ndarray):
    torch = pytest.importorskip("torch")
    tensor = torch.from_numpy(mask)[None, None]
    return torch.cat([~tensor, tensor], dim=1).float()


@pytest.mark.parametrize(("shape", "spacing", "seed"), CASES)
def test_monai_hd_hd95_assd_nsd_match_the_max_directed_voxel_definition(
    shape, spacing, seed
) -> None:
    metrics = pytest.importorskip("monai.metrics")
    pred, ref = _pair(shape, seed)
    y_pred, y = _monai_onehot(pred), _monai_onehot(ref)
    ours = distance_metrics(pred, ref, spacing, hd95_mode="max_directed", tolerance_mm=1.5)
    theirs = {
        "hd": metrics.compute_hausdorff_distance(y_pred, y, spacing=spacing).item(),
        "hd95": metrics.compute_hausdorff_distance(
            y_pred, y, spacing=spacing, percentile=95
        ).item(),
        "assd": metrics.compute_average_surface_distance(
            y_pred, y, symmetric=True, spacing=spacing
        ).item(),
        "nsd": metrics.compute_surface_dice(y_pred, y, [1.5], spacing=spacing).item(),
    }
    assert {k: ours[k] for k in theirs} == pytest.approx(theirs, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize(("shape", "spacing", "seed"), CASES)
def test_monai_subvoxel_surface_dice_matches_the_surfel_definition(shape, spacing, seed) -> None:
    metrics = pytest.importorskip("monai.metrics")
    pred, ref = _pair(shape, seed)
    ours = distance_metrics(pred, ref, spacing, surface="surfel", tolerance_mm=1.5)["nsd"]
    y_pred, y = _monai_onehot(pred), _monai_onehot(ref)
    theirs = metrics.compute_surface_dice(
        y_pred, y, [1.5], spacing=spacing, use_subvoxels=True
    ).item()
    assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize(("shape", "spacing", "seed"), CASES)
def test_deepmind_surface_distance_matches_the_surfel_definition(shape, spacing, seed) -> None:
    sd = pytest.importorskip("surface_distance")
    pred, ref = _pair(shape, seed)
    ours = distance_metrics(pred, ref, spacing, surface="surfel", tolerance_mm=1.5)
    distances = sd.compute_surface_distances(ref, pred, spacing)
    theirs = {
        "hd": sd.compute_robust_hausdorff(distances, 100),
        "hd95": sd.compute_robust_hausdorff(distances, 95),
        "masd": float(np.mean(sd.compute_average_surface_distance(distances))),
        "nsd": sd.compute_surface_dice_at_tolerance(distances, 1.5),
    }
    assert {k: ours[k] for k in theirs} == pytest.approx(theirs, rel=1e-9, abs=1e-9)
