"""HAP source flags of a filter catalog (inventory 5.5, ``hla_flag_filter``).

======  ==================================================================================
bit     rule
======  ==================================================================================
0       point-like: none of the rules below
1       extended: ``CI > ci_upper`` or CI undefined
4       saturated: a saturated input pixel (mask given in the drizzle frame) within
        ``round(aperture_2 / pscale + 0.5) x 2`` pixels of the source (never for WFC3/IR)
8       faint: ``FluxAp2 < bthresh x FluxErrAp2``
16      hot pixel / cosmic ray: ``CI < ci_lower - sigma_CI`` or CI / sigma_CI undefined,
        ``sigma_CI = sqrt(MagErrAp1^2 + MagErrAp2^2)``
64      edge / low coverage: the minimum exposure count inside the aperture-2 circle is below
        0.5 (product made of <= 1 exposure, or WFC3/IR), 1.5 (2-5 exposures), 2.5 (> 5)
======  ==================================================================================

Documented but unset by DrizzlePac's code (inventory 9.15), and unset here: 2 (single-pixel
saturation), 32 (swarm; routine disabled), 128 (bleed/CR).

CI limits: HAP's default ``lookup_ci_limits_from_table=True`` takes them per filter from
``ci_ap_cor_table_ap_20_2016.txt``, measured on real HST PSFs. We use the configuration's
per-detector limits (:class:`~hapdask.catalogs.params.CatalogParams` ``ci_lower``/``ci_upper``),
which callers override for a different PSF (the simulator's PSF has smaller CIs than HST's).
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from hapdask.catalogs.params import CatalogParams
from hapdask.catalogs.photometry import center_masks, overlap_slices

__all__ = ["FLAG_BITS", "source_flags", "edge_limit"]

#: Flag bit values and meanings (0 = point-like).
FLAG_BITS = {1: "extended", 2: "single-pixel saturation (never set)", 4: "saturated",
             8: "faint", 16: "hot pixel / cosmic ray", 32: "swarm (never set)",
             64: "edge / low coverage", 128: "bleed / cosmic ray (never set)"}


def edge_limit(n_exposures: int, params: CatalogParams) -> float:
    """Minimum exposure count below which a source gets flag 64."""
    if n_exposures <= 1 or params.ir:
        return 0.5
    return 1.5 if n_exposures <= 5 else 2.5


def _circle_values(image: np.ndarray, x: np.ndarray, y: np.ndarray, radius: float,
                   reduce, empty: float) -> np.ndarray:
    """``reduce`` of the image values inside circles (photutils' ``CircularAperture((x, y),
    radius).to_mask(method="center")``, by :func:`~hapdask.catalogs.photometry.center_masks`:
    the same masks without the per-source objects); pixels off the image count as ``empty``.

    Only the cutouts are converted to float64 (the image keeps its dtype: bool/int maps)."""
    out = np.full(x.size, empty, dtype=np.float64)
    for k, (iymin, ixmin, weights) in enumerate(center_masks(x, y, radius)):
        slices = overlap_slices(iymin, ixmin, weights.shape, image.shape)
        if slices is None:
            continue
        big, small = slices
        cut = np.full(weights.shape, empty, dtype=np.float64)
        cut[small] = image[big]
        out[k] = reduce(cut[weights > 0])
    return out


def source_flags(phot: Table, x: np.ndarray, y: np.ndarray, *, params: CatalogParams,
                 pixel_scale: float, exposure_count: np.ndarray, n_exposures: int,
                 saturated: np.ndarray | None = None) -> np.ndarray:
    """Flags (int32) for the rows of ``phot`` (from :func:`aperture_photometry_hap`).

    Parameters
    ----------
    phot : Table
        Photometry with CI, MagErrAp1, MagErrAp2, FluxAp2, FluxErrAp2.
    x, y : arrays
        0-based pixel positions of the sources.
    exposure_count : (ny, nx) array
        Number of exposures contributing to each pixel.
    n_exposures : int
        Number of exposures in the product (``NUMEXP``, else ``NDRIZIM``).
    saturated : (ny, nx) bool array, optional
        Saturated input pixels mapped to the drizzle frame.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ci = np.asarray(phot["CI"], dtype=np.float64)
    sig_ci = np.hypot(np.asarray(phot["MagErrAp1"], dtype=np.float64),
                      np.asarray(phot["MagErrAp2"], dtype=np.float64))
    flags = np.zeros(ci.size, dtype=np.int32)
    ci_ok = np.isfinite(ci)
    with np.errstate(invalid="ignore"):
        flags[~ci_ok | (ci > params.ci_upper)] |= 1
        flags[~ci_ok | ~np.isfinite(sig_ci) | (ci < params.ci_lower - sig_ci)] |= 16
        flux2 = np.asarray(phot["FluxAp2"], dtype=np.float64)
        err2 = np.asarray(phot["FluxErrAp2"], dtype=np.float64)
        flags[flux2 < params.bthresh * err2] |= 8
    if ci.size == 0:
        return flags
    if saturated is not None and not params.ir:
        radius = round(params.aperture_2 / pixel_scale + 0.5) * 2
        hit = _circle_values(np.asarray(saturated), x, y, radius, np.max, 0.0)
        flags[hit > 0] |= 4
    nmin = _circle_values(np.asarray(exposure_count), x, y,
                          params.aperture_2 / pixel_scale, np.min, 0.0)
    flags[nmin < edge_limit(n_exposures, params)] |= 64
    return flags
