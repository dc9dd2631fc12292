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

import numpy as np
from astropy.table import Table
from photutils.detection import DAOStarFinder
from photutils.utils.exceptions import NoDetectionsWarning
from scipy import fft, ndimage

from hapdask._memory import release_free_memory
from hapdask.catalogs.background import Background, WeightRegion
from hapdask.catalogs.flags import source_flags
from hapdask.catalogs.params import CatalogParams
from hapdask.catalogs.photometry import aperture_photometry_hap, effective_gain
from hapdask.catalogs.product import DrizzleProduct

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


def band_peaks(rows, shape: tuple[int, int], box_size: int, *, threshold: float = 0.0,
               mask: np.ndarray | None = None,
               band: int = _BAND) -> tuple[np.ndarray, np.ndarray] | None:
    """``(x_peak, y_peak)`` of photutils' ``find_peaks(data, threshold, box_size=box_size,
    mask=mask)`` (NaN-free ``data``, scalar ``threshold``), found band by band.

    ``rows(lo, hi)`` returns ``data[lo:hi]`` (an array's slice, or rows made on demand and
    requested in increasing order). The same peaks in the same (row-major) order: a pixel is a
    peak when it equals the ``box_size`` maximum filter (``mode='constant'``, ``cval=0``), is not
    masked and is above the threshold; the filter reaches ``box_size // 2`` rows, so each band
    is filtered with ``box_size`` rows of context on both sides (exact; whole-image edges are
    padded with 0 as before). Returns None where find_peaks does (constant data, no peak).
    """
    ny = shape[0]
    ctx = int(box_size)
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
    """Rows of :func:`deconvolve` (times ``weight``), computed one block row at a time when
    requested (increasing order, as :func:`band_peaks` asks): only the block rows that the
    current band and its context touch are held, never the whole deconvolved image."""

    def __init__(self, image: np.ndarray, fwhm: float, params: CatalogParams,
                 weight: np.ndarray) -> None:
        self._image, self._fwhm, self._params, self._weight = image, fwhm, params, weight
        self._filt = _deconvolution_filter(fwhm, params)
        self._cache: dict[int, np.ndarray] = {}

    def _block_row(self, k: int) -> np.ndarray:
        if k not in self._cache:
            b = self._params.block_size
            rows = _deconvolve_rows(self._image, k * b, self._filt, self._params)
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
    return np.concatenate([_deconvolve_rows(image, y0, filt, params)
                           for y0 in range(0, image.shape[0], params.block_size)])


def _deconvolution_filter(fwhm: float, params: CatalogParams) -> np.ndarray:
    """``conj(P) / (|P|^2 + alpha^2)`` on the rfft grid of a block with its margins."""
    sigma = fwhm / _FWHM_PER_SIGMA
    n = params.block_size + 2 * params.region_size
    ky = fft.fftfreq(n)[:, None]
    kx = fft.rfftfreq(n)[None, :]
    psf_t = np.exp(-2.0 * (np.pi * sigma) ** 2 * (kx * kx + ky * ky))
    # alpha from the full (two-sided) spectrum, as DrizzlePac sorts |P| of the whole block
    full = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fft.fftfreq(n)[None, :] ** 2 + ky * ky))
    alpha = np.sort(full.ravel())[::-1][int(full.size * params.freq_limit)]
    return psf_t / (psf_t * psf_t + alpha * alpha)


def _deconvolve_rows(image: np.ndarray, y0: int, filt: np.ndarray,
                     params: CatalogParams) -> np.ndarray:
    """Rows ``y0 .. y0 + block_size`` of :func:`deconvolve` (one row of blocks)."""
    margin = params.region_size
    b = params.block_size
    n = b + 2 * margin
    ny, nx = image.shape
    h = min(b, ny - y0)
    out = np.zeros((h, nx), dtype=np.float64)
    ys = max(0, y0 - margin)
    for x0 in range(0, nx, b):
        xs = max(0, x0 - margin)
        src = image[ys:min(ny, y0 + b + margin), xs:min(nx, x0 + b + margin)]
        if not src.any():
            continue
        block = np.zeros((n, n))
        block[:src.shape[0], :src.shape[1]] = src
        dec = fft.irfft2(fft.rfft2(block) * filt, s=(n, n))
        oy, ox = y0 - ys, x0 - xs
        w = min(b, nx - x0)
        out[:, x0:x0 + w] = dec[oy:oy + h, ox:ox + w]
    out[image[y0:y0 + h] <= 0] = 0.0
    return out


def _psf_sources(region: np.ndarray, footprint: np.ndarray, fwhm: float,
                 params: CatalogParams) -> tuple[np.ndarray, np.ndarray] | None:
    """HAP's PSF path on one thresholded region (module docstring); None when no peak.
    ``region`` is modified (pixels far from the peaks of the deconvolved image set to 0).

    The deconvolved image is made block row by block row as the banded peak search reads it
    (never whole), and both peak searches run in row bands (:func:`band_peaks`): the same
    peaks as photutils' ``find_peaks`` on the whole images."""
    box = params.region_size
    inside = ndimage.binary_erosion(footprint, iterations=box)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        peaks = band_peaks(_DeconvolvedRows(region, fwhm, params, inside), region.shape, box,
                           mask=~footprint)
    del inside
    release_free_memory()  # the bands' freed heap memory (before the whole-image steps)
    if peaks is None:
        return None
    half = box // 2
    near = np.zeros(region.shape, dtype=bool)
    for x, y in zip(*peaks, strict=True):
        near[max(0, y - half):y + half + 1, max(0, x - half):x + half + 1] = True
    region[~near] = 0.0  # in place (the caller's array: it is not used again)
    del near
    peaks = band_peaks(lambda lo, hi: region[lo:hi], region.shape, half)
    if peaks is None:
        return None
    # DAOFIND at the peaks on the whole image (its pixel positions are whole-image positions:
    # measured in a band, the centroids would be rounded differently)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        finder = DAOStarFinder(threshold=1e-10, fwhm=fwhm, sharpness_range=PSF_SHARPNESS,
                               xycoords=np.column_stack(peaks))
        found = finder(region, mask=~footprint)
    if found is None:
        return None
    return (np.asarray(found["x_centroid"], dtype=np.float64),
            np.asarray(found["y_centroid"], dtype=np.float64))


def _detection_image(total: DrizzleProduct, background: Background) -> np.ndarray:
    """SCI (NaN as 0) minus the background, clipped at 0, in one whole-image array."""
    image = np.array(total.sci, dtype=np.result_type(total.sci, background.background))
    np.nan_to_num(image, copy=False, nan=0.0)
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
            # np.where(mask, image - t, 0) clipped at 0, made in one array
            region = _detection_image(total, background)
            region -= params.nsigma * reg.noise
            region[~reg.mask] = 0.0
            np.clip(region, 0.0, None, out=region)
            got = _psf_sources(region, footprint, fwhm, params)
            del region
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
