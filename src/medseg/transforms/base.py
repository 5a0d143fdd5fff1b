"""The transform protocol, ``Compose``, and the helpers every random transform shares.

Every transform is called the same way on batched tensors, on whatever device they live::

    image, label = transform(image, label)          # label may be None

``image`` is ``(B, C, *spatial)`` floating point, ``label`` ``(B, 1, *spatial)`` (any integer
or float dtype; its values are never interpolated). 2-D (``*spatial = (y, x)``) and 3-D
(``(z, y, x)``) batches take the same code path. Inputs are never modified in place; a
transform that applies to no sample returns its inputs unchanged.

Randomness: a random transform decides per sample whether it applies (probability ``p``),
samples that sample's parameters on a CPU ``torch.Generator`` and then calls a deterministic
function. The generator is the one passed to the call (``Compose`` passes its own to each
child), else the transform's own, seeded with ``seed`` (``None``: a fresh random seed). The
same seed and the same input therefore always give the same output. Samples whose sampled
parameters are the identity are left bit-for-bit unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

LabelOrNone = Tensor | None


def check_batch(image: Tensor, label: LabelOrNone) -> None:
    """Raise ``ValueError`` unless ``image``/``label`` are a valid 2-D or 3-D batch.

    Args:
        image: ``(B, C, *spatial)`` floating-point tensor, 2 or 3 spatial axes.
        label: ``(B, 1, *spatial)`` tensor on the same grid, or None.
    """
    if not isinstance(image, Tensor) or image.ndim not in (4, 5):
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(
            f"image must be a (B, C, *spatial) tensor with 2 or 3 spatial axes, got {shape}"
        )
    if not image.is_floating_point():
        raise ValueError(f"image must be floating point, got {image.dtype}; convert with .float()")
    if label is None:
        return
    if not isinstance(label, Tensor) or label.ndim != image.ndim or label.shape[1] != 1:
        shape = tuple(label.shape) if isinstance(label, Tensor) else type(label).__name__
        raise ValueError(f"label must be a (B, 1, *spatial) tensor, got {shape}")
    if label.shape[0] != image.shape[0] or label.shape[2:] != image.shape[2:]:
        raise ValueError(
            f"label {tuple(label.shape)} does not match image {tuple(image.shape)} in batch size "
            "or spatial shape"
        )


def check_probability(name: str, value: float) -> float:
    """Return ``value`` as float if it lies in [0, 1], else raise ``ValueError``."""
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    return float(value)


def check_range(
    name: str, value: Sequence[float], *, low: float | None = None
) -> tuple[float, float]:
    """Return ``(lo, hi)`` with ``lo <= hi`` (and ``lo >= low`` if given), else raise."""
    if len(value) != 2 or float(value[0]) > float(value[1]):
        raise ValueError(f"{name} must be a (low, high) range with low <= high, got {value}")
    if low is not None and float(value[0]) < low:
        raise ValueError(f"{name} must not go below {low}, got {value}")
    return float(value[0]), float(value[1])


def new_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with ``seed``, or with a fresh random seed when None."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    return generator


def device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on ``device`` for large random fields, derived from the CPU ``generator``.

    On CPU this is ``generator`` itself; elsewhere a new device generator is seeded from one
    draw of ``generator``, so runs stay repeatable without copying noise across devices.
    """
    if device.type == "cpu":
        return generator
    seeded = torch.Generator(device=device)
    seeded.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
    return seeded


def uniform(shape: Sequence[int], low: float, high: float, generator: torch.Generator) -> Tensor:
    """``shape`` float64 CPU samples from U(low, high) (exactly ``low`` when low == high)."""
    return low + (high - low) * torch.rand(tuple(shape), generator=generator, dtype=torch.float64)


def bernoulli(shape: Sequence[int], p: float, generator: torch.Generator) -> Tensor:
    """Bool CPU tensor, True with probability ``p`` (never for 0, always for 1)."""
    return torch.rand(tuple(shape), generator=generator, dtype=torch.float64) < p


def expand_to(values: Tensor, image: Tensor) -> Tensor:
    """Reshape ``(B, C)`` or ``(B, 1)`` per-sample values to broadcast against ``image``."""
    return values.to(device=image.device, dtype=image.dtype).view(
        *values.shape, *([1] * (image.ndim - 2))
    )


