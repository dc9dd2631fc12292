"""``hapdask svm`` with product families (one drizzle pass per chip and tile for a detector's
exposure, filter and total products: hapdask.mosaic.family) against the same visit with every
product drizzling its own chips (``family=False``)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from dask.callbacks import Callback

from hapdask.mosaic.family import family_groups
from hapdask.mosaic.params import AstroDrizzleParams
from hapdask.svm.keywords import s_region
from hapdask.svm.params import svm_drizzle_params
from hapdask.svm.planning import plan
from hapdask.svm.runner import _families, _jobs


class _Keys(Callback):
    """Names of the tasks run."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def _posttask(self, key, result, dsk, state, worker_id):
        self.names.add(str(key[0]) if isinstance(key, tuple) else str(key))


def sky_rate(hdrtab) -> float:
    """The largest sky a product subtracted, in electrons/s (MDRIZSKY is in the inputs' SCI
    units)."""
    rates = [abs(float(r["MDRIZSKY"])) / (1.0 if str(r["BUNIT"]).upper().endswith("/S")
                                          else float(r["EXPTIME"])) for r in hdrtab]
    return max(rates)


def assert_products_agree(direct_dir, family_dir) -> list[str]:
    """Every drizzle product of both runs: CTX identical, the same empty pixels, WHT and SCI
    within a few float32 ulps (SCI: of |value| + the sky subtracted, which the family applies
    to the sums instead of to each float32 input value). Returns the report lines."""
    eps = float(np.finfo(np.float32).eps)
    names = sorted(p.name for p in direct_dir.glob("*_dr[cz].fits"))
    assert names and names == sorted(p.name for p in family_dir.glob("*_dr[cz].fits"))
    lines = []
    for n in names:
        with fits.open(direct_dir / n) as a, fits.open(family_dir / n) as b:
            np.testing.assert_array_equal(a["CTX"].data, b["CTX"].data)
            wa, wb = a["WHT"].data.astype(np.float64), b["WHT"].data.astype(np.float64)
            np.testing.assert_array_equal(wa == 0, wb == 0)
            assert (wa > 0).sum() > 1000
            sa, sb = a["SCI"].data.astype(np.float64), b["SCI"].data.astype(np.float64)
            np.testing.assert_array_equal(np.isfinite(sa), np.isfinite(sb))
            sky = sky_rate(a["HDRTAB"].data)
        ok = wa > 0
        dw = np.abs(wb[ok] - wa[ok])
        assert np.all(dw <= 8 * eps * wa[ok]), n
        ds = np.abs(sb[ok] - sa[ok])
        assert np.all(ds <= 8 * eps * (np.abs(sa[ok]) + sky)), n
        lines.append(f"{n}: SCI max |diff| / |value| "
                     f"{(ds / np.maximum(np.abs(sa[ok]), 1e-30)).max():.3g}, / (|value| + sky) "
                     f"{(ds / (np.abs(sa[ok]) + sky)).max():.3g}; WHT max rel "
                     f"{(dw / wa[ok]).max():.3g}")
    return lines


@pytest.mark.parametrize("poller_name", ["acs_f3t_03_input.out", "wfc3_f3s_01_input.out"])
def test_family_products_equal_direct(sim, run_svm, tmp_path, poller_name):
    """ACS/WFC (F775W x2, F850LP x2) and WFC3 (UVIS + IR): every detector's exposure, filter
    and total products form one family (the same square kernel, pixfrac 1, EXP weights), run
    as family tasks, and equal the products each drizzled on its own."""
    poller = next(p for p in sim.svm_pollers if p.name == poller_name)
    p = plan(poller)
    for det in p.detectors:
        jobs = _jobs(det, p.exposures)
        assert _families(jobs) == [[j.name for j in jobs]]
    keys = _Keys()
    with keys:
        run_svm(poller, tmp_path / "family", refcat=sim.refcat)
    assert any(n.startswith("svm-family-") for n in keys.names)
    direct = _Keys()
    with direct:
        run_svm(poller, tmp_path / "direct", refcat=sim.refcat, family=False)
    assert not any(n.startswith("svm-family-") for n in direct.names)
    for line in assert_products_agree(tmp_path / "direct", tmp_path / "family"):
        print(line)
    # S_REGION from the tiles' data-mask parts, made by the family tasks' writes and by the
    # products' own write tasks: the whole written SCI's (the oracle reads the product back)
    for path in [*(tmp_path / "family").glob("*_dr[cz].fits"),
                 *(tmp_path / "direct").glob("*_dr[cz].fits")]:
        with fits.open(path) as hdul:
            sci = hdul["SCI"]
            assert sci.header["S_REGION"] == s_region(sci.data, WCS(sci.header)), path


def test_filter_with_other_pixfrac_is_left_out():
    """A filter of six or more ACS/WFC exposures drizzles with pixfrac 0.8 (HAP's filter_n6):
    it keeps its own drizzle; its exposures and the total still form a family."""
    finals = [AstroDrizzleParams.from_mapping(svm_drizzle_params("acs_wfc", lvl, n)).final
              for lvl, n in (("filter", 6), ("exposure", 6), ("exposure", 6), ("total", 8))]
    assert finals[0].pixfrac == 0.8
    assert family_groups(finals) == [[1, 2, 3]]
