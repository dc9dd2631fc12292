"""Alignment inside the MVM graph (issue 8 item 4): no global barrier.

The plan is drawn on the a-priori WCS grown by the alignment margin without computing anything
of the alignment; a tile task depends on the alignment of the visits of its own chips only; the
products equal those of the barrier flow (alignment computed first, its updates given to the
plan) pixel for pixel; a correction larger than the margin is rejected with a reason.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from dask.core import get_dependencies
from dask.threaded import get

from hapdask.align import mvm_alignment
from hapdask.align import pipeline as align_pipeline
from hapdask.align.pipeline import align_job, limit_corrections, open_inputs
from hapdask.export.stats import WHT_MEDIAN_RTOL
from hapdask.mvm import plan, run
from hapdask.mvm.graph import alignment_keys, build_graph
from hapdask.mvm.sky import NoSky


def _quiet(_msg: str) -> None:
    pass


def _run(visit, out, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run(visit.skycell, str(visit.mvm_poller), output=out, formats=["fits"],
                   log=_quiet, **kw)


@pytest.fixture(scope="module")
def barrier(visit, tmp_path_factory):
    """The barrier flow: the whole alignment computed first, its updates given to the run."""
    res = mvm_alignment(str(visit.mvm_poller), visit.refcat)
    out = tmp_path_factory.mktemp("barrier")
    _run(visit, out, tile_size=256, threads_per_worker=1, wcs_updates=res.wcs_updates())
    return res, out


@pytest.fixture(scope="module")
def in_graph(visit, tmp_path_factory):
    """Alignment inside the run's graph (one thread, tiles of 256)."""
    out = tmp_path_factory.mktemp("in_graph")
    return _run(visit, out, tile_size=256, threads_per_worker=1, refcat=visit.refcat), out


def _closure(graph: dict, key) -> set:
    seen: set = set()
    todo = [key]
    while todo:
        k = todo.pop()
        for d in get_dependencies(graph, k):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_plan_computes_no_alignment_and_tiles_wait_for_their_visits(visit, monkeypatch):
    calls = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise AssertionError("alignment computed while planning")

    # the graph is built with whatever these names hold: any call would be recorded
    monkeypatch.setattr(align_pipeline, "chip_sources", forbidden)
    monkeypatch.setattr(align_pipeline, "fit_visit", forbidden)
    p = plan(visit.skycell, str(visit.mvm_poller), tile_size=64, refcat=visit.refcat)
    graph, tiles = build_graph(p, NoSky())
    assert not calls
    job = p.alignment.job
    fit_keys = set(job.keys)
    assert len(fit_keys) >= 2  # WFC3/UVIS and WFC3/IR are fitted separately
    assert set(alignment_keys(p)) <= set(graph)
    partial = 0
    ntiles = 0
    for lay in p.layers.values():
        for tile in lay.tiles:
            if not tile.contribs:
                continue
            ntiles += 1
            own = {job.keys[p.alignment.visit_of(lay.chips[i].key)] for i, _ in tile.contribs}
            reached = _closure(graph, tiles[lay.name][tile.index]) & fit_keys
            assert reached == own, (lay.name, tile.index)
            partial += reached != fit_keys
    assert ntiles and partial == ntiles  # every layer holds one detector: one visit of two


def test_in_graph_grids_hold_the_barrier_grids(visit, barrier):
    res, _ = barrier
    pb = plan(visit.skycell, str(visit.mvm_poller), tile_size=256,
              wcs_updates=res.wcs_updates())
    pg = plan(visit.skycell, str(visit.mvm_poller), tile_size=256, refcat=visit.refcat)
    assert pg.layers.keys() == pb.layers.keys()
    for name, lb in pb.layers.items():
        lg = pg.layers[name]
        dx = lg.wcs_header["CRPIX1"] - lb.wcs_header["CRPIX1"]
        dy = lg.wcs_header["CRPIX2"] - lb.wcs_header["CRPIX2"]
        assert dx == int(dx) and dy == int(dy) and dx >= 0 and dy >= 0
        assert lg.shape[0] >= lb.shape[0] + dy and lg.shape[1] >= lb.shape[1] + dx
        # grown by the 3" margin (at the layer's scale) beyond the a-priori footprints
        assert lg.shape[1] > lb.shape[1] + 3.0 / lg.scale_arcsec


def _layers(out):
    return {p.name: p for p in sorted(out.glob("*_dr[cz].fits"))}


