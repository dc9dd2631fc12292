"""The output grid of ``hapdask drizzle`` against AstroDrizzle's (drizzlepac 3.11, the oracle)
when ``final_*`` parameters are absent or only partly given: shape, CRPIX, CRVAL and CD matrix
of the two products' SCI headers, on small simulated ACS/WFC exposures (two dithered F775W)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from hapdask.mosaic import ParameterError, drizzle
from hapdask.testing import astrodrizzle_run

ROOTS = ("jf3t03a1q", "jf3t03a2q")
STEPS = {"static": False, "skysub": False, "driz_separate": False, "median": False,
         "blot": False, "driz_cr": False, "final_kernel": "square", "final_pixfrac": 1.0,
         "final_bits": "336", "final_units": "cps", "context": False}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from hapdask.simulate import simulate_visits

    sim = simulate_visits("p1889x07y19", tmp_path_factory.mktemp("sim") / "set", small=True,
                          visits=3)
    return [sim.outdir / f"{r}_flc.fits" for r in ROOTS]


def _grid(path):
    with fits.open(path) as h:
        hdr = h["SCI"].header
        w = WCS(hdr)
        return (hdr["NAXIS1"], hdr["NAXIS2"]), w.wcs.crpix, w.wcs.crval, w.pixel_scale_matrix


@pytest.mark.parametrize("grid", [
    {},
    {"final_wcs": True, "final_scale": 0.04},
    {"final_wcs": True, "final_rot": 0.0},
    {"final_wcs": True, "final_rot": 30.0, "final_scale": 0.06},
    {"final_wcs": True, "final_outnx": 601, "final_outny": 500},
    {"final_wcs": True, "final_ra": None, "final_dec": None, "final_crpix1": 300.0,
     "final_crpix2": 350.5},
], ids=["default", "scale", "rot", "rot+scale", "size", "radec+crpix"])
def test_grid_is_astrodrizzles(inputs, grid, tmp_path):
    if "final_ra" in grid:  # the centre of the first chip
        with fits.open(inputs[0]) as h:
            w = WCS(h["SCI", 1].header, fobj=h)
            ny, nx = h["SCI", 1].data.shape
        ra, dec = w.all_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
        grid = {**grid, "final_ra": float(ra), "final_dec": float(dec)}
    params = {**STEPS, **grid}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = drizzle([str(p) for p in inputs], tmp_path / "ours" / "m", params=params,
                       tile_size=256, log=lambda m: None)
    work = astrodrizzle_run(inputs, tmp_path / "ad", clean=True, in_memory=True,
                            final_wht_type="EXP", **params)
    theirs = next(work.glob("ad_dr[cz].fits"))
    (shape_a, crpix_a, crval_a, cd_a) = _grid(theirs)
    (shape_b, crpix_b, crval_b, cd_b) = _grid(ours.output)
    assert shape_b == shape_a
    assert np.allclose(crpix_b, crpix_a, rtol=0, atol=1e-6)
    assert np.allclose(crval_b, crval_a, rtol=0, atol=1e-9)  # deg: 4 micro-arcsec
    assert np.allclose(cd_b, cd_a, rtol=1e-9, atol=1e-9 * np.abs(cd_a).max())


@pytest.mark.parametrize("half", [{"final_ra": 181.0}, {"final_outny": 100},
                                  {"final_crpix1": 5.0}])
def test_half_a_pair_is_an_error(inputs, half, tmp_path):
    name = next(iter(half))
    with pytest.raises(ParameterError, match=name.removeprefix("final_")):
        drizzle([str(p) for p in inputs], tmp_path / "m",
                params={**STEPS, "final_wcs": True, **half}, log=lambda m: None)
