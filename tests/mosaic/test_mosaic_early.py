"""``hapdask drizzle`` on local threads computes the static masks and sky levels while the client
places the chips (one thread pool for both): same products, bit for bit, as the plain graph;
the early results are dropped when a chip misses the grid (chip indices change)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

import hapdask.mosaic.job as job_module
from hapdask.mosaic import chip_refs, north_up_grid
from hapdask.mosaic.job import EarlyWork, drizzle_graph
from hapdask.mosaic.tiles import place_chips
from hapdask.scheduling import local_compute
from hapdask.simulate import simulate_visits

PARAMS = {"static": True, "skysub": True, "skymethod": "match", "combine_type": "minmed",
          "combine_nhigh": 1, "final_bits": "336", "driz_sep_bits": "336", "context": True}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    s = simulate_visits("p1889x07y19", tmp_path_factory.mktemp("early") / "set", visits=3,
                        small=True, seed=2, exposures_per_filter=2, filters=["F775W"])
    return [str(p) for p in s.exposures]


def _compute(job, graph):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return local_compute(graph, job.keys, nthreads=2)[0]
    finally:
        job.scratch.remove()


def test_early_sky_gives_the_plain_graph_products(pair, tmp_path, monkeypatch):
    plain = drizzle_graph(pair, tmp_path / "plain" / "m", params=PARAMS, tile_size=128,
                          region_size=128)
    ref = _compute(plain, plain.graph)
    early = EarlyWork(2)
    seen = []
    real = job_module.place_chips

    def place(*a, **k):
        # the static/sky compute was started before the chips are placed, on the same pool
        seen.append((early.thread is not None, k.get("pool") is early.pool))
        return real(*a, **k)

    monkeypatch.setattr(job_module, "place_chips", place)
    job = drizzle_graph(pair, tmp_path / "early" / "m", params=PARAMS, tile_size=128,
                        region_size=128, early=early, pool=early.pool)
    monkeypatch.undo()
    assert seen and all(s == (True, True) for s in seen)
    graph = early.apply(job)
    tasks, keys = job.early
    assert tasks and keys
    # every static/sky task is gone; the results the drizzle stages use are values
    assert all(k not in graph for k in tasks if k not in keys)
    assert all(not isinstance(graph[k], tuple) for k in keys)
    out = _compute(job, graph)
    assert {c: s.value for c, s in out.skies.items()} == {c: s.value for c, s in ref.skies.items()}
    assert any(s.value != 0 for s in ref.skies.values())
    with fits.open(ref.output) as a, fits.open(out.output) as b:
        for ext in ("SCI", "WHT", "CTX"):
            np.testing.assert_array_equal(a[ext].data, b[ext].data, err_msg=ext)
    assert [p.name for p in ref.crmasks] == [p.name for p in out.crmasks]
    for p, q in zip(ref.crmasks, out.crmasks, strict=True):
        with fits.open(p) as a, fits.open(q) as b:
            assert sum(int(h.data.sum()) for h in a[1:]) > 0
            for ha, hb in zip(a[1:], b[1:], strict=True):
                np.testing.assert_array_equal(ha.data, hb.data)


def test_early_results_dropped_when_a_chip_misses_the_grid(pair, tmp_path):
    far = tmp_path / "far" / "jf3t03a2q_flc.fits"
    far.parent.mkdir()
    src = next(p for p in pair if p != pair[0])
    with fits.open(src) as h:
        for hdu in h:
            if hdu.name == "SCI":
                hdu.header["CRVAL2"] = hdu.header["CRVAL2"] + 0.5
        h.writeto(far)
    with fits.open(pair[0]) as h:  # a grid on the first exposure only
        ra, dec = WCS(h[1].header, h).all_pix2world([[255.5, 127.5]], 0)[0]
    params = {**PARAMS, "final_wcs": True, "driz_sep_wcs": True}
    for k, v in {"rot": 0.0, "scale": 0.05, "ra": float(ra), "dec": float(dec), "outnx": 700,
                 "outny": 700}.items():
        params[f"final_{k}"] = params[f"driz_sep_{k}"] = v
    early = EarlyWork(2)
    try:
        job = drizzle_graph([pair[0], str(far)], tmp_path / "far" / "m", params=params,
                            tile_size=128, region_size=128, early=early, pool=early.pool)
    finally:
        early.join()
    assert job.early == ()
    assert early.apply(job) is job.graph
    res = _compute(job, job.graph)
    assert any("does not overlap" in n for n in res.notes)


def test_place_chips_on_a_given_pool(pair):
    from concurrent.futures import ThreadPoolExecutor

    from hapdask.io import open_exposure

    chips = chip_refs(open_exposure(pair[0]), 0)
    grid = north_up_grid([c.wcs() for c in chips], scale=0.05)
    with ThreadPoolExecutor(2) as pool:
        got = place_chips(chips, grid, 128, pool=pool)
    for a, b in zip(got, place_chips(chips, grid, 128, threads=1), strict=True):
        assert a.boxes == b.boxes and a.regions == b.regions and a.boxes
