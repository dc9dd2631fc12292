"""Background, noise and weight-dependent detection thresholds of a drizzled image (HAP inventory
5.1 and 5.2).

Footprint: pixels covered by at least one exposure, eroded by ``footprint_erosion`` (10) pixels.

Background (:func:`compute_background`), following DrizzlePac's ``CatalogImage.compute_background``:

1. sigma-clipped statistics (``nsigma_clip``, ``maxiters``, median centre) of the footprint; a
   negative median raises the data by ``rms - median`` and the statistics are repeated;
   ``skew = |3 (mean - median) / rms|``;
2. the constant background is the clipped median of footprint values with
   ``0 < value < median + 0.1 rms`` (HAP's choice: it biases the level low, on purpose, to keep
   faint wings of sources out of it); the rms is the largest of that clipped rms, the read-noise
   floor ``sqrt(NUMEXP) max(READNSE*) / TEXPTIME`` and the DER_SNR-like MAD estimate
   ``1.482602 median|2 f(i) - f(i-2) - f(i+2)| / sqrt(6)`` along rows;
3. **Discrepancy (inventory 9.5)**: the DrizzlePac documentation says Background2D is used when
   the skew is *below* ``bkg_skew_threshold``; the code tries it when the skew is *above* it. We
   follow the code (a skewed distribution is what a varying background produces): Background2D
   (box ``bkg_box_size``, filter ``bkg_filter_size``, SExtractor/Std estimators, exclude
   percentile 10, 25, 50, 75 until one works) is adopted unless more than ``negative_percent``
   of the footprint falls below ``-1 x`` its median rms after subtraction, or its median rms
   exceeds the constant model's. Note that pure Gaussian noise has 15.9 % of its values below
   -1 sigma, so with the default 15 % this test rejects Background2D unless its rms is
   overestimated (sources, structure); :attr:`Background.note` records every decision.

The SBC "zero background" branch is not implemented (no SBC in hapdask's simulator); SBC products
raise a ValueError here.

Weight regions (:func:`weight_regions`), following ``make_wht_masks``: the WHT image is
maximum-filtered (``region_size``), normalised by its maximum and split into nested regions at
relative-weight limits ``1/s, 1/s^2, ...`` (``s = max(scale, (NDRIZIM - 1) / 2)``). Each region's
noise is ``median(rms * sqrt(1 / max relative weight in the region))`` and
:func:`threshold_image` makes ``nsigma x`` that noise a per-pixel threshold map.
"""

from __future__ import annotations

import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from astropy.stats import SigmaClip
from astropy.stats.nanfunctions import nanmean, nanstd
from numba import njit
from photutils.background import Background2D, SExtractorBackground, StdBackgroundRMS
from scipy import ndimage

from hapdask._memory import drop_file_pages
from hapdask.catalogs.params import CatalogParams
from hapdask.catalogs.product import DrizzleProduct, nan_to_zero
from hapdask.sky.stats import exact_median, mean_float64, median_float64, numpy_std, std_float64

__all__ = ["Background", "WeightRegion", "erode", "footprint_mask", "compute_background",
           "weight_regions", "threshold_image", "max_filtered", "MAD_SIGMA"]

#: Gaussian sigma per median absolute deviation (the constant HAP uses).
MAD_SIGMA = 1.482602


@dataclass(frozen=True)
class Background:
    """Result of :func:`compute_background` (arrays have the image's shape, e-/s)."""

    background: np.ndarray
    rms: np.ndarray
    median: float
    rms_median: float
    skew: float
    method: str  # "constant" or "2d"
    note: str = ""  # why Background2D was not tried / not adopted


@dataclass(frozen=True)
class WeightRegion:
    """One weight region: ``mask`` (bool), relative-weight ``limit`` and its ``noise`` (e-/s)."""

    mask: np.ndarray
    limit: float
    noise: float


