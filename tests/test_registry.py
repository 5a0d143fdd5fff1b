"""The registry: names, metadata (description, task, options) and option checking."""

from __future__ import annotations

from typing import Any

import pytest

from medseg.errors import ConfigError
from medseg.registry import Registry


class Base:
    def __init__(self, size: int, *, width: int = 1, depth: int = 2) -> None:
        self.size, self.width, self.depth = size, width, depth


class Child(Base):
    def __init__(self, size: int, *, colour: str = "red", **options: Any) -> None:
        super().__init__(size, **options)
        self.colour = colour


def make_registry() -> Registry:
    reg = Registry("widget")
    reg.register("child", description="a child widget", task="small")(Child)

    @reg.register("pair", task="big")
    def pair(first: int, *, second: int = 2) -> tuple[int, int]:
        return first, second

    @reg.register("anything")
    def anything(**options: Any) -> dict[str, Any]:
        return options

    @reg.register("strict", options=["a"])
    def strict(**options: Any) -> dict[str, Any]:
        return options

    return reg


def test_register_records_description_task_and_options() -> None:
    reg = make_registry()
    assert reg.description("child") == "a child widget" and reg.description("pair") == ""
    assert reg.task("child") == "small" and reg.task("anything") is None
    assert reg.options("pair") == ["second"]
    assert reg.options("strict") == ["a"]


def test_class_options_walk_the_mro() -> None:
    assert make_registry().options("child") == ["colour", "depth", "width"]


def test_names_are_sorted_and_filter_by_task() -> None:
    reg = make_registry()
    assert reg.names() == ["anything", "child", "pair", "strict"]
    assert reg.names(task="big") == ["pair"]
    assert reg.names(task="none of them") == []


def test_build_passes_positional_and_named_arguments() -> None:
    reg = make_registry()
    assert reg.build("pair", 1, second=3) == (1, 3)
    assert reg.build("pair", first=1) == (1, 2)
    assert reg.build("child", 4, width=5).width == 5


def test_unknown_option_names_the_valid_ones_and_the_closest() -> None:
    with pytest.raises(
        ConfigError,
        match=r"widget 'child' has no option\(s\) \['widht'\]; "
        r"valid options: colour, depth, width\. Did you mean 'width'\?",
    ):
        make_registry().build("child", 4, widht=5)


def test_explicit_options_are_checked_even_for_a_kwargs_builder() -> None:
    reg = make_registry()
    assert reg.build("strict", a=1) == {"a": 1}
    with pytest.raises(ConfigError, match=r"no option\(s\) \['b'\]"):
        reg.build("strict", b=1)
    assert reg.build("anything", b=1) == {"b": 1}  # no options= and **kwargs: unchecked


def test_unknown_name_lists_the_valid_names_and_the_closest() -> None:
    with pytest.raises(ConfigError, match="Valid names: anything, child, pair, strict.*'pair'"):
        make_registry().description("pairs")


def test_a_name_is_registered_once() -> None:
    reg = make_registry()
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("pair")(print)


def test_registry_docstring_examples_hold() -> None:
    import doctest

    import medseg.registry

    result = doctest.testmod(medseg.registry)
    assert result.attempted > 0 and result.failed == 0
