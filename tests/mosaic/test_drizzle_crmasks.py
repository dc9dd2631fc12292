"""``drizzle(crmasks=...)``: an earlier run's cosmic-ray masks act exactly like DQ ``crbit``
flags in the inputs (oracle: the same drizzle of copies whose DQ carries the flags)."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
from astropy.io import fits

from hapdask.mosaic import drizzle
from hapdask.mosaic.products import read_crmask, update_dq

PARAMS = {"driz_cr": False, "driz_separate": False, "median": False, "blot": False,
          "skysub": False, "static": False, "final_bits": "336", "final_wcs": True,
          "final_rot": 0.0, "resetbits": 0}


@pytest.fixture(scope="module")
def uvis_pair(tmp_path_factory):
    from hapdask.simulate import simulate_visits

    sim = simulate_visits("p1889x07y19", tmp_path_factory.mktemp("crm") / "set", visits=1,
                          small=True)
    exps = [p for p in sim.exposures if p.name.endswith("_flc.fits")]
    masks = {p.name[:9]: p.with_name(p.name[:9] + "_crtruth.fits") for p in exps}
    return exps, masks


def _sci(path):
    with fits.open(path) as hdul:
        return hdul["SCI"].data.copy(), hdul["WHT"].data.copy()


def test_masks_equal_dq_flags(uvis_pair, tmp_path):
    exps, masks = uvis_pair
    flagged = []
    for p in exps:
        q = tmp_path / p.name
        shutil.copy(p, q)
        update_dq(q, read_crmask(masks[p.name[:9]]), 4096, 0)
        flagged.append(q)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = drizzle([str(p) for p in exps], tmp_path / "a" / "m", params=PARAMS,
                    crmasks=masks, threads_per_worker=1, log=lambda m: None)
        b = drizzle([str(p) for p in flagged], tmp_path / "b" / "m", params=PARAMS,
                    threads_per_worker=1, log=lambda m: None)
        c = drizzle([str(p) for p in exps], tmp_path / "c" / "m", params=PARAMS,
                    threads_per_worker=1, log=lambda m: None)
    sa, wa = _sci(a.output)
    sb, wb = _sci(b.output)
    sc, wc = _sci(c.output)
    assert np.array_equal(wa, wb) and np.array_equal(sa, sb, equal_nan=True)
    assert (wa < wc).sum() > 100  # the masks did remove pixels
    assert not a.crmasks  # given masks are read, never rewritten


def test_masks_ignored_when_crbit_is_good(uvis_pair, tmp_path):
    exps, masks = uvis_pair
    params = {**PARAMS, "final_bits": "65535"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = drizzle([str(p) for p in exps], tmp_path / "a" / "m", params=params,
                    crmasks=masks, threads_per_worker=1, log=lambda m: None)
        c = drizzle([str(p) for p in exps], tmp_path / "c" / "m", params=params,
                    threads_per_worker=1, log=lambda m: None)
    assert np.array_equal(_sci(a.output)[1], _sci(c.output)[1])