def apply_to_selected(
    image: Tensor, selected: Tensor, function: Callable[[Tensor, Tensor], Tensor]
) -> Tensor:
    """Apply ``function`` only to the selected samples and channels of ``image``.

    Args:
        image: ``(B, C, *spatial)``.
        selected: ``(B, C)`` bool (CPU); channels not selected keep their input values exactly.
        function: ``function(sub_image, rows)`` returns the transformed ``(b, C, *spatial)``
            for ``sub_image = image[rows]``, where ``rows`` is the ``(B,)`` bool mask of
            samples with at least one selected channel.

    Returns:
        A new tensor, or ``image`` itself when nothing is selected.
    """
    rows = selected.any(dim=1)
    if not bool(rows.any()):
        return image
    rows_dev = rows.to(image.device)
    sub = image[rows_dev] if not bool(rows.all()) else image
    result = function(sub, rows)
    chosen = selected[rows]
    if not bool(chosen.all()):
        keep = chosen.to(image.device).view(*chosen.shape, *([1] * (image.ndim - 2)))
        result = torch.where(keep, result, sub)
    if bool(rows.all()):
        return result
    out = image.clone()
    out[rows_dev] = result
    return out


class Transform:
    """Base class: holds options and a generator; subclasses implement ``apply``.

    Args:
        p: probability that the transform applies to each sample (0 never, 1 always).
        seed: seed of the transform's own generator; None draws a fresh random seed.
    """

    def __init__(self, *, p: float = 1.0, seed: int | None = None) -> None:
        self.p = check_probability("p", p)
        self.generator = new_generator(seed)

    def __getstate__(self) -> dict[str, object]:
        # the generator travels as plain bytes: torch's multiprocessing pickler would share its
        # state tensor through a file descriptor, which breaks "spawn" data-loader workers
        state = self.__dict__.copy()
        state["generator"] = self.generator.get_state().numpy().tobytes()
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        generator = torch.Generator()
        generator.set_state(torch.frombuffer(bytearray(state["generator"]), dtype=torch.uint8))  # type: ignore[arg-type]
        self.__dict__.update({**state, "generator": generator})

    def reseed(self, seed: int) -> None:
        """Reset the transform's own generator (e.g. once per data-loader worker)."""
        self.generator.manual_seed(int(seed))

    def __call__(
        self, image: Tensor, label: LabelOrNone = None, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, LabelOrNone]:
        """Transform a batch.

        Args:
            image: ``(B, C, *spatial)`` floating point.
            label: ``(B, 1, *spatial)`` or None.
            generator: CPU generator to draw parameters from; default the transform's own.

        Returns:
            ``(image, label)`` with the same shapes (unless the transform sets an output size),
            dtypes and device; ``label`` is None when it was None.
        """
        check_batch(image, label)
        return self.apply(image, label, generator if generator is not None else self.generator)

    def apply(
        self, image: Tensor, label: LabelOrNone, generator: torch.Generator
    ) -> tuple[Tensor, LabelOrNone]:
        raise NotImplementedError

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "generator")
        return f"{type(self).__name__}({options})"


class Compose(Transform):
    """Apply transforms in order, drawing all parameters from one generator.

    Args:
        transforms: the transforms, applied first to last.
        seed: seed of the shared generator (None: random). It overrides the children's own
            generators, so one seed makes the whole pipeline repeatable.

    Example:
        >>> from medseg.transforms import RandomFlip
        >>> pipeline = Compose([RandomFlip(p=1.0)], seed=0)
        >>> image, label = pipeline(torch.zeros(2, 1, 4, 4), None)
        >>> tuple(image.shape), label
        ((2, 1, 4, 4), None)
    """

    def __init__(self, transforms: Sequence[Transform], *, seed: int | None = None) -> None:
        super().__init__(p=1.0, seed=seed)
        self.transforms = list(transforms)

    def apply(
        self, image: Tensor, label: LabelOrNone, generator: torch.Generator
    ) -> tuple[Tensor, LabelOrNone]:
        for transform in self.transforms:
            image, label = transform(image, label, generator=generator)
        return image, label

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(t) for t in self.transforms)
        return f"Compose([\n  {inner}\n])"
