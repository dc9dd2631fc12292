"""Tile statistics from coverage codes against numpy on the matching C and T arrays."""

from __future__ import annotations

import numpy as np
import pytest

from hapdask.export import stats


@pytest.mark.parametrize("nchips", [5, 24])  # histogram by bincount / by np.unique
def test_add_coverage_matches_numpy(nchips):
    rng = np.random.default_rng(nchips)
    ny, nx = 90, 110
    cover = rng.random((nchips, ny, nx)) < 0.3
    exptimes = rng.choice([300.0, 402.9, 500.0, 560.0], nchips).tolist()
    codes = np.zeros((ny, nx), np.int64)
    for i in range(nchips):
        codes |= cover[i].astype(np.int64) << i
    count = cover.sum(0)
    expt = np.zeros((ny, nx))
    for i in range(nchips):  # EXPTIME added in chip order, as the code does
        expt[cover[i]] += exptimes[i]
    wht = rng.uniform(1, 100, (ny, nx)).astype(np.float32)
    s = stats.add_coverage(stats.tile_stats(wht), codes, exptimes)
    g = count > 0
    assert s.n_cov == int(g.sum())
    assert s.sum_c == float(count[g].sum())
    assert s.sum_t == pytest.approx(float(expt[g].sum()), rel=1e-12)
    vals, cnt = np.unique(count[g], return_counts=True)
    assert dict(s.c_hist) == dict(zip(vals.tolist(), cnt.tolist(), strict=True))
    vals, cnt = np.unique(expt[g], return_counts=True)
    assert dict(s.t_hist) == dict(zip(vals.tolist(), cnt.tolist(), strict=True))


def test_float32_bins_equal_frexp_bins():
    rng = np.random.default_rng(2)
    v = np.concatenate([rng.uniform(1e-3, 1e6, 5000), 2.0 ** np.arange(-20, 20),
                        np.nextafter(2.0 ** np.arange(-20, 20), 0)]).astype(np.float32)
    m, e = np.frexp(v.astype(np.float64))  # the definition of the bins (4096 per octave)
    ref = e.astype(np.int64) * 8192 + np.floor((m - 0.5) * 8192).astype(np.int64)
    np.testing.assert_array_equal(stats._log_bins(v), ref)
    tiny = np.array([1e-45, 1.0], np.float32)  # a subnormal takes the frexp path
    m, e = np.frexp(tiny.astype(np.float64))
    np.testing.assert_array_equal(stats._log_bins(tiny),
                                  e.astype(np.int64) * 8192
                                  + np.floor((m - 0.5) * 8192).astype(np.int64))


def test_add_code_counts_equals_add_coverage_of_the_array():
    """The histogram form gives the same summary, bit for bit (same code order)."""
    rng = np.random.default_rng(9)
    codes = rng.integers(0, 64, size=(70, 50)) * rng.integers(0, 2, size=(70, 50))
    exptimes = [402.9, 300.0, 0.1, 560.0, 1e4, 7.7]
    a = stats.add_coverage(stats.TileStats(), codes, exptimes)
    vals, counts = np.unique(codes, return_counts=True)
    b = stats.add_code_counts(stats.TileStats(), vals, counts, exptimes)
    assert a == b and a.n_cov == int((codes > 0).sum())


def test_log_hist_equals_the_histogram_of_the_bins():
    """The float32 shortcut (labels from the top bits) gives the bins of _log_bins exactly:
    many octaves, exact powers of two and their neighbours, float64 input, a subnormal."""
    rng = np.random.default_rng(4)
    cases = [
        rng.uniform(1e-3, 1e6, 20000).astype(np.float32),
        np.concatenate([2.0 ** np.arange(-120, 120), np.nextafter(2.0 ** np.arange(-120, 120), 0),
                        np.nextafter(2.0 ** np.arange(-120, 120), np.inf)]).astype(np.float32),
        rng.uniform(1e-3, 1e6, 1000),
        np.array([1e-45, 1.0, 3.0], np.float32),
    ]
    for v in cases:
        assert stats._log_hist(v) == stats._count(stats._log_bins(v))


@pytest.mark.parametrize("covered_only", [False, True])
@pytest.mark.parametrize("nchips", [7, 70])  # coverage codes / per-chip rasterisation beyond 63
def test_coverage_stats_equal_per_chip_rasterisation(nchips, covered_only):
    """The window's summary equals that of the per-chip rasterisation (``tile_coverage``,
    checked against matplotlib's point-in-polygon in the mosaic tests) on either path."""
    from hapdask.mosaic.coverage import tile_coverage

    rng = np.random.default_rng(nchips)
    window = (40, 240, 10, 190)
    polys, times = [], []
    for _ in range(nchips):
        a = np.radians(rng.uniform(0, 90))
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        box = np.array([[-60, -25], [60, -25], [60, 25], [-60, 25]], float)
        polys.append(box @ rot.T + rng.uniform([0, 30], [200, 250]))
        times.append(float(rng.choice([30.0, 339.5, 500.0])))
    wht = rng.uniform(0, 3, (200, 180)).astype(np.float32)
    got = stats.coverage_stats(wht, polys, times, window, covered_only=covered_only)
    count, expt = tile_coverage(polys, times, window)
    want = stats.tile_stats(np.where(count > 0, wht, 0.0) if covered_only else wht, count, expt)
    assert got.n_cov == want.n_cov > 0 and got.sum_c == want.sum_c
    assert got.sum_t == pytest.approx(want.sum_t, rel=1e-12)
    assert got.c_hist == want.c_hist and got.t_hist == want.t_hist
    assert (got.n_wht, got.sum_wht, got.wht_hist) == (want.n_wht, want.sum_wht, want.wht_hist)
    if want.n_cov < wht.size:  # some pixel uncovered: covered_only must drop its weight
        assert covered_only == (got.n_wht < int((wht > 0).sum()))
