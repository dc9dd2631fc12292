"""Every place a per-chip pixel scale or area enters a drizzle, ours beside DrizzlePac's (issue 14).

* input pixel scale (``Chip.pixel_scale``) = DrizzlePac's ``wcslin_pscale``
  (``imageObject.compute_wcslin``: stwcs ``output_wcs`` of the chip's ``HSTWCS``);
* flux scale ``LayerPlan.iscale`` = ``pix_ratio ** 2`` with ``pix_ratio = output pscale /
  wcslin_pscale`` (``adrizzle``);
* pixfrac, kernel, weight type = the HAP MVM AstroDrizzle parameter files; the EXP weight of a
  pixel (``imageObject.buildEXPmask``) involves no scale;
* ``pixel_scale_ratio`` (DrizzlePac passes ``pix_ratio``; we pass the default): the square kernel
  does not use it, shown on our kernel with both values;
* the input-box margin of the plan (``ratio = pscale / output scale``, so now from the nominal
  scale): every input pixel whose true footprint (its corners mapped by astropy) touches a tile
  is inside that tile's input box.

Output weights and ``MEANWHT`` against AstroDrizzle's WHT are in ``test_mvm_photometry``.
"""

from __future__ import annotations

import gzip
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from hapdask.io import open_exposure
from hapdask.mvm import plan as make_plan

SKYCELL = "p1889x07y19"
PARS = Path(pytest.importorskip("drizzlepac").__file__).parent / "pars/hap_pars/mvm_parameters"


def _wcslin_pscale(path: str | Path, extver: int) -> float:
    """DrizzlePac's ``wcslin_pscale`` of one chip, as ``imageObject.compute_wcslin`` makes it."""
    from stwcs.distortion import utils as stwcs_utils
    from stwcs.wcsutil import HSTWCS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = HSTWCS(str(path), ext=("SCI", extver))
        return float(stwcs_utils.output_wcs([w], undistort=w.sip is not None).pscale)


def _out_pscale(w) -> float:
    """``HSTWCS.pscale`` of an output grid: length of the CD matrix's first column."""
    cd = w.pixel_scale_matrix
    return float(np.hypot(cd[0, 0], cd[1, 0])) * 3600.0


def test_input_scale_is_drizzlepacs_on_real_headers(shared_data, tmp_path):
    """Real files: IDCSCALE+SIP (WFC3 UVIS/IR), SIP without IDCSCALE and no SIP (ACS/WFC
    j94f05bgq: chip 1 has no SIP, chip 2 has SIP; neither has IDCSCALE though IDCTAB is named),
    plain TAN ACS/HRC j8bt06nyq."""
    j94 = tmp_path / "j94f05bgq_flt.fits"
    with gzip.open(shared_data / "real" / "j94f05bgq_flt.fits.gz") as src, open(j94, "wb") as dst:
        shutil.copyfileobj(src, dst)
    files = [j94, shared_data / "real" / "j8bt06nyq_flt.fits",
             shared_data / "headers" / "sample_svm_flc.fits",
             shared_data / "headers" / "sample_svm_flt.fits"]
    seen = set()
    for f in files:
        for chip in open_exposure(f).chips:
            theirs = _wcslin_pscale(f, chip.extver)
            assert chip.pixel_scale == pytest.approx(theirs, rel=1e-12), (f.name, chip.extver)
            has_idc = "IDCSCALE" in chip.header
            seen.add((chip.wcs().sip is not None, has_idc))
    assert seen == {(True, True), (True, False), (False, False)}


def test_input_scale_is_drizzlepacs_imageobject(sim):
    """Simulated WFC3 files through DrizzlePac's own ``imageObject.compute_wcslin``."""
    from drizzlepac import processInput

    for path in sim.exposures:
        if not path.name.startswith("if3s01"):
            continue  # one UVIS and one IR visit suffice (ACS needs MEANDARK, see stwcs test)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = processInput._getInputImage(str(path))
            img.compute_wcslin(undistort=True)
        try:
            for chip in open_exposure(path).chips:
                theirs = img._image["SCI", chip.extver].wcslin_pscale
                assert chip.pixel_scale == pytest.approx(theirs, rel=1e-12), path.name
        finally:
            img.close()


def test_plan_scales_match_drizzlepac(sim, true_wcs):
    """iscale per chip = DrizzlePac's pix_ratio**2; pixfrac/kernel/weights = HAP MVM pars."""
    p = make_plan(SKYCELL, str(sim.mvm_poller), tile_size=2048, wcs_updates=true_wcs)
    detectors = set()
    for lay in p.layers.values():
        out_scale = _out_pscale(lay.wcs())
        assert lay.scale_arcsec == pytest.approx(out_scale, rel=1e-12)
        for c in lay.chips:
            pix_ratio = out_scale / _wcslin_pscale(c.chip.path, c.key[1])
            assert c.pscale == pytest.approx(out_scale / pix_ratio, rel=1e-12)
            assert lay.iscale(c) == pytest.approx(pix_ratio ** 2, rel=1e-12), (lay.name, c.key)
        detectors.add((lay.instrument.lower(), lay.detector.lower()))
    assert detectors == {("acs", "wfc"), ("wfc3", "uvis"), ("wfc3", "ir")}
    for instr, det in detectors:
        pars = json.loads((PARS / instr / det / f"{instr}_{det}_astrodrizzle_any_n2.json")
                          .read_text())["STEP 7: DRIZZLE FINAL COMBINED IMAGE"]
        # what our drizzle uses (hapdask.mvm.graph.drizzle_tile; D###PIXF/KERN/WTSC headers)
        assert pars["final_pixfrac"] == 1.0
        assert pars["final_kernel"] == "square"
        assert pars["final_wht_type"] == "EXP"


