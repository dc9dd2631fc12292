"""Photometry of MVM products against independent references (issue 14).

Per detector (ACS/WFC, WFC3/UVIS, WFC3/IR) one simulated exposure is copied with its pixels
replaced by a noise-free grid of isolated stars on every chip, rendered by the simulator with the
flat-fielding convention of real FLT/FLC files (source counts / pixel-area factor, uniform sky;
see :mod:`hapdask.simulate.core`), and with the true WCS written into its headers. Aperture fluxes
of the stars in our product are then compared, chip by chip,

(a) with the truth fluxes of the star catalog (physics: nothing of the pipeline enters; the
    output grid's own pixel-area factor, computed from its WCS, see :func:`_output_pam`), and
(b) with the same apertures on DrizzlePac's own product of the same file (``AstroDrizzle``, final
    drizzle only, square kernel, pixfrac 1, on our product's output grid),

to 0.2 % and 0.1 % (the issue asks 0.5 %). A chip drizzled with the wrong input scale (its
CD-matrix area instead of ``IDCSCALE``) is off by 4.75 % on ACS/WFC chip 2, -0.9 % on WFC3/UVIS
chip 1 and +0.45 % on WFC3/IR, so these tests fail on it.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import SigmaClip
from astropy.table import Table
from astropy.wcs import WCS
from photutils.aperture import (
    ApertureStats,
    CircularAnnulus,
    CircularAperture,
    aperture_photometry,
)

from hapdask import mvm
from hapdask.simulate import core, instruments, true_chip_wcs
from hapdask.testing import astrodrizzle_final, astrodrizzle_refimage

SKYCELL = "p1889x07y19"
#: One exposure per detector of the small simulated set: rootname -> detector key.
EXPOSURES = {"jf3t03a1q": "acs_wfc", "if3s01a1q": "wfc3_uvis", "if3s01a3q": "wfc3_ir"}
MAG = 20.0
#: Tolerances: the issue asks for 0.5 %; these noise-free stars reach ~1e-4, so the tests are
#: tighter, tight enough to see WFC3/IR's 0.45 % CD-versus-IDCSCALE error too.
TOL_TRUTH = 2e-3
TOL_DRIZZLEPAC = 1e-3


def _star_grid(w: WCS, shape: tuple[int, int], idc: float, fwhm: float, chip: int
               ) -> Table:
    """Stars on a grid in chip pixels, isolated (20 FWHM apart) and >= 16 FWHM from the edges."""
    ny, nx = shape
    step = 20 * fwhm / idc
    margin = 16 * fwhm / idc
    xs = np.arange(margin, nx - 1 - margin + 1e-9, step)
    ys = np.arange(margin, ny - 1 - margin + 1e-9, step)
    gx, gy = (a.ravel() for a in np.meshgrid(xs, ys))
    ra, dec = w.all_pix2world(np.column_stack([gx, gy]), 0).T
    n = gx.size
    return Table({"ra": ra, "dec": dec, "type": ["star"] * n, "sersic_n": np.zeros(n),
                  "r_eff": np.zeros(n), "axis_ratio": np.ones(n), "pa": np.zeros(n),
                  "chip": np.full(n, chip)})


@pytest.fixture(scope="module")
def star_fields(sim, true_wcs, tmp_path_factory):
    """Copies of one exposure per detector holding only noise-free stars on a uniform sky."""
    work = tmp_path_factory.mktemp("starfields")
    fields = {}
    for root, det_key in EXPOSURES.items():
        src = next(p for p in sim.exposures if p.name.startswith(root))
        det = instruments.DETECTORS[det_key]
        dst = work / src.name
        cats = []
        with fits.open(src) as hdul:
            prim = hdul[0].header
            filt = prim.get("FILTER") or prim["FILTER2"]
            f = instruments.FILTERS[(det_key, filt)]
            t = float(prim["EXPTIME"])
            nchips = sum(1 for h in hdul if h.name == "SCI")
            for v in range(1, nchips + 1):
                sci = hdul["SCI", v]
                w = true_chip_wcs(src, v, true_wcs)
                idc = float(sci.header["IDCSCALE"])
                cat = _star_grid(w, sci.data.shape, idc, det.fwhm, v)
                cat[f"mag_{filt.lower()}"] = np.full(len(cat), MAG)
                model = core._render_chip(sci.data.shape, w, cat, np.asarray(cat["ra"]),
                                          np.asarray(cat["dec"]), det, f, t, idc)
                model += f.sky * t
                if det.bunit.endswith("/S"):
                    model /= t
                sci.data = model.astype(np.float32)
                hdr = sci.header
                for k in [k for k in hdr if k[:2] in ("A_", "B_") or k[:3] in ("AP_", "BP_")]:
                    hdr.remove(k, ignore_missing=True, remove_all=True)
                hdr.update(true_wcs[(root, v)])
                hdr["MEANDARK"] = (0.0, "DrizzlePac ACS reader needs it; no dark here")
                hdul["ERR", v].data = np.ones(sci.data.shape, np.float32)
                hdul["DQ", v].data = np.zeros(sci.data.shape, np.int16)
                cats.append(cat)
            hdul.writeto(dst)
        cat = Table(np.concatenate([c.as_array() for c in cats]))
        fields[root] = {"path": dst, "cat": cat, "filter": f, "det": det}
    return fields


@pytest.fixture(scope="module")
def ours(star_fields, tmp_path_factory):
    """Our MVM products of the star fields: rootname -> product path."""
    out = tmp_path_factory.mktemp("ours")
    paths = [str(v["path"]) for v in star_fields.values()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = mvm.run(SKYCELL, paths, output=out, formats=["fits"], tile_size=1024,
                         log=lambda m: None)
    products = {}
    for lay in result.plan.layers.values():
        for root in {c.key[0] for c in lay.chips}:
            products[root] = out / lay.filename
    assert set(products) == set(EXPOSURES)
    return products


@pytest.fixture(scope="module")
def drizzlepac(star_fields, ours, tmp_path_factory):
    """AstroDrizzle's product of each star field on our product's grid: rootname -> path."""
    pytest.importorskip("drizzlepac.astrodrizzle")
    products = {}
    for root, field in star_fields.items():
        work = tmp_path_factory.mktemp(f"dp_{root}")
        shutil.copy(field["path"], work)
        ref = astrodrizzle_refimage(ours[root], work / "ref.fits")
        products[root] = astrodrizzle_final([field["path"].name], ref, work)
    return products


def _aperture_fluxes(product: Path, cat: Table, fwhm: float) -> np.ndarray:
    """Background-subtracted aperture fluxes (e-/s): r = 7 FWHM, annulus 10-14 FWHM."""
    with fits.open(product) as h:
        data = h["SCI"].data.astype(np.float64)
        w = WCS(h["SCI"].header)
    scale = np.sqrt(abs(np.linalg.det(w.pixel_scale_matrix))) * 3600.0
    x, y = w.all_world2pix(np.column_stack([cat["ra"], cat["dec"]]), 0).T
    pos = np.column_stack([x, y])
    ap = CircularAperture(pos, 7 * fwhm / scale)
    ann = CircularAnnulus(pos, 10 * fwhm / scale, 14 * fwhm / scale)
    bkg = ApertureStats(data, ann, sigma_clip=SigmaClip(3.0)).median
    flux = np.asarray(aperture_photometry(data, ap)["aperture_sum"]) - bkg * ap.area
    return flux


def _output_pam(product: Path, cat: Table, sky_pixel_area) -> np.ndarray:
    """Output pixel-area factor at each star: true sky area / nominal (linear) pixel area.

    A drizzled product is surface brightness per *nominal* output pixel, like DrizzlePac's; on
    a SkyCell far from its projection cell's tangent point the TAN pixels are smaller on the sky
    (cos^3 of the distance: 0.21 % at the 2.1 deg of p1889x07y19), so the counts summed over an
    aperture are the true counts / this factor.
    """
    with fits.open(product) as h:
        w = WCS(h["SCI"].header)
    x, y = w.all_world2pix(np.column_stack([cat["ra"], cat["dec"]]), 0).T
    nominal = abs(np.linalg.det(w.pixel_scale_matrix)) * 3600.0 ** 2
    return sky_pixel_area(w, x, y) / nominal


def _per_chip(cat: Table, ratio: np.ndarray) -> dict[int, float]:
    chips = np.asarray(cat["chip"])
    return {int(c): float(np.median(ratio[chips == c])) for c in np.unique(chips)}


@pytest.mark.parametrize("root", list(EXPOSURES))
def test_star_fluxes_match_truth(star_fields, ours, sky_pixel_area, root):
    """Each chip's median star flux / catalog flux is 1 within 0.5 % (any chip, any detector)."""
    field = star_fields[root]
    cat = field["cat"]
    truth = 10 ** (-0.4 * (MAG - field["filter"].zp_ab))
    flux = _aperture_fluxes(ours[root], cat, field["det"].fwhm)
    assert np.isfinite(flux).all() and len(flux) >= 8
    per_chip = _per_chip(cat, flux * _output_pam(ours[root], cat, sky_pixel_area) / truth)
    for chip, r in per_chip.items():
        assert r == pytest.approx(1.0, abs=TOL_TRUTH), (root, chip, per_chip)


