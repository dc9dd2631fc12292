"""``hapdask drizzle`` against AstroDrizzle (drizzlepac 3.11) step by step, same inputs and
parameters, same explicit output grid:

* the real ACS/HRC exposure (../shared/data/real/j8bt06nyq_flt.fits), alone: static mask, sky
  and final drizzle; the CR steps are skipped (one exposure), as AstroDrizzle does;
* simulated dithered WFC3/UVIS (F475W, electrons) and WFC3/IR (F160W, electrons/s) visits of
  three exposures each: sky values, the median image, the CR masks and the final SCI/WHT/CTX.

Our median is taken from the graph through a Dask callback on its ``(<p>-median, ty, tx)``
tile keys (the key contract of :mod:`hapdask.mosaic.graph`), AstroDrizzle's from its
``<output>_med.fits``. The blot itself is not a separate task in our graph (blot and driz_cr
run fused per chip region); it is covered by the CR masks here and against drizzle's C blot in
``tests/drizzle/test_drizzle_blot.py``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from dask.callbacks import Callback

from hapdask.mosaic import drizzle
from hapdask.mosaic.products import read_crmask
from hapdask.simulate import simulate_visits
from hapdask.testing import astrodrizzle_run, grid_params

TILE = 128

#: every step on; the sky with localmin (match is checked in the CR detection test); median
#: (not minmed) so that the median image is a plain order statistic of both tools' stacks
STEPS = {"static": True, "skysub": True, "skymethod": "localmin", "skystat": "median",
         "skylower": -100.0, "driz_separate": True, "driz_sep_kernel": "square",
         "driz_sep_bits": "336", "median": True, "combine_type": "median",
         "combine_nhigh": 0, "blot": True, "driz_cr": True, "driz_cr_snr": "3.5 3.0",
         "driz_cr_scale": "1.5 1.2", "final_kernel": "square", "final_pixfrac": 1.0,
         "final_bits": "336", "final_wht_type": "EXP", "final_units": "cps", "context": True}


class _Medians(Callback):
    """Collects the median tiles ``{(ty, tx): array}`` while the graph runs."""

    def __init__(self):
        super().__init__()
        self.tiles = {}

    def _posttask(self, key, result, dsk, state, worker_id):
        if isinstance(key, tuple) and str(key[0]).endswith("-median"):
            self.tiles[key[1:]] = result


def _ours(inputs, out, params):
    med = _Medians()
    with warnings.catch_warnings(), med:
        warnings.simplefilter("ignore")
        res = drizzle([str(p) for p in inputs], out, params=params, tile_size=TILE,
                      region_size=TILE, threads_per_worker=2, log=lambda m: None)
    ny, nx = params["driz_sep_outny"], params["driz_sep_outnx"]
    image = None
    if med.tiles:  # tiles no chip reaches have no task: 0 there, as AstroDrizzle's median
        image = np.zeros((ny, nx), np.float32)
        for (ty, tx), arr in med.tiles.items():
            y0, x0 = ty * TILE, tx * TILE
            assert arr.shape == (min(TILE, ny - y0), min(TILE, nx - x0))
            image[y0:y0 + arr.shape[0], x0:x0 + arr.shape[1]] = arr
    return res, image


def _final_agree(ours_path, theirs_path, *, cov_tol, p99_sigma):
    """SCI (in units of its pixel noise: robust sigma of the sky-dominated image) and WHT agree
    where both have data."""
    with fits.open(theirs_path) as a, fits.open(ours_path) as b:
        sa, sb = a["SCI"].data.astype(np.float64), b["SCI"].data.astype(np.float64)
        wa, wb = a["WHT"].data.astype(np.float64), b["WHT"].data.astype(np.float64)
        ca = a["CTX"].data if "CTX" in a else None
        cb = b["CTX"].data
    cov_a, cov_b = np.isfinite(sa) & (wa > 0), np.isfinite(sb) & (wb > 0)
    assert cov_a.sum() > 1000
    assert (cov_a != cov_b).sum() <= cov_tol * cov_a.sum()
    both = cov_a & cov_b
    sigma = 1.4826 * np.median(np.abs(sa[both] - np.median(sa[both])))
    diff = np.abs(sb[both] - sa[both]) / sigma
    print("final: coverage mismatch", (cov_a != cov_b).sum() / cov_a.sum(), "p99 diff / sigma",
          np.percentile(diff, 99), "wht p99 rel",
          np.percentile(np.abs(wb[both] - wa[both]) / wa[both], 99))
    assert np.percentile(diff, 99) <= p99_sigma
    assert np.percentile(np.abs(wb[both] - wa[both]) / wa[both], 99) < 0.01
    if ca is not None:
        ca = ca[0] if ca.ndim == 3 else ca
        cb = cb[0] if cb.ndim == 3 else cb
        assert (ca[both] != cb[both]).sum() <= 0.01 * both.sum()


# ---------------------------------------------------------------------------------------------
# real ACS/HRC, one exposure


def test_real_hrc_single_exposure(shared_data, tmp_path):
    src = shared_data / "real" / "j8bt06nyq_flt.fits"
    params = {**STEPS, **grid_params([src], 0.025)}
    res, med = _ours([src], tmp_path / "ours" / "hrc", params)
    assert med is None and res.crmasks == []
    assert any("one exposure" in n for n in res.notes)
    ad = astrodrizzle_run([src], tmp_path / "ad", **params)
    assert not list(ad.glob("*_med.fits"))  # AstroDrizzle skipped the CR steps too
    sky_ad = fits.getheader(ad / src.name, ("SCI", 1))["MDRIZSKY"]
    # same pixels (DQ + static mask) and statistic: equal to float32 rounding of the median
    assert res.skies[("j8bt06nyq", 1)].value == pytest.approx(sky_ad, rel=1e-4, abs=1e-3)
    _final_agree(res.output, next(ad.glob("ad_dr?.fits")), cov_tol=1e-3, p99_sigma=0.01)


# ---------------------------------------------------------------------------------------------
# simulated WFC3 visits, three dithered exposures per filter


@pytest.fixture(scope="module")
def wfc3(tmp_path_factory):
    return simulate_visits("p1889x07y19", tmp_path_factory.mktemp("wfc3") / "set", visits=1,
                           small=True, seed=4, exposures_per_filter=3,
                           filters=["F475W", "F160W"])


@pytest.mark.parametrize("det, scale", [("uvis", 0.04), ("ir", 0.13)])
def test_simulated_wfc3_visit(wfc3, tmp_path, det, scale):
    inputs = sorted(p for p in wfc3.exposures if p.name.endswith(
        "_flc.fits" if det == "uvis" else "_flt.fits"))
    assert len(inputs) == 3
    params = {**STEPS, **grid_params(inputs, scale)}
    res, med = _ours(inputs, tmp_path / "ours" / det, params)
    ad = astrodrizzle_run(inputs, tmp_path / "ad", **params)

    # sky: MDRIZSKY of every chip (SCI units: electrons for UVIS, electrons/s for IR)
    for p in inputs:
        root = p.name[:9]
        with fits.open(ad / p.name) as h:
            for hdu in h:
                if hdu.name == "SCI":
                    theirs = hdu.header["MDRIZSKY"]
                    mine = res.skies[(root, hdu.ver)].value
                    assert mine == pytest.approx(theirs, rel=1e-4, abs=1e-4), (root, hdu.ver)

    # median: same stack, same order statistic. The skies agree to ~1e-4 (relative), which
    # shifts the sky-subtracted median by ~1e-4 of the sky (IR: ~2e-3 of the pixel noise);
    # a pixel's coverage at an image edge may differ. In units of the median's pixel noise
    # (robust sigma of the sky-dominated image):
    theirs = fits.getdata(next(ad.glob("ad_med.fits"))).astype(np.float64)
    assert med.shape == theirs.shape
    data = theirs[theirs != 0]
    sigma = 1.4826 * np.median(np.abs(data - np.median(data)))
    diff = np.abs(med - theirs) / sigma
    print(det, "median diff / sigma: p50", np.median(diff), "p99", np.percentile(diff, 99),
          "frac > 0.1", (diff > 0.1).mean())
    assert np.percentile(diff, 99) <= 0.01
    assert (diff > 0.1).mean() <= 0.005

    # CR masks: AstroDrizzle's DQ 4096 in its copies vs ours
    ours_n = theirs_n = common = 0
    for p in inputs:
        mask = read_crmask(res.output.parent / f"{p.name[:9]}_crmask.fits")
        with fits.open(ad / p.name) as h:
            for e, m in mask.items():
                t = (h["DQ", e].data & 4096) != 0
                ours_n += int(m.sum())
                theirs_n += int(t.sum())
                common += int((m & t).sum())
    print(det, "CR flags: ours", ours_n, "theirs", theirs_n, "common", common)
    if det == "uvis":
        assert theirs_n > 100  # hot pixels and cosmic rays
    assert common >= 0.99 * theirs_n
    assert ours_n - common <= 0.01 * max(theirs_n, 100)

    # the skies' ~1e-4 relative difference shifts IR's final SCI by ~3e-3 sigma
    _final_agree(res.output, next(ad.glob("ad_dr?.fits")), cov_tol=2e-3, p99_sigma=0.01)
