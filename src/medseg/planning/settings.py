"""``medseg plan --set KEY=VALUE``: any plan field the data do not fix, or an option of the
plan's network or loss (``network_config.OPTION``, ``loss_config.OPTION``), type-checked
against the :class:`~medseg.planning.plan.Plan` field."""

from __future__ import annotations

import json
import types
import typing
from dataclasses import fields, replace
from typing import Any

from medseg.errors import ConfigError
from medseg.losses.registry import loss_options
from medseg.nets.registry import network_options
from medseg.planning.plan import Plan

#: Plan fields ``--set`` may not change: they describe the data, or are set by other options.
FIXED_FIELDS = (
    "configuration",
    "spatial_dims",
    "labels",
    "intensity",
    "reasons",
    "schema_version",
    "variant",
    "previous_stage",
    "data_configuration",
    "in_channels",
    "num_classes",
    "median_shape",
    "ignore_label",
    "histogram_landmarks",
    "n4_channels",
    "stain_normalizer",
)


def apply_setting(plan: Plan, text: str) -> Plan:
    """``plan`` with one ``KEY=VALUE`` applied (``--set``): a plan field, or
    ``network_config.OPTION`` / ``loss_config.OPTION``. The value is JSON where it parses
    (``4``, ``0.3``, ``[64, 64]``, ``true``, ``null``), else a string.

    Raises:
        ConfigError: no ``=``, an unknown or fixed key, an unknown option, a wrong type.
    """
    key, value = parse_setting(text)
    if key.startswith(("network_config.", "loss_config.")):
        group, option = key.split(".", 1)
        valid = network_options(plan.network) if group == "network_config" else None
        if valid is None:
            valid = loss_options(plan.loss)
        if option not in valid:
            owner = plan.network if group == "network_config" else plan.loss
            raise ConfigError(
                f"--set {key}: {owner} has no option '{option}'; valid: {', '.join(valid)}"
            )
        return replace(plan, **{group: {**getattr(plan, group), option: value}})
    return replace(plan, **{key: typed_value(key, value, settable_type(key))})


def parse_setting(text: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> ``(key, JSON value or the text)``."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def settable_type(key: str) -> Any:
    """The type of the plan field ``key``, which ``--set`` may change."""
    settable = sorted(f.name for f in fields(Plan) if f.name not in FIXED_FIELDS)
    if key not in settable:
        raise ConfigError(
            f"--set: unknown plan key '{key}'; valid: {', '.join(settable)}, "
            "network_config.OPTION, loss_config.OPTION"
        )
    return typing.get_type_hints(Plan)[key]


def typed_value(key: str, value: Any, hint: Any) -> Any:
    """``value`` checked against the field's type (ints widen to floats)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return typed_value(key, value, inner[0])
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"--set {key}: expected a list like [1, 2], got {value!r}")
        return tuple(typed_value(key, v, args[0]) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"--set {key}: expected a JSON object, got {value!r}")
        return value
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    raise ConfigError(f"--set {key}: expected {hint.__name__}, got {value!r}")
