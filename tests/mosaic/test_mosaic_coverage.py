"""Coverage codes of chip outlines against matplotlib's point-in-polygon test."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from hapdask.mosaic.coverage import MAX_CODE_POLYGONS, coverage_codes


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


def test_coverage_codes_limit():
    sq = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]])
    codes = coverage_codes([sq] * MAX_CODE_POLYGONS, (0, 5, 0, 5))
    assert codes[2, 2] == np.int64(2**62 - 1) + np.int64(2**62)  # all 63 bits
    with pytest.raises(ValueError, match="at most 63"):
        coverage_codes([sq] * (MAX_CODE_POLYGONS + 1), (0, 5, 0, 5))
