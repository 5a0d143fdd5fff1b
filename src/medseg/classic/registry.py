"""``CLASSIC``: the classical segmentation methods by name (``medseg classic METHOD``).

Each method module registers its public functions (``Image`` in, label-map ``Image`` out);
``medseg.classic`` imports them all, so the registry is complete once the package is imported.
"""

from __future__ import annotations

from medseg.registry import Registry

CLASSIC = Registry("classic method")
