"""Point-source ("aperture") catalogs (HAP inventory 5.3).

Detection (:func:`detect_point_sources`) runs on the total (detection) image minus its background,
clipped at 0, separately in each weight region
(:func:`~hapdask.catalogs.background.weight_regions`), pixels outside the eroded footprint
masked, with HAP's SVM ``starfinder_algorithm``:

* ``"psf"`` (HAP's SVM configuration, ``HAPPointCatalog.identify_sources`` ->
  ``deconvolve_utils.find_point_sources``): the region minus ``nsigma x region noise``, clipped at
  0 (only pixels above the threshold are left), is deconvolved by the PSF (FFT, regularisation
  ``alpha`` = the PSF's spectral amplitude at the ``freq_limit`` quantile, in
  ``block_size``-square blocks), peaks of the deconvolved image are found in ``region_size``
  boxes (footprint eroded again by ``region_size``), the thresholded image is kept only within
  ``region_size // 2`` pixels of them, its peaks are found again in ``region_size // 2`` boxes
  and measured by DAOFIND at those positions (``fwhm``, threshold ~0, sharpness 0.4-0.9,
  roundness -1..1). **Choice**: HAP deconvolves by the library TinyTim PSF of the filters
  (``pars/psfs``, drizzled onto the image) and uses that PSF's measured FWHM; hapdask does not
  ship those PSFs and uses a Gaussian of FWHM ``TWEAK_FWHMPSF / pixel scale`` for both (on the
  demo ACS/WFC visit the deconvolution changes the number of sources by ~3 %: the
  thresholding, the one-peak-per-box rule and the sharpness limits decide the list).
  The blocks overlap by a margin of ``region_size`` pixels (DrizzlePac's do not, which leaves
  seams at the block edges). The threshold is the region's median noise (DrizzlePac subtracts
  the per-pixel ``rms x sqrt(1 / max relative weight)``: the same for a constant background).
  A region where this path finds no peak falls back to ``"dao"``, as in HAP. The second
  erosion keeps no source within 21 px of the data edge; it matters: on the demo ACS/WFC
  visit 11 % of the sources found without it lie in that strip (2 % of the area), noise peaks
  where fewer exposures overlap than the max-filtered weight map says.
* ``"dao"`` (HAP's fall-back when the PSF path fails or finds no peak): ``DAOStarFinder`` with
  threshold ``nsigma x region noise`` on the background-subtracted image (FWHM as above). It
  finds every local density maximum above the threshold of the *convolved* image, ~4x more
  sources than the ``"psf"`` path on the demo visit, most of them with S/N < 5 in aperture 2
  (flagged faint and trimmed from the total catalog).

Measurement (:func:`measure_point_sources`) is forced photometry at the detected sky positions on
each filter image (non-background-subtracted; the filter image's own background rms gives the
errors): see :mod:`hapdask.catalogs.photometry`. Columns (HAP's names and order): X-Center,
Y-Center (0-based pixels), RA, DEC (deg), ID, MagAp1, MagErrAp1, FluxAp1, FluxErrAp1, MagAp2,
MagErrAp2, MSkyAp2, StdevAp2, FluxAp2, FluxErrAp2, CI, Flags.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from astropy.table import Table
from numba import njit
from photutils.detection import DAOStarFinder
from photutils.detection.daofinder import _DAOStarFinderCatalog
from photutils.utils.exceptions import NoDetectionsWarning
from scipy import fft, ndimage

from hapdask._memory import release_free_memory
from hapdask.catalogs.background import Background, WeightRegion, erode
from hapdask.catalogs.flags import source_flags
from hapdask.catalogs.params import CatalogParams
from hapdask.catalogs.photometry import aperture_photometry_hap, effective_gain
from hapdask.catalogs.product import DrizzleProduct, nan_to_zero

__all__ = ["detect_point_sources", "measure_point_sources", "deconvolve", "band_peaks",
           "POINT_COLUMNS", "COLUMN_UNITS", "PSF_SHARPNESS"]

POINT_COLUMNS = ("X-Center", "Y-Center", "RA", "DEC", "ID", "MagAp1", "MagErrAp1", "FluxAp1",
                 "FluxErrAp1", "MagAp2", "MagErrAp2", "MSkyAp2", "StdevAp2", "FluxAp2",
                 "FluxErrAp2", "CI", "Flags")

#: Units of HAP catalog columns (both catalog types).
COLUMN_UNITS = {"X-Center": "pix", "Y-Center": "pix", "X-Centroid": "pix", "Y-Centroid": "pix",
                "RA": "deg", "DEC": "deg", "MagAp1": "mag(AB)", "MagErrAp1": "mag(AB)",
                "MagAp2": "mag(AB)", "MagErrAp2": "mag(AB)", "MagSegment": "mag(AB)",
                "FluxAp1": "electron / s", "FluxErrAp1": "electron / s",
                "FluxAp2": "electron / s", "FluxErrAp2": "electron / s",
                "FluxSegment": "electron / s", "FluxSegmentErr": "electron / s",
                "MSkyAp2": "electron / (s pix)", "StdevAp2": "electron / (s pix)",
                "Bck": "electron / (s pix)", "CI": "mag(AB)", "Area": "pix2", "FWHM": "pix",
                "KronRadius": "pix", "Xmin": "pix", "Ymin": "pix", "Xmax": "pix", "Ymax": "pix",
                "X2": "pix2", "Y2": "pix2", "XY": "pix2", "CXX": "1 / pix2", "CYY": "1 / pix2",
                "CXY": "1 / pix2", "Theta": "rad"}


#: DAOFIND sharpness limits of HAP's PSF path (``UserStarFinder(sharplo=0.4, sharphi=0.9)``).
PSF_SHARPNESS = (0.4, 0.9)
_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))

#: rows per band of the banded peak search (:func:`band_peaks`): a few 10 MB per temporary
#: instead of whole float64 images
_BAND = 512


@njit(nogil=True, cache=True)
def _window_has_greater(sub, i, c, y0, y1, x0, x1, v):  # pragma: no cover - numba
    """Whether a value of ``sub[y0:y1, x0:x1]`` exceeds ``v`` (the pixel ``(i, c)``'s value),
    its 8 neighbours looked at first (a pixel on a source's slope has a greater one there)."""
    for y in range(max(y0, i - 1), min(y1, i + 2)):
        for x in range(max(x0, c - 1), min(x1, c + 2)):
            if sub[y, x] > v:
                return True
    for y in range(y0, y1):
        for x in range(x0, x1):
            if sub[y, x] > v:
                return True
    return False


@njit(nogil=True, cache=True)
def _band_peak_mask(sub, i0, i1, a, b, edge_top, edge_bottom, threshold, mask, good
                    ):  # pragma: no cover - numba
    """``good[i - i0] = (sub == maximum_filter(sub, size, mode="constant", cval=0)) & (sub >
    threshold) & ~mask`` for the rows ``i0 <= i < i1`` of ``sub`` (NaN-free), the filter's
    window the offsets ``-a .. b`` in both axes: a pixel above the threshold and not masked is
    a peak when no value of its window exceeds it (it is in its window, so it equals the
    window's maximum exactly then), the window cut at the band's rows and the image's columns,
    where it reaches past the image's edges (columns, or rows with ``edge_top`` /
    ``edge_bottom``: ``sub`` starts / ends there) the padding's 0 counting as a value. Only
    the pixels above the threshold are looked at closer (most are not, in the thresholded
    images the peak searches read)."""
    m, nx = sub.shape
    for i in range(i0, i1):
        y0, y1 = max(0, i - a), min(m, i + b + 1)
        pad_row = (edge_top and i - a < 0) or (edge_bottom and i + b + 1 > m)
        for c in range(nx):
            v = sub[i, c]
            ok = v > threshold and not mask[i - i0, c]
            if ok:
                x0, x1 = max(0, c - a), min(nx, c + b + 1)
                if (pad_row or c - a < 0 or c + b + 1 > nx) and 0.0 > v:
                    ok = False
                elif _window_has_greater(sub, i, c, y0, y1, x0, x1, v):
                    ok = False
            good[i - i0, c] = ok


def band_peaks(rows, shape: tuple[int, int], box_size: int, *, threshold: float = 0.0,
               mask: np.ndarray | None = None,
               band: int = _BAND) -> tuple[np.ndarray, np.ndarray] | None:
    """``(x_peak, y_peak)`` of photutils' ``find_peaks(data, threshold, box_size=box_size,
    mask=mask)`` (NaN-free ``data``, scalar ``threshold``), found band by band.

    ``rows(lo, hi)`` returns ``data[lo:hi]`` (an array's slice, or rows made on demand and
    requested in increasing order). The same peaks in the same (row-major) order: a pixel is a
    peak when it equals the ``box_size`` maximum filter (``mode='constant'``, ``cval=0``), is not
    masked and is above the threshold; the filter reaches ``box_size // 2`` rows, so each band
    is tested with ``box_size`` rows of context on both sides (exact; whole-image edges are
    padded with 0 as before). The test is compiled (:func:`_band_peak_mask`: only pixels above
    the threshold compared with their window; scipy's maximum filter of every pixel took
    ~1 CPU-s for a 6000^2 image). Returns None where find_peaks does (constant data, no peak).
    """
    ny = shape[0]
    ctx = int(box_size)
    a = ctx // 2  # scipy's window: offsets -(size // 2) .. size - 1 - size // 2
    b = ctx - 1 - a
    xs, ys = [], []
    first = None
    constant = True
    for r0 in range(0, ny, band):
        r1 = min(ny, r0 + band)
        lo, hi = max(0, r0 - ctx), min(ny, r1 + ctx)
        sub = np.asarray(rows(lo, hi))
        if np.isnan(sub).any():
            raise ValueError("band_peaks: data must not contain NaN")
        if first is None:
            first = sub.flat[0]
        constant = constant and bool(np.all(sub == first))
        if sub.dtype == np.float64 and sub.ndim == 2:
            good = np.empty((r1 - r0, sub.shape[1]), dtype=bool)
            band_mask = (mask[r0:r1] if mask is not None
                         else np.broadcast_to(np.False_, good.shape))
            _band_peak_mask(sub, r0 - lo, r1 - lo, a, b, lo == 0, hi == ny,
                            float(threshold), band_mask, good)
        else:  # other types (comparisons in the data's type): scipy's filter, as photutils
            peak = ndimage.maximum_filter(sub, size=box_size, mode="constant", cval=0.0)
            inner = slice(r0 - lo, r1 - lo)
            good = sub[inner] == peak[inner]
            del peak
            good &= sub[inner] > threshold
            if mask is not None:
                good &= ~mask[r0:r1]
        y, x = np.nonzero(good)
        ys.append(y + r0)
        xs.append(x)
    if constant:
        return None
    x, y = np.concatenate(xs), np.concatenate(ys)
    return (x, y) if x.size else None


class _DeconvolvedRows:
    """Rows of :func:`deconvolve` (times ``weight``) of the image whose rows ``rows(lo, hi)``
    returns, computed one block row at a time when requested (increasing order, as
    :func:`band_peaks` asks): only the block rows that the current band and its context touch
    are held, never the whole deconvolved image (nor the whole image, when ``rows`` makes its
    rows on demand)."""

    def __init__(self, rows: Callable[[int, int], np.ndarray], shape: tuple[int, int],
                 fwhm: float, params: CatalogParams, weight: np.ndarray) -> None:
        self._rows, self._shape = rows, shape
        self._fwhm, self._params, self._weight = fwhm, params, weight
        self._filt = _deconvolution_filter(fwhm, params)
        self._cache: dict[int, np.ndarray] = {}

    def _block_row(self, k: int) -> np.ndarray:
        if k not in self._cache:
            b = self._params.block_size
            rows = _deconvolve_rows(self._rows, self._shape, k * b, self._filt, self._params)
            rows *= self._weight[k * b:k * b + rows.shape[0]]
            self._cache[k] = rows
        return self._cache[k]

    def __call__(self, lo: int, hi: int) -> np.ndarray:
        b = self._params.block_size
        k0, k1 = lo // b, (hi - 1) // b
        for k in [k for k in self._cache if k < k0]:
            del self._cache[k]  # rows above the band are not asked for again
        parts = [self._block_row(k)[max(lo, k * b) - k * b:min(hi, (k + 1) * b) - k * b]
                 for k in range(k0, k1 + 1)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def deconvolve(image: np.ndarray, fwhm: float, params: CatalogParams) -> np.ndarray:
    """``image`` deconvolved by a Gaussian PSF of ``fwhm`` pixels (DrizzlePac ``fft_deconv_img``).

    Per block: ``conj(P) / (|P|^2 + alpha^2) x D`` with ``P`` the PSF's transform (unit sum),
    ``alpha`` its spectral amplitude at the ``freq_limit`` quantile (descending); pixels where
    ``image`` is not positive are 0 in the result. Blocks of ``block_size`` pixels are
    transformed with a margin of ``region_size`` pixels on each side (no seams).
    """
    filt = _deconvolution_filter(fwhm, params)
    return np.concatenate([_deconvolve_rows(lambda lo, hi: image[lo:hi], image.shape, y0, filt,
                                            params)
                           for y0 in range(0, image.shape[0], params.block_size)])


def _block_fft_size(params: CatalogParams) -> int:
    """Edge of the deconvolution's transforms: a block with its margins (``block_size + 2 x
    region_size``) zero-padded to the next size whose factors are 2, 3 and 5 only
    (``scipy.fft.next_fast_len``; 1024 + 22 = 2 x 523 is transformed ~3x slower than 1080)."""
    return fft.next_fast_len(params.block_size + 2 * params.region_size, real=True)


def _deconvolution_filter(fwhm: float, params: CatalogParams) -> np.ndarray:
    """``conj(P) / (|P|^2 + alpha^2)`` on the rfft grid of a block with its margins,
    zero-padded to :func:`_block_fft_size`."""
    sigma = fwhm / _FWHM_PER_SIGMA
    n = _block_fft_size(params)
    ky = fft.fftfreq(n)[:, None]
    kx = fft.rfftfreq(n)[None, :]
    psf_t = np.exp(-2.0 * (np.pi * sigma) ** 2 * (kx * kx + ky * ky))
    # alpha from the full (two-sided) spectrum, as DrizzlePac sorts |P| of the whole block,
    # on the grid of the block with its margins (before the zero-padding to ``n``)
    f0 = fft.fftfreq(params.block_size + 2 * params.region_size)
    full = np.exp(-2.0 * (np.pi * sigma) ** 2 * (f0[None, :] ** 2 + f0[:, None] ** 2))
    alpha = np.sort(full.ravel())[::-1][int(full.size * params.freq_limit)]
    return psf_t / (psf_t * psf_t + alpha * alpha)


def _deconvolve_rows(rows: Callable[[int, int], np.ndarray], shape: tuple[int, int], y0: int,
                     filt: np.ndarray, params: CatalogParams) -> np.ndarray:
    """Rows ``y0 .. y0 + block_size`` of :func:`deconvolve` (one row of blocks) of the image
    whose rows ``rows(lo, hi)`` returns (read once: the block row and its margins)."""
    margin = params.region_size
    b = params.block_size
    n = _block_fft_size(params)
    ny, nx = shape
    h = min(b, ny - y0)
    out = np.zeros((h, nx), dtype=np.float64)
    ys = max(0, y0 - margin)
    image = np.asarray(rows(ys, min(ny, y0 + b + margin)))  # rows ys .. of the image
    for x0 in range(0, nx, b):
        xs = max(0, x0 - margin)
        src = image[:, xs:min(nx, x0 + b + margin)]
        if not src.any():
            continue
        block = np.zeros((n, n))
        block[:src.shape[0], :src.shape[1]] = src
        dec = fft.irfft2(fft.rfft2(block) * filt, s=(n, n))
        oy, ox = y0 - ys, x0 - xs
        w = min(b, nx - x0)
        out[:, x0:x0 + w] = dec[oy:oy + h, ox:ox + w]
    out[image[y0 - ys:y0 - ys + h] <= 0] = 0.0
    return out


def _convolved_cutouts(sub: np.ndarray, lo: int, a: int, b: int, xy: np.ndarray,
                       kernel: np.ndarray) -> np.ndarray:
    """Rows ``a:b`` of ``scipy.ndimage.convolve(image, kernel, mode="constant", cval=0.0)``
    at the kernel-sized cut-outs around the peaks ``xy`` (``(x, y)`` rows, whole-image
    pixels), 0 elsewhere: ``sub`` holds the image's rows from ``lo`` (with the cut-outs and
    the kernel's reach beyond them). Each cut-out is convolved from a patch of the image
    reaching the kernel's half size beyond it (cut at the image's edges, as the whole-image
    call is): every value sums the same neighbours times the same weights in the same order
    as the whole-image call, so it is the same, from ~1/20 of the pixels (DAOFIND reads
    the convolved image at those cut-outs only)."""
    ny, nx = sub.shape[0] + lo, sub.shape[1]
    hy, hx = kernel.shape[0] // 2, kernel.shape[1] // 2
    out = np.zeros((b - a, nx), dtype=np.result_type(sub, kernel))
    for x, y in xy:
        y0, y1 = max(0, y - hy), min(ny, y + hy + 1)  # the cut-out
        x0, x1 = max(0, x - hx), min(nx, x + hx + 1)
        p0, p1 = max(0, y0 - hy), min(ny, y1 + hy)  # and the kernel's reach
        q0, q1 = max(0, x0 - hx), min(nx, x1 + hx)
        patch = ndimage.convolve(sub[p0 - lo:p1 - lo, q0:q1], kernel, mode="constant",
                                 cval=0.0)
        out[y0 - a:y1 - a, x0:x1] = patch[y0 - p0:y1 - p0, x0 - q0:x1 - q0]
    return out


def _dao_at_peaks(rows: Callable[[int, int], np.ndarray], shape: tuple[int, int],
                  peaks: tuple[np.ndarray, np.ndarray], finder: DAOStarFinder,
                  band: int = _BAND) -> tuple[np.ndarray, np.ndarray] | None:
    """``finder(image)`` for a ``finder`` with ``xycoords=np.column_stack(peaks)`` (peaks in
    row-major order, as :func:`band_peaks` gives them), computed band by band: the centroids
    of the sources photutils keeps, in its order; None when it finds none.

    photutils convolves the whole image with the DAOFIND kernel (``scipy.ndimage.convolve``,
    ``mode="constant"``, ``cval=0``) and measures each source on the image's and the convolved
    image's kernel-sized cut-outs at its peak. Here each band of peaks gets the image's rows
    around it (``rows(lo, hi)``) convolved with twice the kernel's size of context (each pixel
    sums the same neighbours in the same order: the same values), and photutils' DAOFIND
    catalog of those peaks is made on the band's rows and their convolution, the peaks' rows
    counted from the band's first row (the cut-outs read rows inside the band, or past the
    image's edges, which are the band's there: the same cut-outs, offsets and filters); the
    centroids are photutils' expression ``peak + offset`` with the whole image's peak rows,
    the same values. The per-source filters (finite values, sharpness and roundness ranges)
    do not depend on the other sources. (Whole-image-shaped arrays holding the band, as
    before, page-faulted ~0.6 GB of zero pages per detection on a 6000^2 image.)
    """
    ny = shape[0]
    kern = finder.kernel
    ctx = int(max(kern.data.shape))  # > the cut-outs' and the convolution's reach (half of it)
    xy = np.column_stack(peaks)
    ys = xy[:, 1]
    xs_out, ys_out = [], []
    for r0 in range(0, ny, band):
        r1 = min(ny, r0 + band)
        sel = (ys >= r0) & (ys < r1)
        if not sel.any():
            continue
        lo, hi = max(0, r0 - 2 * ctx), min(ny, r1 + 2 * ctx)
        sub = np.asarray(rows(lo, hi))
        a, b = max(0, r0 - ctx), min(ny, r1 + ctx)  # rows the cut-outs read
        conv = _convolved_cutouts(sub, lo, a, b, xy[sel], kern.data)
        # the band's rows a:b as the catalog's images, its peaks' rows counted from a
        local = xy[sel] - np.array([0, a], dtype=xy.dtype)
        cat = _DAOStarFinderCatalog(sub[a - lo:b - lo], conv, local,
                                    finder.threshold, kern,
                                    sharpness_range=finder.sharpness_range,
                                    roundness_range=finder.roundness_range,
                                    n_brightest=finder.n_brightest, peak_max=finder.peak_max,
                                    scale_threshold=finder.scale_threshold)
        cat = cat.apply_all_filters()
        if cat is not None:
            # photutils' centroids (``xypos + (dx, dy)``) at the whole image's peak rows
            xs_out.append(np.atleast_1d(np.asarray(cat.x_centroid, dtype=np.float64)))
            ys_out.append(np.atleast_1d(np.asarray(
                np.transpose(cat.xypos)[1] + a + cat.dy, dtype=np.float64)))
        del cat, sub, conv
    if not xs_out:
        return None
    return np.concatenate(xs_out), np.concatenate(ys_out)


def _psf_sources(rows: Callable[[int, int], np.ndarray], shape: tuple[int, int],
                 footprint: np.ndarray, fwhm: float, params: CatalogParams, *,
                 band: int = _BAND) -> tuple[np.ndarray, np.ndarray] | None:
    """HAP's PSF path on one thresholded region (module docstring); None when no peak.
    ``rows(lo, hi)`` returns the region's rows ``lo:hi`` (a new array each call, which is
    modified; the region is made on demand and never held whole).

    The deconvolved image is made block row by block row as the banded peak search reads it
    (never whole), both peak searches run in row bands (:func:`band_peaks`): the same peaks as
    photutils' ``find_peaks`` on the whole images, and DAOFIND measures them band by band
    (:func:`_dao_at_peaks`): the same sources as photutils' ``DAOStarFinder`` on the whole
    region."""
    box = params.region_size
    inside = erode(footprint, box)  # scipy binary_erosion(footprint, iterations=box)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        peaks = band_peaks(_DeconvolvedRows(rows, shape, fwhm, params, inside), shape, box,
                           mask=~footprint, band=band)
    del inside
    release_free_memory()  # the bands' freed heap memory (before the whole-image steps)
    if peaks is None:
        return None
    half = box // 2
    near = np.zeros(shape, dtype=bool)
    for x, y in zip(*peaks, strict=True):
        near[max(0, y - half):y + half + 1, max(0, x - half):x + half + 1] = True

    def kept(lo: int, hi: int) -> np.ndarray:  # the region, 0 far from the peaks
        r = rows(lo, hi)
        r[~near[lo:hi]] = 0.0
        return r

    peaks = band_peaks(kept, shape, half, band=band)
    if peaks is None:
        return None
    finder = DAOStarFinder(threshold=1e-10, fwhm=fwhm, sharpness_range=PSF_SHARPNESS)
    return _dao_at_peaks(kept, shape, peaks, finder, band=band)


def _region_rows(total: DrizzleProduct, background: Background, reg: WeightRegion,
                 threshold: float) -> Callable[[int, int], np.ndarray]:
    """``rows(lo, hi)``: rows of :func:`_detection_image` minus ``threshold`` inside the weight
    region, 0 outside it, clipped at 0 (new arrays, made on demand: the same values as the
    whole-image steps, which are all per pixel)."""
    dtype = np.result_type(total.sci, background.background)

    def rows(lo: int, hi: int) -> np.ndarray:
        x = np.array(total.sci[lo:hi], dtype=dtype)
        nan_to_zero(x)
        x -= background.background[lo:hi]
        np.clip(x, 0.0, None, out=x)
        x -= threshold
        x[~reg.mask[lo:hi]] = 0.0
        np.clip(x, 0.0, None, out=x)
        return x

    return rows


def _detection_image(total: DrizzleProduct, background: Background) -> np.ndarray:
    """SCI (NaN as 0) minus the background, clipped at 0, in one whole-image array."""
    image = np.array(total.sci, dtype=np.result_type(total.sci, background.background))
    nan_to_zero(image)
    image -= background.background
    np.clip(image, 0.0, None, out=image)
    return image


def detect_point_sources(total: DrizzleProduct, background: Background,
                         regions: list[WeightRegion], footprint: np.ndarray,
                         params: CatalogParams) -> Table:
    """Point sources of the total image: columns ID, X-Center, Y-Center, RA, DEC (sorted by ID).

    ``params.starfinder`` selects HAP's PSF path or DAOStarFinder (module docstring).
    """
    fwhm = params.fwhmpsf / total.pixel_scale
    xs, ys = [], []
    for reg in regions:
        # the detection image is made again for each use (the same values; never kept beside
        # the thresholded region and the deconvolution)
        if params.starfinder == "psf":
            # np.where(mask, image - t, 0) clipped at 0, made a few rows at a time
            got = _psf_sources(_region_rows(total, background, reg, params.nsigma * reg.noise),
                               total.sci.shape, footprint, fwhm, params)
            if got is not None:
                xs.append(got[0])
                ys.append(got[1])
                continue
        finder = DAOStarFinder(threshold=params.nsigma * reg.noise, fwhm=fwhm)
        image = _detection_image(total, background)
        image[~reg.mask] = 0.0  # np.where(mask, image, 0) in place
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoDetectionsWarning)  # an empty region is fine
            found = finder(image, mask=~footprint)
        del image
        if found is None:
            continue
        xs.append(np.asarray(found["x_centroid"], dtype=np.float64))
        ys.append(np.asarray(found["y_centroid"], dtype=np.float64))
    x = np.concatenate(xs) if xs else np.zeros(0)
    y = np.concatenate(ys) if ys else np.zeros(0)
    ra, dec = total.wcs.celestial.all_pix2world(x, y, 0) if x.size else (np.zeros(0),
                                                                         np.zeros(0))
    out = Table()
    out["ID"] = np.arange(1, x.size + 1, dtype=np.int64)
    out["X-Center"] = x
    out["Y-Center"] = y
    out["RA"] = np.asarray(ra, dtype=np.float64)
    out["DEC"] = np.asarray(dec, dtype=np.float64)
    return out


def measure_point_sources(image: DrizzleProduct, sources: Table, background: Background,
                          params: CatalogParams, *,
                          saturated: np.ndarray | None = None) -> Table:
    """Forced two-aperture photometry of ``sources`` (RA/DEC) on a filter image.

    Returns the filter point catalog (:data:`POINT_COLUMNS`, units in :data:`COLUMN_UNITS`).
    """
    photflam, photplam = image.photometry_keywords()
    if len(sources):
        x, y = image.wcs.celestial.all_world2pix(np.asarray(sources["RA"]),
                                                 np.asarray(sources["DEC"]), 0)
    else:
        x = y = np.zeros(0)
    pscale = image.pixel_scale
    phot = aperture_photometry_hap(image.sci, x, y, rms=background.rms, pixel_scale=pscale,
                                   gain=effective_gain(image, params), photflam=photflam,
                                   photplam=photplam, params=params)
    n_exp = int(image.keyword("NUMEXP", "NDRIZIM", default=1) or 1)
    flags = source_flags(phot, x, y, params=params, pixel_scale=pscale,
                         exposure_count=image.exposure_count, n_exposures=n_exp,
                         saturated=saturated)
    out = Table()
    out["X-Center"] = np.asarray(x, dtype=np.float64)
    out["Y-Center"] = np.asarray(y, dtype=np.float64)
    out["RA"] = np.asarray(sources["RA"], dtype=np.float64)
    out["DEC"] = np.asarray(sources["DEC"], dtype=np.float64)
    out["ID"] = np.asarray(sources["ID"], dtype=np.int64)
    for name in POINT_COLUMNS[5:-1]:
        out[name] = np.asarray(phot[name], dtype=np.float64)
    out["Flags"] = flags
    for name in out.colnames:
        if name in COLUMN_UNITS:
            out[name].unit = COLUMN_UNITS[name]
    return out
