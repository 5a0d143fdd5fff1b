"""``medseg data phantoms``: write a synthetic phantom dataset (nnU-Net v2 layout)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Literal

import typer

from medseg.cli.options import (
    non_negative_float,
    number_option,
    output_folder,
    probability,
)
from medseg.data.phantom_artefacts import NoiseKind
from medseg.data.phantoms import PhantomConfig, generate_dataset

_DEFAULT = PhantomConfig()


def register(app: typer.Typer) -> None:
    """Mount the ``phantoms`` command on the ``data`` app."""
    app.command("phantoms")(phantoms)


def phantoms(
    out: Path = typer.Argument(
        ...,
        callback=output_folder,
        help="Output dataset folder (created; must be empty unless --overwrite).",
    ),
    dims: int = typer.Option(3, "--dims", min=2, max=3, help="2 or 3 spatial dimensions."),
    cases: int = typer.Option(20, "--cases", min=1, help="Number of training cases."),
    seed: int = typer.Option(0, "--seed", min=0, help="Dataset seed (same seed, same files)."),
    noise: NoiseKind = typer.Option(_DEFAULT.noise, "--noise", help="Noise model."),
    noise_std: float = number_option(
        _DEFAULT.noise_std,
        "--noise-std",
        help="Noise std (intensity units; tissue is 0.5).",
        parser=non_negative_float,
    ),
    bias: float = number_option(
        _DEFAULT.bias_strength,
        "--bias",
        help="Bias field strength (max |log field|).",
        parser=non_negative_float,
    ),
    streaks: float = number_option(
        _DEFAULT.streak_strength,
        "--streaks",
        help="CT-like streak amplitude (0: none).",
        parser=non_negative_float,
    ),
    contrast: float = number_option(
        _DEFAULT.contrast,
        "--contrast",
        help="Contrast between structures (1: default, 0: none).",
        parser=non_negative_float,
    ),
    anisotropy: float = number_option(
        None,
        "--anisotropy",
        help="Slice spacing in mm along the first axis (z); in-plane stays 1 mm. "
        "Default: 2 mm in 3D, 1 mm in 2D.",
        metavar="MM",
    ),
    supersample: int = typer.Option(
        _DEFAULT.supersample,
        "--supersample",
        min=1,
        max=8,
        help="Partial-volume sub-samples (1: off).",
    ),
    p_absent: float = typer.Option(
        _DEFAULT.p_absent,
        "--p-absent",
        parser=probability,
        metavar="[0,1]",
        help="Probability a case has no lesion.",
    ),
    file_ending: Literal[".nii.gz", ".png"] = typer.Option(
        ".nii.gz", "--file-ending", help="'.png' for 2D only (8-bit, no spacing)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a phantom dataset in OUT."),
) -> None:
    """Generate a deterministic synthetic phantom dataset with known ground truth."""
    config = dataclasses.replace(
        _DEFAULT,
        noise=noise,
        noise_std=noise_std,
        bias_strength=bias,
        streak_strength=streaks,
        contrast=contrast,
        supersample=supersample,
        p_absent=p_absent,
    )
    if anisotropy is not None:
        config = config.with_slice_spacing(anisotropy, spatial_dims=dims)
    start = time.perf_counter()
    generate_dataset(
        out,
        spatial_dims=dims,
        num_cases=cases,
        seed=seed,
        config=config,
        overwrite=overwrite,
        file_ending=file_ending,
    )
    shape, spacing = config.grid(dims)
    labels = ", ".join(f"{v} {name}" for name, v in config.label_values().items() if v)
    typer.echo(
        f"wrote {cases} {dims}D phantom case(s) to {out} in {time.perf_counter() - start:.1f} s\n"
        f"  shape {' x '.join(map(str, shape))}, "
        f"spacing {' x '.join(f'{s:g}' for s in spacing)} mm, "
        f"labels: {labels}"
    )
