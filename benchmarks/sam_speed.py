"""SAM image encoder speed on CPU: medseg's ``SamImageEncoder`` vs segment-anything's.

Both ViT-B encoders get the same random weights and the same 1 x 3 x 1024^2 image; runs are
interleaved and the median of ``--repeats`` is reported (torch threads 2), with the ratio
medseg / segment-anything (target <= 1.0). Then, when ``medseg.prompt.model.build_promptable``
exists, the latency of ``embed`` and of ``predict`` from a cached embedding (one point, one
box) of the ``cpu`` preset at 256^2 (targets: embed < 0.5 s, predict < 50 ms).

Usage::

    python benchmarks/sam_speed.py              # ~1-2 minutes on 2 cores
    python benchmarks/sam_speed.py --repeats 1  # quicker
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import statistics
import sys
import time
import types
from collections.abc import Callable
from functools import partial

import torch

from medseg.prompt.sam_encoder import SAM_VARIANTS


def sam_modeling() -> types.ModuleType | None:
    """``segment_anything.modeling`` without its package ``__init__`` (which needs torchvision)."""
    if "segment_anything" not in sys.modules:
        spec = importlib.util.find_spec("segment_anything")
        if spec is None:
            return None
        package = types.ModuleType("segment_anything")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["segment_anything"] = package
    return importlib.import_module("segment_anything.modeling")


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def encoder_rows(repeats: int) -> list[tuple[str, float]]:
    """Median seconds of one ViT-B forward at 1024^2: medseg, segment-anything."""
    variant = SAM_VARIANTS["vit_b"]
    ours = variant.image_encoder().eval()
    rows = []
    image = torch.randn(1, 3, 1024, 1024)
    modeling = sam_modeling()
    reference = None
    if modeling is not None:
        reference = modeling.ImageEncoderViT(
            depth=variant.encoder_depth, embed_dim=variant.encoder_embed_dim, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=variant.encoder_num_heads,
            use_rel_pos=True, global_attn_indexes=variant.encoder_global_attn_indexes,
            window_size=14, out_chans=256,
        ).eval()  # fmt: skip
        reference.load_state_dict(ours.state_dict())
    times: dict[str, list[float]] = {"medseg": [], "segment-anything": []}
    with torch.inference_mode():
        ours(image[..., :256, :256])  # warm-up (allocator, kernels)
        for _ in range(repeats):  # interleaved so background load hits both alike
            times["medseg"].append(median_seconds(lambda: ours(image), 1))
            if reference is not None:
                times["segment-anything"].append(median_seconds(lambda: reference(image), 1))
    for name, values in times.items():
        if values:
            rows.append((name, statistics.median(values)))
    return rows


def promptable_rows(repeats: int) -> list[tuple[str, float]]:
    """Median seconds of embed / predict (point, box) of the ``cpu`` preset at 256^2."""
    try:
        from medseg.prompt.model import build_promptable
    except ImportError:
        return []
    model = build_promptable(2, preset="cpu", image_size=(256, 256), in_channels=1).eval()
    image = torch.randn(1, 1, 256, 256)
    with torch.inference_mode():
        embedding = model.embed(image)
        point = torch.tensor([[128.0, 100.0]])
        box = torch.tensor([60.0, 50.0, 180.0, 200.0])
        model.predict(embedding, points=point, point_labels=torch.tensor([1]))

        def point_predict() -> object:
            return model.predict(embedding, points=point, point_labels=torch.tensor([1]))

        return [
            ("embed 256^2", median_seconds(lambda: model.embed(image), repeats + 2)),
            ("predict (1 point)", median_seconds(point_predict, repeats + 7)),
            (
                "predict (box)",
                median_seconds(lambda: model.predict(embedding, box=box), repeats + 7),
            ),
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    rows = encoder_rows(args.repeats)
    print(f"SAM ViT-B image encoder, 1 x 3 x 1024^2, {torch.get_num_threads()} threads")
    print(f"{'implementation':<24}{'median s':>10}")
    for name, seconds in rows:
        print(f"{name:<24}{seconds:>10.2f}")
    if len(rows) == 2:
        print(f"{'ratio medseg / SAM':<24}{rows[0][1] / rows[1][1]:>10.2f}  (target <= 1.0)")
    prompt_rows = promptable_rows(args.repeats)
    if prompt_rows:
        print("\nbuild_promptable(preset='cpu'), 256^2")
        for name, seconds in prompt_rows:
            print(f"{name:<24}{seconds * 1000:>10.1f} ms")
    else:
        print("\nmedseg.prompt.model.build_promptable not available: embed/predict not timed")


if __name__ == "__main__":
    main()
