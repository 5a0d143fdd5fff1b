"""H&E stain model for phantom slides: Beer-Lambert optical density from stain concentrations.

``OD = concentrations @ stain_matrix`` (per pixel, per RGB channel) and
``I = 255 * exp(-OD)``; the stain vectors are unit OD vectors (Ruifrok & Johnston, Anal.
Quant. Cytol. Histol. 2001: haematoxylin [0.65, 0.70, 0.29], eosin [0.07, 0.99, 0.11]).
Presets: ``"default"``; ``"shifted"`` (another hospital: rotated vectors, stronger
haematoxylin, paler eosin); an ``int`` seed (a random shift of vectors and scales); or a dict
with keys ``h``, ``e`` (3-vectors), ``h_scale``, ``e_scale``, ``background`` (glass OD).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from medseg.errors import ConfigError

__all__ = ["StainModel", "stain_model"]

RUIFROK_H = (0.65, 0.70, 0.29)
RUIFROK_E = (0.07, 0.99, 0.11)
STAIN_KEYS = ("h", "e", "h_scale", "e_scale", "background")


def _unit(vector: tuple[float, ...] | np.ndarray) -> tuple[float, float, float]:
    v = np.abs(np.asarray(vector, dtype=np.float64))
    if v.shape != (3,) or not np.all(np.isfinite(v)) or np.linalg.norm(v) == 0:
        raise ConfigError(f"a stain vector must be 3 finite numbers, not all 0, got {vector}")
    v = v / np.linalg.norm(v)
    return float(v[0]), float(v[1]), float(v[2])


@dataclass(frozen=True)
class StainModel:
    """Unit OD vectors of haematoxylin and eosin, concentration scales, glass OD."""

    h: tuple[float, float, float]
    e: tuple[float, float, float]
    h_scale: float = 1.0
    e_scale: float = 1.0
    background: float = 0.02

    def to_dict(self) -> dict:
        return asdict(self)

    def rgb(self, conc_h: np.ndarray, conc_e: np.ndarray) -> np.ndarray:
        """RGB ``(*shape, 3)`` uint8 from concentrations ``(*shape)`` (Beer-Lambert).

        Example:
            >>> stain_model("default").rgb(np.zeros(1), np.zeros(1))[0].tolist()
            [250, 250, 250]
        """
        od = (
            np.multiply.outer(conc_h * self.h_scale, np.asarray(self.h, np.float32))
            + np.multiply.outer(conc_e * self.e_scale, np.asarray(self.e, np.float32))
            + np.float32(self.background)
        )
        return np.clip(np.rint(255.0 * np.exp(-od)), 0, 255).astype(np.uint8)


def stain_model(stain: str | int | dict = "default") -> StainModel:
    """The stain model of a preset name, a seed or a dict (see the module docstring).

    Raises:
        ConfigError: unknown preset, unknown dict keys or a bad vector.

    Example:
        >>> [round(v, 3) for v in stain_model("default").h]
        [0.651, 0.701, 0.29]
    """
    if isinstance(stain, bool):
        raise ConfigError(f"stain must be 'default', 'shifted', a seed or a dict, got {stain}")
    if isinstance(stain, dict):
        unknown = sorted(set(stain) - set(STAIN_KEYS))
        if unknown:
            raise ConfigError(f"unknown stain keys {unknown}; valid: {', '.join(STAIN_KEYS)}")
        base = stain_model("default")
        return StainModel(
            h=_unit(stain.get("h", base.h)),
            e=_unit(stain.get("e", base.e)),
            h_scale=float(stain.get("h_scale", 1.0)),
            e_scale=float(stain.get("e_scale", 1.0)),
            background=float(stain.get("background", base.background)),
        )
    if isinstance(stain, (int, np.integer)):
        rng = np.random.default_rng([int(stain), 0x5741])
        return StainModel(
            h=_unit(np.asarray(RUIFROK_H) + rng.normal(0, 0.08, 3)),
            e=_unit(np.asarray(RUIFROK_E) + rng.normal(0, 0.08, 3)),
            h_scale=float(rng.uniform(0.75, 1.3)),
            e_scale=float(rng.uniform(0.75, 1.3)),
            background=float(rng.uniform(0.0, 0.06)),
        )
    if stain == "default":
        return StainModel(h=_unit(RUIFROK_H), e=_unit(RUIFROK_E))
    if stain == "shifted":
        return StainModel(
            h=_unit((0.50, 0.78, 0.38)),
            e=_unit((0.18, 0.94, 0.29)),
            h_scale=1.3,
            e_scale=0.75,
            background=0.05,
        )
    raise ConfigError(f"stain must be 'default', 'shifted', a seed or a dict, got {stain!r}")
