"""Validators shared by the CLI commands: a bad value stops at parse time.

Typer reports a ``typer.BadParameter`` as a usage error (exit code 2): one line naming the
option, e.g. ``Invalid value for '--overlap': must be in [0, 1), got 1.0``, no traceback.

How each kind of value is checked:

* integers: typer's ``min=`` / ``max=`` (``min=1`` for counts, ``min=0`` for seeds);
* a fixed set of names: a ``Literal`` (its values show in ``--help``), e.g. :data:`Checkpoint`;
  a plan name (a configuration or ``<configuration>-<variant>``): ``parser=`` :func:`plan_name`
  (one) or ``callback=`` :func:`configurations` (comma-separated);
* other text: ``parser=`` one of the functions below (text -> value), e.g.
  ``typer.Option(None, "--time-budget", parser=duration, metavar="DURATION")``;
* paths (typer converts them first): ``callback=`` :func:`output_folder` or :func:`output_file`.

Whether a path exists, a plan is in ``plans.json``, a fold exists in the splits or a network
suits the data is checked later, by the function the command calls, with a ``MedsegError``
(one line, exit code 1).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

import typer

from medseg.errors import ConfigError

#: The planned configurations (``medseg.planning.plan.CONFIGURATIONS``).
Configuration = Literal["2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"]
#: A variant's name (``medseg.planning.plan.VARIANT_NAME``): its plan is ``<configuration>-<name>``.
VARIANT_NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,31}")
#: Which checkpoint of a fold to load.
Checkpoint = Literal["best", "latest"]
#: The splits of a classification dataset (``medseg.data.classification.SPLITS``).
Split = Literal["train", "val", "test"]

DEVICE_HELP = "auto, cpu, cuda or cuda:N (default: cuda when available)."
_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
_FOLD = re.compile(r"all|\d+")
_PLAN_NAMES = (
    f"use {', '.join(get_args(Configuration))} or a variant <configuration>-<variant> "
    "(e.g. 2d-attn)"
)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number") from None


def positive_float(text: str) -> float:
    """A finite number > 0 (a learning rate, a memory budget in GB).

    Example:
        >>> positive_float("1e-3")
        0.001
    """
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"must be a finite number > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a noise level, a tolerance in mm)."""
    value = _number(text)
    if not (math.isfinite(value) and value >= 0):
        raise typer.BadParameter(f"must be a finite number >= 0, got {text}")
    return value


def probability(text: str) -> float:
    """A number in [0, 1]."""
    value = _number(text)
    if not 0 <= value <= 1:  # False for NaN
        raise typer.BadParameter(f"must be in [0, 1], got {text}")
    return value


def overlap(text: str) -> float:
    """A sliding-window overlap in [0, 1) (1 would never move the window)."""
    value = _number(text)
    if not 0 <= value < 1:
        raise typer.BadParameter(f"must be in [0, 1), got {text}")
    return value


def parse_duration(text: str | None) -> float | None:
    """'90s', '20m', '1.5h' or plain seconds -> seconds, finite and > 0 (None stays None).

    Raises:
        ConfigError: not a duration, or not finite and > 0.

    Example:
        >>> parse_duration("20m"), parse_duration("90"), parse_duration(None)
        (1200.0, 90.0, None)
    """
    if text is None:
        return None
    clean = text.strip().lower()
    scale = _DURATION_UNITS.get(clean[-1:], 1.0)
    number = clean[:-1] if clean[-1:] in _DURATION_UNITS else clean
    try:
        seconds = float(number) * scale
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(
            f"duration must be > 0 like 90s, 20m or 1.5h (plain numbers are seconds), got {text!r}"
        )
    return seconds


def duration(text: str) -> float:
    """``parser=`` for a time budget: :func:`parse_duration` as a usage error."""
    try:
        return parse_duration(text)  # type: ignore[return-value]  # text is not None
    except ConfigError as err:
        raise typer.BadParameter(str(err)) from None


def fold(text: str) -> str:
    """A fold: a non-negative integer or ``all`` (returned as text, e.g. ``"3"``)."""
    clean = text.strip().lower()
    if not _FOLD.fullmatch(clean):
        raise typer.BadParameter(f"must be a fold number >= 0 or 'all', got {text!r}")
    return clean if clean == "all" else str(int(clean))


def folds(text: str | None) -> str | None:
    """``callback=`` for comma-separated folds, e.g. ``0,1`` (None stays None)."""
    if text is None:
        return None
    return ",".join(fold(item) for item in _items(text, "folds, e.g. 0,1"))


