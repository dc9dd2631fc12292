"""The SVM product graph planned in threads (``hapdask.svm.runner._plan_products``): the same
graph as planning the products one after the other, and each chip placed on a grid once for
all products using the same parameters (the cache of
:func:`hapdask.mosaic.tiles.place_chip_configs` shared by the threads)."""

from __future__ import annotations

import pickle
import threading
import warnings
from collections import Counter

import numpy as np
from dask.core import get_dependencies

import hapdask.drizzle
from hapdask.scheduling import local_compute
from hapdask.svm import runner


def _graph(p, states, staging):
    graph, keys, jobs = runner.products_graph(p, states, str(staging))
    for j in jobs:
        j.scratch.remove()
    deps = {k: sorted(map(str, get_dependencies(graph, k))) for k in graph}
    return deps, keys


def _record_pixmaps(monkeypatch) -> list:
    """Spy on every chip's pixel map made while placing it: ``(made in the main thread,
    output WCS)`` per chip (its first band of rows: the placements map a chip band by band)."""
    made: list = []
    lock = threading.Lock()
    real = hapdask.drizzle.calc_pixmap

    def recorded(wcs_in, wcs_out, shape, *, region, **kwargs):
        if region[0] == 0:
            with lock:
                made.append((threading.current_thread() is threading.main_thread(), wcs_out))
        return real(wcs_in, wcs_out, shape, region=region, **kwargs)

    monkeypatch.setattr(hapdask.drizzle, "calc_pixmap", recorded)
    return made


def test_threaded_planning_same_graph_maps_once(sim, tmp_path, monkeypatch, aligned_acs_visit):
    p, states = aligned_acs_visit()
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
    # as many maps as planning one product after the other, which places each chip on a grid
    # once per parameter set (a cache hit for the products sharing it), none in the main thread
    assert made == calls and set(made) == {False}
    products = [j for d in p.detectors for j in runner._jobs(d, p.exposures)]
    assert sum(made.values()) < sum(2 * len(j.inputs) for j in products)


def test_every_product_on_the_one_visit_grid(sim, tmp_path, monkeypatch, aligned_acs_visit):
    """HAP drizzles a detector's exposure, filter and total products onto one visit grid: each
    chip's final pixel map is made once, on exactly that grid (not on a copy rebuilt from
    another product's first chip, which differs in the last bits of its CD matrix)."""
    p, states = aligned_acs_visit()
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


def test_early_sky_and_static_values_equal_their_tasks(sim, tmp_path, aligned_acs_visit):
    """With ``early`` (local threads), the products' static masks and sky levels are computed
    while the chips are placed: their keys hold the values their tasks give in the graph
    planned without it (computed here from that graph), every other task is the same (the
    products written tile by tile in both: ``banded``, on by default with ``early``, is
    compared in tests/mosaic)."""
    from dask.core import istask

    p, states = aligned_acs_visit()
    staging = tmp_path / "staging"
    staging.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        early, _, ejobs = runner.products_graph(p, states, str(staging), early=True,
                                                banded=False)
        plain, _, pjobs = runner.products_graph(p, states, str(staging))
        try:
            computed = [k for k, v in early.items() if not istask(v) and istask(plain.get(k))]
            names = {str(k[0]) for k in computed}
            assert any("-sky-" in n for n in names) and any("static" in n for n in names)
            # only the early computes' own intermediate tasks are gone
            assert set(early) <= set(plain)
            assert all("-sky-" in str(k[0]) or "static" in str(k[0])
                       for k in set(plain) - set(early))
            want = dict(zip(computed, local_compute(plain, computed), strict=True))
        finally:
            for j in ejobs + pjobs:
                j.scratch.remove()
    for k in computed:
        assert pickle.dumps(early[k]) == pickle.dumps(want[k]), k
    for k in set(early) - set(computed):
        assert get_dependencies(early, k) == get_dependencies(plain, k)


def test_early_hand_overs_computed_in_turn():
    """Several jobs hand their early tasks over from threads: every value is kept, one
    compute runs at a time, on the shared pool."""
    import time

    from hapdask.mosaic.job import EarlyWork

    spans = []
    lock = threading.Lock()

    def work(i):
        t0 = time.perf_counter()
        time.sleep(0.01)
        with lock:
            spans.append((t0, time.perf_counter(), threading.current_thread().name))
        return i * i

    early = EarlyWork(2)
    graphs = [({(f"t{j}", i): (work, 10 * j + i) for i in range(4)},
               [(f"t{j}", i) for i in range(4)]) for j in range(6)]
    threads = [threading.Thread(target=early, args=g) for g in graphs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    early.join()
    assert early.error is None
    assert early.values == {(f"t{j}", i): (10 * j + i) ** 2 for j in range(6) for i in range(4)}
    spans.sort()
    assert {n for *_, n in spans} <= {f"hapdask-plan_{k}" for k in range(2)}
    # at most two tasks (the pool's threads) at any time
    ends = []
    for t0, t1, _ in spans:
        ends = [e for e in ends if e > t0] + [t1]
        assert len(ends) <= 2
