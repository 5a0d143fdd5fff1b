"""Options of ``medseg train`` beyond the basics: starting from another model, keeping the
validation softmax, weight EMA and learning-rate warm-up (module constants, so the command
stays readable)."""

from __future__ import annotations

import typer

from medseg.cli import options

PRETRAINED_OPTION = typer.Option(
    None,
    "--pretrained",
    help="Start from this medseg checkpoint (another dataset or configuration) or state dict: "
    "matching layers are copied, layers of another shape re-initialised and named.",
)
FREEZE_OPTION = typer.Option(
    "none",
    "--freeze",
    callback=options.one_of("--freeze", ("none", "encoder")),
    help="none, or encoder: train the decoder only (with --pretrained).",
)
MAP_OPTION = typer.Option(
    [],
    "--map",
    metavar="OLD=NEW",
    help="Rename a prefix of --pretrained's layer names "
    "(repeatable), e.g. module.= for a DataParallel file.",
)

SAVE_PROBABILITIES_OPTION = typer.Option(
    False,
    "--save-probabilities",
    help="Keep the validation softmax (validation/probabilities/), for 'medseg crossval --crf'.",
)
EMA_DECAY_OPTION = typer.Option(
    0.0,
    "--ema-decay",
    min=0.0,
    max=0.9999,
    help="Validate, save and predict with an exponential moving average of the weights "
    "(e.g. 0.99); 0: off.",
)
WARMUP_STEPS_OPTION = typer.Option(
    0, "--warmup-steps", min=0, help="Ramp the learning rate up linearly over N steps first."
)
