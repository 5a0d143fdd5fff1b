"""The ``--labels`` option: labels and regions (unions of labels) written as text."""

from __future__ import annotations

from medseg.errors import ConfigError
from medseg.metrics import label_regions


def parse_labels(text: str) -> dict[str, tuple[int, ...]]:
    """Parse ``"1,2,1+2+3"`` or ``"wt=1+2+3,tc=1+3,et=3"`` into ``{name: label values}``.

    Items are comma-separated; ``+`` joins labels into one region; ``name=`` names an item
    (default name: the item itself, e.g. ``"1+2+3"``).

    Raises:
        ConfigError: an item is empty or not made of integers.

    Example:
        >>> parse_labels("1,2,wt=1+2+3")
        {'1': (1,), '2': (2,), 'wt': (1, 2, 3)}
    """
    regions: dict[str, list[int]] = {}
    for item in (part.strip() for part in text.split(",")):
        name, _, spec = item.rpartition("=")
        try:
            values = [int(v) for v in spec.split("+")]
        except ValueError:
            raise ConfigError(
                f"--labels: cannot read {item!r}; use integers joined by '+', e.g. 1,2 or wt=1+2+3"
            ) from None
        key = name.strip() or "+".join(str(v) for v in values)
        if key in regions:
            raise ConfigError(f"--labels: {key!r} is given twice")
        regions[key] = values
    return label_regions(regions)