def test_in_graph_products_equal_the_barrier_flow(barrier, in_graph):
    result, out_g = in_graph
    _, out_b = barrier
    files_b, files_g = _layers(out_b), _layers(out_g)
    assert files_b.keys() == files_g.keys() and len(files_b) == 3  # UVIS fine, IR fine + coarse
    for name, pb in files_b.items():
        with fits.open(pb) as hb, fits.open(files_g[name]) as hg:
            x0 = int(hg["SCI"].header["CRPIX1"] - hb["SCI"].header["CRPIX1"])
            y0 = int(hg["SCI"].header["CRPIX2"] - hb["SCI"].header["CRPIX2"])
            ny, nx = hb["SCI"].data.shape
            for ext in ("SCI", "WHT", "CTX"):
                b = hb[ext].data
                g = hg[ext].data
                sub = g[..., y0:y0 + ny, x0:x0 + nx]
                assert np.array_equal(sub, b, equal_nan=ext == "SCI"), (name, ext)
                outside = np.ones(g.shape[-2:], bool)
                outside[y0:y0 + ny, x0:x0 + nx] = False
                if ext == "WHT":
                    assert not g[outside].any(), name  # nothing landed in the margin
            assert hg[0].header["NDRIZIM"] == hb[0].header["NDRIZIM"]
            # whole-layer statistics: float64 sums over tiles, whose windows differ between
            # the two grids (summation order: 1e-12); MEDWHT to its stated precision
            for key in ("MEANNEXP", "MEDNEXP", "MEANEXPT", "MEDEXPT", "MEANWHT", "MEDWHT"):
                rtol = WHT_MEDIAN_RTOL if key == "MEDWHT" else 1e-12
                assert hg[0].header[key] == pytest.approx(hb[0].header[key], rel=rtol), \
                    (name, key)
            wk_b = {k: v for k, v in hb[0].header.items() if k.endswith("WKEY")}
            wk_g = {k: v for k, v in hg[0].header.items() if k.endswith("WKEY")}
            assert wk_g == wk_b and all("-FIT_MVM_" in v for v in wk_g.values()), name
            for col in ("WCSNAME", "CRVAL1", "CRVAL2", "CD1_1", "NMATCHES"):
                assert list(hg["HDRTAB"].data[col]) == list(hb["HDRTAB"].data[col]), col
    assert any(n.startswith("alignment: visit") and "FIT_MVM" in n for n in result.notes)


def test_in_graph_is_independent_of_tiles_and_workers(visit, in_graph, tmp_path):
    _, out_1 = in_graph
    _run(visit, tmp_path, tile_size=96, workers=2, threads_per_worker=1,
         refcat=visit.refcat)
    files_1, files_2 = _layers(out_1), _layers(tmp_path)
    assert files_1.keys() == files_2.keys()
    for name, p1 in files_1.items():
        with fits.open(p1) as h1, fits.open(files_2[name]) as h2:
            for ext in ("SCI", "WHT", "CTX"):
                assert np.array_equal(h1[ext].data, h2[ext].data, equal_nan=ext == "SCI"), \
                    (name, ext)


def test_correction_beyond_the_margin_keeps_apriori_in_graph(visit):
    # the simulated pointing errors are 0.1-0.5": every correction exceeds a 0.05" margin
    p = plan(visit.skycell, str(visit.mvm_poller), tile_size=256, refcat=visit.refcat,
             margin=0.05)
    graph, _ = build_graph(p, NoSky())
    chip_keys = [k for k in graph if isinstance(k, tuple) and str(k[0]).endswith("-chip")]
    keys = alignment_keys(p)
    values = get(graph, keys + chip_keys)
    res = p.alignment.job.result(values[:len(keys)])
    assert res.exposures and all(e.status == "apriori" and not e.updates for e in res.exposures)
    assert all("exceeds the alignment margin 0.05\"" in e.reason for e in res.exposures)
    assert all(c.wcs_bytes is None for c in values[len(keys):])  # a-priori WCS drizzled


def test_limit_corrections_checks_every_chip(visit):
    """Fits made without a margin: held to a tiny margin every update is refused with the
    size of the correction; held to a wide one, nothing changes."""
    exps, _ = open_inputs(str(visit.mvm_poller))
    job = align_job(exps, visit.refcat)
    fits_ = job.result(get(job.graph, job.keys))
    assert any(e.updates for e in fits_.exposures)
    kept = limit_corrections(fits_.exposures, exps, 10.0)
    assert [e.status for e in kept] == [e.status for e in fits_.exposures]
    tight = limit_corrections(fits_.exposures, exps, 1e-3)
    for before, after in zip(fits_.exposures, tight, strict=True):
        if before.updates:
            assert after.status == "apriori" and not after.updates
            assert "exceeds the alignment margin 0.001\"" in after.reason
            assert after.wcsname == next(e.wcsname for e in exps
                                         if e.rootname == before.rootname)
        else:
            assert after == before


def test_given_updates_win_over_the_graph_alignment(visit):
    from hapdask.simulate import read_true_wcs

    true = read_true_wcs(visit.true_wcs)
    first = sorted({k[0] for k in true})[0]
    given = {k: v for k, v in true.items() if k[0] == first}
    p = plan(visit.skycell, str(visit.mvm_poller), tile_size=256, refcat=visit.refcat,
             wcs_updates=given)
    chips = {c.key: c for lay in p.layers.values() for c in lay.chips}
    assert given.keys() <= chips.keys()
    for key, c in chips.items():
        if key in given:  # planned and drizzled on the given WCS, not aligned in the graph
            assert key not in p.alignment.chips and c.wcs_bytes is not None
        else:
            assert key in p.alignment.chips and c.wcs_bytes is None
