"""Tiles of an output grid and, per tile, the input boxes of the chips that land in it.

:func:`place_chip` maps one chip onto a grid once (the fast numba pixel map, band by band of
rows: the whole map is never held) and answers, with the exact kernel-aware rule of
:class:`hapdask.drizzle.tile.FootprintIndex`, which input pixels can land in every tile; it
also cuts the chip into regions (for blot and driz_cr) and finds the output window each
region's pixels sample. :func:`plan_tiles` assembles the per-tile lists that *are*
the drizzle graph. :func:`chip_tile_boxes` is a cheap, conservative sampled estimate, used to
skip chips that miss a grid altogether before any exact work.

Pixel coordinates are 0-based; windows and boxes are ``(y0, y1, x0, x1)``, half-open.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from astropy.wcs import WCS

from hapdask.mosaic.grid import OutputGrid
from hapdask.mosaic.inputs import ChipRef

if TYPE_CHECKING:  # numba module: imported where a chip is mapped
    from hapdask.drizzle import FastModels

__all__ = ["ChipPlacement", "Region", "SAMPLE_STEP", "Tile", "chip_models", "chip_tile_boxes",
           "footprint_margin", "input_row_spans", "place_chip", "place_chip_configs", "place_chips",
           "plan_tiles"]

#: sampling step (input pixels) of the coarse per-chip pixel map of :func:`chip_tile_boxes`
SAMPLE_STEP = 32


Box = tuple[int, int, int, int]


@dataclass
class Tile:
    """One output tile and the chips that touch it.

    Attributes
    ----------
    index : (ty, tx)
        0-based tile indices.
    window : (y0, y1, x0, x1)
        0-based, half-open pixel window in the output grid.
    contribs : list of (chip index, box)
        Chip index (into the plan's chip list; also its context id) and the 0-based, half-open
        input box ``(y0, y1, x0, x1)`` of the pixels that can land in the tile; sorted by chip
        index (the fixed drizzle order).
    """

    index: tuple[int, int]
    window: Box
    contribs: list[tuple[int, Box]]


@dataclass(frozen=True)
class Region:
    """A block of a chip (for blot and driz_cr) and the output window its pixels sample.

    Attributes
    ----------
    box : (y0, y1, x0, x1)
        Chip pixels of the region (0-based, half-open).
    window : (y0, y1, x0, x1) or None
        Output pixels whose values interpolating at the region's (grown) pixel positions may
        read (clipped to the grid), or None when the region maps outside the grid.
    """

    box: Box
    window: Box | None


@dataclass
class ChipPlacement:
    """Where one chip lands on a grid: per-tile input boxes and chip regions."""

    boxes: dict[tuple[int, int], Box]
    regions: list[Region]


def _sample_grid(n: int, step: int) -> np.ndarray:
    g = np.arange(0, n, step, dtype=np.float64)
    if g[-1] != n - 1:
        g = np.append(g, n - 1)
    return g


def _cell_extents(chip_wcs: WCS, out_wcs: WCS, gy: np.ndarray, gx: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Output-pixel extents ``(xmin, xmax, ymin, ymax)`` of each cell of the chip's sample grid
    (rows ``gy`` x columns ``gx``): the bounding box of its four corners mapped through the
    chip's full WCS onto ``out_wcs``; NaN where a corner does not map."""
    xx, yy = np.meshgrid(gx, gy)
    ra, dec = chip_wcs.all_pix2world(xx.ravel(), yy.ravel(), 0)
    ox, oy = out_wcs.wcs_world2pix(ra, dec, 0)
    ox = ox.reshape(xx.shape)
    oy = oy.reshape(xx.shape)
    qx = np.stack([ox[:-1, :-1], ox[1:, :-1], ox[:-1, 1:], ox[1:, 1:]])
    qy = np.stack([oy[:-1, :-1], oy[1:, :-1], oy[:-1, 1:], oy[1:, 1:]])
    return qx.min(0), qx.max(0), qy.min(0), qy.max(0)


def chip_tile_boxes(
    chip_wcs: WCS,
    shape: tuple[int, int],
    layer_wcs: WCS,
    layer_shape: tuple[int, int],
    tile: int,
    margin: float,
    step: int = SAMPLE_STEP,
) -> dict[tuple[int, int], Box]:
    """Conservative input boxes of one chip for every tile it touches (sampled estimate).

    The chip is sampled every ``step`` pixels (edges included) through its full WCS into the
    layer grid; each cell of the sample grid is assigned to every tile its mapped bounding box
    (grown by ``margin`` output pixels) touches.

    Returns
    -------
    dict
        ``(ty, tx) -> (y0, y1, x0, x1)``: 0-based, half-open input pixel box (clipped to the
        chip).
    """
    ny, nx = shape
    gy = _sample_grid(ny, step)
    gx = _sample_grid(nx, step)
    xmin, xmax, ymin, ymax = _cell_extents(chip_wcs, layer_wcs, gy, gx)
    qx0 = xmin - margin
    qx1 = xmax + margin
    qy0 = ymin - margin
    qy1 = ymax + margin
    # input range of each cell (half-open), 1 px beyond the samples on each side
    iy0 = np.repeat(gy[:-1, None], len(gx) - 1, axis=1)
    iy1 = np.repeat(gy[1:, None], len(gx) - 1, axis=1) + 1
    ix0 = np.repeat(gx[None, :-1], len(gy) - 1, axis=0)
    ix1 = np.repeat(gx[None, 1:], len(gy) - 1, axis=0) + 1
    lny, lnx = layer_shape
    ok = np.isfinite(qx0) & np.isfinite(qy0) & (qx1 >= -0.5) & (qy1 >= -0.5) \
        & (qx0 <= lnx - 0.5) & (qy0 <= lny - 0.5)
    if not ok.any():
        return {}
    nty, ntx = -(-lny // tile), -(-lnx // tile)
    t_x0 = np.clip(np.floor((qx0[ok] + 0.5) / tile), 0, ntx - 1).astype(int)
    t_x1 = np.clip(np.floor((qx1[ok] + 0.5) / tile), 0, ntx - 1).astype(int)
    t_y0 = np.clip(np.floor((qy0[ok] + 0.5) / tile), 0, nty - 1).astype(int)
    t_y1 = np.clip(np.floor((qy1[ok] + 0.5) / tile), 0, nty - 1).astype(int)
    cy0, cy1, cx0, cx1 = iy0[ok], iy1[ok], ix0[ok], ix1[ok]
    # per tile, the extent of the cells touching it (vectorised over cells; a cell touches
    # at most a few tiles, so the loops below run a handful of times)
    ntiles = nty * ntx
    big = np.iinfo(np.int64).max
    by0 = np.full(ntiles, big, np.int64)
    by1 = np.full(ntiles, -1, np.int64)
    bx0 = np.full(ntiles, big, np.int64)
    bx1 = np.full(ntiles, -1, np.int64)
    spany = t_y1 - t_y0
    spanx = t_x1 - t_x0
    for dy in range(int(spany.max()) + 1):
        for dx in range(int(spanx.max()) + 1):
            m = (dy <= spany) & (dx <= spanx)
            flat = (t_y0[m] + dy) * ntx + (t_x0[m] + dx)
            np.minimum.at(by0, flat, cy0[m].astype(np.int64))
            np.maximum.at(by1, flat, cy1[m].astype(np.int64))
            np.minimum.at(bx0, flat, cx0[m].astype(np.int64))
            np.maximum.at(bx1, flat, cx1[m].astype(np.int64))
    out = {}
    for flat in np.nonzero(by1 >= 0)[0]:
        ty, tx = divmod(int(flat), ntx)
        out[(ty, tx)] = (max(int(by0[flat]) - 1, 0), min(int(by1[flat]) + 1, ny),
                         max(int(bx0[flat]) - 1, 0), min(int(bx1[flat]) + 1, nx))
    return out


def footprint_margin(in_pixel: float, kernel: str = "square", pixfrac: float = 1.0) -> float:
    """Margin (output pixels) around sampled positions that holds every pixel's footprint.

    ``in_pixel`` is the input pixel size in output pixels. The margin is 1.5 times the reach of
    a pixel's footprint from its centre (half the pixfrac-scaled pixel, plus the radius of the
    fixed-size kernels) plus 2 output pixels for the map's curvature between samples: for the
    square kernel with pixfrac <= 1, ``0.75 in_pixel + 2`` (the margin of the MVM plan's
    :func:`chip_tile_boxes`).
    """
    in_pixel = float(in_pixel)
    reach = 0.5 * max(float(pixfrac), 1.0) * in_pixel
    if kernel != "square":
        from hapdask.drizzle.tile import kernel_radius  # numba module: not needed for square

        reach += kernel_radius(kernel, pixfrac, 1.0 / in_pixel)
    return 1.5 * reach + 2.0


def _box_samples(a: int, b: int, step: int) -> np.ndarray:
    """Sample positions of pixels [a, b): a, the multiples of ``step`` inside, b - 1."""
    first = -(-a // step) * step
    g = np.unique(np.concatenate([[a], np.arange(first, b, step), [b - 1]])).astype(np.float64)
    return g if g.size > 1 else np.array([a, a], np.float64)


def input_row_spans(chip_wcs: WCS, box: Box, out_wcs: WCS, window: Box, margin: float,
                    step: int = SAMPLE_STEP) -> tuple[np.ndarray, np.ndarray] | None:
    """Per input row of ``box``, the columns whose pixels can land in an output ``window``.

    The box is sampled like :func:`chip_tile_boxes` does a chip (every ``step`` chip pixels,
    its edges included) through the full chip WCS; a cell of the sample grid is kept when its
    mapped bounding box grown by ``margin`` output pixels (:func:`footprint_margin`) touches the
    window, or when one of its samples has no position. The rows' spans are the column extent
    of the kept cells of each row grown by one pixel each way (as the plan's boxes are), clipped
    to the box: the same conservative rule as the boxes themselves, cell by cell instead of for
    the whole box, so that a tile's rotated footprint piece is no longer padded out to its
    axis-aligned box. Every pixel outside the spans lands outside the window.

    Parameters
    ----------
    chip_wcs : WCS
        The chip's full WCS (not modified).
    box : (y0, y1, x0, x1)
        Input pixels (chip coordinates, 0-based, half-open), e.g. a tile's input box.
    out_wcs : WCS
        The output grid's (celestial, undistorted) WCS.
    window : (y0, y1, x0, x1)
        Output pixels of the tile.
    margin : float
        Output pixels added around each sampled cell.
    step : int
        Sampling step in input pixels.

    Returns
    -------
    (lo, hi) or None
        int64 arrays of ``box``'s height: the pixels of box row ``r`` to drizzle are chip
        columns ``lo[r] <= x < hi[r]`` (``lo[r] == hi[r]``: none). None when no pixel of the box
        can land in the window.
    """
    b0, b1, a0, a1 = (int(v) for v in box)
    gy = _box_samples(b0, b1, int(step))
    gx = _box_samples(a0, a1, int(step))
    xmin, xmax, ymin, ymax = _cell_extents(chip_wcs, out_wcs, gy, gx)
    y0, y1, x0, x1 = window
    with np.errstate(invalid="ignore"):
        keep = ((xmax + margin >= x0 - 0.5) & (xmin - margin <= x1 - 0.5)
                & (ymax + margin >= y0 - 0.5) & (ymin - margin <= y1 - 0.5))
    # a non-finite corner (NaN, +-inf) makes the cell's min or max non-finite
    keep |= ~(np.isfinite(xmin) & np.isfinite(xmax) & np.isfinite(ymin) & np.isfinite(ymax))
    if not keep.any():
        return None
    n = b1 - b0
    lo = np.full(n, a1, np.int64)
    hi = np.full(n, a0, np.int64)
    gyi = gy.astype(np.int64)
    gxi = gx.astype(np.int64)
    for k in np.nonzero(keep.any(1))[0]:
        cols = np.nonzero(keep[k])[0]
        c0 = max(int(gxi[cols[0]]) - 1, a0)
        c1 = min(int(gxi[cols[-1] + 1]) + 2, a1)
        r0 = max(int(gyi[k]) - 1, b0) - b0
        r1 = min(int(gyi[k + 1]) + 2, b1) - b0
        np.minimum(lo[r0:r1], c0, out=lo[r0:r1])
        np.maximum(hi[r0:r1], c1, out=hi[r0:r1])
    empty = hi <= lo
    lo[empty] = a0
    hi[empty] = a0
    return lo, hi


def _regions(shape: tuple[int, int], size: int) -> list[Box]:
    ny, nx = shape
    return [(y, min(y + size, ny), x, min(x + size, nx))
            for y in range(0, ny, size) for x in range(0, nx, size)]


def place_chip(chip: ChipRef, grid: OutputGrid, tile_size: int, *, kernel: str = "square",
               pixfrac: float = 1.0, region_size: int | None = None, halo: int = 0,
               reach: int = 0, candidates: Sequence[tuple[int, int]] | None = None,
               grow: int = 0) -> ChipPlacement:
    """Map a chip onto a grid once and find its exact per-tile boxes and its regions.

    Parameters
    ----------
    chip : ChipRef
    grid : OutputGrid
    tile_size : int
    kernel, pixfrac : str, float
        The drizzle parameters (they set how far a pixel's footprint reaches).
    region_size : int, optional
        Cut the chip into regions of this edge (for blot and driz_cr); None: no regions.
    halo : int
        Input pixels each region is grown by before mapping (clipped to the chip).
    reach : int
        Output pixels the interpolation may read around a position (poly5: 3).
    candidates : sequence of (ty, tx), optional
        Only these tiles can be touched (e.g. from :func:`chip_tile_boxes`); None: all.
    grow : int
        The boxes are those of the tiles grown by this many output pixels (clipped to the
        grid), for stages that need a halo around each tile.

    Returns
    -------
    ChipPlacement
    """
    return place_chip_configs(chip, grid, tile_size, [dict(
        kernel=kernel, pixfrac=pixfrac, region_size=region_size, halo=halo, reach=reach,
        grow=grow)], candidates=candidates)[0]


def place_chip_configs(chip: ChipRef, grid: OutputGrid, tile_size: int,
                       configs: Sequence[dict], *,
                       candidates: Sequence[tuple[int, int]] | None = None,
                       placed: dict | None = None) -> list[ChipPlacement]:
    """:func:`place_chip` for several parameter sets (keyword dicts of :func:`place_chip`)
    from one pixel map of the chip (e.g. the separate and the final drizzle on one grid).

    ``placed``: a cache of placements shared by several products of one run (e.g. an SVM
    visit's exposure, filter and total products on one grid): a product placing a chip (same
    file, WCS and grid) with a config another product used gets a copy of that placement
    instead of mapping the chip again. The cache may be shared by threads."""
    key = (chip.chip.path, chip.key, chip.wcs_bytes, grid.header)
    # products planned in several threads share the cache: one places a chip, the others wait
    # for it (dict.setdefault is atomic)
    lock = (placed.setdefault(("lock", key), threading.Lock()) if placed is not None
            else contextlib.nullcontext())
    with lock:
        return _place_configs(chip, grid, tile_size, configs, key, candidates, placed)


# the numba path's models (hapdask.drizzle.fast_models) of (chip, chip WCS, grid) triples, kept
# for the process: each map of a chip would otherwise repeat the WCS copies and astropy check
_MODELS: OrderedDict = OrderedDict()
_MODELS_LOCK = threading.Lock()
_MODELS_SIZE = 64


def chip_models(chip: ChipRef, out_wcs, grid: str) -> FastModels | None:
    """:func:`hapdask.drizzle.fast_models` of a chip on the grid of header ``grid``
    (``out_wcs``), computed once per process for the chip object, its WCS and the grid: the
    placement's (:func:`place_chip_configs`) serve the tasks' maps of the chip (separate
    drizzle boxes, blot regions, final tiles' cosmic-ray pixels).

    Returns
    -------
    FastModels or None
        The models, or None when the numba path does not apply (each map then uses astropy).
    """
    from hapdask.drizzle import fast_models  # numba code: loaded when a chip is mapped

    try:
        key = (chip.chip, chip.wcs_bytes, grid)
        hash(key)
    except TypeError:  # an unhashable chip object: no cache
        return _numba_or_none(fast_models(chip.thread_wcs(), out_wcs, chip.shape))
    with _MODELS_LOCK:
        if key in _MODELS:
            _MODELS.move_to_end(key)
            return _MODELS[key]
    got = _numba_or_none(fast_models(chip.thread_wcs(), out_wcs, chip.shape))
    with _MODELS_LOCK:
        _MODELS[key] = got
        while len(_MODELS) > _MODELS_SIZE:
            _MODELS.popitem(last=False)
    return got


def _numba_or_none(models):
    """``fast_models``' result, None for its reason (a str) why the numba path does not apply."""
    return None if isinstance(models, str) else models


#: chip rows mapped at once while a chip is placed (a multiple of the footprint blocks)
PLACE_ROWS = 256
#: edge (input pixels) of the footprint blocks of the placements (FootprintIndex's block)
_BLOCK = 64


def _place_configs(chip: ChipRef, grid: OutputGrid, tile_size: int, configs: Sequence[dict],
                   key: tuple, candidates, placed: dict | None) -> list[ChipPlacement]:
    """The placements of ``configs``, from the chip's pixel map computed band by band.

    Nothing needs the whole map at once: a tile's box is the union, over the bands of
    :data:`PLACE_ROWS` chip rows, of what :meth:`hapdask.drizzle.tile.FootprintIndex.covering_bbox`
    finds among the band's blocks (the cheap extents of
    :func:`hapdask.mosaic._extent.rows_block_bounds`, which hold the exact ones: the same boxes;
    from the band mapped with one more row on each side: the neighbours the pixels' reaches
    read), and a region's window
    comes from the finite extents of its rows in each band, merged. Minima and maxima are
    exact, so the boxes and windows are those of the whole map (tested); the whole map
    (134 MB for an ACS/WFC chip) is never held, only one band (~17 MB)."""
    from hapdask.drizzle import calc_pixmap  # numba code: loaded when a chip is placed
    from hapdask.drizzle.tile import _check_kernel_args, _reach_params
    from hapdask.mosaic._extent import rows_block_bounds

    cand = tuple(candidates) if candidates is not None else None
    done_keys = [("placement", key, int(tile_size), cand, tuple(sorted(c.items())))
                 for c in configs]
    if placed is not None and all(k in placed for k in done_keys):
        return [_copy_placement(placed[k]) for k in done_keys]
    ratio = grid.scale_arcsec / chip.pscale
    todo = {}
    for c, done in zip(configs, done_keys, strict=True):
        if (placed is None or done not in placed) and done not in todo:
            todo[done] = _Placing(chip, grid, tile_size, candidates, **c)
            _check_kernel_args(*todo[done].footprint, ratio)
    # one footprint bound per (kernel, pixfrac), shared by the configs
    reaches = {p.footprint: _reach_params(*p.footprint, ratio) for p in todo.values()}
    ny, nx = chip.shape
    chip_wcs, grid_wcs = chip.wcs(), grid.wcs()
    # the numba models checked once for the chip (kept for its tasks' maps): the same values
    # as each band's own check would give
    models = chip_models(chip, grid_wcs, grid.header)
    for r0 in range(0, ny, PLACE_ROWS):
        r1 = min(r0 + PLACE_ROWS, ny)
        a0, a1 = max(r0 - 1, 0), min(r1 + 1, ny)
        band = calc_pixmap(chip_wcs, grid_wcs, chip.shape, region=(a0, a1, 0, nx), models=models)
        extents = {r: rows_block_bounds(band, r0 - a0, r1 - a0, _BLOCK, *kr)
                   for r, kr in reaches.items()}
        for p in todo.values():
            p.add_band(band, a0, r0, r1, extents[p.footprint], *reaches[p.footprint])
    out = []
    for done in done_keys:
        if done in todo:
            pl = todo[done].placement()
            if placed is not None:
                placed[done] = _copy_placement(pl)
            out.append(pl)
        else:
            out.append(_copy_placement(placed[done]))
    return out


class _Placing:
    """One config's placement of a chip, accumulated band by band (:func:`_place_configs`)."""

    def __init__(self, chip: ChipRef, grid: OutputGrid, tile_size: int, candidates, *,
                 kernel: str = "square", pixfrac: float = 1.0,
                 region_size: int | None = None, halo: int = 0, reach: int = 0,
                 grow: int = 0) -> None:
        self.footprint = (kernel, float(pixfrac))
        self.shape = chip.shape
        self.grid_shape = grid.shape
        self.read_reach = int(reach)
        ny_out, nx_out = grid.shape
        windows = grid.windows(tile_size)
        if candidates is not None:
            wanted = set(candidates)
            windows = [(i, w) for i, w in windows if i in wanted]
        # each tile's window grown by ``grow`` (clipped to the grid) and its box so far
        self.windows = [(idx, (max(y0 - grow, 0), min(y1 + grow, ny_out), max(x0 - grow, 0),
                               min(x1 + grow, nx_out))) for idx, (y0, y1, x0, x1) in windows]
        self.boxes = {idx: [self.shape[0], 0, self.shape[1], 0] for idx, _ in self.windows}
        # each region and the rows and columns of its grown pixels, with their finite extent
        cy, cx = chip.shape
        self.regions = []
        if region_size:
            for box in _regions(chip.shape, int(region_size)):
                y0, y1, x0, x1 = box
                self.regions.append((box, (max(y0 - halo, 0), min(y1 + halo, cy),
                                           max(x0 - halo, 0), min(x1 + halo, cx)),
                                     [0, np.inf, -np.inf, np.inf, -np.inf]))

    def add_band(self, band: np.ndarray, a0: int, r0: int, r1: int, ext: np.ndarray,
                 kind: int, radius: float) -> None:
        """Take in chip rows ``[r0, r1)``: ``band`` is the map of rows ``[a0, a0 + len)``
        (one more on each side where the chip has one), ``ext`` its blocks' extents."""
        from hapdask.drizzle._kernels import footprint_bbox
        from hapdask.mosaic._extent import finite_extent

        b = _BLOCK
        nx = self.shape[1]
        n = r1 - r0
        for idx, (y0, y1, x0, x1) in self.windows:
            if y1 <= y0 or x1 <= x0:
                continue
            out = self.boxes[idx]
            lo_x, hi_x, lo_y, hi_y = x0 - 0.5, x1 - 0.5, y0 - 0.5, y1 - 0.5
            hit = ((ext[..., 1] > lo_x) & (ext[..., 0] < hi_x) & (ext[..., 3] > lo_y)
                   & (ext[..., 2] < hi_y))
            if not hit.any():
                continue
            inside = (hit & (ext[..., 0] >= lo_x) & (ext[..., 1] <= hi_x)
                      & (ext[..., 2] >= lo_y) & (ext[..., 3] <= hi_y))
            for bj, bi in zip(*np.nonzero(inside), strict=True):
                _grow(out, r0 + int(bj) * b, r0 + min((int(bj) + 1) * b, n), int(bi) * b,
                      min((int(bi) + 1) * b, nx))
            for bj, bi in zip(*np.nonzero(hit & ~inside), strict=True):
                j0, j1 = r0 + int(bj) * b, r0 + min((int(bj) + 1) * b, n)
                i0, i1 = int(bi) * b, min((int(bi) + 1) * b, nx)
                if out[0] <= j0 and j1 <= out[1] and out[2] <= i0 and i1 <= out[3]:
                    continue  # already inside the box found so far
                c0, c1, c2, c3 = footprint_bbox(band, j0 - a0, j1 - a0, i0, i1, y0, y1, x0,
                                                x1, kind, radius)
                if c1 > 0:
                    _grow(out, int(c0) + a0, int(c1) + a0, int(c2), int(c3))
        for _, (g0, g1, h0, h1), acc in self.regions:
            j0, j1 = max(g0, r0), min(g1, r1)
            if j0 >= j1:
                continue
            got, xmn, xmx, ymn, ymx = finite_extent(band, j0 - a0, j1 - a0, h0, h1)
            if got:
                acc[0] += got
                acc[1], acc[2] = min(acc[1], xmn), max(acc[2], xmx)
                acc[3], acc[4] = min(acc[3], ymn), max(acc[4], ymx)

    def placement(self) -> ChipPlacement:
        """The placement, once every band is in."""
        boxes = {idx: (b[0], b[1], b[2], b[3]) for idx, b in self.boxes.items()
                 if b[1] > b[0] and b[3] > b[2]}
        ny_out, nx_out = self.grid_shape
        reach = self.read_reach
        regions = []
        for box, _, (got, xmn, xmx, ymn, ymx) in self.regions:
            # the output window the region's (grown) pixels sample: positions with a finite
            # x and y
            window = None
            if got:
                wy0 = max(math.floor(ymn) - reach, 0)
                wy1 = min(math.ceil(ymx) + reach + 1, ny_out)
                wx0 = max(math.floor(xmn) - reach, 0)
                wx1 = min(math.ceil(xmx) + reach + 1, nx_out)
                if wy0 < wy1 and wx0 < wx1:
                    window = (wy0, wy1, wx0, wx1)
            regions.append(Region(box, window))
        return ChipPlacement(boxes, regions)


def _grow(out: list, j0: int, j1: int, i0: int, i1: int) -> None:
    out[0], out[1] = min(out[0], j0), max(out[1], j1)
    out[2], out[3] = min(out[2], i0), max(out[3], i1)


def _copy_placement(pl: ChipPlacement) -> ChipPlacement:
    return ChipPlacement(dict(pl.boxes), list(pl.regions))


def place_chips(chips: Sequence[ChipRef], grid: OutputGrid, tile_size: int, *,
                candidates: Sequence[Sequence[tuple[int, int]] | None] | None = None,
                threads: int | None = None, configs: Sequence[dict] | None = None,
                placed: dict | None = None, pool: Executor | None = None, **kwargs) -> list:
    """:func:`place_chip` for many chips (``candidates``: one list or None per chip), in
    threads (the numba pixel maps release the GIL). With ``configs`` (keyword dicts of
    :func:`place_chip`), each chip's entry is the list of its placements, one per config,
    from one pixel map. ``placed``: a cache of placements shared by the products of a run
    (:func:`place_chip_configs`). ``pool``: run the chips there instead of on ``threads`` new
    threads."""

    cands = list(candidates) if candidates is not None else [None] * len(chips)

    def one(k: int):
        cfgs = configs if configs is not None else [kwargs]
        got = place_chip_configs(chips[k], grid, tile_size, cfgs, candidates=cands[k],
                                 placed=placed)
        return got if configs is not None else got[0]

    if pool is not None:
        return list(pool.map(one, range(len(chips))))
    n = threads or min(len(chips), os.cpu_count() or 1) or 1
    if n <= 1:
        return [one(k) for k in range(len(chips))]
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(len(chips))))


def plan_tiles(grid: OutputGrid, tile_size: int, placements: Sequence[ChipPlacement]
               ) -> list[Tile]:
    """Every tile of the grid with its contributing chips (in chip order) and their boxes."""
    tiles = []
    for index, window in grid.windows(tile_size):
        contribs = [(k, p.boxes[index]) for k, p in enumerate(placements) if index in p.boxes]
        tiles.append(Tile(index, window, contribs))
    return tiles
