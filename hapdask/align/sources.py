"""Sources per chip: photutils detection and centroiding on one FLT/FLC chip.

:func:`find_sources` works on plain arrays (SCI, ERR, DQ); :func:`chip_sources` reads a chip and
is the per-chip Dask task of the alignment graph. Positions are 0-based chip pixels.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from astropy.stats import SigmaClip
from astropy.table import Table
from photutils.aperture import CircularAperture, aperture_photometry
from photutils.background import (
    Background2D,
    MedianBackground,
    SExtractorBackground,
    StdBackgroundRMS,
)
from photutils.detection import DAOStarFinder
from scipy import ndimage

from hapdask.align.params import SourceParams

#: Columns of a source table (see :func:`find_sources`).
SOURCE_COLUMNS = ("x", "y", "sigma", "flux", "flux_err", "peak", "snr")

#: Systematic floor of the centroid uncertainty (pixels): pixel phase, crowding.
CENTROID_FLOOR = 0.02

#: ``exclude_percentile`` values tried in turn for Background2D (as HAP).
_EXCLUDE_PERCENTILES = (10.0, 25.0, 50.0, 75.0)


def empty_sources() -> Table:
    """A source table with no rows."""
    return Table({c: np.zeros(0) for c in SOURCE_COLUMNS})


def _background(data: np.ndarray, mask: np.ndarray, p: SourceParams
                ) -> tuple[np.ndarray, float] | None:
    """Background image and median background rms (the rms image is never interpolated)."""
    est = SExtractorBackground() if p.bkg_estimator == "sextractor" else MedianBackground()
    box = min(p.box_size, *data.shape)
    for pct in _EXCLUDE_PERCENTILES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                bkg = Background2D(data, box, mask=mask, filter_size=p.filter_size,
                                   sigma_clip=SigmaClip(sigma=3.0), bkg_estimator=est,
                                   bkg_rms_estimator=StdBackgroundRMS(),
                                   exclude_percentile=pct)
        except ValueError:
            continue
        return np.asarray(bkg.background), float(bkg.background_rms_median)
    return None


def windowed_centroids(data: np.ndarray, x: np.ndarray, y: np.ndarray, sigma: float, *,
                       valid: np.ndarray | None = None, niter: int = 30,
                       tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-windowed centroids (SExtractor's ``XWIN_IMAGE``), vectorised over sources.

    Iterates ``x += 2 * sum(w I (X - x)) / sum(w I)`` with a circular Gaussian window ``w`` of
    width ``sigma`` (pixels) centred on the current estimate: unbiased for symmetric profiles
    and far less sensitive to pixel phase than moment or quadratic-peak centroids, which
    matters for undersampled PSFs (WFC3/IR). photutils' Gaussian-fit centroids reach the same
    accuracy but cost ~30 ms per source.

    Parameters
    ----------
    data : ndarray
        Background-subtracted image.
    x, y : ndarray
        Start positions (0-based pixels).
    sigma : float
        Window width (pixels).
    valid : ndarray of bool, optional
        Pixels that may be used (False pixels get zero weight).
    niter, tol : int, float
        Iteration limit and convergence tolerance (pixels).

    Returns
    -------
    xc, yc : ndarray
        Centroids; NaN where the window lost all flux or did not converge.
    """
    half = int(math.ceil(3.0 * sigma))
    off = np.arange(-half, half + 1)
    ny, nx = data.shape
    xc = np.asarray(x, dtype=np.float64).copy()
    yc = np.asarray(y, dtype=np.float64).copy()
    done = np.zeros(xc.size, bool)
    for _ in range(niter):
        act = np.flatnonzero(~done & np.isfinite(xc))
        if act.size == 0:
            break
        gx = np.round(xc[act]).astype(np.int64)[:, None, None] + off[None, None, :]
        gy = np.round(yc[act]).astype(np.int64)[:, None, None] + off[None, :, None]
        inside = (gx >= 0) & (gx < nx) & (gy >= 0) & (gy < ny)
        cx, cy = np.clip(gx, 0, nx - 1), np.clip(gy, 0, ny - 1)
        v = np.where(inside, data[cy, cx], 0.0)
        if valid is not None:
            v = np.where(valid[cy, cx], v, 0.0)
        ddx = gx - xc[act, None, None]
        ddy = gy - yc[act, None, None]
        wv = v * np.exp(-0.5 * (ddx ** 2 + ddy ** 2) / sigma ** 2)
        sw = wv.sum(axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            stepx = np.where(sw > 0, 2.0 * (wv * ddx).sum(axis=(1, 2)) / sw, np.nan)
            stepy = np.where(sw > 0, 2.0 * (wv * ddy).sum(axis=(1, 2)) / sw, np.nan)
        xc[act] += stepx
        yc[act] += stepy
        done[act] = np.hypot(stepx, stepy) < tol
    xc[~done] = np.nan
    yc[~done] = np.nan
    return xc, yc


def find_sources(sci: np.ndarray, err: np.ndarray, dq: np.ndarray, pixel_scale: float,
                 params: SourceParams | None = None) -> tuple[Table, str]:
    """Detect and centroid the point-like sources of one chip.

    Parameters
    ----------
    sci, err : ndarray
        Science and error arrays (any consistent unit: electrons or electrons/s).
    dq : ndarray of int
        Data-quality flags; pixels with bits other than ``params.ignore_bits`` are masked.
    pixel_scale : float
        Arcsec per pixel (for the PSF FWHM in pixels).
    params : SourceParams, optional
        Defaults: :class:`SourceParams` (ACS/WFC and UVIS values).

    Returns
    -------
    sources : astropy.table.Table
        ``x``, ``y`` (0-based chip pixels, :func:`windowed_centroids`), ``sigma`` (1-sigma
        position uncertainty per axis, pixels: FWHM / (2.35 SNR) with a
        :data:`CENTROID_FLOOR` added in quadrature), ``flux``/``flux_err`` (aperture of
        1.5 FWHM radius, background subtracted), ``peak``, ``snr``; brightest first, at most
        ``params.max_sources``. Saturated or cosmic-ray-flagged detections, too sharp (CR
        hits) or too elongated ones are rejected.
    note : str
        Empty, or why no source could be found (for the alignment report).
    """
    p = params or SourceParams()
    sci = np.asarray(sci, dtype=np.float64)
    dq = np.asarray(dq).astype(np.int64, copy=False)
    bad = ((dq & ~p.ignore_bits) != 0) | ~np.isfinite(sci)
    if bad.all():
        return empty_sources(), "no good pixels"
    bg = _background(sci, bad, p)
    if bg is None:
        return empty_sources(), "background estimation failed (too few good pixels)"
    bkg, rms_med = bg
    data = np.where(bad, 0.0, sci - bkg)
    if not rms_med > 0:
        return empty_sources(), "zero background noise (constant image)"
    fwhm = max(p.fwhmpsf / pixel_scale, 1.0)
    threshold = p.threshold_scale * p.nsigma * rms_med
    # the brightest 8 x max_sources detections: room for the rejections below (on CCD FLC
    # frames most bright detections are unflagged cosmic rays, dropped by the centroiding)
    finder = DAOStarFinder(threshold, fwhm, exclude_border=True,
                           sharpness_range=p.sharp_range,
                           roundness_range=(-p.round_max, p.round_max),
                           n_brightest=8 * p.max_sources)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = finder(data, mask=bad)
    if found is None or len(found) == 0:
        return empty_sources(), "no source above the detection threshold"
    x = np.asarray(found["x_centroid"], dtype=float)
    y = np.asarray(found["y_centroid"], dtype=float)
    inside = (x >= 0) & (y >= 0) & (x <= sci.shape[1] - 1) & (y <= sci.shape[0] - 1)
    x, y = x[inside], y[inside]
    # reject detections touching saturated / CR-flagged pixels
    flagged = (dq & p.reject_bits) != 0
    if flagged.any():
        rad = max(1, int(math.ceil(p.reject_radius * fwhm)))
        near = ndimage.binary_dilation(flagged, structure=np.ones((2 * rad + 1,) * 2, bool))
        iy = np.clip(np.round(y).astype(int), 0, sci.shape[0] - 1)
        ix = np.clip(np.round(x).astype(int), 0, sci.shape[1] - 1)
        keep = ~near[iy, ix]
        x, y = x[keep], y[keep]
    if x.size == 0:
        return empty_sources(), "all detections saturated or cosmic-ray flagged"
    xc, yc = windowed_centroids(np.where(bad, 0.0, data), x, y, max(fwhm / 2.3548, 1.5),
                                valid=~bad)
    ok = np.isfinite(xc) & np.isfinite(yc) & (np.hypot(xc - x, yc - y) < 1.0)
    xc, yc = xc[ok], yc[ok]
    if xc.size == 0:
        return empty_sources(), "no source could be centroided"
    aper = CircularAperture(np.column_stack([xc, yc]), r=1.5 * fwhm)
    err_img = np.where(bad, 0.0, np.asarray(err, dtype=np.float64))
    phot = aperture_photometry(data, aper, error=err_img, mask=bad)
    flux = np.asarray(phot["aperture_sum"], dtype=float)
    ferr = np.asarray(phot["aperture_sum_err"], dtype=float)
    snr = np.where(ferr > 0, flux / np.where(ferr > 0, ferr, 1.0), 0.0)
    good = (flux > 0) & (snr > 0)
    iy = np.clip(np.round(yc).astype(int), 0, sci.shape[0] - 1)
    ix = np.clip(np.round(xc).astype(int), 0, sci.shape[1] - 1)
    peak = data[iy, ix]
    order = np.argsort(-flux[good], kind="stable")[: p.max_sources]
    sel = np.flatnonzero(good)[order]
    t = Table()
    t["x"] = xc[sel]
    t["y"] = yc[sel]
    t["sigma"] = np.hypot(fwhm / (2.3548 * snr[sel]), CENTROID_FLOOR)
    t["flux"] = flux[sel]
    t["flux_err"] = ferr[sel]
    t["peak"] = peak[sel]
    t["snr"] = snr[sel]
    return t, "" if len(t) else "no source with positive flux"


def chip_sources(chip, params: SourceParams | None = None) -> tuple[Table, str]:
    """Read one :class:`hapdask.io.Chip` and run :func:`find_sources` on it (a Dask task).

    Returns ``(sources, note)``; an unreadable chip gives no sources and the error as the note.
    """
    try:
        sci, err, dq = chip.read()
    except (OSError, ValueError) as exc:
        return empty_sources(), f"unreadable: {exc}"
    return find_sources(sci, err, dq, chip.pixel_scale, params)
