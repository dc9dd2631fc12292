"""AstroDrizzle's clipped sky statistic of one chip (stsci.imagestats semantics).

AstroDrizzle measures sky with ``stsci.imagestats.ImageStats`` (through skypac's ``SkyStats``):

1. ``skyclip + 1`` passes over the pixels inside ``[lo, hi]`` (initially ``skylower`` /
   ``skyupper``, or the data range), each giving ``npix``, ``mean``, ``stddev`` (``N - 1``
   normalisation) and the min/max of those pixels; after every pass but the last the range
   becomes ``[max(skylower, mean - skylsigma*stddev), min(skyupper, mean + skyusigma*stddev)]``;
2. ``median``: the exact median (``numpy.median``) of the pixels inside the final range (all
   pixels when ``skyclip == 0``); ``mean``: the last pass's mean;
3. ``mode`` (AstroDrizzle's definition): a histogram of bin width ``skywidth * stddev`` from
   the clipped minimum, ``nbins = int((max - min) / width) + 1`` bins of width
   ``(max - min) / (nbins - 1)`` filled with every pixel in ``[min, min + nbins * width')``; the
   peak bin is refined by parabolic interpolation of its two neighbours and placed with the
   nominal width (ImageStats' quirk, kept: ``mode = min + (peak + 0.5 + (dh1 - dh2) /
   (2 (dh1 + dh2))) * width``), special cases for one or two bins and edge peaks.

ImageStats 1.8 starts the running min/max from the first pixel clamped to the range, so the
histogram's lower edge can be the clip limit rather than the lowest pixel: reproduced (it moves
``mode`` by a fraction of a bin). Values are float32 as in ImageStats (sums in float64). The
passes are one numba kernel each; the median is exact (equal to :func:`numpy.median` of the
final selection) from a counting pass over fine bins (with clipping: by the values' order keys,
in the last clipping pass) and a selection in the bins holding the middle.

Units: statistics are in the chip's SCI units. To compare chips and exposures AstroDrizzle
(skypac ``SkyLineMember.data2brightness``) converts a value to surface brightness by dividing
by the nominal pixel area ``pscale**2`` (arcsec^2, ``IDCSCALE``) and, for count (not rate)
data, by ``EXPTIME``: :func:`brightness_factor`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from hapdask.dqflags import good_pixel_mask

__all__ = ["ClippedStats", "brightness_factor", "clipped_stats", "exact_median",
           "finite_range", "gather_first_pass", "gather_spans", "good_sky_pixels", "mean_float64",
           "median_float64", "numpy_std", "sky_statistic", "std_float64"]


@dataclass(frozen=True)
class ClippedStats:
    """Result of :func:`clipped_stats`.

    Attributes
    ----------
    npix : int
        Pixels inside the final clipping range.
    mean, stddev, min, max : float
        Of the pixels inside the final range (float32 values as ImageStats).
    lo, hi : float
        The final clipping range.
    median, mode : float or None
        When requested.
    nbins : int
        Histogram bins used for ``mode`` (0 if not computed).
    """

    npix: int
    mean: float
    stddev: float
    min: float
    max: float
    lo: float
    hi: float
    median: float | None = None
    mode: float | None = None
    nbins: int = 0


@njit(nogil=True, cache=True)
def _moments(v, lo, hi, extremes):  # pragma: no cover - numba
    """Count, sum, sum of squares and, with ``extremes``, min and max (else ``hi``, ``lo``) of
    the values of v inside [lo, hi]. The clipping passes before the last need no extremes:
    without them a pass costs ~25 % less (the flag's test is hoisted out of the loop by the
    compiler: as fast as a loop without it). (The last pass of a median's statistic is
    :func:`_moments_keys`.)"""
    n = 0
    s = 0.0
    ss = 0.0
    mn = hi
    mx = lo
    for i in range(v.size):
        x = v[i]
        if x >= lo and x <= hi:
            n += 1
            s += x
            ss += np.float64(x) * np.float64(x)
            if extremes:
                if x < mn:
                    mn = x
                if x > mx:
                    mx = x
    return n, s, ss, mn, mx


@njit(nogil=True, cache=True)
def _histogram(v, nbins, vmin, vmax, inv_width):  # pragma: no cover - numba
    h = np.zeros(nbins, np.int64)
    for i in range(v.size):
        x = v[i]
        if x >= vmin and x < vmax:
            k = int((x - vmin) * inv_width)  # float32 times the reciprocal: as imagestats 1.8
            if k < 0:
                k = 0
            elif k >= nbins:
                k = nbins - 1
            h[k] += 1
    return h


@njit(nogil=True, cache=True)
def _bin_values(v, lo, hi, flo, inv, nb, b1, b2, m):  # pragma: no cover - numba
    """The m values of v inside [lo, hi] that fall in bins b1..b2 of :func:`_bracket_counts`.

    The bin index (its truncation and clamping) is computed only for values whose bin
    coordinate is within two bins of b1..b2 (far more than the rounding of that test, in bin
    units whatever the values' magnitude), a fraction of the values: ~45 % less CPU per pass."""
    buf = np.empty(m, v.dtype)
    mid = 0.5 * (b1 + b2 + 1)  # centre of bins b1..b2, bin units
    near = 0.5 * (b2 - b1 + 1) + 2.0  # their half width, plus two bins
    j = 0
    for i in range(v.size):
        x = v[i]
        t = (np.float64(x) - flo) * inv
        # one rarely true test (two would be a branch mispredicted half the time)
        if abs(t - mid) <= near and x >= lo and x <= hi:
            k = int(t)
            if k >= nb:
                k = nb - 1
            if k >= b1 and k <= b2:
                buf[j] = x
                j += 1
    return buf


#: fine bins of the exact order statistics (:func:`_order_stats`)
_NBINS = 65536


@njit(nogil=True, cache=True)
def _bin_params(lo, hi):  # pragma: no cover - numba
    """``(flo, inv)`` of :func:`_order_stats`' fine bins over ``[lo, hi]`` (``inv`` 0 when
    the range has no width)."""
    flo = np.float64(lo)
    width = (np.float64(hi) - flo) / _NBINS
    if not width > 0:
        return flo, 0.0
    return flo, 1.0 / width


@njit(nogil=True, cache=True)
def _order_stats(v, lo, hi, n, r1, r2):  # pragma: no cover - numba
    """The r1-th and r2-th smallest (0-based) of the n values of v inside [lo, hi]: exact, by
    a counting pass over fine bins and a sort of only the bins holding those ranks.

    The two passes are separate functions: inlined into one, the second ran ~7x slower
    (measured: 58 ms instead of 8 ms for 8 Mpix)."""
    flo, inv = _bin_params(lo, hi)
    if inv == 0.0:
        return lo, lo
    # bins by a multiplication (monotonic in x, the same in both passes: all exactness needs)
    h = _bracket_counts(v, lo, hi, flo, inv, _NBINS)[0]
    return _ranks(v, lo, hi, flo, inv, h, r1, r2)


@njit(nogil=True, cache=True)
def _rank_bins(h, r1, r2):  # pragma: no cover - numba
    """The bins ``b1 <= b2`` of counts ``h`` holding the r1-th and r2-th smallest values
    (0-based, r1 <= r2), the rank of ``b1``'s first value and the count of ``b1..b2``."""
    cum = 0
    b1 = -1
    b2 = -1
    start = 0
    for k in range(h.size):
        if b1 < 0 and r1 < cum + h[k]:
            b1 = k
            start = cum
        if r2 < cum + h[k]:
            b2 = k
            break
        cum += h[k]
    m = 0
    for k in range(b1, b2 + 1):
        m += h[k]
    return b1, b2, start, m


@njit(nogil=True, cache=True)
def _ranks(v, lo, hi, flo, inv, h, r1, r2):  # pragma: no cover - numba
    """:func:`_order_stats` from the bin counts ``h`` of the values inside [lo, hi]."""
    b1, b2, start, m = _rank_bins(h, r1, r2)
    buf = _bin_values(v, lo, hi, flo, inv, _NBINS, b1, b2, m)
    # the two ranks by selection, not a sort of the bins' values (the first clipping
    # iteration of a catalog background has ~2 M values in the median's bin: 55 ms instead of
    # 210 ms)
    k1 = r1 - start
    part = np.partition(buf, k1)
    if r2 == r1:
        return part[k1], part[k1]
    rest = part[k1 + 1:]  # the values at ranks above r1, in no order
    if r2 == r1 + 1:
        return part[k1], rest.min()
    return part[k1], np.partition(rest, r2 - r1 - 1)[r2 - r1 - 1]


#: values sampled to bracket the middle ranks (:func:`_bracketed_order_stats`)
_SAMPLE = 16384


@njit(nogil=True, cache=True)
def _bracket_counts(v, lo, hi, flo, inv, nb):  # pragma: no cover - numba
    """Counts of the values of v inside [lo, hi] in ``nb`` bins ``(x - flo) * inv``, and the
    counts of those below ``lo`` and above ``hi`` (NaN in none of the three)."""
    h = np.zeros(nb, np.int64)
    below = 0
    above = 0
    for i in range(v.size):
        x = v[i]
        if x >= lo and x <= hi:
            k = int((np.float64(x) - flo) * inv)
            if k >= nb:
                k = nb - 1
            h[k] += 1
        elif x < lo:
            below += 1
        elif x > hi:
            above += 1
    return h, below, above


#: the values' range over the sampled bracket's width above which the bracket is used
_TAIL = 64.0


@njit(nogil=True, cache=True)
def _bracketed_order_stats(v, vmin, vmax, r1, r2):  # pragma: no cover - numba
    """:func:`_order_stats` of all the values of v (finite, ``vmin``..``vmax``; ``r1 <=
    r2``), its fine bins over a bracket of the two ranks estimated from a strided sample of
    ``_SAMPLE`` values (their sample quantiles -+ 8 standard deviations of a sample
    quantile's rank) instead of the values' whole range, when that range is more than
    ``_TAIL`` times the bracket's width: a long tail (sources, cosmic rays) no longer puts
    most values in the middle bins (whose values are then partitioned). Exact whatever the
    sample: one counting pass finds how many values lie below, inside and above the bracket,
    and the ranks are selected inside it when it holds them; returns ``(ok, a, b)``, ``ok``
    False (nothing selected) when it does not, or when the range is not that wide (the
    whole range's fine bins are then as good: a counting pass with few values in the
    bracket costs ~4x more than one that bins every value, in its branches)."""
    n = v.size
    step = max(1, n // _SAMPLE)
    s = np.sort(v[::step])
    m = s.size
    margin = int(8.0 * np.sqrt(0.25 * m)) + 8
    lo = s[max(0, (r1 * m) // n - margin)]
    hi = s[min(m - 1, (r2 * m) // n + margin)]
    if not (np.float64(vmax) - np.float64(vmin) > _TAIL * (np.float64(hi) - np.float64(lo))):
        return False, lo, hi
    flo, inv = _bin_params(lo, hi)
    if inv == 0.0:  # lo == hi: every value of the bracket is lo
        h = np.zeros(0, np.int64)
        inside = 0
        below = 0
        above = 0
        for i in range(n):
            x = v[i]
            if x == lo:
                inside += 1
            elif x < lo:
                below += 1
            elif x > lo:
                above += 1
    else:
        h, below, above = _bracket_counts(v, lo, hi, flo, inv, _NBINS)
        inside = h.sum()
    if below + inside + above != n or below > r1 or r2 >= below + inside:
        return False, lo, hi
    if inv == 0.0:
        return True, lo, lo
    a, b = _ranks(v, lo, hi, flo, inv, h, r1 - below, r2 - below)
    return True, a, b


@njit(nogil=True, cache=True)
def gather_spans(sci, good, y0, xlo, xhi):  # pragma: no cover - numba
    """Values of ``sci`` where ``good`` inside row spans (rows ``y0 + k``, columns
    ``xlo[k]..xhi[k]`` inclusive), in row-major order (as a boolean-mask selection).

    One pass into an array the size of the spans (the good pixels are most of them), returned
    as the view of its filled part: a counting pass first cost ~40 % more CPU."""
    m = 0
    for k in range(xlo.size):
        m += max(xhi[k] - xlo[k] + 1, 0)
    out = np.empty(m, sci.dtype)
    j = 0
    for k in range(xlo.size):
        y = y0 + k
        for x in range(xlo[k], xhi[k] + 1):
            out[j] = sci[y, x]
            j += good[y, x]
    return out[:j]


@njit(nogil=True, cache=True)
def _gather_first(sci, good, y0, xlo, xhi, lower, upper):  # pragma: no cover - numba
    """:func:`gather_spans` and, in the same pass, :func:`clipped_stats`' first clipping pass
    over the gathered values: their count, sum and sum of squares inside ``[lower, upper]``
    in the same order, and their min and max (NaN: see :func:`gather_first_pass`). The
    gather alone is bound by its loads and stores, the clipping pass by its sums' additions:
    together about the gather's CPU (rows as 1-D views: no per-pixel 2-D index arithmetic;
    any further test per pixel, e.g. counting NaN, costs ~40 % more)."""
    m = 0
    for k in range(xlo.size):
        m += max(xhi[k] - xlo[k] + 1, 0)
    out = np.empty(m, sci.dtype)
    j = 0
    n = 0
    s = 0.0
    ss = 0.0
    mn = np.float32(np.inf)
    mx = np.float32(-np.inf)
    for k in range(xlo.size):
        a = xlo[k]
        b = xhi[k] + 1
        if b <= a:
            continue
        row = sci[y0 + k, a:b]
        g = good[y0 + k, a:b]
        for i in range(row.size):
            x = row[i]
            if g[i]:
                out[j] = x
                j += 1
                mn = min(mn, x)
                mx = max(mx, x)
                if x >= lower and x <= upper:
                    n += 1
                    s += x
                    ss += np.float64(x) * np.float64(x)
    return out[:j], n, s, ss, mn, mx


def gather_first_pass(sci: np.ndarray, good: np.ndarray, y0: int, xlo: np.ndarray,
                      xhi: np.ndarray, lower: float | None = None, upper: float | None = None
                      ) -> tuple[np.ndarray, tuple | None]:
    """:func:`gather_spans`' values and the first clipping pass of :func:`clipped_stats`
    (``lower``, ``upper``: its bounds, None: the data range) over them, from one pass over
    the spans.

    Returns
    -------
    values : ndarray
        As :func:`gather_spans` (float32 ``sci``).
    first : tuple or None
        ``(n, sum, sum of squares, min, max)`` for ``clipped_stats(values, first=...)``;
        None when the values are not float32 or hold a NaN (then ``clipped_stats`` makes
        that pass itself).
    """
    if sci.dtype != np.float32 or not sci.dtype.isnative:
        return gather_spans(sci, good, y0, xlo, xhi), None
    # no bound: +-inf, the same selection as the data range for every value but NaN
    vals, n, s, ss, mn, mx = _gather_first(
        sci, good, y0, xlo, xhi, np.float32(-np.inf if lower is None else lower),
        np.float32(np.inf if upper is None else upper))
    # a NaN is in no range: only when some value is outside it can one be among them
    if vals.size == 0 or (n != vals.size and np.isnan(vals).any()):
        return vals, None
    return vals, (n, s, ss, mn, mx)


@njit(nogil=True, cache=True)
def _key_range(bits):  # pragma: no cover - numba
    """Smallest and largest order key (:func:`_key_of`) of float32 values given as their int32
    bit patterns, and how many are NaN or infinite: integer operations only, which the compiler
    turns into SIMD (float min/max with NaN semantics it does not): ~3x less CPU than numpy's
    min, max and isfinite passes."""
    kmn = np.int64(2**31)
    kmx = np.int64(-2**31 - 1)
    bad = 0
    for i in range(bits.size):
        b = np.int64(bits[i])
        bad += (b & 0x7F800000) == 0x7F800000
        k = b ^ ((b >> 31) & 0x7FFFFFFF)
        kmn = min(kmn, k)
        kmx = max(kmx, k)
    return kmn, kmx, bad


def _float_of_key(k: int) -> np.float32:
    """The float32 whose order key (``b ^ ((b >> 31) & 0x7FFFFFFF)`` of its bit pattern b, as
    a signed integer; monotonic in the value for non-NaN values) is k."""
    return np.array([k ^ ((k >> 31) & 0x7FFFFFFF)], np.int64).astype(np.int32).view(
        np.float32)[0]


def finite_range(values: np.ndarray) -> tuple[np.float32, np.float32] | None:
    """``(values.min(), values.max())`` of a non-empty 1-D contiguous float32 array whose
    values are all finite; None when one is NaN or infinite (or another array), from one
    pass (:func:`_key_range`). A zero extreme may have either sign (``clipped_stats`` asks
    numpy then)."""
    v = np.asarray(values)
    if (v.ndim != 1 or v.size == 0 or v.dtype != np.float32 or not v.dtype.isnative
            or not v.flags.c_contiguous):
        return None
    kmn, kmx, bad = _key_range(v.view(np.int32))
    if bad:
        return None
    return _float_of_key(int(kmn)), _float_of_key(int(kmx))


def _median(v: np.ndarray, lo: float, hi: float, n: int) -> float:
    """``numpy.median`` of the n values of v inside [lo, hi] (float32 arithmetic as numpy)."""
    lo32, hi32 = np.float32(lo), np.float32(hi)
    a, b = _order_stats(v, lo32, hi32, n, (n - 1) // 2, n // 2)
    return float((np.float32(a) + np.float32(b)) / np.float32(2))


@njit(nogil=True, cache=True, inline="always")
def _key_of(b):  # pragma: no cover - numba
    """Order key of a float32 given as its int32 bit pattern b: an integer increasing with the
    value (-0.0 just below +0.0; NaN below -inf or above +inf), consecutive for consecutive
    floats."""
    b = np.int64(b)
    return b ^ ((b >> 31) & 0x7FFFFFFF)


@dataclass(frozen=True)
class _KeyBins:
    """Fine bins of the values in ``[lo, hi]`` by order key: bin ``(key - klo) >> shift`` (at
    most :data:`_NBINS` bins; equal numbers of float32 values, not equal widths)."""

    klo: int
    khi: int
    shift: int
    nb: int

    @staticmethod
    def of(lo: np.float32, hi: np.float32) -> _KeyBins:
        bits = np.array([lo, hi], np.float32).view(np.int32).astype(np.int64)
        klo, khi = (int(b ^ ((b >> 31) & 0x7FFFFFFF)) for b in bits)
        # a zero bound holds both zeros (keys -1 and 0)
        klo = -1 if lo == 0 else klo
        khi = 0 if hi == 0 else khi
        shift = 0
        while (khi - klo) >> shift >= _NBINS:
            shift += 1
        return _KeyBins(klo, khi, shift, ((khi - klo) >> shift) + 1)


@njit(nogil=True, cache=True)
def _moments_keys(v, bits, lo, hi, klo, shift, nb):  # pragma: no cover - numba
    """:func:`_moments` with extremes and the counts of the values inside [lo, hi] in the fine
    bins of :class:`_KeyBins` (the last clipping pass of a median's statistic): the bin from
    the value's bits by integer operations, beside the pass's floating-point sums (the value
    bins of :func:`_moments` compete with them for the same units: ~2x the extra cost)."""
    n = 0
    s = 0.0
    ss = 0.0
    mn = hi
    mx = lo
    h = np.zeros(nb, np.int64)
    for i in range(v.size):
        x = v[i]
        if x >= lo and x <= hi:
            n += 1
            s += x
            ss += np.float64(x) * np.float64(x)
            if x < mn:
                mn = x
            if x > mx:
                mx = x
            h[(_key_of(bits[i]) - klo) >> shift] += 1
    return n, s, ss, mn, mx, h


@njit(nogil=True, cache=True)
def _key_values(v, bits, ka, kb, m):  # pragma: no cover - numba
    """The m values of v whose order key is in ``[ka, kb)``, in index order."""
    buf = np.empty(m, v.dtype)
    j = 0
    w = np.uint64(kb - ka)
    for i in range(v.size):
        if np.uint64(_key_of(bits[i]) - ka) < w:
            buf[j] = v[i]
            j += 1
    return buf


@njit(nogil=True, cache=True)
def _key_ranks(v, bits, klo, khi, shift, h, r1, r2):  # pragma: no cover - numba
    """The r1-th and r2-th smallest (0-based) of the values inside the key range ``[klo,
    khi]`` from their :class:`_KeyBins` counts h: the values of the bins holding those ranks
    (:func:`_key_values`), then a selection among them as :func:`_ranks`."""
    b1, b2, start, m = _rank_bins(h, r1, r2)
    ka = klo + (b1 << shift)
    kb = min(klo + ((b2 + 1) << shift), khi + 1)
    buf = _key_values(v, bits, ka, kb, m)
    k1 = r1 - start
    part = np.partition(buf, k1)
    if r2 == r1:
        return part[k1], part[k1]
    rest = part[k1 + 1:]
    if r2 == r1 + 1:
        return part[k1], rest.min()
    return part[k1], np.partition(rest, r2 - r1 - 1)[r2 - r1 - 1]


def _key_median(v: np.ndarray, kb: _KeyBins, bins: np.ndarray, n: int) -> float | None:
    """``numpy.median`` of the n values of v inside the range of ``kb`` from their bin counts
    (:func:`_moments_keys`); None when a middle value is a zero (the keys order -0.0 before
    +0.0, numbers do not: the sign of a zero median is then the value bins' choice,
    :func:`_median`). Other middle values are the same numbers in either order."""
    a, b = _key_ranks(v, v.view(np.int32), kb.klo, kb.khi, kb.shift, bins, (n - 1) // 2,
                      n // 2)
    if a == 0 or b == 0:
        return None
    return float((np.float32(a) + np.float32(b)) / np.float32(2))


#: numpy's pairwise summation: blocks up to this many values are summed with 8 accumulators
_PW_BLOCKSIZE = 128


@njit(nogil=True, cache=True, inline="always")
def _term(x, m, squares):  # pragma: no cover - numba
    """A value of :func:`_pairwise_sum`: ``x``, or with ``squares`` ``(x - m) * (x - m)``, in
    float64 (a float32 value widened first: the sums of a float32 array are those of its
    float64 copy)."""
    x = np.float64(x)
    if squares:
        return (x - m) * (x - m)
    return x


@njit(nogil=True, cache=True)
def _pairwise_block(a, lo, n, m, squares):  # pragma: no cover - numba
    """numpy's ``pairwise_sum`` of a run of ``n <= 128`` values from ``a[lo]`` (see
    :func:`_pairwise_sum`): fewer than 8 added one by one to 0; else 8 running sums over the
    multiple of 8, combined as ``((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))``, the rest
    added one by one."""
    if n < 8:
        res = -0.0  # numpy adds the values to 0. (-0.0 + x is x for every x, 0. + -0. is not)
        for i in range(lo, lo + n):
            res += _term(a[i], m, squares)
        return res
    r0 = _term(a[lo], m, squares)
    r1 = _term(a[lo + 1], m, squares)
    r2 = _term(a[lo + 2], m, squares)
    r3 = _term(a[lo + 3], m, squares)
    r4 = _term(a[lo + 4], m, squares)
    r5 = _term(a[lo + 5], m, squares)
    r6 = _term(a[lo + 6], m, squares)
    r7 = _term(a[lo + 7], m, squares)
    k = n - n % 8
    for i in range(lo + 8, lo + k, 8):
        r0 += _term(a[i], m, squares)
        r1 += _term(a[i + 1], m, squares)
        r2 += _term(a[i + 2], m, squares)
        r3 += _term(a[i + 3], m, squares)
        r4 += _term(a[i + 4], m, squares)
        r5 += _term(a[i + 5], m, squares)
        r6 += _term(a[i + 6], m, squares)
        r7 += _term(a[i + 7], m, squares)
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(lo + k, lo + n):
        res += _term(a[i], m, squares)
    return res


@njit(nogil=True, cache=True)
def _pairwise_sum(a, m, squares):  # pragma: no cover - numba
    """numpy's ``pairwise_sum`` (``np.add.reduce`` of a contiguous float64 array) of the
    values of ``a``, or with ``squares`` of their ``(a[i] - m) ** 2``: the same additions in
    the same order, so the same value. numpy sums a run of more than 128 values as the sum of
    its two parts split at the multiple of 8 below its half, recursively; runs of at most 128
    by :func:`_pairwise_block`. The recursion is walked with an explicit stack (numba's cache
    of a recursive function crashed when loaded)."""
    lo = np.empty(64, np.int64)  # a run's start, length, stage (0: left part next,
    ln = np.empty(64, np.int64)  # 1: right part next, 2: both done) and left part's sum
    stage = np.empty(64, np.int64)
    left = np.empty(64)
    sp = 0
    lo[0], ln[0], stage[0] = 0, a.size, 0
    ret = 0.0
    while sp >= 0:
        start, n = lo[sp], ln[sp]
        if n <= _PW_BLOCKSIZE:
            ret = _pairwise_block(a, start, n, m, squares)
            sp -= 1
            continue
        n2 = n // 2
        n2 -= n2 % 8
        if stage[sp] == 0:
            stage[sp] = 1
            sp += 1
            lo[sp], ln[sp], stage[sp] = start, n2, 0
        elif stage[sp] == 1:
            left[sp] = ret
            stage[sp] = 2
            sp += 1
            lo[sp], ln[sp], stage[sp] = start + n2, n - n2, 0
        else:
            ret = left[sp] + ret
            sp -= 1
    return ret


@njit(nogil=True, cache=True)
def _mean_1d(a):  # pragma: no cover - numba
    """``np.mean`` of a float64 array (its pairwise sum over the count); of a float32 array
    that of its float64 copy."""
    return (0.0 + _pairwise_sum(a, 0.0, False)) / a.size


@njit(nogil=True, cache=True)
def _std_1d(a):  # pragma: no cover - numba
    mean = _mean_1d(a)
    return np.sqrt((0.0 + _pairwise_sum(a, mean, True)) / a.size)


def numpy_std(values: np.ndarray) -> np.floating:
    """``np.std(values)``: for a non-empty 1-D contiguous float64 array the same value from two
    compiled passes (numpy's pairwise sums of the values and of their squared deviations from
    the mean, :func:`_pairwise_sum`) without numpy's whole-array temporary of the deviations
    (~3x less CPU); anything else is ``np.std``'s."""
    a = np.asarray(values)
    if a.ndim != 1 or a.dtype != np.float64 or a.size == 0 or not a.flags.c_contiguous:
        return np.std(a)
    return np.float64(_std_1d(a))


def _compiled_1d(a: np.ndarray) -> bool:
    """Whether the compiled float64 statistics take ``a`` as it is: a non-empty 1-D contiguous
    native float32 or float64 array."""
    return (a.ndim == 1 and a.size > 0 and a.dtype in (np.float32, np.float64)
            and a.dtype.isnative and a.flags.c_contiguous)


def mean_float64(values: np.ndarray) -> np.float64:
    """``np.mean(values.astype(np.float64))`` of a 1-D float32 or float64 array: for a
    contiguous one the same value (numpy's pairwise sum of the widened values, in the same
    order, over the count) from one compiled pass, without the float64 copy."""
    a = np.asarray(values)
    if not _compiled_1d(a):
        return np.mean(np.asarray(a, dtype=np.float64))
    return np.float64(_mean_1d(a))


def std_float64(values: np.ndarray) -> np.float64:
    """``np.std(values.astype(np.float64))`` of a 1-D float32 or float64 array: for a
    contiguous one the same value (:func:`numpy_std`'s two compiled passes over the widened
    values), without the float64 copy."""
    a = np.asarray(values)
    if not _compiled_1d(a):
        return np.std(np.asarray(a, dtype=np.float64))
    return np.float64(_std_1d(a))


def median_float64(values: np.ndarray) -> np.float64:
    """``np.median(values.astype(np.float64))`` of a 1-D float32 or float64 array of finite
    values: the same value (the order statistics of float32 values are float32 values, exact
    in float64; the two middle ones averaged in float64 as numpy does) by the compiled order
    statistics of :func:`exact_median`, without the float64 copy."""
    a = np.asarray(values)
    if a.dtype == np.float64:
        return np.float64(exact_median(a))
    if a.ndim != 1 or a.dtype != np.float32 or not a.dtype.isnative or a.size < 65536:
        return np.float64(np.median(np.asarray(a, dtype=np.float64)))
    lo, hi = a.min(), a.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return np.float64(np.median(np.asarray(a, dtype=np.float64)))
    n = a.size
    ok, x, y = _bracketed_order_stats(a, lo, hi, (n - 1) // 2, n // 2)
    if not ok:
        x, y = _order_stats(a, lo, hi, n, (n - 1) // 2, n // 2)
    return np.float64(x) if n % 2 else np.mean(np.array([x, y], dtype=np.float64))


def exact_median(values: np.ndarray, axis: int | None = None) -> np.floating:
    """``np.nanmedian(values, axis)``, for a large float64 array of finite values by the
    order statistics of :func:`_bracketed_order_stats` (fine bins over a sampled bracket of
    the middle ranks, for values with a long tail), else of :func:`_order_stats` (fine bins
    over the values' range): the same value, a fraction of numpy's CPU.

    The two middle values of the whole array are selected exactly and averaged as numpy does
    (``np.mean`` of the two; the middle value itself for an odd count). Anything else
    (``axis``, fewer than 65536 values, other dtypes, NaN or inf) is ``np.nanmedian``'s.
    Usable as astropy's sigma-clipping ``cenfunc`` (the catalogs' background statistics).
    """
    a = np.asarray(values)
    if axis is not None or a.size < 65536 or a.dtype != np.float64:
        return np.nanmedian(a, axis=axis)
    a = a.ravel()
    lo, hi = a.min(), a.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return np.nanmedian(a)
    n = a.size
    ok, x, y = _bracketed_order_stats(a, lo, hi, (n - 1) // 2, n // 2)
    if not ok:
        x, y = _order_stats(a, lo, hi, n, (n - 1) // 2, n // 2)
    return np.float64(x) if n % 2 else np.mean(np.array([x, y]))


def _mode(v: np.ndarray, vmin: np.float32, vmax: np.float32, stddev: float,
          binwidth: float) -> tuple[float, int]:
    hwidth = binwidth * stddev
    drange = float(vmax - vmin)
    tiny = 10.0 * float(np.finfo(np.float32).eps)
    if hwidth < tiny or abs(drange) < tiny or hwidth > drange:
        nbins, dz = 1, drange
    else:
        nbins = int(drange / hwidth) + 1
        dz = drange / (nbins - 1)
    width = np.float32(dz)
    h = _histogram(v, nbins, np.float32(vmin), np.float32(np.float32(vmin) + width * nbins),
                   np.float32(np.float32(1.0) / width))
    lo = float(vmin)
    if nbins == 1:
        return lo + 0.5 * hwidth, nbins
    if nbins == 2:
        if h[0] > h[1]:
            return lo + 0.5 * hwidth, nbins
        if h[0] < h[1]:
            return lo + 1.5 * hwidth, nbins
        return lo + hwidth, nbins
    peak = int(np.argmax(h))
    if peak == 0:
        return lo + 0.5 * hwidth, nbins
    if peak == nbins - 1:
        return lo + (nbins - 0.5) * hwidth, nbins
    dh1 = int(h[peak] - h[peak - 1])
    dh2 = int(h[peak] - h[peak + 1])
    if dh1 + dh2 == 0:
        return lo + (peak + 0.5) * hwidth, nbins
    pos = peak + 1 + 0.5 * (dh1 - dh2) / (dh1 + dh2)
    return lo + (pos - 0.5) * hwidth, nbins


def clipped_stats(values: np.ndarray, *, nclip: int, lsig: float, usig: float,
                  lower: float | None = None, upper: float | None = None,
                  binwidth: float = 0.1, median: bool = False, mode: bool = False,
                  first: tuple | None = None, data_range: tuple | None = None
                  ) -> ClippedStats:
    """ImageStats' clipped statistics of a 1-D array of finite values (module docstring).

    ``data_range``: ``(min, max)`` of ``values`` when the caller knows them
    (:func:`finite_range`).

    ``first``: the first clipping pass over ``values`` as :func:`gather_first_pass` made it
    beside the gather, ``(n, sum, sum of squares, min, max)`` with the same ``lower`` and
    ``upper`` (used when ``nclip`` > 0; the statistics are the same values).

    Raises
    ------
    ValueError
        No value, or no value inside the range (as ImageStats: "Not enough data points").
    """
    v = np.ascontiguousarray(values, dtype=np.float32).ravel()
    if v.size == 0:
        raise ValueError("no pixel to compute statistics on")
    if nclip <= 0:
        first = None
    if first is not None:
        data_range = (first[3], first[4])
    if data_range is not None and data_range[0] != 0 and data_range[1] != 0:
        vmin, vmax = float(data_range[0]), float(data_range[1])
    else:  # (an extreme that is a zero: numpy's, its sign as numpy picks it)
        vmin, vmax = float(v.min()), float(v.max())
    lower = vmin if lower is None else float(lower)
    upper = vmax if upper is None else float(upper)
    if lower > vmax or upper < vmin:
        raise ValueError(f"no pixel inside [{lower:g}, {upper:g}] (data range "
                         f"[{vmin:g}, {vmax:g}])")
    lo, hi = lower, upper
    bins = None
    last = False
    for it in range(nclip + 1):
        lo32, hi32 = np.float32(lo), np.float32(hi)
        # the passes before the last need no extremes: the last one (or the one repeating a
        # pass's range) gives them
        last = last or it == nclip
        if it == 0 and first is not None:  # made beside the gather (not the last: nclip > 0)
            n, s, ss = first[0], first[1], first[2]
        elif not last:
            n, s, ss, _, _ = _moments(v, lo32, hi32, False)
        else:
            if median and nclip > 0:
                # the last pass selects the median's values: their fine bins (by order key)
                # counted in the same pass
                kb = _KeyBins.of(lo32, hi32)
                n, s, ss, mn, mx, bins = _moments_keys(v, v.view(np.int32), lo32, hi32,
                                                       kb.klo, kb.shift, kb.nb)
            else:
                n, s, ss, mn, mx = _moments(v, lo32, hi32, True)
        if n <= 0:
            raise ValueError(f"no pixel left after clipping pass {it} "
                             f"(range [{lo:g}, {hi:g}])")
        mean = np.float32(s / n)
        var = (ss - s * s / n) / (n - 1) if n > 1 else float("nan")
        std = float(np.float32(math.sqrt(var))) if var >= 0 else 0.0
        if last:
            break
        nlo = max(lower, float(mean) - lsig * std)
        nhi = min(upper, float(mean) + usig * std)
        # the same float32 range as this pass: the same pixels, statistics and range in every
        # further pass, so one more (the last, with extremes) gives the result
        last = np.float32(nlo) == lo32 and np.float32(nhi) == hi32
        lo, hi = nlo, nhi
    med = None
    if median:  # ImageStats: median of the final range, of all values without clipping
        if nclip > 0:
            med = _key_median(v, kb, bins, n)
            if med is None:  # a zero in the middle: its sign as the value bins pick it
                med = _median(v, lo, hi, n)
        else:
            med = _median(v, vmin, vmax, v.size)
    # stsci.imagestats 1.8's computeMean starts its min/max from the first pixel clamped to
    # the range, so the reported extremes (which place the mode histogram) include it: kept
    v0 = v[0]
    mn = min(max(v0, np.float32(lo)), mn)
    mx = max(min(v0, np.float32(hi)), mx)
    mo, nbins = (None, 0)
    if mode:
        mo, nbins = _mode(v, mn, mx, std, binwidth)
    return ClippedStats(int(n), float(mean), std, float(mn), float(mx), float(lo), float(hi),
                        med, mo, nbins)


def sky_statistic(values: np.ndarray, params, first: tuple | None = None
                  ) -> tuple[float, int]:
    """AstroDrizzle's sky value (``params.skystat``) and pixel count of 1-D finite values.

    Parameters
    ----------
    values : ndarray
        Good pixels in SCI units.
    params : hapdask.sky.SkyParams
    first : tuple, optional
        The first clipping pass made beside the gather of ``values``
        (:func:`gather_first_pass` with ``params.skylower``, ``params.skyupper``).

    Raises
    ------
    ValueError
        When there is nothing to measure (see :func:`clipped_stats`).
    """
    st = clipped_stats(values, nclip=params.skyclip, lsig=params.skylsigma,
                       usig=params.skyusigma, lower=params.skylower, upper=params.skyupper,
                       binwidth=params.skywidth, median=params.skystat == "median",
                       mode=params.skystat == "mode", first=first)
    value = {"median": st.median, "mode": st.mode, "mean": st.mean}[params.skystat]
    return float(value), st.npix


def brightness_factor(pscale: float, exptime: float, is_rate: bool) -> float:
    """Factor turning a sky value in SCI units into AstroDrizzle's surface brightness.

    ``1 / pscale**2`` (nominal pixel area, arcsec^2), divided by ``exptime`` for count data
    (as skypac, an exposure time <= 0 is ignored).
    """
    f = 1.0 / (pscale * pscale)
    if not is_rate and exptime > 0:
        f /= exptime
    return f


def good_sky_pixels(sci: np.ndarray, dq: np.ndarray, bits: int | None,
                    static: np.ndarray | None = None) -> np.ndarray:
    """Mask of pixels usable for sky: DQ good per ``bits``, static mask, finite."""
    good = good_pixel_mask(dq, bits) & np.isfinite(sci)
    if static is not None:
        good &= static
    return good