def plan_name(text: str) -> str:
    """A plan name: a configuration (``2d``, ``3d_fullres``, ``3d_lowres``,
    ``3d_cascade_fullres``) or a variant of one, ``<configuration>-<variant>`` (``2d-attn``:
    ``medseg plan --variant``). Whether ``plans.json`` has it is checked by the command.

    Example:
        >>> plan_name("2d-attn")
        '2d-attn'
    """
    clean = text.strip()
    configuration, dash, variant = clean.partition("-")
    if configuration in get_args(Configuration) and (not dash or VARIANT_NAME.fullmatch(variant)):
        return clean
    raise typer.BadParameter(f"unknown configuration {text!r}; {_PLAN_NAMES}")


def configurations(text: str | None) -> str | None:
    """``callback=`` for comma-separated plan names (:func:`plan_name`), e.g.
    ``2d,3d_fullres`` or ``2d,2d-attn`` (None stays None)."""
    if text is None:
        return None
    items = _items(text, "configurations, e.g. 2d,3d_fullres")
    unknown = []
    for item in items:
        try:
            plan_name(item)
        except typer.BadParameter:
            unknown.append(item)
    if unknown:
        raise typer.BadParameter(f"unknown configuration(s) {', '.join(unknown)}; {_PLAN_NAMES}")
    return ",".join(items)


def mirror_axes(text: str | None) -> str | None:
    """``callback=`` for ``--mirror-axes``: comma-separated image axes (``0,1``), ``none`` or
    ``all`` (None stays None); whether the images have those axes is checked by ``plan``."""
    if text is None:
        return None
    clean = text.strip().lower()
    if clean in ("none", "all"):
        return clean
    items = _items(clean, "axes like 0,1, or none, or all")
    if not all(item.isdigit() for item in items):
        raise typer.BadParameter(f"expected axes like 0,1 (>= 0), none or all, got {text!r}")
    return ",".join(items)


def mirror_axes_value(text: str | None) -> tuple[int, ...] | str | None:
    """:func:`mirror_axes`'s text as ``PlanChoices.mirror_axes``: ``"all"``, ``()`` for
    ``none``, a tuple of axes, or None."""
    if text is None or text == "all":
        return text
    return tuple(int(a) for a in text.split(",") if a != "none")


def device(text: str) -> str:
    """A device name: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (whether CUDA is there is
    checked when the device is used)."""
    clean = text.strip().lower()
    if not _DEVICE.fullmatch(clean):
        raise typer.BadParameter(f"must be auto, cpu, cuda or cuda:N, got {text!r}")
    return clean


def json_object(text: str) -> dict[str, Any]:
    """A JSON object, e.g. ``'{"dropout": 0.2}'``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise typer.BadParameter(
            f"must be a JSON object like '{{\"dropout\": 0.2}}' ({err.msg})"
        ) from None
    if not isinstance(value, dict):
        raise typer.BadParameter(f"must be a JSON object like '{{\"dropout\": 0.2}}', got {text}")
    return value


def output_folder(value: Path | None) -> Path | None:
    """``callback=`` for a folder the command creates or fills: not an existing file."""
    if value is not None and value.exists() and not value.is_dir():
        raise typer.BadParameter(f"{value} is an existing file; give a folder (created if missing)")
    return value


def output_file(value: Path | None) -> Path | None:
    """``callback=`` for a file the command writes: not an existing folder."""
    if value is not None and value.is_dir():
        raise typer.BadParameter(f"{value} is a folder; give a file name")
    return value


def one_of(flag: str, valid: tuple[str, ...]) -> Callable[[str], str]:
    """``callback=`` accepting one of ``valid`` (else a one-line usage error naming them)."""

    def check(value: str) -> str:
        if value not in valid:
            raise typer.BadParameter(f"{flag} {value!r}: one of {', '.join(valid)}")
        return value

    return check


def _items(text: str, what: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise typer.BadParameter(f"expected comma-separated {what}, got {text!r}")
    return items


# ---------------------------------------------------------------- options checked by a parser


def plan_name_option(default: str | None, help: str) -> Any:
    """``--config``/``-c``: a configuration or ``<configuration>-<variant>`` (:func:`plan_name`;
    whether it is planned is checked by the command)."""
    return typer.Option(default, "--config", "-c", parser=plan_name, metavar="CONFIG", help=help)


def device_option(help: str = DEVICE_HELP) -> Any:
    """``--device``: auto, cpu, cuda or cuda:N (default None: CUDA when available)."""
    return typer.Option(None, "--device", parser=device, metavar="DEVICE", help=help)


def time_budget_option(help: str) -> Any:
    """``--time-budget``: a duration such as ``20m`` (default None: no budget)."""
    return typer.Option(None, "--time-budget", parser=duration, metavar="DURATION", help=help)


def number_option(
    default: float | None,
    *flags: str,
    help: str,
    parser: Callable[[str], float] = positive_float,
    metavar: str = "FLOAT",
) -> Any:
    """A number checked by ``parser`` (default: finite and > 0) when the command is parsed."""
    return typer.Option(default, *flags, parser=parser, metavar=metavar, help=help)
