"""The demo's baselines: Otsu (whole foreground) and multi-atlas fusion (every label).

Both write their predictions under their own folder of the demo's output and evaluate them with
:func:`medseg.evaluation.evaluate_folders` on the same cases as the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.classic import otsu_segmentation
from medseg.data.dataset import load_dataset, read_case
from medseg.evaluation import evaluate_folders
from medseg.io import Image, write_image

#: Training cases used as atlases by the demo's multi-atlas baseline (affine registrations:
#: DEMO_ATLASES per evaluated case).
DEMO_ATLASES = 3
#: The baseline registers block-averaged copies whose longest side is at most this: on the
#: demo's 32x64x64 phantoms 1.8 s per registration instead of 7-10 s, same mean Dice over 4
#: phantom pairs (0.655 vs 0.630); the transform is in mm, so labels map at full resolution.
DEMO_ATLAS_MAX_SIZE = 48


def _otsu_baseline(
    dataset_root: Path, case_ids: list[str], out: Path, regions: dict[str, tuple[int, ...]]
) -> dict[str, Any]:
    """Otsu threshold of the first channel as a whole-foreground prediction."""
    dataset = load_dataset(dataset_root)
    pred_dir = out / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    for case_id in case_ids:
        image, _ = read_case(dataset.case(case_id), num_channels=dataset.num_channels)
        mask = otsu_segmentation(image.channels_first()[0])
        write_image(
            image.with_array(mask), pred_dir / f"{case_id}{dataset.file_ending}", overwrite=True
        )
    return evaluate_folders(
        pred_dir,
        dataset.root / "labelsTr",
        out,
        cases=case_ids,
        labels={"foreground": regions["foreground"]},
        overwrite=True,
        jobs=1,
    )


def _multi_atlas_baseline(
    atlas_root: Path,
    atlas_ids: list[str],
    dataset_root: Path,
    case_ids: list[str],
    out: Path,
    regions: dict[str, tuple[int, ...]],
) -> dict[str, Any]:
    """Multi-atlas fusion (affine, majority vote) of the first channel of ``case_ids``, with
    the cases ``atlas_ids`` of ``atlas_root`` as atlases, evaluated per label and foreground."""
    from medseg.classic.atlas import multi_atlas

    def first_channel(dataset: Any, case_id: str) -> tuple[Image, Image | None]:
        image, label = read_case(dataset.case(case_id), num_channels=dataset.num_channels)
        return image.with_array(image.channels_first()[0]), label

    atlas_data = load_dataset(atlas_root)
    pairs = [first_channel(atlas_data, case_id) for case_id in atlas_ids]
    atlases = [(image, label) for image, label in pairs if label is not None]
    dataset = load_dataset(dataset_root)
    pred_dir = out / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    for case_id in case_ids:
        image, _ = first_channel(dataset, case_id)
        fused = multi_atlas(
            image, atlases, transform="affine", fusion="majority", max_size=DEMO_ATLAS_MAX_SIZE
        )
        write_image(fused, pred_dir / f"{case_id}{dataset.file_ending}", overwrite=True)
    return evaluate_folders(
        pred_dir,
        dataset.root / "labelsTr",
        out,
        cases=case_ids,
        labels=regions,
        overwrite=True,
        jobs=1,
    )


def _atlas_ids(dataset_root: Path, exclude: list[str]) -> list[str]:
    """The first :data:`DEMO_ATLASES` labelled cases of ``dataset_root`` not in ``exclude``."""
    ids = [
        c.case_id
        for c in load_dataset(dataset_root).cases
        if c.label_path is not None and c.case_id not in exclude
    ]
    return ids[:DEMO_ATLASES]


def _multi_atlas_unseen(
    data: Path,
    test_root: Path | None,
    out: Path,
    configuration: str,
    regions: dict[str, tuple[int, ...]],
) -> tuple[dict[str, Any], int]:
    """The multi-atlas baseline's evaluation on the held-out test set, else (a user's dataset)
    on the fold-0 validation cases with training cases of fold 0 as atlases; and the number
    of atlases."""
    if test_root is not None:
        case_ids = [c.case_id for c in load_dataset(test_root).cases]
    else:
        case_ids = _validation_ids(data, out, configuration)
    root = test_root if test_root is not None else data
    atlas_ids = _atlas_ids(data, case_ids if test_root is None else [])
    atlas = _multi_atlas_baseline(
        data, atlas_ids, root, case_ids, out / "baseline_multi_atlas", regions
    )
    return atlas, len(atlas_ids)


def _validation_ids(data: Path, out: Path, configuration: str) -> list[str]:
    """The fold-0 validation cases: those with a prediction in the fold's validation folder."""
    ending = load_dataset(data).file_ending
    val_dir = out / "results" / configuration / "fold_0" / "validation"
    return sorted(p.name[: -len(ending)] for p in val_dir.iterdir() if p.name.endswith(ending))