@pytest.mark.parametrize("root", list(EXPOSURES))
def test_star_fluxes_match_drizzlepac(star_fields, ours, drizzlepac, sky_pixel_area, root):
    """Ours / AstroDrizzle aperture fluxes per chip: 1 within 0.5 %; DrizzlePac on truth too."""
    field = star_fields[root]
    cat = field["cat"]
    fwhm = field["det"].fwhm
    mine = _aperture_fluxes(ours[root], cat, fwhm)
    theirs = _aperture_fluxes(drizzlepac[root], cat, fwhm)
    per_chip = _per_chip(cat, mine / theirs)
    for chip, r in per_chip.items():
        assert r == pytest.approx(1.0, abs=TOL_DRIZZLEPAC), (root, chip, per_chip)
    # the oracle itself agrees with the truth (so both agreeing is not a shared error)
    truth = 10 ** (-0.4 * (MAG - field["filter"].zp_ab))
    pam = _output_pam(drizzlepac[root], cat, sky_pixel_area)
    for chip, r in _per_chip(cat, theirs * pam / truth).items():
        assert r == pytest.approx(1.0, abs=TOL_TRUTH), (root, chip)


@pytest.mark.parametrize("root", list(EXPOSURES))
def test_weights_and_meanwht_match_drizzlepac(ours, drizzlepac, root):
    """Output WHT (EXPTIME x overlap area, in output pixels) pixel by pixel, and our MEANWHT
    against the mean of AstroDrizzle's WHT over its covered pixels."""
    with fits.open(ours[root]) as a, fits.open(drizzlepac[root]) as b:
        mine = a["WHT"].data.astype(np.float64)
        theirs = b["WHT"].data.astype(np.float64)
        meanwht = float(a[0].header["MEANWHT"])
    both = (mine > 0) & (theirs > 0)
    interior = both & (theirs > 0.9 * np.median(theirs[both]))
    assert np.median(mine[interior] / theirs[interior]) == pytest.approx(1.0, abs=1e-4)
    assert meanwht == pytest.approx(float(theirs[theirs > 0].mean()), rel=TOL_DRIZZLEPAC)
