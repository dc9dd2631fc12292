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
    """Sigma-clipped median (MAD-based sigma) of a 1-D array of finite values.

    The definition: ``med`` = median of the values; then, at most ``maxiters`` times (while 3
    values or more remain), ``dev = |v - med|``, ``std = 1.4826 * median(dev)``; stop if
    ``std <= 0`` or every value has ``dev <= sigma * std``, else keep those values and take
    their median as the new ``med``.

    Evaluated on the values sorted once: a clip keeps a contiguous run of the sorted values
    (``dev`` falls, then rises along them, also as rounded), so every median is read from
    the run's middle and the median of ``dev`` is a selection from two sorted sequences. The
    arithmetic of each value (``|v - med|``, the mean of the two middle values of an even
    count) is numpy's, so the result is bit-identical to the plain definition.
    """
    a = np.asarray(values).ravel()
    s = np.sort(a) if a.dtype in (np.float32, np.float64) else np.sort(a.astype(np.float64))
    s = s.astype(np.float64, copy=False)
    lo, hi = 0, s.size
    if hi == 0:
        return float("nan")
    med = _middle(s, lo, hi)
    for _ in range(maxiters):
        if hi - lo < 3:
            break
        run = s[lo:hi]
        split = int(np.searchsorted(run, med, side="left"))  # run[:split] < med <= run[split:]
        dev = np.abs(run - med)
        down = dev[:split][::-1]  # both ascending
        up = dev[split:]
        n = hi - lo
        if n % 2:
            mad = _kth_of_two(down, up, n // 2)
        else:
            mad = (_kth_of_two(down, up, n // 2 - 1) + _kth_of_two(down, up, n // 2)) / 2
        std = 1.4826 * mad
        if std <= 0:
            break
        limit = sigma * std
        nd = int(np.searchsorted(down, limit, side="right"))
        nu = int(np.searchsorted(up, limit, side="right"))
        if nd + nu == n:
            break
        lo, hi = lo + split - nd, lo + split + nu
        med = _middle(s, lo, hi)
    return med


def _middle(s: np.ndarray, lo: int, hi: int) -> float:
    """Median of the sorted run ``s[lo:hi]`` (numpy's: the mean of the two middle values of
    an even count)."""
    n = hi - lo
    if n % 2:
        return float(s[lo + n // 2])
    return (float(s[lo + n // 2 - 1]) + float(s[lo + n // 2])) / 2


def _kth_of_two(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """The ``k``-th smallest (0-based) of the union of two ascending arrays."""
    c = k + 1  # values taken: i from a, c - i from b
    lo, hi = max(0, c - b.size), min(c, a.size)
    while lo < hi:
        i = (lo + hi) // 2
        if a[i] < b[c - i - 1]:
            lo = i + 1
        else:
            hi = i
    i, j = lo, c - lo
    if i == 0:
        return float(b[j - 1])
    if j == 0:
        return float(a[i - 1])
    return float(max(a[i - 1], b[j - 1]))


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
