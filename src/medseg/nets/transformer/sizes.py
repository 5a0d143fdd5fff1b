"""Input-size checks of the transformer networks: a refusal that names the valid sizes."""

from __future__ import annotations

from collections.abc import Sequence

from medseg.errors import ConfigError


class InputSizeError(ConfigError, ValueError):
    """An input whose spatial size the network cannot take. A :class:`ConfigError` (the user
    chose the patch) that is also a ``ValueError``, as the other networks' size refusals."""


def nearest_valid_sizes(size: int, divisor: int) -> list[int]:
    """The multiples of ``divisor`` nearest to ``size`` (``[size]`` when it is one).

    Example:
        >>> nearest_valid_sizes(30, 16), nearest_valid_sizes(32, 16), nearest_valid_sizes(5, 16)
        ([16, 32], [32], [16])
    """
    if size % divisor == 0:
        return [size]
    return sorted({max(divisor, size // divisor * divisor), size // divisor * divisor + divisor})


def check_input_size(
    spatial_shape: Sequence[int],
    divisor: Sequence[int],
    *,
    rule: str = "",
    error: type[InputSizeError] = InputSizeError,
) -> None:
    """Refuse an input not divisible by ``divisor``, naming the nearest valid sizes.

    Args:
        rule: where the divisor comes from, added to the message (e.g. ``patch * 2^3``).
        error: the exception class raised (a subclass of :class:`InputSizeError`).

    Raises:
        InputSizeError: e.g. "input spatial shape (30, 32) must be divisible by (16, 16) for
            this network; nearest valid sizes per axis: [[16, 32], [32]]".

    Example:
        >>> check_input_size((32, 48), (16, 16))
        >>> check_input_size((30, 32), (16, 16))
        Traceback (most recent call last):
        ...
        medseg.nets.transformer.sizes.InputSizeError: input spatial shape (30, 32) must be \
divisible by (16, 16) for this network; nearest valid sizes per axis: [[16, 32], [32]] \
(pad or crop the input, or change the plan's patch size)
    """
    shape = tuple(int(n) for n in spatial_shape)
    divisor = tuple(int(d) for d in divisor)
    if len(shape) == len(divisor) and not any(n % d for n, d in zip(shape, divisor, strict=True)):
        return
    if len(shape) != len(divisor):
        raise error(
            f"input spatial shape {shape} has {len(shape)} axes, the network expects "
            f"{len(divisor)} (sizes divisible by {divisor})"
        )
    nearest = [nearest_valid_sizes(n, d) for n, d in zip(shape, divisor, strict=True)]
    why = f" ({rule})" if rule else ""
    raise error(
        f"input spatial shape {shape} must be divisible by {divisor}{why} for this network; "
        f"nearest valid sizes per axis: {nearest} (pad or crop the input, or change the "
        "plan's patch size)"
    )
