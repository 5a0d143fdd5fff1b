"""Frozen dataclasses <-> readable JSON dicts, for every plan and config medseg saves.

One rule for all of them (``Plan``, ``ClassifierConfig``): tuples are written as JSON lists and
read back as tuples, unknown keys are an error naming them and the valid ones, a missing
required key is an error naming the file, and a ``schema_version`` newer than this medseg's
is refused.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, TypeVar

from medseg.errors import ConfigError

T = TypeVar("T")


def config_to_dict(config: Any) -> dict[str, Any]:
    """The dataclass as a JSON-ready dict (tuples as lists, nested dicts copied).

    Example:
        >>> from medseg.planning.classifier import ClassifierConfig
        >>> config_to_dict(ClassifierConfig("lenet5", 2, 1, 2, (28, 28)))["image_shape"]
        [28, 28]
    """
    return _lists(asdict(config))


def json_values(value: Any) -> Any:
    """``value`` with every tuple turned into a list (recursively), as JSON would give it back;
    plans keep their free-form dicts (``network_config``) in this form so they compare equal
    after a round trip."""
    return _lists(value)


def _lists(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value


def config_from_dict(
    cls: type[T], data: dict[str, Any], *, source: str, kind: str, schema_version: int | None = None
) -> T:
    """Build ``cls`` from a dict read from JSON or a checkpoint.

    Args:
        cls: a dataclass.
        data: its fields (lists are turned back into tuples where the field is a tuple).
        source: the file it came from, for messages.
        kind: what it is ("plan", "classifier config"), for messages.
        schema_version: this medseg's schema version of ``cls`` (a newer one is refused).

    Raises:
        ConfigError: not a dict, unknown or missing keys, a newer schema, or invalid values.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the {kind} must be a JSON object, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown {kind} key(s) {unknown}; valid keys: {sorted(known)}")
    if schema_version is not None and data.get("schema_version", schema_version) > schema_version:
        raise ConfigError(
            f"{source}: {kind} schema {data['schema_version']} is newer than this medseg's "
            f"({schema_version}); update medseg"
        )
    values = {
        k: tuple(_tuples(v) for v in value)
        if str(known[k].type).startswith("tuple") and isinstance(value, list)
        else value
        for k, value in data.items()
    }
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(f"{source}: incomplete {kind} ({err})") from None


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
