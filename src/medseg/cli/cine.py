"""``medseg data frame | cine-phantoms | cine-to-frames``: time series (cine MRI, 4D CT).

See ``docs/time_series.md``: pick one frame of a 4D file, write beating-heart phantoms, and
turn a time-axis dataset into per-frame cases with neighbouring frames as channels (the
temporal training mode: ``medseg plan / preprocess / train`` then run on that folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from medseg.cli.options import non_negative_float, number_option, output_file, output_folder

FRAME_INTERVAL_OPTION = number_option(
    None,
    "--frame-interval",
    help="Seconds between frames, for 4D files whose header has none (e.g. 0.04).",
)
SHAPES = {2: ((96, 96), (1.5, 1.5)), 3: ((10, 64, 64), (6.0, 1.5, 1.5))}


def register(app: typer.Typer) -> None:
    """Mount ``frame``, ``cine-phantoms`` and ``cine-to-frames`` on the ``data`` app."""
    app.command("frame")(frame)
    app.command("cine-phantoms")(cine_phantoms)
    app.command("cine-to-frames")(cine_to_frames)


def frame(
    image: Path = typer.Argument(..., exists=True, help="A 4D time series (NIfTI, NRRD, MHA)."),
    t: int = typer.Option(0, "--t", min=0, help="Frame index (0 = first)."),
    output: Path = typer.Option(
        ..., "--output", "-o", callback=output_file, help="Where to write the frame."
    ),
    frame_interval: float | None = FRAME_INTERVAL_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
) -> None:
    """Write frame T of a 4D image as a 3D (or 2D) image on the same grid."""
    from medseg.io.formats import write_image
    from medseg.io.time_axis import read_time_series

    series = read_time_series(image, frame_interval=frame_interval)
    write_image(series.frame(t), output, overwrite=overwrite)
    typer.echo(
        f"wrote {output}: frame {t} of {series.num_frames} "
        f"({t * series.time_interval:.4g} s), shape {series.spatial_shape}"
    )


def cine_phantoms(
    out: Path = typer.Argument(
        ..., callback=output_folder, help="Output dataset folder (empty unless --overwrite)."
    ),
    cases: int = typer.Option(6, "--cases", min=1, help="Number of cine series."),
    frames: int = typer.Option(20, "--frames", min=4, help="Frames per series."),
    dims: int = typer.Option(3, "--dims", min=2, max=3, help="2 (2D+t) or 3 (3D+t)."),
    noise_std: float = number_option(
        0.25, "--noise-std", help="Gaussian noise std (blood 1.0).", parser=non_negative_float
    ),
    labelled_frames: Literal["all", "ed_es"] = typer.Option(
        "all", "--labelled-frames", help="all frames, or ED and ES only (ACDC-style)."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Dataset seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a phantom dataset."),
) -> None:
    """Write beating-LV cine phantoms (4D NIfTI images + labels, cine.json with the truth)."""
    from medseg.data.phantoms_cine import write_cine_dataset

    shape, spacing = SHAPES[dims]
    write_cine_dataset(
        out,
        num_cases=cases,
        frames=frames,
        shape=shape,
        spacing=spacing,
        noise_std=noise_std,
        labelled_frames=labelled_frames,
        seed=seed,
        overwrite=overwrite,
    )
    typer.echo(
        f"wrote {out}: {cases} {dims}D+t series of {frames} frames, shape {shape}, spacing "
        f"{spacing} mm, labels at {labelled_frames} frames; truth (ED/ES, volumes, EF) in "
        f"{out / 'cine.json'}"
    )


def cine_to_frames(
    dataset: Path = typer.Argument(
        ..., exists=True, file_okay=False, help="A time-axis dataset (one 4D image per case)."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", callback=output_folder, help="The per-frame dataset to write."
    ),
    context: int = typer.Option(
        1, "--context", "-k", min=0, max=8, help="Neighbours each side: channels t-k..t+k."
    ),
    cyclic: bool = typer.Option(
        True, "--cyclic/--no-cyclic", help="Wrap neighbours around the cycle (cine)."
    ),
    frame_interval: float | None = FRAME_INTERVAL_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty folder."),
) -> None:
    """Per-frame cases with 2k+1 context channels, for plan / preprocess / train."""
    from medseg.data.dataset import load_dataset
    from medseg.data.temporal import cine_to_frames as convert

    convert(
        dataset,
        out,
        context=context,
        cyclic=cyclic,
        frame_interval=frame_interval,
        overwrite=overwrite,
    )
    cases = len(load_dataset(out).cases)
    typer.echo(
        f"wrote {out}: {cases} labelled frame(s) as cases with {2 * context + 1} channel(s); "
        f"next: medseg plan {out} -o RESULTS"
    )