@njit(nogil=True, cache=True)
def _erode_l1(d, k):  # pragma: no cover - numba
    """``d`` (uint8, 1 where set) eroded in place: each set pixel's city-block distance to the
    nearest unset pixel or the outside of the array, capped at ``k + 1 <= 255``, by the two
    raster passes of the city-block distance transform (exact for that metric), then 1 where
    it exceeds ``k``, else 0 (a third pass: the second reads the distances below and right)."""
    ny, nx = d.shape
    cap = k + 1
    for y in range(ny):
        for x in range(nx):
            if d[y, x]:
                up = d[y - 1, x] if y > 0 else 0
                left = d[y, x - 1] if x > 0 else 0
                v = min(up, left) + 1
                d[y, x] = min(v, cap)
    for y in range(ny - 1, -1, -1):
        for x in range(nx - 1, -1, -1):
            v = d[y, x]
            if v:
                down = d[y + 1, x] if y < ny - 1 else 0
                right = d[y, x + 1] if x < nx - 1 else 0
                d[y, x] = min(v, down + 1, right + 1)
    for y in range(ny):
        for x in range(nx):
            d[y, x] = d[y, x] > k


def erode(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``scipy.ndimage.binary_erosion(mask, iterations=iterations)`` of a 2-D mask (the
    4-connected cross, the outside of the array unset): the same mask, from the city-block
    distance to the nearest unset pixel (``iterations`` erosions by the cross are the erosion
    by the city-block disc of that radius) in two compiled passes over one uint8 array,
    instead of ``iterations`` passes. Other shapes and iterations above 254 are scipy's.

    Parameters
    ----------
    mask : array of bool
        The mask (not modified).
    iterations : int
        Erosions by the cross (>= 1).

    Returns
    -------
    numpy.ndarray
        The eroded mask (bool, ``mask``'s shape).
    """
    if mask.ndim != 2 or not 1 <= iterations <= 254:
        return ndimage.binary_erosion(mask, iterations=iterations)
    d = np.array(mask, dtype=np.uint8)
    _erode_l1(d, iterations)
    return d.view(bool)


def footprint_mask(product: DrizzleProduct, params: CatalogParams) -> np.ndarray:
    """Pixels with data (exposure count > 0 and finite SCI), eroded by ``footprint_erosion``
    (:func:`erode`: scipy's ``binary_erosion`` with that many iterations)."""
    covered = (product.exposure_count > 0) & np.isfinite(product.sci)
    if params.footprint_erosion <= 0:
        return covered
    return erode(covered, params.footprint_erosion)


def _readnoise_floor(product: DrizzleProduct) -> float:
    readnoise = product.keyword_values("READNSE")
    if not readnoise:
        return 0.0
    numexp = float(product.keyword("NUMEXP", "NDRIZIM", default=1) or 1)
    return float(np.sqrt(numexp) * max(readnoise) / product.exptime)


_BIG = float(np.finfo(np.float64).max)


@njit(nogil=True, cache=True)
def _mad_value(v, shift):  # pragma: no cover - numba
    """A pixel as :func:`_mad_rms` reads it: float64, NaN as 0 and +-inf as the largest finite
    values (``np.nan_to_num``), minus ``shift`` when it is not 0."""
    x = np.float64(v)
    if x != x:
        x = 0.0
    elif x == np.inf:
        x = _BIG
    elif x == -np.inf:
        x = -_BIG
    if shift != 0.0:
        x -= shift
    return x


@njit(nogil=True, cache=True)
def _mad_row(x, shift, buf, ok):  # pragma: no cover - numba
    """One row of ``x`` as :func:`_mad_value` reads its pixels, into ``buf``, and whether
    each is finite and non-zero, into ``ok`` (each pixel converted once, not at each of the
    three differences that read it)."""
    for i in range(x.size):
        v = _mad_value(x[i], shift)
        buf[i] = v
        ok[i] = v != 0.0 and np.isfinite(v)


@njit(nogil=True, cache=True)
def _mad_band(x, shift, out, n):  # pragma: no cover - numba
    """The ``|2 f(i) - f(i-2) - f(i+2)|`` values of the rows of ``x`` (:func:`_mad_value` of
    each pixel; the three pixels finite and non-zero), row by row, written into ``out`` from
    index ``n``; returns the index after the last one written. The same float64 operations as
    ``np.abs(2 * f[:, 2:-2] - f[:, :-4] - f[:, 4:])[use]`` in numpy, in the same order, in one
    pass without the whole-band temporaries."""
    nx = x.shape[1]
    buf = np.empty(nx)
    ok = np.empty(nx, np.bool_)
    for r in range(x.shape[0]):
        _mad_row(x[r], shift, buf, ok)
        for i in range(2, nx - 2):
            if ok[i - 2] and ok[i] and ok[i + 2]:
                out[n] = abs(2.0 * buf[i] - buf[i - 2] - buf[i + 2])
                n += 1
    return n


def _native_rows(data: np.ndarray, r0: int, band: int) -> np.ndarray:
    """``data[r0:r0 + band]`` as an array the compiled passes read (native float32/float64)."""
    x = np.asarray(data[r0:r0 + band])
    if x.dtype not in (np.float32, np.float64) or not x.dtype.isnative:
        x = np.array(x, dtype=np.float64)  # e.g. a big-endian (FITS) memory map's rows
    return x


def _mad_rms(data: np.ndarray, band: int = 512, shift: float = 0.0) -> float:
    """DER_SNR-like rms along rows over pixels that are finite and non-zero (with both
    neighbours at +-2) of ``data`` as float64 with NaN set to 0, minus ``shift`` when it is not
    0; the differences are gathered band by band (no whole-image temporaries besides the
    gathered values), each band in one pass (:func:`_mad_band`).

    Each band's values are copied, in band order, into one array sized for every pixel (the
    pages past the values gathered are never touched, so take no memory): the same array as
    the bands' values concatenated, without holding them twice. (Bands in two threads were
    measured and not kept: with glibc's default per-thread arenas the catalog step's peak rose
    from 1068 to 1138 MiB. A median found without gathering the values, from counts in fine
    bins over a sampled bracket and a second pass gathering the bins of the middle ranks, was
    exact but ~40 % slower: the counting pass's branches on values outside the bracket.)"""
    out = np.empty(data.shape[0] * max(data.shape[1] - 4, 0), dtype=np.float64)
    n = 0
    for r0 in range(0, data.shape[0], band):
        n = _mad_band(_native_rows(data, r0, band), float(shift), out, n)
    if not n:
        return 0.0
    return float(exact_median(out[:n])) * MAD_SIGMA / np.sqrt(6.0)


def _std(data: np.ndarray, axis=None):
    """``astropy.stats.nanfunctions.nanstd(data, axis)`` (numpy's ``nanstd`` without
    bottleneck): for NaN-free data ``np.std``'s value, which is the same arithmetic (sum, mean,
    squared deviations, their sum, divided by the count) without ``nanstd``'s NaN mask and copy
    of the data (one pass and a whole copy less per clipping iteration), by
    :func:`~hapdask.sky.stats.numpy_std` (np.std's value without its whole-array temporary); a
    NaN result (NaN in the data) is ``nanstd``'s."""
    if axis is None:
        std = numpy_std(data)
        if not np.isnan(std):
            return std
    return nanstd(data, axis=axis)


def _mean(data: np.ndarray):
    """``astropy.stats.nanfunctions.nanmean(data)``: ``np.mean``'s value (the same sum divided
    by the same count) for NaN-free data, without ``nanmean``'s mask and copy; else
    ``nanmean``'s."""
    mean = np.mean(data)
    return mean if not np.isnan(mean) else nanmean(data)


class _ClipStatistics:
    """``cenfunc`` and ``stdfunc`` of astropy's sigma clipping with each iteration's standard
    deviation computed in a second thread while its median is computed in the calling one.

    astropy calls ``cenfunc(data)`` then ``stdfunc(data)`` on the same array at each iteration;
    :meth:`center` starts astropy's own ``'std'`` function (``astropy.stats.nanfunctions.nanstd``,
    what ``stdfunc='std'`` means; its value by :func:`_std`) on that array in ``pool`` and returns
    :func:`~hapdask.sky.stats.exact_median`; :meth:`std` returns that result. Both read the
    array only, so the values are the same as one after the other; numpy's whole-array
    operations and the median's numba passes release the GIL, so the two run on two cores.
    """

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool
        self._pending: tuple[np.ndarray, object, Future] | None = None

    def center(self, data: np.ndarray, axis=None):
        self._pending = (data, axis, self._pool.submit(self._spread, data, axis))
        if data.dtype == np.float32 and axis is None:  # the in-place clipping's float32 values
            return median_float64(data)
        return exact_median(data, axis=axis)

    def std(self, data: np.ndarray, axis=None):
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] is data and pending[1] == axis:
            return pending[2].result()
        return self._spread(data, axis)

    @staticmethod
    def _spread(data: np.ndarray, axis=None):
        if data.dtype == np.float32 and axis is None:
            return std_float64(data)
        return _std(data, axis=axis)


@njit(nogil=True, cache=True)
def _keep_between(v, n, lo, hi):  # pragma: no cover - numba
    """Move the values of ``v[:n]`` inside ``[lo, hi]`` to the front of ``v``, in their order
    (``v[:n][(v[:n] >= lo) & (v[:n] <= hi)]`` written over ``v``); returns their count."""
    j = 0
    for i in range(n):
        x = v[i]
        if x >= lo and x <= hi:
            v[j] = x
            j += 1
    return j


def _sigma_clip_in_place(values: np.ndarray, sigma: float, maxiters: int | None,
                         clip: _ClipStatistics) -> np.ndarray:
    """astropy's ``SigmaClip(sigma, maxiters=maxiters, cenfunc=clip.center,
    stdfunc=clip.std)(values, masked=False)`` of a 1-D float64 array of finite values, the
    values kept written over ``values`` (returned: a view of its front). A float32 array is
    clipped as its float64 copy would be (statistics of the widened values, bounds compared
    in float64), the values kept in float32.

    The same loop as astropy's (``SigmaClip._sigmaclip_noaxis``): at each iteration the centre
    and standard deviation of the values kept, bounds ``centre -+ std x sigma``, the values
    inside them kept in their order, until none is removed or after ``maxiters`` iterations
    (None: no limit). Each iteration's values are kept in place (:func:`_keep_between`)
    instead of in a new array selected by two comparison masks: no second copy of the values
    and no masks (the catalog background's largest temporaries)."""
    limit = maxiters or np.inf
    n = values.size
    changed, iteration = 1, 0
    while changed != 0 and iteration < limit:
        iteration += 1
        data = values[:n]
        with warnings.catch_warnings():  # as astropy: no warning of an empty or NaN statistic
            warnings.simplefilter("ignore", category=RuntimeWarning)
            centre = clip.center(data)
            std = clip.std(data)
        m = _keep_between(values, n, centre - std * sigma, centre + std * sigma)
        changed, n = n - m, m
    return values[:n]


def _clipped_stats(values: np.ndarray, sigma: float, maxiters: int | None = 5, *,
                   overwrite: bool = False) -> tuple[float, float, float]:
    """``sigma_clipped_stats(values, sigma=sigma, maxiters=maxiters, cenfunc=exact_median)``
    (mean, median, standard deviation of the clipped values) of a float64 array of finite
    values, in two threads: the same values, as astropy's function computes them (astropy's
    ``SigmaClip`` with ``masked=False``, then ``nanmean``, ``nanmedian`` and ``nanstd`` of the
    values kept). A 1-D float32 array of finite values gives the statistics of its float64
    copy (the same values) without that copy: half the bytes per clipping pass
    (:func:`~hapdask.sky.stats.median_float64`, ``std_float64``, ``mean_float64``).

    Each clipping iteration's median and standard deviation are computed side by side
    (:class:`_ClipStatistics`), and so is the median of the values kept
    (:func:`~hapdask.sky.stats.exact_median`: ``np.nanmedian``'s value without its copy of the
    values) beside their mean and standard deviation. The clipping keeps its values in place
    (:func:`_sigma_clip_in_place`) in a copy of ``values``, or in ``values`` itself with
    ``overwrite`` (its contents are then lost); values that are not all finite (which astropy
    drops first, with a warning) go to astropy's ``SigmaClip``."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        clip = _ClipStatistics(pool)
        if (values.ndim == 1 and values.dtype in (np.float32, np.float64)
                and values.dtype.isnative and np.isfinite(values).all()):
            work = (values if overwrite and values.flags.writeable and values.flags.c_contiguous
                    else np.ascontiguousarray(values).copy())
            kept = _sigma_clip_in_place(work, sigma, maxiters, clip)
        else:
            kept = SigmaClip(sigma=sigma, maxiters=maxiters, cenfunc=clip.center,
                             stdfunc=clip.std)(values, masked=False, copy=True)
        if kept.dtype == np.float32:
            median = pool.submit(median_float64, kept)
            mean, std = mean_float64(kept), std_float64(kept)
        else:
            median = pool.submit(exact_median, kept)
            mean, std = _mean(kept), _std(kept)
        return mean, median.result(), std


def _values(raw: np.ndarray, shift: float, *, copy: bool = True) -> np.ndarray:
    """The statistics' values: ``raw`` as a new float64 array, NaN as 0, minus ``shift``; a
    native float32 ``raw`` of finite values with no ``shift`` as a float32 copy (or ``raw``
    itself when not ``copy``): the same values once widened, and the statistics of
    :func:`_clipped_stats` and the comparisons of :func:`_between` are made in float64."""
    if (not shift and raw.dtype == np.float32 and raw.dtype.isnative
            and np.isfinite(raw).all()):
        return raw.copy() if copy else raw
    vals = nan_to_zero(np.array(raw, dtype=np.float64))
    if shift:
        vals -= shift
    return vals


@njit(nogil=True, cache=True)
def _between_band(v, lo, hi, out):  # pragma: no cover - numba
    j = 0
    for i in range(v.size):
        x = v[i]
        if np.float64(x) > lo and np.float64(x) < hi:
            out[j] = x
            j += 1
    return j


def _between(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``values[(values > lo) & (values < hi)]`` of a 1-D array, compared in float64 (a
    float32 value widened), in one pass without the masks: a view of the front of a new
    array of ``values``' size and type (its pages past the values kept are never touched,
    so take no memory)."""
    out = np.empty(values.size, dtype=values.dtype)
    return out[:_between_band(values, float(lo), float(hi), out)]


def compute_background(product: DrizzleProduct, params: CatalogParams,
                       footprint: np.ndarray | None = None) -> Background:
    """Background and rms maps of ``product`` (see the module docstring for the algorithm).

    Parameters
    ----------
    product : DrizzleProduct
        The image (e-/s); keywords ``TEXPTIME``/``EXPTIME``, optional ``READNSE*``, ``NUMEXP``.
    params : CatalogParams
        Background parameters.
    footprint : bool array, optional
        Pixels to use (default :func:`footprint_mask`).
    """
    if str(product.keyword("DETECTOR", default="")).upper() == "SBC":
        raise ValueError(f"{product.name}: SBC backgrounds (HAP's zero-background branch) are "
                         f"not implemented")
    if footprint is None:
        footprint = footprint_mask(product, params)
    if not footprint.any():
        raise ValueError(f"{product.name}: no pixel with data inside the eroded footprint")
    # the statistics read the footprint's values only (float64, NaN as 0; the same values as
    # the whole image converted and indexed, without that whole-image float64 copy, which is
    # made only for Background2D)
    # (the footprint's values are kept in the image's type, half the size of float64; a float32
    # image's finite values without a shift are clipped in float32 (_values), their statistics
    # those of the float64 values, else converted for each use: the clipping overwrites its copy)
    raw = product.sci[footprint]
    shift = 0.0
    # cenfunc: each clipping iteration's median by sky.stats.exact_median (np.nanmedian's)
    mean, median, rms = _clipped_stats(_values(raw, shift), params.nsigma_clip, params.maxiters,
                                       overwrite=True)
    if median < 0:
        shift = median - rms
        mean, median, rms = _clipped_stats(_values(raw, shift), params.nsigma_clip,
                                           params.maxiters, overwrite=True)
    skew = float(abs(3.0 * (mean - median) / rms)) if rms > 0 else 0.0
    vals = _between(_values(raw, shift, copy=False), 0.0, median + 0.1 * rms)
    del raw
    if vals.size:
        _, bkg_median, bkg_rms = _clipped_stats(vals, params.nsigma_clip, overwrite=True)
    else:
        bkg_median, bkg_rms = 0.0, 0.0
    del vals
    bkg_median = max(float(bkg_median), 0.0)
    bkg_rms = max(float(bkg_rms), _readnoise_floor(product), _mad_rms(product.sci, shift=shift))
    if not bkg_rms > 0:
        raise ValueError(f"{product.name}: background rms is zero (constant image?)")
    shape = product.sci.shape

    def constant(note: str) -> Background:
        # read-only broadcast views: a constant model costs no memory per pixel
        return Background(np.broadcast_to(np.float64(bkg_median), shape),
                          np.broadcast_to(np.float64(bkg_rms), shape),
                          bkg_median, bkg_rms, skew, "constant", note)

    if params.simple_bkg:
        return constant("simple_bkg")
    if skew <= params.bkg_skew_threshold:
        return constant(f"skew {skew:.3f} <= bkg_skew_threshold; Background2D not tried")
    data = nan_to_zero(np.array(product.sci, dtype=np.float64))
    if shift:
        data -= shift
    outside = ~footprint
    bkg = None
    for percentile in (10.0, 25.0, 50.0, 75.0):
        try:
            bkg = Background2D(data, params.bkg_box_size, coverage_mask=outside,
                               filter_size=params.bkg_filter_size, exclude_percentile=percentile,
                               bkg_estimator=SExtractorBackground(),
                               bkg_rms_estimator=StdBackgroundRMS())
            break
        except ValueError:
            continue
    if bkg is None:
        return constant("Background2D failed for every exclude_percentile")
    rms2d_median = float(bkg.background_rms_median)
    background = np.asarray(bkg.background)  # photutils recomputes it at each access
    # counted band by band (no whole-image difference array)
    negative = sum(np.count_nonzero((data[r:r + 512] - background[r:r + 512])[footprint[r:r + 512]]
                                    < -rms2d_median) for r in range(0, data.shape[0], 512))
    percent = negative / footprint.sum() * 100.0
    if percent > params.negative_percent:
        return constant(f"Background2D rejected: {percent:.1f} % of the footprint below -1 rms "
                        f"(negative_percent {params.negative_percent})")
    if rms2d_median > bkg_rms:
        return constant(f"Background2D rejected: its median rms {rms2d_median:.4g} exceeds the "
                        f"constant model's {bkg_rms:.4g}")
    return Background(background, np.asarray(bkg.background_rms),
                      float(bkg.background_median), rms2d_median, skew, "2d",
                      f"Background2D adopted ({percent:.1f} % below -1 rms)")


@njit(nogil=True, cache=True)
def _row_max(x, a, b, big, out):  # pragma: no cover - numba
    """``out[r, c] = max(x[r, c - a:c + b + 1])`` (the window cut at the row's ends), of
    ``x`` read as ``np.nan_to_num`` makes it (NaN 0, +-inf -+``big``): each output row starts
    as its input row and takes the maximum with the row shifted by each offset in turn
    (passes over a row in cache that vectorise)."""
    ny, nx = x.shape
    for r in range(ny):
        o = out[r]
        for c in range(nx):
            v = x[r, c]
            if v != v:
                v = 0.0
            elif v > big:
                v = big
            elif v < -big:
                v = -big
            o[c] = v
        row = o.copy()
        for d in range(1, a + 1):  # left neighbours: o[c] vs row[c - d]
            for c in range(d, nx):
                v = row[c - d]
                o[c] = v if v > o[c] else o[c]  # a select (vectorises), not a branch
        for d in range(1, b + 1):  # right neighbours: o[c] vs row[c + d]
            for c in range(nx - d):
                v = row[c + d]
                o[c] = v if v > o[c] else o[c]


@njit(nogil=True, cache=True)
def _column_max(h, i0, i1, a, b, out):  # pragma: no cover - numba
    """``out[i - i0] = max(h[i - a:i + b + 1], axis=0)`` (the window cut at ``h``'s first and
    last rows) for the rows ``i0 <= i < i1`` of ``h``."""
    m, nx = h.shape
    for i in range(i0, i1):
        o = out[i - i0]
        o[:] = h[i]
        for k in range(max(0, i - a), min(m, i + b + 1)):
            if k == i:
                continue
            hk = h[k]
            for c in range(nx):
                v = hk[c]
                o[c] = v if v > o[c] else o[c]


def max_filtered(image: np.ndarray, size: int, band: int = 512) -> np.ndarray:
    """``scipy.ndimage.maximum_filter(np.nan_to_num(image), size=size)`` (mode 'reflect'),
    band by band in two compiled passes (rows, then columns: the maximum is separable).

    With mode 'reflect' every value the filter reads past an edge is a pixel inside the window
    (it mirrors pixels at most the window's reach from the edge), so each output is the
    maximum of the window cut at the image's edges: exactly the same value (a maximum is one
    of the inputs) as scipy's, which was ~5x more CPU for a 6000^2 WHT (its line buffers).
    Each band is filtered with the filter's reach of context rows on both sides, without
    whole-image temporaries (a memory-mapped ``image`` is read a band at a time, and its
    pages are released after each band). Other than 2-D float32/float64: scipy's filter."""
    ny = image.shape[0]
    out = np.empty(image.shape, dtype=image.dtype.newbyteorder("="))
    compiled = image.ndim == 2 and out.dtype in (np.float32, np.float64) and size >= 1
    a = size // 2  # scipy's window: offsets -(size // 2) .. size - 1 - size // 2
    b = size - 1 - a
    reach = max(a, b) if compiled else size
    for r0 in range(0, ny, band):
        r1 = min(ny, r0 + band)
        lo, hi = max(0, r0 - reach), min(ny, r1 + reach)
        if compiled:
            rows = np.empty((hi - lo, image.shape[1]), out.dtype)
            _row_max(np.asarray(image[lo:hi], dtype=out.dtype), a, b,
                     float(np.finfo(out.dtype).max), rows)
            _column_max(rows, r0 - lo, r1 - lo, a, b, out[r0:r1])
        else:
            sub = ndimage.maximum_filter(nan_to_zero(np.array(image[lo:hi])), size=size)
            out[r0:r1] = sub[r0 - lo:r1 - lo]
        drop_file_pages(image)  # a memory-mapped image's pages read so far (hapdask._memory)
    return out


def _masked_max(values: np.ndarray, mask: np.ndarray, band: int = 512) -> np.generic:
    """``values[mask].max()`` (NaN-free ``values``, some pixel set), band by band: the same
    value (and numpy type) without gathering the masked pixels into one array."""
    return max(values[r:r + band][mask[r:r + band]].max()
               for r in range(0, values.shape[0], band) if mask[r:r + band].any())


def _region_noise(rms: np.ndarray, rel: np.ndarray, mask: np.ndarray) -> float:
    """``nanmedian(rms[mask] * sqrt(1 / rel[mask].max()))``, a weight region's noise.

    For a constant rms map (the read-only broadcast view of a constant background) every
    value is ``rms x factor``, the same float64 product, so their median is that product
    (the median of equal values is the value; the mean of two equal middle values too); only
    a per-pixel map is gathered. The region's weights are not gathered either
    (:func:`_masked_max`)."""
    factor = np.sqrt(1.0 / _masked_max(rel, mask))  # in rel's type, as before
    if rms.ndim == 2 and rms.strides == (0, 0):
        return float(rms[0, 0] * factor)
    return float(np.nanmedian(rms[mask] * factor))


def weight_regions(product: DrizzleProduct, rms: np.ndarray, params: CatalogParams,
                   footprint: np.ndarray) -> list[WeightRegion]:
    """Split the footprint into nested relative-weight regions (see the module docstring)."""
    ndrizim = float(product.keyword("NDRIZIM", "NUMEXP", default=1) or 1)
    scale = max(params.scale, (ndrizim - 1.0) / 2.0)
    rel = max_filtered(product.wht, params.region_size)
    top = float(rel.max())
    if not top > 0:
        raise ValueError(f"{product.name}: WHT is zero everywhere")
    rel /= top  # in place: the same values as ``maxwht / top``
    remaining = footprint & (rel > 0)
    pthresh = (1.0 - params.sensitivity) * remaining.sum()
    limit = 1.0 / scale
    regions: list[WeightRegion] = []
    while remaining.any():
        mask = (rel > limit) & remaining
        if mask.any():
            n, left = mask.sum(), remaining.sum()
            if n == left or (n > pthresh and left - n > pthresh):
                regions.append(WeightRegion(mask, limit, _region_noise(rms, rel, mask)))
                remaining &= ~mask
            elif left - n <= pthresh:
                limit = 0.0
        limit /= scale
    return regions


def threshold_image(regions: list[WeightRegion], nsigma: float,
                    shape: tuple[int, int]) -> np.ndarray:
    """Per-pixel detection threshold ``nsigma x region noise`` (0 outside every region)."""
    out = np.zeros(shape)
    for reg in regions:
        out[reg.mask] = nsigma * reg.noise
    return out
