"""blot_cr_region's median window from the median tiles (hapdask.mosaic.stages._median_window):
expected values from a plain numpy canvas (zeros, each tile pasted at its place) cut to the
window; windows covered by the tiles (not zeroed first) and partly outside them."""

import numpy as np
import pytest

from hapdask.mosaic.stages import _median_window


@pytest.mark.parametrize("window", [(3, 17, 5, 29), (0, 20, 0, 30), (-4, 12, 20, 37),
                                    (15, 26, -2, 9)])
def test_median_window_matches_a_canvas(window):
    rng = np.random.default_rng(3)
    grid = (20, 30)
    canvas = rng.normal(size=grid).astype(np.float32)
    parts = [(y, min(y + 8, grid[0]), x, min(x + 12, grid[1]))
             for y in range(0, grid[0], 8) for x in range(0, grid[1], 12)]
    medians = [canvas[p0:p1, q0:q1].copy() for p0, p1, q0, q1 in parts]
    w0, w1, v0, v1 = window
    big = np.zeros((grid[0] + 20, grid[1] + 20), np.float32)
    big[10:10 + grid[0], 10:10 + grid[1]] = canvas
    ref = big[w0 + 10:w1 + 10, v0 + 10:v1 + 10]
    got = _median_window(window, parts, medians)
    np.testing.assert_array_equal(got, ref)
    # a tile missing: its pixels are 0
    got = _median_window(window, parts[1:], medians[1:])
    big[10:18, 10:22] = 0
    np.testing.assert_array_equal(got, big[w0 + 10:w1 + 10, v0 + 10:v1 + 10])
