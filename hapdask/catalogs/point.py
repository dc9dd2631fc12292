"""Point-source ("aperture") catalogs (HAP inventory 5.3).

Detection (:func:`detect_point_sources`) runs on the total (detection) image minus its background,
clipped at 0, separately in each weight region (:func:`~hapdask.catalogs.background.weight_regions`)
with ``DAOStarFinder`` (FWHM ``TWEAK_FWHMPSF / pixel scale``, threshold ``nsigma x region noise``,
pixels outside the eroded footprint masked).

**Choice**: HAP's default ``starfinder_algorithm="psf"`` deconvolves the image by library TinyTim
PSFs (``pars/psfs``) that hapdask does not ship; HAP falls back to ``DAOStarFinder`` whenever that
path fails or finds nothing, and that fallback (HAP's ``"dao"`` option) is what we use.

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

from hapdask.catalogs.background import Background, WeightRegion
from hapdask.catalogs.flags import source_flags
from hapdask.catalogs.params import CatalogParams
from hapdask.catalogs.photometry import aperture_photometry_hap, effective_gain
from hapdask.catalogs.product import DrizzleProduct

__all__ = ["detect_point_sources", "measure_point_sources", "POINT_COLUMNS", "COLUMN_UNITS"]

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


def detect_point_sources(total: DrizzleProduct, background: Background,
                         regions: list[WeightRegion], footprint: np.ndarray,
                         params: CatalogParams) -> Table:
    """Point sources of the total image: columns ID, X-Center, Y-Center, RA, DEC (sorted by ID)."""
    # one whole-image array (NaN -> 0 and the background subtracted in place)
    image = np.array(total.sci, dtype=np.result_type(total.sci, background.background))
    np.nan_to_num(image, copy=False, nan=0.0)
    image -= background.background
    np.clip(image, 0.0, None, out=image)
    fwhm = params.fwhmpsf / total.pixel_scale
    xs, ys = [], []
    for reg in regions:
        finder = DAOStarFinder(threshold=params.nsigma * reg.noise, fwhm=fwhm)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoDetectionsWarning)  # an empty region is fine
            found = finder(np.where(reg.mask, image, 0.0), mask=~footprint)
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
