"""Small pieces of the MVM graph on synthetic inputs (no simulated data needed)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS
from matplotlib.path import Path as MplPath

from hapdask.mvm.graph import rasterize_polygon, tile_coverage
from hapdask.mvm.planning import chip_tile_boxes
from hapdask.mvm.sky import clipped_median


def test_rasterize_polygon_matches_matplotlib():
    rng = np.random.default_rng(0)
    for _ in range(20):
        ang = np.sort(rng.uniform(0, 2 * np.pi, 40))
        r = rng.uniform(20, 60, 40)
        poly = np.column_stack([50 + r * np.cos(ang), 60 + r * np.sin(ang)])
        win = (int(rng.integers(0, 30)), int(rng.integers(60, 140)),
               int(rng.integers(0, 30)), int(rng.integers(60, 140)))
        m = rasterize_polygon(poly, win)
        yy, xx = np.mgrid[win[0]:win[1], win[2]:win[3]]
        ref = MplPath(poly).contains_points(np.column_stack([xx.ravel(), yy.ravel()]))
        np.testing.assert_array_equal(m, ref.reshape(m.shape))


def test_tile_coverage_counts_and_exptime():
    square = np.array([[-0.5, -0.5], [9.5, -0.5], [9.5, 9.5], [-0.5, 9.5]])
    count, expt = tile_coverage([square, square + 5], [100.0, 30.0], (0, 20, 0, 20))
    assert count[7, 7] == 2 and expt[7, 7] == 130.0
    assert count[2, 2] == 1 and expt[2, 2] == 100.0
    assert count[18, 18] == 0 and count.sum() == 200


def _tan(crval, scale_arcsec, shape, rot=0.0):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = crval
    w.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    c, s = np.cos(np.radians(rot)), np.sin(np.radians(rot))
    w.wcs.cd = scale_arcsec / 3600.0 * np.array([[-c, s], [s, c]])
    w.pixel_shape = (shape[1], shape[0])
    return w


@pytest.mark.parametrize("tile", [64, 100, 512])
def test_chip_tile_boxes_are_conservative(tile):
    """Every input pixel whose footprint touches a tile is inside that tile's box."""
    out = _tan([10.0, 20.0], 0.04, (400, 420))
    chip_shape = (150, 170)
    chip = _tan([10.0 + 1e-4, 20.0 - 2e-4], 0.1, chip_shape, rot=33.0)
    ratio = 0.1 / 0.04
    boxes = chip_tile_boxes(chip, chip_shape, out, (400, 420), tile, 0.75 * ratio + 2.0,
                            step=32)
    yy, xx = np.mgrid[0:chip_shape[0], 0:chip_shape[1]]
    ra, dec = chip.all_pix2world(xx.ravel(), yy.ravel(), 0)
    ox, oy = out.wcs_world2pix(ra, dec, 0)
    half = 0.5 * ratio * np.sqrt(2)  # pixel footprint radius in output pixels
    for ty in range(-(-400 // tile)):
        for tx in range(-(-420 // tile)):
            y0, y1 = ty * tile - 0.5, min((ty + 1) * tile, 400) - 0.5
            x0, x1 = tx * tile - 0.5, min((tx + 1) * tile, 420) - 0.5
            hit = (ox + half > x0) & (ox - half < x1) & (oy + half > y0) & (oy - half < y1)
            if not hit.any():
                continue
            b0, b1, a0, a1 = boxes[(ty, tx)]
            jy, ix = yy.ravel()[hit], xx.ravel()[hit]
            assert jy.min() >= b0 and jy.max() < b1 and ix.min() >= a0 and ix.max() < a1


def test_clipped_median_ignores_sources():
    rng = np.random.default_rng(3)
    sky = rng.normal(5.0, 1.0, 100_000)
    sky[:3000] += rng.uniform(50, 500, 3000)  # stars
    assert clipped_median(sky) == pytest.approx(5.0, abs=0.02)
