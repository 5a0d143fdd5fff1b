"""``medseg enhance``: train and apply residual U-Net denoisers and through-plane
super-resolution.

* ``medseg enhance train DATA -o RUN --noise rician:0.05 [--mode supervised|n2n]
  [--loss l1|l2|ssim|mix] [--time-budget 10m] [--epochs N] [--seed S] [--overwrite]``:
  DATA is a pairs folder (``noisy1/``, ``noisy2/``, optional ``clean/``) or a dataset folder
  whose images are taken as clean;
* ``medseg enhance train DATA -o RUN --mode super_resolution --sr-factor 4 [--sr-axis 0]``:
  learns to upsample volumes of thick slices (``sr-factor`` thin slices each, along array
  axis ``sr-axis``) from DATA's thin-slice images;
* ``medseg enhance apply -m RUN IMAGE -o OUT [--overwrite]``: denoises (same grid) or, with a
  super-resolution run, upsamples a thick-slice IMAGE onto the fine grid;
* ``medseg enhance phantoms OUT [--dims 2] [--cases 24] [--noise rician:0.05]``: a phantom
  pairs folder with clean images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from medseg.cli.options import (
    device_option,
    output_file,
    output_folder,
    time_budget_option,
)
from medseg.errors import ConfigError

app = typer.Typer(
    no_args_is_help=True,
    help="Denoising and through-plane super-resolution: train a residual U-Net (supervised, "
    "noise2noise or super_resolution), apply it, make phantoms.",
)


def noise_spec(text: str) -> str:
    """``parser=`` for ``--noise``: ``<model>:<level>``, checked and normalised."""
    from medseg.enhance.noise import parse_noise

    try:
        return str(parse_noise(text))
    except ConfigError as err:
        raise typer.BadParameter(str(err)) from None


NOISE_OPTION = typer.Option(
    "rician:0.05",
    "--noise",
    parser=noise_spec,
    metavar="MODEL:LEVEL",
    help="Noise model and level (fraction of the range): gaussian, rician, poisson_gaussian, "
    "speckle, e.g. rician:0.05.",
)


@app.command("train")
def train(
    data: Path = typer.Argument(
        ...,
        help="A pairs folder (noisy1/, noisy2/[, clean/]) or a "
        "dataset folder (images taken as clean).",
    ),
    out: Path = typer.Option(..., "--out", "-o", callback=output_folder, help="The run folder."),
    noise: str = NOISE_OPTION,
    mode: Literal["supervised", "n2n", "super_resolution"] = typer.Option(
        "supervised",
        "--mode",
        help="supervised (clean targets), n2n (noise2noise pairs) or super_resolution "
        "(thick slices in, the thin-slice image out).",
    ),
    sr_factor: int = typer.Option(
        4,
        "--sr-factor",
        min=2,
        max=16,
        help="super_resolution: thin slices per thick slice (5 for 5 mm from 1 mm data).",
    ),
    sr_axis: int = typer.Option(
        0, "--sr-axis", min=0, max=2, help="super_resolution: the slice axis (array axis)."
    ),
    loss: Literal["l1", "l2", "ssim", "mix"] = typer.Option(
        "l2", "--loss", help="l1, l2, ssim (1 - SSIM) or mix (0.84 SSIM + 0.16 L1)."
    ),
    time_budget: float | None = time_budget_option("Stop training after this long, e.g. 10m."),
    epochs: int = typer.Option(40, "--epochs", min=1, help="Epochs (a bound with a budget)."),
    steps: int = typer.Option(50, "--steps-per-epoch", min=1, help="Steps per epoch."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Crops per step."),
    val_fraction: float = typer.Option(
        0.2, "--val-fraction", min=0.0, max=0.9, help="Share of cases held out."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Split, weights, noise and crops."),
    device: str | None = device_option(),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous run in RUN."),
) -> None:
    """Train a denoiser; the best checkpoint is picked by validation PSNR."""
    from medseg.enhance import DenoiseConfig, fit_denoiser

    config = DenoiseConfig(
        noise=noise,
        mode=mode,
        loss=loss,
        epochs=epochs,
        steps_per_epoch=steps,
        batch_size=batch_size,
        val_fraction=val_fraction,
        seed=seed,
        sr_factor=sr_factor,
        sr_axis=sr_axis,
    )
    result = fit_denoiser(
        data,
        out,
        config,
        time_budget_s=time_budget,
        resume=resume,
        overwrite=overwrite,
        device=device,
    )
    what = f"x{sr_factor} along axis {sr_axis}" if mode == "super_resolution" else noise
    typer.echo(
        f"enhance train ({mode}, {loss}, {what}): {result.epochs} epoch(s), {result.steps} "
        f"steps in {result.seconds:.0f} s, best validation PSNR {result.best_metric:.2f} dB; "
        f"model in {out}"
    )


@app.command("apply")
def apply(
    image: Path = typer.Argument(
        ..., help="A noisy image file (2D or 3D), or thick slices for a super-resolution run."
    ),
    model: Path = typer.Option(..., "--model", "-m", help="An `enhance train` run folder."),
    out: Path = typer.Option(..., "--out", "-o", callback=output_file, help="The output file."),
    device: str | None = device_option(),
    mirror: bool = typer.Option(
        False, "--mirror", help="Average over flips of the spatial axes (4 passes in 2D)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
) -> None:
    """Denoise one image (same grid, same intensity units) or, with a super-resolution run,
    upsample its thick slices (the output grid has the fine spacing)."""
    from medseg.device import resolve_device
    from medseg.enhance import denoise_image, load_denoiser, super_resolve_image
    from medseg.fileutil import check_writable
    from medseg.io import read_image, write_image

    check_writable(out, overwrite=overwrite)
    network, config = load_denoiser(model)
    network.to(resolve_device(device or "cpu"))
    run = super_resolve_image if config.mode == "super_resolution" else denoise_image
    result = run(network, config, read_image(image), mirror=mirror)
    path = write_image(result, out, overwrite=overwrite)
    did = "upsampled" if config.mode == "super_resolution" else "denoised"
    typer.echo(f"{path}: {did} {image.name} ({'x'.join(map(str, result.spatial_shape))})")


@app.command("phantoms")
def phantoms(
    out: Path = typer.Argument(..., callback=output_folder, help="The folder to write."),
    dims: int = typer.Option(2, "--dims", min=2, max=3, help="2 or 3."),
    cases: int = typer.Option(24, "--cases", min=1, help="Number of cases."),
    noise: str = NOISE_OPTION,
    seed: int = typer.Option(0, "--seed", min=0, help="Dataset seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous phantom."),
) -> None:
    """Write clean phantoms and two independent noisy copies of each (a pairs folder)."""
    from medseg.data.phantoms_denoise import generate_denoise_dataset

    root = generate_denoise_dataset(
        out, spatial_dims=dims, num_cases=cases, seed=seed, noise=noise, overwrite=overwrite
    )
    typer.echo(f"{root}: {cases} {dims}D denoising phantoms ({noise}): clean/, noisy1/, noisy2/")


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="enhance", help=app.info.help)
