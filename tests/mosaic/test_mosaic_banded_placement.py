"""Chip placements are made from the pixel map band by band (never the whole map at once):
their tile boxes and region windows must be those of the whole map. The oracle is the whole
map: the exact :class:`hapdask.drizzle.tile.FootprintIndex` (every pixel's own reach) for the
boxes, numpy over the finite positions for the region windows."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hapdask.drizzle
from hapdask.drizzle import calc_pixmap
from hapdask.drizzle.tile import FootprintIndex
from hapdask.io import open_exposure
from hapdask.mosaic import chip_refs, north_up_grid
from hapdask.mosaic.grid import OutputGrid
from hapdask.mosaic.tiles import PLACE_ROWS, place_chip_configs

CONFIGS = [
    {"kernel": "square", "pixfrac": 1.0},
    {"kernel": "square", "pixfrac": 1.0, "grow": 1, "region_size": 1024, "halo": 1,
     "reach": 3},
    {"kernel": "square", "pixfrac": 0.6, "grow": 5, "region_size": 300, "halo": 2},
    {"kernel": "gaussian", "pixfrac": 1.0},
]


def _want(pm: np.ndarray, grid: OutputGrid, tile: int, ratio: float, config: dict):
    """Boxes and region windows of the whole map ``pm`` (the definitions)."""
    index = FootprintIndex(pm, kernel=config["kernel"], pixfrac=config["pixfrac"],
                           pixel_scale_ratio=ratio)
    ny, nx = grid.shape
    grow = config.get("grow", 0)
    boxes = {}
    for idx, (y0, y1, x0, x1) in grid.windows(tile):
        b = index.covering_bbox((max(y0 - grow, 0), min(y1 + grow, ny), max(x0 - grow, 0),
                                 min(x1 + grow, nx)))
        if b is not None:
            boxes[idx] = b
    windows = []
    size = config.get("region_size")
    halo, reach = config.get("halo", 0), config.get("reach", 0)
    cy, cx = pm.shape[:2]
    for y0 in range(0, cy, size) if size else ():
        for x0 in range(0, cx, size):
            y1, x1 = min(y0 + size, cy), min(x0 + size, cx)
            g = pm[max(y0 - halo, 0):min(y1 + halo, cy), max(x0 - halo, 0):min(x1 + halo, cx)]
            ok = np.isfinite(g[..., 0]) & np.isfinite(g[..., 1])
            w = None
            if ok.any():
                x, y = g[..., 0][ok], g[..., 1][ok]
                w = (max(math.floor(y.min()) - reach, 0), min(math.ceil(y.max()) + reach + 1, ny),
                     max(math.floor(x.min()) - reach, 0), min(math.ceil(x.max()) + reach + 1, nx))
                w = w if w[0] < w[1] and w[2] < w[3] else None
            windows.append(((y0, y1, x0, x1), w))
    return boxes, windows


def _check(chip, grid: OutputGrid, tile: int, pm: np.ndarray) -> int:
    ratio = grid.scale_arcsec / chip.pscale
    got = place_chip_configs(chip, grid, tile, CONFIGS)
    n = 0
    for config, pl in zip(CONFIGS, got, strict=True):
        boxes, windows = _want(pm, grid, tile, ratio, config)
        assert pl.boxes == boxes, config
        assert [(r.box, r.window) for r in pl.regions] == windows, config
        n += len(boxes)
    return n


@pytest.mark.parametrize("cut", [False, True])
def test_banded_placement_is_the_whole_maps_on_real_headers(shared_data, cut):
    """ACS/WFC FLT with its real distortion (SIP, NPOL, D2IM): both chips on a north-up grid,
    and on a grid cutting them (tiles and regions partly off it)."""
    chips = chip_refs(open_exposure(str(shared_data / "real" / "j94f05bgq_flt.fits.gz")), 0)
    grid = north_up_grid([c.wcs() for c in chips], scale=0.05)
    if cut:
        grid = OutputGrid.from_wcs(grid.wcs(), (grid.shape[0] // 2 + 37, grid.shape[1] - 301))
    n = 0
    for chip in chips:
        assert chip.shape[0] > 2 * PLACE_ROWS
        pm = calc_pixmap(chip.wcs(), grid.wcs(), chip.shape)
        n += _check(chip, grid, 512, pm)
    assert n > 10


def test_banded_placement_with_holes_at_band_edges(shared_data, monkeypatch):
    """A map with NaN and inf positions on and beside the band edges (the neighbours a band's
    first and last rows read are in the next band): the same boxes and windows."""
    chip = chip_refs(open_exposure(str(shared_data / "real" / "j94f05bgq_flt.fits.gz")), 0)[0]
    grid = north_up_grid([chip.wcs()], scale=0.05)
    pm = calc_pixmap(chip.wcs(), grid.wcs(), chip.shape)
    rng = np.random.default_rng(11)
    pm[rng.random(chip.shape) < 0.002, 0] = np.nan
    for r in (PLACE_ROWS - 1, PLACE_ROWS, 2 * PLACE_ROWS + 1, 3 * PLACE_ROWS - 2):
        pm[r, 100:700, r % 2] = np.nan
    pm[PLACE_ROWS - 64:PLACE_ROWS + 64, 1024:1088] = np.nan   # blocks each side of an edge
    pm[4 * PLACE_ROWS, 2000, 1] = np.inf
    pm[-1, :, 0] = np.nan                                      # the chip's last row

    def mapped(wcs_from, wcs_to, shape, *, region, models=None):
        y0, y1, x0, x1 = region
        return pm[y0:y1, x0:x1].copy()

    monkeypatch.setattr(hapdask.drizzle, "calc_pixmap", mapped)
    assert _check(chip, grid, 512, pm) > 10
