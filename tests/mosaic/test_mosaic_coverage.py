"""Coverage codes of chip outlines against matplotlib's point-in-polygon test."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from hapdask.mosaic.coverage import MAX_CODE_POLYGONS, coverage_code_counts, coverage_codes


def _blob(rng, cx, cy):
    ang = np.sort(rng.uniform(0, 2 * np.pi, 30))
    r = rng.uniform(15, 50, 30)
    return np.column_stack([cx + r * np.cos(ang), cy + r * np.sin(ang)])


def test_coverage_codes_bits_are_polygon_membership():
    rng = np.random.default_rng(5)
    polys = [_blob(rng, *rng.uniform(20, 100, 2)) for _ in range(12)]
    polys.append(np.array([[500.0, 500.0], [510.0, 500.0], [505.0, 510.0]]))  # off the window
    win = (7, 121, 3, 140)
    codes = coverage_codes(polys, win)
    yy, xx = np.mgrid[win[0]:win[1], win[2]:win[3]]
    pts = np.column_stack([xx.ravel(), yy.ravel()])
    for i, poly in enumerate(polys):
        ref = MplPath(poly).contains_points(pts).reshape(codes.shape)
        np.testing.assert_array_equal((codes >> i) & 1, ref.astype(np.int64))


@pytest.mark.parametrize("n", [1, 8, 9, 16, 17, 33])
def test_compact_coverage_codes_bits_are_polygon_membership(n):
    """``compact=True``: the smallest unsigned type holding a bit per polygon (8 -> uint8, 9 ->
    uint16, 17 -> uint32, 33 -> uint64), the same membership bits."""
    rng = np.random.default_rng(n)
    polys = [_blob(rng, *rng.uniform(20, 100, 2)) for _ in range(n)]
    win = (7, 121, 3, 140)
    codes = coverage_codes(polys, win, compact=True)
    assert codes.dtype == {1: np.uint8, 8: np.uint8, 9: np.uint16, 16: np.uint16,
                           17: np.uint32, 33: np.uint64}[n]
    yy, xx = np.mgrid[win[0]:win[1], win[2]:win[3]]
    pts = np.column_stack([xx.ravel(), yy.ravel()])
    for i, poly in enumerate(polys):
        ref = MplPath(poly).contains_points(pts).reshape(codes.shape)
        np.testing.assert_array_equal((codes >> codes.dtype.type(i)) & 1, ref)


def test_coverage_codes_limit():
    sq = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]])
    codes = coverage_codes([sq] * MAX_CODE_POLYGONS, (0, 5, 0, 5))
    assert codes[2, 2] == np.int64(2**62 - 1) + np.int64(2**62)  # all 63 bits
    with pytest.raises(ValueError, match="at most 63"):
        coverage_codes([sq] * (MAX_CODE_POLYGONS + 1), (0, 5, 0, 5))


def _truth_histogram(polys, win):
    """Codes from matplotlib's point-in-polygon test of every pixel centre, histogrammed."""
    yy, xx = np.mgrid[win[0]:win[1], win[2]:win[3]]
    pts = np.column_stack([xx.ravel(), yy.ravel()])
    codes = np.zeros(pts.shape[0], np.int64)
    for i, poly in enumerate(polys):
        codes |= MplPath(poly).contains_points(pts).astype(np.int64) << i
    return np.unique(codes, return_counts=True)


@pytest.mark.parametrize("seed", range(6))
def test_coverage_code_counts_is_the_histogram_of_the_codes(seed):
    """Overlapping blobs, a duplicated one (its bit pairs with its twin's), blobs leaving the
    window on every side, one far away: the runs between the rows' crossings add up to the
    per-pixel truth."""
    rng = np.random.default_rng(seed)
    polys = [_blob(rng, *rng.uniform(-30, 170, 2)) for _ in range(int(rng.integers(1, 15)))]
    polys.append(polys[0].copy())
    polys.append(np.array([[500.0, 500.0], [510.0, 500.0], [505.0, 510.0]]))
    win = (int(rng.integers(0, 40)), 121, int(rng.integers(0, 40)), 140)
    vals, counts = coverage_code_counts(polys, win)
    tv, tc = _truth_histogram(polys, win)
    np.testing.assert_array_equal(vals, tv)
    np.testing.assert_array_equal(counts, tc)
    cv, cc = np.unique(coverage_codes(polys, win), return_counts=True)
    np.testing.assert_array_equal(vals, cv)
    np.testing.assert_array_equal(counts, cc)


def test_coverage_code_counts_edges():
    sq = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]])
    vals, counts = coverage_code_counts([], (0, 3, 0, 4))
    assert vals.tolist() == [0] and counts.tolist() == [12]
    vals, counts = coverage_code_counts([sq + 100], (0, 3, 0, 4))  # misses the window
    assert vals.tolist() == [0] and counts.tolist() == [12]
    two = [sq - 0.5, sq + 1.25]  # no pixel centre on an edge (matplotlib's edges are loose)
    vals, counts = coverage_code_counts(two, (0, 6, 0, 6))
    tv, tc = _truth_histogram(two, (0, 6, 0, 6))
    assert vals.tolist() == tv.tolist() and counts.tolist() == tc.tolist()
    assert vals.tolist() == [0, 1, 2, 3]
    on_edges = [sq, sq + 1]  # vertices on pixel centres: the same half-open rule as the array
    vals, counts = coverage_code_counts(on_edges, (0, 6, 0, 6))
    cv, cc = np.unique(coverage_codes(on_edges, (0, 6, 0, 6)), return_counts=True)
    assert vals.tolist() == cv.tolist() and counts.tolist() == cc.tolist()
    with pytest.raises(ValueError, match="at most 63"):
        coverage_code_counts([sq] * (MAX_CODE_POLYGONS + 1), (0, 5, 0, 5))
