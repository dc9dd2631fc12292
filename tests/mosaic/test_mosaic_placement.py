"""The output window of every chip region (blot and driz_cr read the median there): the
positions of the region's grown pixels with a finite x and y, floored/ceiled and widened by the
interpolation's reach, clipped to the grid (the definition, computed here with numpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hapdask.drizzle import calc_pixmap
from hapdask.io import open_exposure
from hapdask.mosaic import chip_refs, north_up_grid
from hapdask.mosaic._extent import finite_extent
from hapdask.mosaic.grid import OutputGrid
from hapdask.mosaic.tiles import place_chip


def _numpy_extent(g):
    ok = np.isfinite(g[..., 0]) & np.isfinite(g[..., 1])
    if not ok.any():
        return 0, None, None, None, None
    x, y = g[..., 0][ok], g[..., 1][ok]
    return int(ok.sum()), x.min(), x.max(), y.min(), y.max()


def test_finite_extent_is_numpys_over_the_finite_positions():
    rng = np.random.default_rng(3)
    pm = rng.normal(0, 1e3, (40, 30, 2))
    pm[rng.random((40, 30)) < 0.1, 0] = np.nan
    pm[rng.random((40, 30)) < 0.1, 1] = np.inf
    pm[5, 7] = (-5e4, 6e4)                 # extremes, finite: counted
    pm[6, 7] = (np.nan, -9e4)              # y extreme with a NaN x: not counted
    for box in ((0, 40, 0, 30), (3, 17, 4, 29), (10, 11, 2, 3)):
        y0, y1, x0, x1 = box
        got = finite_extent(pm, *box)
        want = _numpy_extent(pm[y0:y1, x0:x1])
        assert got[0] == want[0]
        if want[0]:
            assert got[1:] == want[1:]
    pm[:, :, 0] = np.nan
    assert finite_extent(pm, 0, 40, 0, 30)[0] == 0


@pytest.fixture(scope="module")
def chip(tmp_path_factory):
    from hapdask.simulate import simulate_visits

    sim = simulate_visits("p1889x07y19", tmp_path_factory.mktemp("sim"), small=True, visits=3)
    path = str(next(p for p in sim.exposures if p.name.startswith("jf3t03a1q")))
    return chip_refs(open_exposure(path), None)[0]


def test_region_windows_follow_their_definition(chip):
    # a grid that cuts the chip: windows are clipped, some regions miss it
    full = north_up_grid([chip.wcs()], scale=0.05)
    grid = OutputGrid.from_wcs(full.wcs(), (full.shape[0] // 2, full.shape[1]))
    size, halo, reach = 96, 2, 6
    pl = place_chip(chip, grid, 128, region_size=size, halo=halo, reach=reach)
    pm = calc_pixmap(chip.wcs(), grid.wcs(), chip.shape)
    ny, nx = grid.shape
    cy, cx = chip.shape
    assert len(pl.regions) == math.ceil(cy / size) * math.ceil(cx / size)
    windows = 0
    for r in pl.regions:
        y0, y1, x0, x1 = r.box
        g = pm[max(y0 - halo, 0):min(y1 + halo, cy), max(x0 - halo, 0):min(x1 + halo, cx)]
        n, xmn, xmx, ymn, ymx = _numpy_extent(g)
        want = None
        if n:
            w = (max(math.floor(ymn) - reach, 0), min(math.ceil(ymx) + reach + 1, ny),
                 max(math.floor(xmn) - reach, 0), min(math.ceil(xmx) + reach + 1, nx))
            want = w if w[0] < w[1] and w[2] < w[3] else None
        assert r.window == want, r.box
        windows += want is not None
    assert 0 < windows < len(pl.regions)


def _warped_pixmap(ny: int, nx: int, holes: bool) -> np.ndarray:
    """A rotated, scaled and curved map (steps vary across the chip), optionally with NaN
    holes (single positions, a block edge, a whole block) and an infinite position."""
    j, i = np.mgrid[0:ny, 0:nx].astype(np.float64)
    t = math.radians(23.0)
    x = 40 + 0.97 * (math.cos(t) * i - math.sin(t) * j) + 2e-4 * i * j
    y = 90 + 1.03 * (math.sin(t) * i + math.cos(t) * j) + 3e-4 * i * i
    pm = np.stack([x, y], axis=-1)
    if holes:
        rng = np.random.default_rng(7)
        pm[rng.random((ny, nx)) < 0.01, 0] = np.nan
        pm[63:65, 10:90, 1] = np.nan          # across a block edge
        pm[128:192, 64:128] = np.nan          # a whole block
        pm[100, 100, 0] = np.inf
    return pm


@pytest.mark.parametrize("holes", [False, True])
@pytest.mark.parametrize(("kernel", "pixfrac"), [("square", 1.0), ("square", 0.6),
                                                 ("gaussian", 1.0)])
def test_rows_block_bounds_hold_the_exact_extents_and_give_the_same_boxes(holes, kernel, pixfrac):
    """The placements' cheap block extents (:func:`hapdask.mosaic._extent.rows_block_bounds`) hold
    FootprintIndex's exact ones, and an index using them finds the same covering boxes."""
    from hapdask.drizzle.tile import FootprintIndex, _reach_params
    from hapdask.mosaic._extent import rows_block_bounds

    pm = _warped_pixmap(300, 250, holes)
    exact = FootprintIndex(pm, kernel=kernel, pixfrac=pixfrac, pixel_scale_ratio=1.0)
    quick = FootprintIndex(pm, kernel=kernel, pixfrac=pixfrac, pixel_scale_ratio=1.0)
    quick.extents = rows_block_bounds(pm, 0, pm.shape[0], quick.block,
                                      *_reach_params(kernel, pixfrac, 1.0))
    e, q = exact.extents, quick.extents
    assert e.shape == q.shape
    # every block's extent holds the exact one (empty blocks stay empty: +inf / -inf)
    assert (q[..., 0] <= e[..., 0]).all() and (q[..., 2] <= e[..., 2]).all()
    assert (q[..., 1] >= e[..., 1]).all() and (q[..., 3] >= e[..., 3]).all()
    assert np.isinf(q[2, 1]).all() if holes else np.isfinite(q).all()
    # and not much larger (a pixel's reach at most)
    fin = np.isfinite(e)
    assert np.abs(q[fin] - e[fin]).max() < 2.0
    n = 0
    for size in (37, 64, 100):
        for y0 in range(-20, 420, size):
            for x0 in range(-20, 400, size):
                w = (y0, y0 + size, x0, x0 + size)
                assert quick.covering_bbox(w) == exact.covering_bbox(w), w
                n += 1
    assert n > 100


def test_all_finite_agrees_with_numpy_on_nan_and_inf_of_either_sign():
    from hapdask.mosaic._extent import _all_finite

    rng = np.random.default_rng(3)
    specials = (np.nan, -np.nan, np.inf, -np.inf, np.finfo(np.float64).max, -0.0, 5e-324)
    for _ in range(500):
        pm = rng.normal(size=(6, 9, 2)) * 1e3
        for _ in range(int(rng.integers(0, 3))):
            pm[rng.integers(6), rng.integers(9), rng.integers(2)] = rng.choice(specials)
        j0, j1 = sorted(int(v) for v in rng.integers(0, 7, 2))
        i0, i1 = sorted(int(v) for v in rng.integers(0, 10, 2))
        want = bool(np.isfinite(pm[j0:j1, i0:i1]).all())
        assert _all_finite(pm.view(np.uint64), j0, j1, i0, i1) == want
