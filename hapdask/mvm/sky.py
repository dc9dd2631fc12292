"""Sky levels subtracted from each input chip before drizzling.

The graph asks a *sky method* for one value per chip. :class:`ChipMedianSky` (the default)
measures each chip on its own: the sigma-clipped median of its good pixels, one task per chip.
A method that matches skies between overlapping exposures (AstroDrizzle's ``skymethod='match'``)
fits the same interface: its :meth:`SkyMethod.tasks` may add any tasks it needs (per-chip
statistics in overlaps, one least-squares solve) as long as it returns one key per chip whose
value is a :class:`SkyLevel`.

:class:`SkyLevel` and :class:`SkyMethod` live in :mod:`hapdask.sky.level` (re-exported here);
AstroDrizzle's methods (``localmin``, ``globalmin``, ``match``, ``globalmin+match``) are
:class:`hapdask.sky.AstroDrizzleSky`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hapdask.sky.level import SkyLevel, SkyMethod

__all__ = ["ChipMedianSky", "SkyLevel", "SkyMethod", "clipped_median"]


def clipped_median(values: np.ndarray, sigma: float = 3.0, maxiters: int = 5) -> float:
    """Sigma-clipped median (MAD-based sigma) of a 1-D array of finite values."""
    v = np.asarray(values, dtype=np.float64)
    med = float(np.median(v)) if v.size else float("nan")
    for _ in range(maxiters):
        if v.size < 3:
            break
        dev = np.abs(v - med)  # once per iteration: the MAD and the clip use the same values
        std = 1.4826 * float(np.median(dev))
        if std <= 0:
            break
        keep = dev <= sigma * std
        if keep.all():
            break
        v = v[keep]
        # v is this function's own copy now: a median is order-free, so it may be reordered
        med = float(np.median(v, overwrite_input=True))
    return med


def chip_sky(chip, sigma: float = 3.0, maxiters: int = 5, max_pixels: int = 1_000_000
             ) -> SkyLevel:
    """Measure one chip: clipped median of its finite, DQ-good pixels.

    Deterministic subsampling (every k-th good pixel) bounds the cost on big chips.
    Never raises: a failure gives ``SkyLevel(ok=False, reason=...)``.
    """
    from hapdask.dqflags import good_pixel_mask

    try:
        sci, _, dq = chip.chip.read(err=False)
    except Exception as exc:
        return SkyLevel(0.0, 0.0, 0, False, f"cannot read pixels: {exc}")
    good = good_pixel_mask(dq, chip.bits) & np.isfinite(sci)
    vals = sci[good]
    if vals.size == 0:
        what = "all pixels NaN" if not np.isfinite(sci).any() else "no good pixel (DQ)"
        return SkyLevel(0.0, 0.0, 0, False, what)
    if vals.size < 0.01 * sci.size:
        return SkyLevel(0.0, 0.0, int(vals.size), False,
                        f"only {vals.size} of {sci.size} pixels finite and good")
    if vals.size > max_pixels:
        vals = vals[:: -(-vals.size // max_pixels)]
    value = clipped_median(vals, sigma, maxiters)
    rate = value if chip.is_rate else value / chip.exptime
    return SkyLevel(float(value), float(rate), int(good.sum()))


@dataclass(frozen=True)
class ChipMedianSky:
    """Per-chip sigma-clipped median sky (one independent task per chip)."""

    sigma: float = 3.0
    maxiters: int = 5
    name: str = "chip-median"

    def tasks(self, chips: Sequence, prefix: str) -> tuple[dict, list]:
        graph: dict = {}
        keys = []
        for i, c in enumerate(chips):
            key = (prefix, i)
            graph[key] = (chip_sky, c, self.sigma, self.maxiters)
            keys.append(key)
        return graph, keys


@dataclass(frozen=True)
class NoSky:
    """No sky subtraction (every level 0)."""

    name: str = "none"

    def tasks(self, chips: Sequence, prefix: str) -> tuple[dict, list]:
        graph = {(prefix, i): (SkyLevel, 0.0, 0.0, 0) for i in range(len(chips))}
        return graph, list(graph)
