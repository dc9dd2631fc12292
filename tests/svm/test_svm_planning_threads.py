"""The SVM product graph planned in threads (``hapdask.svm.runner._plan_products``): the same
graph as planning the products one after the other, and each chip's pixel map on a grid made
once for all products (the cache of :func:`hapdask.mosaic.tiles.place_chip_configs` shared by
the threads)."""

from __future__ import annotations

import threading
import warnings
from collections import Counter

import numpy as np
from dask.core import get_dependencies

import hapdask.drizzle
from hapdask.align import FileCatalog
from hapdask.scheduling import local_compute
from hapdask.svm import plan, runner


def _graph(p, states, staging):
    graph, keys, jobs = runner.products_graph(p, states, str(staging))
    for j in jobs:
        j.scratch.remove()
    deps = {k: sorted(map(str, get_dependencies(graph, k))) for k in graph}
    return deps, keys


def _aligned_visit(sim):
    """The demo ACS visit's plan and its detectors' alignment states (computed here)."""
    poller = next(q for q in sim.svm_pollers if q.name == "acs_f3t_03_input.out")
    p = plan(poller)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph, akeys = runner.alignment_graph(p, FileCatalog(sim.refcat))
        states = dict(zip(akeys["states"], local_compute(graph, list(akeys["states"].values())),
                          strict=True))
    return p, states


def _record_pixmaps(monkeypatch) -> list:
    """Spy on every pixel map made: ``(made in the main thread, output WCS)`` per call."""
    made: list = []
    lock = threading.Lock()
    real = hapdask.drizzle.calc_pixmap

    def recorded(wcs_in, wcs_out, shape):
        with lock:
            made.append((threading.current_thread() is threading.main_thread(), wcs_out))
        return real(wcs_in, wcs_out, shape)

    monkeypatch.setattr(hapdask.drizzle, "calc_pixmap", recorded)
    return made


def test_threaded_planning_same_graph_maps_once(sim, tmp_path, monkeypatch):
    p, states = _aligned_visit(sim)
    staging = tmp_path / "staging"
    staging.mkdir()
    records = _record_pixmaps(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        threaded = _graph(p, states, staging)
        made = Counter(main for main, _ in records)
        records.clear()
        monkeypatch.setattr(runner, "PLAN_THREADS", 1)
        serial = _graph(p, states, staging)
        calls = Counter(main for main, _ in records)
    assert threaded == serial
    # as many maps as planning one product after the other, which makes each chip's map on a
    # grid once (a cache hit for the products sharing it), none in the main thread
    assert made == calls and set(made) == {False}
    products = [j for d in p.detectors for j in runner._jobs(d, p.exposures)]
    assert sum(made.values()) < sum(2 * len(j.inputs) for j in products)


def test_every_product_on_the_one_visit_grid(sim, tmp_path, monkeypatch):
    """HAP drizzles a detector's exposure, filter and total products onto one visit grid: each
    chip's final pixel map is made once, on exactly that grid (not on a copy rebuilt from
    another product's first chip, which differs in the last bits of its CD matrix)."""
    p, states = _aligned_visit(sim)
    (state,) = states.values()
    visit = state.grid.wcs()
    staging = tmp_path / "staging"
    staging.mkdir()
    records = _record_pixmaps(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _graph(p, states, staging)
    grids = [w for _, w in records]

    def same(w):
        return (w.pixel_shape == visit.pixel_shape
                and np.array_equal(w.wcs.crval, visit.wcs.crval)
                and np.array_equal(w.wcs.crpix, visit.wcs.crpix)
                and np.array_equal(w.pixel_scale_matrix, visit.pixel_scale_matrix))

    def near(w):
        return (w.pixel_shape == visit.pixel_shape
                and np.allclose(w.wcs.crval, visit.wcs.crval, rtol=0, atol=1e-9)
                and np.allclose(w.wcs.crpix, visit.wcs.crpix, rtol=0, atol=1e-6)
                and np.allclose(w.pixel_scale_matrix, visit.pixel_scale_matrix, rtol=1e-9,
                                atol=1e-15))

    n_chips = sum(c.has_data for e in p.exposures.values() for c in e.chips)
    assert sum(same(w) for w in grids) == n_chips
    assert not [w for w in grids if near(w) and not same(w)]
