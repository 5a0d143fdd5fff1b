"""CenterNet: decoding a perfect target gives the boxes back (2D and 3D, several strides);
the network's shapes; a short CPU run overfits a phantom to AP@0.5 = 1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.detect.centernet import centernet_targets, decode_centernet, peaks
from medseg.detect.config import DetectConfig
from medseg.detect.predict import predict_detections
from medseg.detect.train import fit_detector
from medseg.io import Image, write_image
from medseg.metrics.boxes import boxes_from_labels
from medseg.metrics.detection import average_precision
from medseg.nets.centernet import HEATMAP_BIAS, CenterNet


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine two threads oversubscribe badly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def separated_boxes(
    rng: np.random.Generator, shape: tuple[int, ...], cell: int, min_extent: int = 3
) -> np.ndarray:
    """One random box inside each ``cell``-sized block of ``shape`` (no two overlap)."""
    boxes = []
    for corner in np.ndindex(*(n // cell for n in shape)):
        lo = np.array(corner) * cell + rng.integers(0, cell // 3, len(shape))
        hi = lo + rng.integers(min_extent - 1, cell // 2, len(shape))
        boxes.append(np.concatenate([lo, hi]))
    return np.array(boxes)


def as_logits(heatmap: np.ndarray) -> torch.Tensor:
    return torch.logit(torch.as_tensor(heatmap, dtype=torch.float64).clamp(1e-9, 1 - 1e-9))


@pytest.mark.parametrize(
    "shape,cell,stride",
    [
        ((48, 64), 16, 1),
        ((48, 64), 16, 2),
        ((64, 64), 16, 4),
        ((24, 32, 32), 12, 1),
        ((24, 32, 32), 12, (1, 2, 2)),
    ],
)
def test_decoding_a_perfect_target_gives_the_boxes_back(shape, cell, stride) -> None:
    rng = np.random.default_rng(len(shape) + cell)
    boxes = separated_boxes(rng, shape, cell)
    classes = rng.integers(0, 3, len(boxes))
    target = centernet_targets(boxes, classes, shape, 3, stride)
    assert target.mask.sum() == len(boxes)
    found = decode_centernet(
        as_logits(target.heatmap), torch.as_tensor(target.size), stride=stride, image_shape=shape
    )
    expected = {(tuple(b), int(c)) for b, c in zip(boxes.tolist(), classes, strict=True)}
    got = {(tuple(b), int(c)) for b, c in zip(found.boxes.tolist(), found.classes, strict=True)}
    assert got == expected
    assert torch.allclose(found.scores.double(), torch.ones(len(boxes), dtype=torch.float64))


def test_decoding_keeps_only_peaks_above_the_threshold_and_suppresses_overlaps() -> None:
    heat = torch.zeros(1, 8, 8)
    heat[0, 2, 2], heat[0, 2, 3], heat[0, 6, 6] = 0.9, 0.8, 0.05  # (2,3) is no peak
    heat[0, 2, 5] = 0.7  # a peak whose box overlaps the first one
    size = torch.full((4, 8, 8), 1.0)
    found = decode_centernet(
        torch.logit(heat.clamp(1e-6, 1 - 1e-6)), size, score_threshold=0.1, nms_iou=0.1
    )
    assert found.boxes.tolist() == [[1, 1, 3, 3], [1, 4, 3, 6]]  # IoU 0 here: both kept
    found = decode_centernet(
        torch.logit(heat.clamp(1e-6, 1 - 1e-6)), torch.full((4, 8, 8), 2.0), nms_iou=0.1
    )
    assert found.boxes.tolist() == [[0, 0, 4, 4]]  # the 0.7 box (IoU 0.2 with it) suppressed
    assert peaks(heat)[0, 2, 3] == 0 and peaks(heat)[0, 2, 2] == pytest.approx(0.9)


def test_centernet_shapes_and_heatmap_prior() -> None:
    net = CenterNet(3, 2, 4, features=(4, 8, 16), output_level=1)
    out = net(torch.zeros(1, 2, 8, 16, 16))
    assert out["heatmap"].shape == (1, 4, 4, 8, 8) and out["size"].shape == (1, 6, 4, 8, 8)
    assert net.stride == (2, 2, 2)
    assert float(net.heatmap[-1].bias[0].detach()) == pytest.approx(HEATMAP_BIAS)
    with pytest.raises(ValueError, match="output_level"):
        CenterNet(2, 1, 1, features=(4, 8), output_level=1)


def write_rectangles_dataset(root: Path, num_cases: int, seed: int) -> Path:
    """A 2D nnU-Net v2 dataset: bright rectangles on noise, labels = instance maps."""
    rng = np.random.default_rng(seed)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i in range(num_cases):
        image = rng.normal(0, 0.3, (32, 32))
        label = np.zeros((32, 32), np.uint8)
        for k, box in enumerate(separated_boxes(rng, (32, 32), 16, 5)[rng.permutation(4)[:3]]):
            sl = tuple(slice(a, b + 1) for a, b in zip(box[:2], box[2:], strict=True))
            image[sl] += 2.0
            label[sl] = k + 1
        write_image(
            Image(image.astype(np.float32), (1.0, 1.0)), root / f"imagesTr/c{i}_0000.nii.gz"
        )
        write_image(Image(label, (1.0, 1.0)), root / f"labelsTr/c{i}.nii.gz")
    meta = {
        "channel_names": {"0": "x"},
        "labels": {"background": 0, "object": 1},
        "numTraining": num_cases,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_centernet_overfits_a_phantom_to_ap50_of_one(tmp_path: Path) -> None:
    data = write_rectangles_dataset(tmp_path / "ds", 4, seed=3)
    config = DetectConfig(
        str(data),
        features=(8, 16, 32),
        val_fraction=0.0,
        epochs=4,
        steps_per_epoch=50,
        batch_size=4,
        learning_rate=3e-3,
        seed=0,
    )
    fit_detector(data, tmp_path / "run", config, progress=False)
    saved = json.loads((tmp_path / "run/config.json").read_text())
    assert saved["num_classes"] == 1 and saved["spatial_dims"] == 2
    preds, scores, truth = [], [], []
    for i in range(4):
        boxes, score, classes = predict_detections(
            tmp_path / "run", data / f"imagesTr/c{i}_0000.nii.gz"
        )
        from medseg.io import read_image

        gt, _ = boxes_from_labels(read_image(data / f"labelsTr/c{i}.nii.gz").array, 2)
        preds.append(boxes), scores.append(score), truth.append(gt)
        assert (classes == 0).all()
    assert average_precision(preds, scores, truth, iou_threshold=0.5) == 1.0