def test_exp_weights_have_no_scale(sim):
    """DrizzlePac's EXP weight (``buildEXPmask``) = EXPTIME x mask, as ours: no pixel scale."""
    from drizzlepac import processInput

    from hapdask.mosaic.stages import prepare_chip_region
    from hapdask.mvm.graph import layer_params
    from hapdask.mvm.sky import SkyLevel

    p = make_plan(SKYCELL, str(sim.mvm_poller), tile_size=2048)
    lay = next(lay for lay in p.layers.values() if lay.detector.upper() == "UVIS")
    chip = lay.chips[0]
    ny, nx = chip.shape
    _, ours = prepare_chip_region(chip, SkyLevel(0.0, 0.0, 1), (0, ny, 0, nx),
                                  layer_params(lay))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = processInput._getInputImage(str(chip.chip.path))
        img.setInstrumentParameters({k: None for k in (
            "gain", "gnkeyword", "rdnoise", "rnkeyword", "exptime", "expkeyword")}
            | {"proc_unit": "native"})
    try:
        good = (ours > 0).astype(np.float32)
        theirs = img.buildEXPmask(chip.key[1], good)
    finally:
        img.close()
    np.testing.assert_array_equal(ours, theirs)


def test_square_kernel_ignores_pixel_scale_ratio():
    """DrizzlePac hands ``pix_ratio`` to the kernel; we hand the default 1.0: for the square
    kernel the output is the same (it only sizes turbo/gaussian/lanczos kernels)."""
    from hapdask.drizzle import add_to_tile

    rng = np.random.default_rng(1)
    data = rng.uniform(1, 2, (20, 20)).astype(np.float32)
    weight = np.ones_like(data)
    yy, xx = np.mgrid[0:20, 0:20].astype(np.float64)
    pixmap = np.dstack([1.3 + 0.8 * xx + 0.05 * yy, 2.1 + 0.8 * yy - 0.03 * xx])
    results = []
    for ratio in (1.0, 0.8):
        num = np.zeros((24, 24))
        den = np.zeros((24, 24))
        add_to_tile(data, weight, pixmap, num, den, None, origin=(0, 0), kernel="square",
                    pixfrac=1.0, iscale=0.64, pixel_scale_ratio=ratio)
        results.append((num, den))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_input_boxes_cover_true_pixel_footprints(sim, true_wcs):
    """The plan's input-box margin (from the nominal scale) covers each pixel's true extent.

    For every chip and tile (small tiles, so many edges), every input pixel whose footprint
    (its 4 corners mapped through the full WCS by astropy) reaches into the tile window lies
    inside the tile's input box.
    """
    p = make_plan(SKYCELL, str(sim.mvm_poller), tile_size=96, wcs_updates=true_wcs)
    checked = 0
    for lay in p.layers.values():
        if lay.detector.upper() == "IR" and "coarse" in lay.name:
            continue
        out_wcs = lay.wcs()
        for k, c in enumerate(lay.chips):
            ny, nx = c.shape
            w = c.wcs()
            corners = _corner_map(w, ny, nx, out_wcs)
            cx, cy = corners[..., 0], corners[..., 1]
            xmin = np.minimum.reduce([cx[:-1, :-1], cx[1:, :-1], cx[:-1, 1:], cx[1:, 1:]])
            xmax = np.maximum.reduce([cx[:-1, :-1], cx[1:, :-1], cx[:-1, 1:], cx[1:, 1:]])
            ymin = np.minimum.reduce([cy[:-1, :-1], cy[1:, :-1], cy[:-1, 1:], cy[1:, 1:]])
            ymax = np.maximum.reduce([cy[:-1, :-1], cy[1:, :-1], cy[:-1, 1:], cy[1:, 1:]])
            for tile in lay.tiles:
                y0, y1, x0, x1 = tile.window
                touch = ((xmax > x0 - 0.5) & (xmin < x1 - 0.5) & (ymax > y0 - 0.5)
                         & (ymin < y1 - 0.5))
                if not touch.any():
                    continue
                boxes = dict(tile.contribs)
                assert k in boxes, (lay.name, c.key, tile.index)
                b0, b1, a0, a1 = boxes[k]
                jj, ii = np.nonzero(touch)
                assert jj.min() >= b0 and jj.max() < b1, (lay.name, c.key, tile.index)
                assert ii.min() >= a0 and ii.max() < a1, (lay.name, c.key, tile.index)
                checked += 1
    assert checked > 50


def _corner_map(w, ny: int, nx: int, out_wcs) -> np.ndarray:
    """Output positions of the pixel corners through the full WCS (astropy, with lookups)."""
    yy, xx = np.mgrid[0:ny + 1, 0:nx + 1].astype(np.float64) - 0.5
    ra, dec = w.all_pix2world(xx.ravel(), yy.ravel(), 0)
    ox, oy = out_wcs.all_world2pix(ra, dec, 0)
    return np.dstack([ox.reshape(xx.shape), oy.reshape(xx.shape)])
