"""Independent oracles shared by the tests and the benchmarks.

Nothing in the pipeline imports this module. Each function computes its answer from another
source than hapdask's own code (astropy's full WCS, or DrizzlePac itself), so that tests and
benchmarks compare hapdask against something it could disagree with.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from hapdask.io import open_exposure
from hapdask.mosaic import north_up_grid

__all__ = ["sky_pixel_area", "astrodrizzle_refimage", "astrodrizzle_final", "astrodrizzle_run",
           "grid_params"]


def sky_pixel_area(w: WCS, x, y) -> np.ndarray:
    """True sky area (arcsec²) of the pixels of ``w`` centred on 0-based ``(x, y)``.

    The cross product of the sky vectors spanning the pixel (mid-edge to mid-edge, through
    astropy's full WCS with distortion) in a local east/north tangent frame.

    Parameters
    ----------
    w : astropy.wcs.WCS
        Any celestial WCS, distorted or not.
    x, y : float or array_like
        0-based pixel centres.

    Returns
    -------
    numpy.ndarray
        Areas in arcsec², the shape of ``x``.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    pts = [w.all_pix2world(px, py, 0) for px, py in
           ((x - 0.5, y), (x + 0.5, y), (x, y - 0.5), (x, y + 0.5))]
    ra = np.stack([p[0] for p in pts])
    dec = np.stack([p[1] for p in pts])
    east = (ra - ra[0]) * np.cos(np.radians(dec[0])) * 3600.0
    north = (dec - dec[0]) * 3600.0
    return np.abs((east[1] - east[0]) * (north[3] - north[2])
                  - (north[1] - north[0]) * (east[3] - east[2]))


def astrodrizzle_refimage(product: str | Path, dst: str | Path) -> Path:
    """Write the ``SCI`` grid of a drizzled ``product`` as a CD-matrix image at ``dst``.

    AstroDrizzle's ``final_refimage`` wants a plain image whose header has CD keywords; this
    lets it drizzle onto exactly the grid of one of our products.
    """
    with fits.open(product) as h:
        w = WCS(h["SCI"].header)
        ny, nx = h["SCI"].data.shape
    cd = w.pixel_scale_matrix
    hdr = fits.Header()
    hdr["CTYPE1"], hdr["CTYPE2"] = w.wcs.ctype
    hdr["CRVAL1"], hdr["CRVAL2"] = w.wcs.crval
    hdr["CRPIX1"], hdr["CRPIX2"] = w.wcs.crpix
    for i in range(2):
        for j in range(2):
            hdr[f"CD{i + 1}_{j + 1}"] = cd[i, j]
    dst = Path(dst)
    fits.PrimaryHDU(np.zeros((ny, nx), np.float32), header=hdr).writeto(dst, overwrite=True)
    return dst


def astrodrizzle_final(inputs: Sequence[str], refimage: str | Path, workdir: str | Path,
                       **params) -> Path:
    """Run AstroDrizzle's final drizzle only (no sky, no CR steps) inside ``workdir``.

    ``inputs`` are file names inside ``workdir``; the product is drizzled onto ``refimage``
    with square kernel, pixfrac 1, EXP weights, every DQ bit good and counts per second,
    unless ``params`` (AstroDrizzle's names) say otherwise.

    Returns
    -------
    pathlib.Path
        The ``dp_drz.fits`` or ``dp_drc.fits`` AstroDrizzle wrote.
    """
    from drizzlepac import astrodrizzle  # a test/benchmark dependency only, and slow to import

    settings = dict(
        output="dp", context=False, build=True, preserve=False, clean=True, in_memory=True,
        static=False, skysub=False, driz_separate=False, median=False, blot=False,
        driz_cr=False, driz_combine=True, final_wht_type="EXP", final_kernel="square",
        final_pixfrac=1.0, final_units="cps", final_bits="~0",
        final_refimage=f"{refimage}[0]", resetbits=0, num_cores=1)
    settings.update(params)
    workdir = Path(workdir)
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            astrodrizzle.AstroDrizzle(list(inputs), **settings)
    finally:
        os.chdir(cwd)
    return next(workdir.glob(f"{settings['output']}_dr[cz].fits"))


def astrodrizzle_run(inputs: Sequence[str | Path], workdir: str | Path, *, output: str = "ad",
                     **params) -> Path:
    """Run AstroDrizzle (all its steps, as ``params`` ask) on copies of ``inputs`` in ``workdir``.

    AstroDrizzle writes into its inputs (DQ bit 4096, MDRIZSKY), hence the copies. Two
    adjustments let it run as intended on this environment's files:

    * ACS ``SCI`` headers without ``MEANDARK`` get ``MEANDARK = 0`` (its ACS noise model reads it;
      simulated files have none);
    * stsci.skypac's ``match`` calls ``SphericalPolygon.iter_polygons_flat``, missing from
      spherical_geometry 1.4, and AstroDrizzle then silently reverts to ``localmin``; the method
      is added as iteration over the polygon's parts, which is what skypac means.

    Defaults (overridable): ``build=True, clean=False, in_memory=False, num_cores=1,
    preserve=False, resetbits=0`` -- so the intermediate products (``*_single_sci.fits``,
    ``<output>_med.fits``, ``*_blt.fits``) stay in ``workdir``.

    Returns
    -------
    pathlib.Path
        ``workdir`` (products: ``<output>_drz.fits`` / ``_drc.fits``; the copies' DQ carries
        the CR flags).
    """
    from drizzlepac import astrodrizzle  # a test/benchmark dependency only, and slow to import
    from spherical_geometry.polygon import SphericalPolygon

    if not hasattr(SphericalPolygon, "iter_polygons_flat"):
        SphericalPolygon.iter_polygons_flat = lambda self: iter(self)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    names = []
    for p in inputs:
        dst = workdir / Path(p).name
        shutil.copy(p, dst)
        with fits.open(dst, mode="update") as h:
            if h[0].header.get("INSTRUME") == "ACS":
                for hdu in h:
                    if hdu.name == "SCI" and "MEANDARK" not in hdu.header:
                        hdu.header["MEANDARK"] = 0.0
        names.append(dst.name)
    settings = dict(output=output, build=True, clean=False, in_memory=False, num_cores=1,
                    preserve=False, resetbits=0)
    settings.update(params)
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            astrodrizzle.AstroDrizzle(names, **settings)
    finally:
        os.chdir(cwd)
    return workdir


def grid_params(inputs: Sequence[str | Path], scale: float) -> dict:
    """AstroDrizzle ``final_*`` and ``driz_sep_*`` values of one explicit north-up grid covering
    ``inputs`` at ``scale`` arcsec/px, so that both tools drizzle onto the very same pixels."""
    chips = [c for p in inputs for c in open_exposure(str(p)).chips]
    g = north_up_grid([c.wcs() for c in chips], scale=scale)
    ny, nx = g.shape
    ra, dec = g.wcs().wcs_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
    out: dict = {"final_wcs": True, "driz_sep_wcs": True}
    for k, v in {"rot": 0.0, "scale": scale, "ra": float(ra), "dec": float(dec), "outnx": nx,
                 "outny": ny, "crpix1": (nx + 1) / 2, "crpix2": (ny + 1) / 2}.items():
        out[f"final_{k}"] = out[f"driz_sep_{k}"] = v
    return out
