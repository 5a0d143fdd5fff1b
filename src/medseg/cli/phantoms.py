"""``medseg data phantoms``: write a synthetic phantom dataset (nnU-Net v2 layout), or a
phantom whole-slide image (``--slide OUT.tif``: H&E pyramid, label slide, glands GeoJSON)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Literal

import typer

from medseg.cli.options import (
    non_negative_float,
    number_option,
    output_file,
    output_folder,
    positive_float,
    probability,
)
from medseg.data.phantom_artefacts import NoiseKind
from medseg.data.phantoms import PhantomConfig, generate_dataset

_DEFAULT = PhantomConfig()
PhantomTask = Literal["segmentation", "registration", "denoise", "instances"]
TASK_OPTION = typer.Option(
    "segmentation",
    "--task",
    help="segmentation (default); registration (pairs with a known warp and its inverse); "
    "denoise (clean images and two independent noisy copies); instances (touching cells, "
    "known count). The noise, bias, streak and contrast options apply to segmentation only.",
)

NOISE_STD_OPTION = number_option(
    _DEFAULT.noise_std,
    "--noise-std",
    help="Noise std (intensity units; tissue is 0.5).",
    parser=non_negative_float,
)
BIAS_OPTION = number_option(
    _DEFAULT.bias_strength,
    "--bias",
    help="Bias field strength (max |log field|).",
    parser=non_negative_float,
)
STREAKS_OPTION = number_option(
    _DEFAULT.streak_strength,
    "--streaks",
    help="CT-like streak amplitude (0: none).",
    parser=non_negative_float,
)
CONTRAST_OPTION = number_option(
    _DEFAULT.contrast,
    "--contrast",
    help="Contrast between structures (1: default, 0: none).",
    parser=non_negative_float,
)
ANISOTROPY_OPTION = number_option(
    None,
    "--anisotropy",
    help="Slice spacing in mm along the first axis (z); in-plane stays 1 mm. "
    "Default: 2 mm in 3D, 1 mm in 2D.",
    metavar="MM",
)
SUPERSAMPLE_OPTION = typer.Option(
    None,
    "--supersample",
    min=1,
    max=8,
    help=f"Partial-volume sub-samples (1: off). Default: {_DEFAULT.supersample}, "
    "or the --size preset's.",
)
P_ABSENT_OPTION = typer.Option(
    _DEFAULT.p_absent,
    "--p-absent",
    parser=probability,
    metavar="[0,1]",
    help="Probability a case has no lesion.",
)
SIZE_OPTION = typer.Option(
    "default",
    "--size",
    help="Grid preset: small (16^3 / 32^2) for large test cohorts, hippocampus (36 x 50 x 35).",
)


SLIDE_OPTION = typer.Option(
    None,
    "--slide",
    callback=output_file,
    metavar="OUT.tif",
    help="Write a phantom H&E whole-slide image (pyramidal OME-TIFF) to this file, its label "
    "slide as OUT_labels.tif (0 glass, 1 tissue, 2 gland, 3 nucleus) and the glands as "
    "OUT_glands.geojson. OUT (the dataset folder) is then optional.",
)
SLIDE_SIZE_OPTION = typer.Option(
    8192, "--slide-size", min=64, max=200_000, help="Slide edge in pixels (square)."
)
MPP_OPTION = number_option(
    0.5, "--mpp", help="Microns per pixel of the slide at level 0.", parser=positive_float
)


def stain_choice(text: str) -> str:
    """``parser=`` for ``--stain``: default, shifted or a seed (an integer >= 0)."""
    value = text.strip().lower()
    if value in ("default", "shifted") or (value.isdigit() and len(value) < 10):
        return value
    raise typer.BadParameter(f"{text!r}: default, shifted or a seed (an integer >= 0)")


STAIN_OPTION = typer.Option(
    "default",
    "--stain",
    parser=stain_choice,
    metavar="default|shifted|SEED",
    help="Stain colours: default (Ruifrok H&E), shifted (another hospital) or a seed for a "
    "random shift.",
)

SLIDE_LAYOUT_OPTION = typer.Option(
    "ome",
    "--slide-layout",
    help="ome: OME-TIFF, levels as SubIFDs (QuPath, tifffile; OpenSlide sees level 0 only); "
    "pages: levels as top-level pages (OpenSlide reads every level).",
)


def register(app: typer.Typer) -> None:
    """Mount the ``phantoms`` command on the ``data`` app."""
    app.command("phantoms")(phantoms)


SITE_OPTION = typer.Option(
    None,
    "--site",
    help="Scan as a simulated hospital: a (reference), b (noisier, stronger bias field), "
    "c (lower contrast, 3x thicker slices); for federated experiments.",
)


def phantoms(
    out: Path | None = typer.Argument(
        None,
        callback=output_folder,
        help="Output dataset folder (created; must be empty unless --overwrite); optional "
        "with --slide.",
    ),
    dims: int = typer.Option(3, "--dims", min=2, max=3, help="2 or 3 spatial dimensions."),
    cases: int = typer.Option(20, "--cases", min=1, help="Number of training cases."),
    seed: int = typer.Option(0, "--seed", min=0, help="Dataset seed (same seed, same files)."),
    noise: NoiseKind = typer.Option(_DEFAULT.noise, "--noise", help="Noise model."),
    noise_std: float = NOISE_STD_OPTION,
    bias: float = BIAS_OPTION,
    streaks: float = STREAKS_OPTION,
    contrast: float = CONTRAST_OPTION,
    anisotropy: float = ANISOTROPY_OPTION,
    supersample: int | None = SUPERSAMPLE_OPTION,
    p_absent: float = P_ABSENT_OPTION,
    file_ending: Literal[".nii.gz", ".png"] = typer.Option(
        ".nii.gz", "--file-ending", help="'.png' for 2D only (8-bit, no spacing)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a phantom dataset in OUT."),
    task: PhantomTask = TASK_OPTION,
    size: Literal["default", "small", "hippocampus"] = SIZE_OPTION,
    slide: Path | None = SLIDE_OPTION,
    slide_size: int = SLIDE_SIZE_OPTION,
    mpp: float = MPP_OPTION,
    stain: str = STAIN_OPTION,
    slide_layout: Literal["ome", "pages"] = SLIDE_LAYOUT_OPTION,
    site: Literal["a", "b", "c"] | None = SITE_OPTION,
) -> None:
    """Generate a deterministic synthetic phantom dataset (or slide) with known ground truth."""
    if out is None and slide is None:
        raise typer.BadParameter("give OUT (a dataset folder) or --slide OUT.tif", param_hint="OUT")
    if slide is not None:
        _slide(
            slide,
            size=slide_size,
            mpp=mpp,
            stain=stain,
            seed=seed,
            overwrite=overwrite,
            layout=slide_layout,
        )
    if out is None:
        return
    if task != "segmentation":
        _other_task(task, out, dims=dims, cases=cases, seed=seed, overwrite=overwrite)
        return
    grid = _DEFAULT.sized(size, spatial_dims=dims)
    config = dataclasses.replace(
        grid,
        noise=noise,
        noise_std=noise_std,
        bias_strength=bias,
        streak_strength=streaks,
        contrast=contrast,
        supersample=grid.supersample if supersample is None else supersample,
        p_absent=p_absent,
    )
    if anisotropy is not None:
        config = config.with_slice_spacing(anisotropy, spatial_dims=dims)
    if site is not None:
        config = config.at_site(site, spatial_dims=dims)
    _generate(out, config, dims=dims, cases=cases, seed=seed, overwrite=overwrite,
              file_ending=file_ending)  # fmt: skip


def _generate(
    out: Path, config: Any, *, dims: int, cases: int, seed: int, overwrite: bool, file_ending: str
) -> None:
    """Write the segmentation phantoms and say what they are."""
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


def _other_task(task: str, out: Path, *, dims: int, cases: int, seed: int, overwrite: bool) -> None:
    """The phantoms of the registration, enhancement and detection tasks."""
    if task == "registration":
        from medseg.data.phantoms_registration import generate_registration_dataset as generate
    elif task == "denoise":
        from medseg.data.phantoms_denoise import generate_denoise_dataset as generate
    else:
        from medseg.data.phantoms_instances import generate_instances_dataset as generate
    start = time.perf_counter()
    generate(out, spatial_dims=dims, num_cases=cases, seed=seed, overwrite=overwrite)
    typer.echo(
        f"wrote {cases} {dims}D {task} phantom case(s) to {out} "
        f"in {time.perf_counter() - start:.1f} s"
    )


def _slide(
    path: Path, *, size: int, mpp: float, stain: str, seed: int, overwrite: bool, layout: str
) -> None:
    """``--slide``: the phantom slide, its label slide and the glands GeoJSON."""
    from medseg.data.phantoms_slide import gland_polygons, phantom_slide, write_geojson

    geojson = path.with_name(f"{path.name.split('.')[0]}_glands.geojson")
    start = time.perf_counter()
    info = phantom_slide(
        path,
        size=(size, size),
        mpp=mpp,
        stain=int(stain) if stain.isdigit() else stain,
        seed=seed,
        overwrite=overwrite,
        layout=layout,
    )
    write_geojson(geojson, gland_polygons(info), overwrite=overwrite)
    labels = ", ".join(f"{v} {name}" for name, v in info.labels.items())
    typer.echo(
        f"wrote phantom slide {info.path} ({size} x {size} px, {mpp:g} um/px, "
        f"{len(info.levels)} levels) in {time.perf_counter() - start:.1f} s\n"
        f"  labels {info.label_path} ({labels}); {info.n_glands} glands in {geojson}; "
        f"{info.n_nuclei} nuclei"
    )
