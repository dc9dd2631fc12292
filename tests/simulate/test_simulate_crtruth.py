"""The simulator's cosmic-ray truth files: layout, content against the pixels, and a detection
check of hapdask.combine's driz_cr with a perfect (noise-free) blot."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits

from hapdask.combine import CRParams, driz_cr_mask
from hapdask.simulate import core, instruments, simulate_visits, sky, true_chip_wcs

CELL = "p1889x07y19"
DET_KEY = {"UVIS": "wfc3_uvis", "IR": "wfc3_ir", "WFC": "acs_wfc"}


@pytest.fixture(scope="module")
def crset(tmp_path_factory: pytest.TempPathFactory) -> core.SimulatedSet:
    # visit 3 of the recipe cycle is ACS/WFC; visits=3 also gives UVIS and IR exposures
    return simulate_visits(CELL, tmp_path_factory.mktemp("cr") / "set", visits=3, small=True,
                           seed=5)


def _filter(prim: fits.Header) -> str:
    if prim["INSTRUME"] == "ACS":
        return [f for f in (prim["FILTER1"], prim["FILTER2"]) if not f.startswith("CLEAR")][0]
    return prim["FILTER"]


def test_layout_and_listing(crset):
    info = json.loads(crset.marker.read_text())
    assert [p.name for p in crset.crtruth] == info["crtruth"]
    assert all(name in info["sizes"] for name in info["crtruth"])  # load_set checks them
    assert len(crset.crtruth) == len(crset.exposures)
    for exp, truth in zip(crset.exposures, crset.crtruth, strict=True):
        assert truth.name == exp.name.rsplit("_", 1)[0] + "_crtruth.fits"
        with fits.open(exp) as h, fits.open(truth) as t:
            sci = [(x.ver, x.data.shape) for x in h if x.name == "SCI"]
            masks = [x for x in t[1:]]
            assert [(m.name, m.ver, m.data.shape) for m in masks] == [
                ("CRMASK", v, s) for v, s in sci]
            assert all(m.data.dtype == np.uint8 and set(np.unique(m.data)) <= {0, 1}
                       for m in masks)
            if h[0].header["DETECTOR"] == "IR":  # ramp fitting removed the hits
                assert not any(m.data.any() for m in masks)
            else:
                assert all(m.data.mean() > 1e-3 for m in masks)


def _chips_with_truth(crset, detectors=("UVIS", "WFC")):
    cat = crset.truth()
    for exp, truth in zip(crset.exposures, crset.crtruth, strict=True):
        with fits.open(exp) as h, fits.open(truth) as t:
            prim = h[0].header
            if prim["DETECTOR"] not in detectors:
                continue
            det = instruments.DETECTORS[DET_KEY[prim["DETECTOR"]]]
            filt = instruments.FILTERS[(det.key, _filter(prim))]
            et = prim["EXPTIME"]
            epoch = 2000.0 + (prim["EXPSTART"] - 51544.5) / 365.25
            ra, dec = sky.positions_at_epoch(cat, epoch)
            for m in t[1:]:
                w = true_chip_wcs(exp, m.ver, crset.true_wcs_headers())
                sci = h["SCI", m.ver].data
                model = core._render_chip(sci.shape, w, cat, ra, dec, det, filt, et,
                                          float(h["SCI", m.ver].header["IDCSCALE"]))
                yield (prim["DETECTOR"], sci, h["DQ", m.ver].data, m.data.astype(bool), model,
                       filt.sky * et, det)


def test_truth_pixels_hold_the_cosmic_ray_charge(crset):
    """Physics: SCI - (model + sky) is >= 80 e- (minus noise) exactly on the truth pixels."""
    n_truth = 0
    for _, sci, dq, truth, model, sky_e, det in _chips_with_truth(crset):
        noise = np.sqrt(model + sky_e + det.readnoise ** 2)
        resid = sci - model - sky_e
        ok = dq == 0
        t = truth & ok
        n_truth += t.sum()
        assert np.mean(resid[t] > core.CR_MIN_DEPOSIT_E - 5 * noise[t]) > 0.995
        assert np.mean(resid[ok & ~truth] > core.CR_MIN_DEPOSIT_E) < 1e-4
    assert n_truth > 1000


def test_driz_cr_with_a_perfect_blot_finds_the_truth(crset):
    """hapdask.combine's driz_cr (HAP ACS/UVIS n=2-5 settings) against the truth, blot = noise-free
    model + sky. Printed figures go to the final report."""
    p = CRParams(driz_cr_snr="3.5 3.0", driz_cr_scale="1.5 1.2", driz_cr_grow=1)
    found = truth_n = false = 0
    for _, sci, dq, truth, model, sky_e, det in _chips_with_truth(crset):
        blot = (model + sky_e).astype(np.float32)
        m = driz_cr_mask(sci, blot, None, sky=sky_e, exptime=1.0, gain=1.0,
                         readnoise=det.readnoise, params=p, good=dq == 0)
        t = truth & (dq == 0)
        found += (m & t).sum()
        truth_n += t.sum()
        false += (m & ~t).sum()
    frac = found / truth_n
    print(f"\nperfect-blot driz_cr: {found}/{truth_n} CR pixels found ({100 * frac:.2f} %), "
          f"{false} false flags ({100 * false / truth_n:.3f} % of the CR pixels)")
    assert frac > 0.98
    assert false < 0.01 * truth_n
