"""Registries of named builders (networks, losses, metrics, transforms).

Registration is explicit: each package imports its modules in ``__init__`` and decorates the
builder functions. An unknown name raises ``ConfigError`` listing the valid names and the
closest match.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, TypeVar

from medseg.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


class Registry:
    """A name -> builder mapping.

    Example:
        >>> LOSSES = Registry("loss")
        >>> @LOSSES.register("l1")
        ... def l1(**kw): return "built"
        >>> LOSSES.build("l1")
        'built'
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._builders: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def decorator(builder: F) -> F:
            if name in self._builders:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._builders[name] = builder
            return builder

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._builders:
            close = difflib.get_close_matches(name, self._builders, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"unknown {self.kind} '{name}'. Valid names: {', '.join(sorted(self._builders))}.{hint}"
            )
        return self._builders[name]

    def build(self, name: str, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders
