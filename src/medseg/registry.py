"""Registries of named builders (networks, losses, metrics, transforms, optimisers).

Registration is explicit: each package imports its modules in ``__init__`` and registers the
builders, each with a one-line description and, where it matters, the task it serves. An
unknown name raises ``ConfigError`` listing the valid names and the closest match; an unknown
option raises ``ConfigError`` listing the valid options.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from medseg.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry:
    """One registered builder with its metadata."""

    builder: Callable[..., Any]
    description: str = ""
    task: str | None = None
    options: tuple[str, ...] | None = None  # None: read them from the signature


def _closest(name: str, names: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def _parameters(function: Callable[..., Any]) -> Iterable[inspect.Parameter]:
    try:
        return inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature
        return ()


def _keyword_only(builder: Callable[..., Any]) -> list[str]:
    """The keyword-only parameters of a function, or of every ``__init__`` along a class's
    MRO (so a subclass taking ``**options`` offers its bases' options)."""
    if inspect.isclass(builder):
        functions = [cls.__init__ for cls in inspect.getmro(builder)]
    else:
        functions = [builder]
    names = {p.name for f in functions for p in _parameters(f) if p.kind is p.KEYWORD_ONLY}
    return sorted(names)


class Registry:
    """A name -> builder mapping with a description, a task and the options of each builder.

    Example:
        >>> LOSSES = Registry("loss")
        >>> @LOSSES.register("l1", description="mean absolute error", task="regression")
        ... def l1(*, reduction="mean"): return f"l1 ({reduction})"
        >>> LOSSES.build("l1", reduction="sum")
        'l1 (sum)'
        >>> LOSSES.options("l1"), LOSSES.description("l1"), LOSSES.names(task="regression")
        (['reduction'], 'mean absolute error', ['l1'])
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(
        self,
        name: str,
        *,
        description: str = "",
        task: str | None = None,
        options: Iterable[str] | None = None,
    ) -> Callable[[F], F]:
        """A decorator that registers a builder (a function or a class) under ``name``.

        Also usable as ``REG.register("x", description="...")(builder)``.

        Args:
            name: the registry name (unique).
            description: one line for listings and docs.
            task: what the builder serves (e.g. ``"segmentation"``), or None.
            options: the keyword options the builder accepts, when its signature cannot
                tell (it takes ``**kwargs``); by default its keyword-only parameters (for a
                class, those of every ``__init__`` along its MRO).

        Returns:
            The decorator; it returns the builder unchanged.

        Raises:
            ValueError: when ``name`` is registered twice.
        """
        fixed = None if options is None else tuple(sorted(options))

        def decorator(builder: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = Entry(builder, description, task, fixed)
            return builder

        return decorator

    def entry(self, name: str) -> Entry:
        """The registered entry; ``ConfigError`` listing the valid names for an unknown one."""
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.kind} '{name}'. Valid names: {', '.join(self.names())}."
                + _closest(name, self._entries)
            )
        return self._entries[name]

    def get(self, name: str) -> Callable[..., Any]:
        """The builder registered as ``name`` (``ConfigError`` for an unknown name)."""
        return self.entry(name).builder

    def options(self, name: str) -> list[str]:
        """The keyword options ``name`` accepts, sorted.

        Example:
            >>> REG = Registry("thing")
            >>> _ = REG.register("pair")(lambda first, *, size=1, fill=0: (first, size, fill))
            >>> REG.options("pair")
            ['fill', 'size']
        """
        entry = self.entry(name)
        if entry.options is not None:
            return list(entry.options)
        return _keyword_only(entry.builder)

    def description(self, name: str) -> str:
        """The one-line description given at registration ("" when none)."""
        return self.entry(name).description

    def task(self, name: str) -> str | None:
        """The task given at registration, or None."""
        return self.entry(name).task

    def names(self, task: str | None = None) -> list[str]:
        """Registered names, sorted: all of them, or those registered with ``task``."""
        return sorted(n for n, e in self._entries.items() if task is None or e.task == task)

    def check_options(self, name: str, options: Iterable[str]) -> None:
        """Raise ``ConfigError`` naming the options ``name`` does not accept and the valid ones.

        The builder's named parameters (e.g. ``spatial_dims``) may also be passed by keyword.
        A builder that takes ``**kwargs`` and was registered without ``options=`` accepts
        anything.
        """
        entry = self.entry(name)
        valid = self.options(name)
        params = list(_parameters(entry.builder))
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
        if takes_any and entry.options is None and not inspect.isclass(entry.builder):
            return
        allowed = set(valid) | {p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ConfigError(
                f"{self.kind} '{name}' has no option(s) {unknown}; valid options: "
                f"{', '.join(valid) or '(none)'}.{_closest(unknown[0], valid)}"
            )

    def build(self, name: str, *args: Any, **options: Any) -> Any:
        """Call the builder registered as ``name`` after checking the keyword options.

        Args:
            name: a registered name.
            *args: positional arguments, passed on unchecked.
            **options: keyword options (see :meth:`options`).

        Returns:
            What the builder returns.

        Raises:
            ConfigError: for an unknown name or option, naming the valid ones and the closest.
        """
        self.check_options(name, options)
        return self.get(name)(*args, **options)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
