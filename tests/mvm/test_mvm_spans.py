"""Tile tasks drizzle only the input rows' column spans that can land in the tile (issue 11).

A tile's input box is the axis-aligned box around a rotated footprint piece; the tasks compute
pixel maps and run the kernel only on the per-row spans of :func:`input_row_spans`. Checked
against what does not depend on that code:

* conservative: every input pixel whose true footprint (its corners through the full WCS,
  astropy) reaches into a tile lies inside its row's span;
* exact: each tile equals, bit for bit, the same chips drizzled untiled onto the whole layer
  (one ``add_to_tile`` call per chip over the whole chip and the whole grid), also for chips
  rotated by 30 degrees (tile borders cut them obliquely);
* tighter: on rotated chips the spans hold about the chip's pixels once, where the boxes hold
  far more.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits

from hapdask.mosaic.tiles import footprint_margin, input_row_spans
from hapdask.mvm import plan as make_plan
from hapdask.mvm.graph import build_graph, layer_params
from hapdask.sky.level import SkyLevel

SKYCELL = "p1889x07y19"
CHOSEN = ["wfc3_uvis_f475w_all", "acs_wfc_f850lp"]


def _rotated(true_wcs, degrees: float) -> dict:
    """The true chip WCSs turned by ``degrees`` on the sky about each chip's reference pixel
    (the CD matrix rotated; distortion, which acts before it, unchanged)."""
    t = np.deg2rad(degrees)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    out = {}
    for key, hdr in true_wcs.items():
        h = fits.Header(hdr, copy=True)
        cd = np.array([[h["CD1_1"], h["CD1_2"]], [h["CD2_1"], h["CD2_2"]]])
        cd = rot @ cd
        h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = cd[0, 0], cd[0, 1], cd[1, 0], cd[1, 1]
        out[key] = h
    return out


def _plan(sim, wcs_updates, verdicts, tile):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_plan(SKYCELL, str(sim.mvm_poller), tile_size=tile, wcs_updates=wcs_updates,
                         verdicts=verdicts, only=CHOSEN)


def _spans(lay, k, tile, box):
    c = lay.chips[k]
    margin = footprint_margin(c.pscale / lay.scale_arcsec)
    return input_row_spans(c.wcs(), box, lay.wcs(), tile.window, margin)


def _corner_map(w, ny: int, nx: int, out_wcs) -> np.ndarray:
    yy, xx = np.mgrid[0:ny + 1, 0:nx + 1].astype(np.float64) - 0.5
    ra, dec = w.all_pix2world(xx.ravel(), yy.ravel(), 0)
    ox, oy = out_wcs.all_world2pix(ra, dec, 0)
    return np.dstack([ox.reshape(xx.shape), oy.reshape(xx.shape)])


@pytest.mark.parametrize("degrees", [0.0, 30.0])
def test_spans_cover_true_pixel_footprints(sim, true_wcs, verdicts, degrees):
    p = _plan(sim, _rotated(true_wcs, degrees), verdicts, 96)
    checked = 0
    span_px = box_px = 0
    for lay in p.layers.values():
        out_wcs = lay.wcs()
        for k, c in enumerate(lay.chips):
            ny, nx = c.shape
            cx, cy = np.moveaxis(_corner_map(c.wcs(), ny, nx, out_wcs), -1, 0)
            quads_x = [cx[:-1, :-1], cx[1:, :-1], cx[:-1, 1:], cx[1:, 1:]]
            quads_y = [cy[:-1, :-1], cy[1:, :-1], cy[:-1, 1:], cy[1:, 1:]]
            xmin, xmax = np.minimum.reduce(quads_x), np.maximum.reduce(quads_x)
            ymin, ymax = np.minimum.reduce(quads_y), np.maximum.reduce(quads_y)
            for tile in lay.tiles:
                boxes = dict(tile.contribs)
                y0, y1, x0, x1 = tile.window
                touch = ((xmax > x0 - 0.5) & (xmin < x1 - 0.5) & (ymax > y0 - 0.5)
                         & (ymin < y1 - 0.5))
                if k not in boxes:
                    assert not touch.any()
                    continue
                box = boxes[k]
                got = _spans(lay, k, tile, box)
                box_px += (box[1] - box[0]) * (box[3] - box[2])
                if got is None:
                    assert not touch.any(), (lay.name, c.key, tile.index)
                    continue
                lo, hi = got
                span_px += int((hi - lo).sum())
                jj, ii = np.nonzero(touch)
                assert np.all((ii >= lo[jj - box[0]]) & (ii < hi[jj - box[0]])), \
                    (lay.name, c.key, tile.index)
                checked += int(touch.any())
    assert checked > 50
    assert span_px < box_px


def test_spans_hold_rotated_chips_about_once(sim, true_wcs, verdicts):
    """Tiles of 512 on chips turned by 30 degrees: the boxes hold each chip pixel ~1.5x
    over all tiles, the spans < 1.25x (their excess is the sampling cells along tile edges)."""
    p = _plan(sim, _rotated(true_wcs, 30.0), verdicts, 512)
    chip_px = span_px = box_px = 0
    for lay in p.layers.values():
        for k, c in enumerate(lay.chips):
            chip_px += c.shape[0] * c.shape[1]
            for tile in lay.tiles:
                box = dict(tile.contribs).get(k)
                if box is None:
                    continue
                box_px += (box[1] - box[0]) * (box[3] - box[2])
                got = _spans(lay, k, tile, box)
                if got is not None:
                    span_px += int((got[1] - got[0]).sum())
    assert box_px > 1.4 * chip_px
    assert span_px < 1.25 * chip_px


@pytest.mark.parametrize("degrees,tile", [(0.0, 160), (30.0, 200)])
def test_tiles_equal_untiled_whole_layer(sim, true_wcs, verdicts, degrees, tile):
    import dask

    from hapdask.drizzle import add_to_tile, calc_pixmap, finalize_tile
    from hapdask.mosaic.stages import prepare_chip_region

    p = _plan(sim, _rotated(true_wcs, degrees), verdicts, tile)
    chips = {c.key: c for lay in p.layers.values() for c in lay.chips}
    # any sky value: the same for both ways of drizzling
    skies = {key: SkyLevel(value=0.01 * (i + 1), rate=0.0, ngood=1)
             for i, key in enumerate(sorted(chips))}
    graph, tile_keys = build_graph(p, sky=skies)
    for lay in p.layers.values():
        params = layer_params(lay)
        ny, nx = lay.shape
        num = np.zeros((ny, nx))
        den = np.zeros((ny, nx))
        ctx = np.zeros((lay.nplanes, ny, nx), np.int32)
        out_wcs = lay.wcs()
        for k, c in enumerate(lay.chips):
            ratio = lay.scale_arcsec / c.pscale
            data, weight = prepare_chip_region(c, skies[c.key], (0, c.shape[0], 0, c.shape[1]),
                                               params, pix_ratio=ratio)
            pixmap = calc_pixmap(c.wcs(), out_wcs, c.shape)
            add_to_tile(data, weight, pixmap, num, den, ctx, origin=(0, 0), ctx_id=k,
                        iscale=ratio * ratio, pixel_scale_ratio=ratio)
        sci, wht = finalize_tile(num, den, fillval=params.fillval)
        keys = tile_keys[lay.name]
        results = dask.get(graph, list(keys.values()))
        for t, res in zip(keys, results, strict=True):
            window = next(tl.window for tl in lay.tiles if tl.index == t)
            y0, y1, x0, x1 = window
            np.testing.assert_array_equal(res["sci"], sci[y0:y1, x0:x1])
            np.testing.assert_array_equal(res["wht"], wht[y0:y1, x0:x1])
            np.testing.assert_array_equal(res["ctx"], ctx[:, y0:y1, x0:x1])
