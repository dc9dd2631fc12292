"""Whole-layer statistics merged from per-tile summaries (for the MVM PRIMARY keywords).

Each tile contributes a small :class:`TileStats`; :func:`merge` adds them up and
:func:`layer_keywords` turns the sum into the HAP footprint/weight keywords (inventory 4.5):

* C(p) = number of input chips whose outline covers output pixel p, T(p) = sum of their
  EXPTIME, G = {p : C(p) > 0}: NPIXFRAC = |G| / pixels of the *full* SkyCell grid,
  MEANNEXP/MEDNEXP = mean/median of C over G, MEANEXPT/MEDEXPT = mean/median of T over G.
  C and T take few distinct values, so their medians are exact.
* MEANWHT/MEDWHT = mean/median of WHT over WHT > 0. The mean is exact (float64 sums); the
  median comes from a merged logarithmic histogram with 4096 bins per octave, i.e. a relative
  precision of 2**-13 (1.2e-4).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from hapdask.mosaic.coverage import (
    MAX_CODE_POLYGONS,
    coverage_code_counts,
    coverage_codes,
    tile_coverage,
)

__all__ = ["TileStats", "add_code_counts", "add_coverage", "coverage_stats", "tile_stats", "merge",
           "layer_keywords", "WHT_MEDIAN_RTOL"]

_NB = 4096
#: relative precision of MEDWHT (half a logarithmic histogram bin)
WHT_MEDIAN_RTOL = 1.0 / (2 * _NB)


@dataclass
class TileStats:
    """Additive summary of one tile (or of several merged tiles)."""

    n_wht: int = 0
    sum_wht: float = 0.0
    wht_hist: Counter = field(default_factory=Counter)
    n_cov: int = 0
    sum_c: float = 0.0
    sum_t: float = 0.0
    c_hist: Counter = field(default_factory=Counter)
    t_hist: Counter = field(default_factory=Counter)


def _log_bins(values: np.ndarray) -> np.ndarray:
    if values.dtype == np.float32 and values.size:
        # the same bins straight from the IEEE bits of positive normal float32 values:
        # frexp gives m = 0.5 + mantissa / 2**24, e = biased exponent - 126
        bits = values.view(np.int32)
        ex = bits >> 23
        if ex.min() > 0:
            return (ex.astype(np.int64) - 126) * (2 * _NB) + ((bits & 0x7FFFFF) >> 11)
    m, e = np.frexp(values.astype(np.float64))
    k = np.minimum(np.floor((m - 0.5) * 2 * _NB), 2 * _NB - 1).astype(np.int64)
    return e.astype(np.int64) * (2 * _NB) + k


def _log_center(idx: int) -> float:
    e, k = divmod(int(idx), 2 * _NB)
    return float(np.ldexp(0.5 + (k + 0.5) / (2 * _NB), e))


def _count(idx: np.ndarray) -> Counter:
    """Histogram {value: count} of integers (bincount over their range; no sort)."""
    lo = int(idx.min())
    cnt = np.bincount(idx - lo)
    nz = np.nonzero(cnt)[0]
    return Counter(dict(zip((nz + lo).tolist(), cnt[nz].tolist(), strict=True)))


def _log_hist(values: np.ndarray) -> Counter:
    """``_count(_log_bins(values))`` of positive values, cheaper for normal float32 values.

    Their bin index is a strictly increasing function of ``bits >> 11`` (exponent and top 12
    mantissa bits): ``(bits >> 11) + (bits >> 23) * 4096 - 126 * 8192``, so the histogram is
    taken on ``bits >> 11`` (int32, no int64 temporaries) and only the occupied labels are
    mapped to bin indices.
    """
    if values.dtype == np.float32 and values.size:
        label = values.view(np.int32) >> 11
        lo = int(label.min())
        if lo >> 12 > 0:  # no subnormal (biased exponent 0)
            label -= lo
            cnt = np.bincount(label)
            nz = np.nonzero(cnt)[0]
            lab = nz + lo
            idx = lab + (lab >> 12) * _NB - 126 * (2 * _NB)
            return Counter(dict(zip(idx.tolist(), cnt[nz].tolist(), strict=True)))
    return _count(_log_bins(values))


def tile_stats(wht: np.ndarray, count: np.ndarray | None = None,
               exptime: np.ndarray | None = None) -> TileStats:
    """Summarise one tile.

    Parameters
    ----------
    wht : 2-D array
        Output weights of the tile.
    count, exptime : 2-D arrays, optional
        C(p) (chips covering each pixel) and T(p) (their summed EXPTIME) on the tile.
    """
    s = TileStats()
    w = np.asarray(wht)
    pos = w[np.isfinite(w) & (w > 0)]
    s.n_wht = int(pos.size)
    s.sum_wht = float(pos.sum(dtype=np.float64))
    if pos.size:
        s.wht_hist = _log_hist(pos)
    if count is not None:
        c = np.asarray(count)
        g = c > 0
        s.n_cov = int(g.sum())
        if s.n_cov:
            cg = c[g]
            s.sum_c = float(cg.sum(dtype=np.float64))
            s.c_hist = _count(cg.astype(np.int64))
            if exptime is not None:
                tg = np.asarray(exptime, dtype=np.float64)[g]
                s.sum_t = float(tg.sum())
                idx, cnt = np.unique(tg, return_counts=True)
                s.t_hist = Counter(dict(zip(idx.tolist(), cnt.tolist(), strict=True)))
    return s


def add_coverage(s: TileStats, codes: np.ndarray, exptimes: list[float]) -> TileStats:
    """Fill the coverage part of ``s`` (C and T) from a tile's array of coverage codes.

    ``codes`` are :func:`hapdask.mosaic.coverage.coverage_codes` of the chips' outlines (bit
    ``i``: chip ``i`` covers the pixel); see :func:`add_code_counts`, which this calls with
    the codes' histogram.
    """
    flat = codes.ravel()
    if len(exptimes) <= 20:
        cnt = np.bincount(flat)
        vals = np.nonzero(cnt)[0]
        counts = cnt[vals]
    else:
        vals, counts = np.unique(flat, return_counts=True)
    return add_code_counts(s, vals, counts, exptimes)


def add_code_counts(s: TileStats, codes: np.ndarray, counts: np.ndarray,
                    exptimes: list[float]) -> TileStats:
    """Fill the coverage part of ``s`` (C and T) from the histogram of a tile's coverage codes.

    ``codes`` (distinct) and ``counts`` (pixels having each) as
    :func:`hapdask.mosaic.coverage.coverage_code_counts` gives them. C of a code is its number
    of bits and T the sum of its chips' EXPTIME, added in chip order as
    :func:`hapdask.mosaic.coverage.tile_coverage` does. Only the distinct codes are visited.
    """
    s.n_cov = s.sum_c = 0
    s.sum_t = 0.0
    s.c_hist, s.t_hist = Counter(), Counter()
    for v, k in zip(np.asarray(codes).tolist(), np.asarray(counts).tolist(), strict=True):
        if v == 0 or k == 0:
            continue
        c, t = 0, 0.0
        for i, e in enumerate(exptimes):
            if v >> i & 1:
                c += 1
                t += float(e)
        s.n_cov += k
        s.sum_c += c * k
        s.sum_t += t * k
        s.c_hist[c] += k
        s.t_hist[t] += k
    s.sum_c = float(s.sum_c)
    return s


def merge(parts: list[TileStats]) -> TileStats:
    """Sum tile summaries (order-independent)."""
    out = TileStats()
    for p in parts:
        out.n_wht += p.n_wht
        out.sum_wht += p.sum_wht
        out.wht_hist.update(p.wht_hist)
        out.n_cov += p.n_cov
        out.sum_c += p.sum_c
        out.sum_t += p.sum_t
        out.c_hist.update(p.c_hist)
        out.t_hist.update(p.t_hist)
    return out


def _median(hist: Counter, n: int, center=float) -> float:
    """Median of a histogram {value: count} of n items (mean of the two middle ones)."""
    if n == 0:
        return 0.0
    lo, hi = (n - 1) // 2, n // 2
    acc = 0
    vlo = vhi = None
    for v in sorted(hist):
        acc += hist[v]
        if vlo is None and acc > lo:
            vlo = center(v)
        if acc > hi:
            vhi = center(v)
            break
    return 0.5 * (vlo + vhi)


def layer_keywords(stats: TileStats, full_cell_pixels: int) -> dict[str, float]:
    """The footprint and weight keywords of one layer (see the module docstring).

    Parameters
    ----------
    stats : TileStats
        Merged summary of every tile of the layer.
    full_cell_pixels : int
        Pixels in the whole (unbounded) SkyCell grid at the layer's scale (21954**2 fine).
    """
    n = stats.n_cov
    return {
        "NPIXFRAC": n / float(full_cell_pixels) if full_cell_pixels else 0.0,
        "MEANEXPT": stats.sum_t / n if n else 0.0,
        "MEDEXPT": _median(stats.t_hist, n),
        "MEANNEXP": stats.sum_c / n if n else 0.0,
        "MEDNEXP": _median(stats.c_hist, n),
        "MEANWHT": stats.sum_wht / stats.n_wht if stats.n_wht else 0.0,
        "MEDWHT": _median(stats.wht_hist, stats.n_wht, center=_log_center),
    }


def coverage_stats(wht: np.ndarray, polys, exptimes, window: tuple[int, int, int, int], *,
                   covered_only: bool = False) -> TileStats:
    """:func:`tile_stats` of a window with its coverage (C and T) from the chips' outlines.

    Up to :data:`~hapdask.mosaic.coverage.MAX_CODE_POLYGONS` outlines the coverage comes from
    one scan of all their crossings (:func:`~hapdask.mosaic.coverage.coverage_code_counts`;
    with ``covered_only``, the covered pixels from the per-pixel
    :func:`~hapdask.mosaic.coverage.coverage_codes`, in their compact type), beyond that from
    :func:`~hapdask.mosaic.coverage.tile_coverage`; the results are the same.

    Parameters
    ----------
    wht : 2-D array
        Output weights of the window.
    polys : sequence of (N, 2) arrays
        The chips' outlines on the output grid.
    exptimes : sequence of float
        EXPTIME of each chip, in the order of ``polys``.
    window : (y0, y1, x0, x1)
        The window on the output grid.
    covered_only : bool
        Count weights only where some chip's outline covers the pixel (SVM products).
    """
    polys, exptimes = list(polys), list(exptimes)
    if len(polys) <= MAX_CODE_POLYGONS:
        if not covered_only:
            codes, counts = coverage_code_counts(polys, window)
            return add_code_counts(tile_stats(wht), codes, counts, exptimes)
        # the pixels some outline covers from the per-pixel codes (one byte each up to 8
        # outlines), C and T from their histogram (cost ~ crossings)
        covered = coverage_codes(polys, window, compact=True) != 0
        codes, counts = coverage_code_counts(polys, window)
        return add_code_counts(tile_stats(np.where(covered, wht, 0.0)), codes, counts,
                               exptimes)
    count, expt = tile_coverage(polys, exptimes, window)
    if covered_only:
        wht = np.where(count > 0, wht, 0.0)
    return tile_stats(wht, count, expt)
