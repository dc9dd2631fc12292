"""HAP keywords of SVM drizzle products that depend on the product's data or the visit's tree
(DrizzlePac ``processing_utils.refine_product_headers``, inventory 4.5).

* :func:`s_region`: ``S_REGION`` traced from the drizzled SCI array as DrizzlePac's
  ``compute_sregion`` -> ``cell_utils.SkyFootprint.extract_mask``/``find_corners`` does: pixels
  with data (not NaN; not 0 when the array has no NaN), holes filled, the mask ORed with its
  closing (dilation then erosion by 11), opened by 3, smoothed (Gaussian sigma 2, > 0.5),
  split into connected regions, each region's outline traced and simplified (10 px tolerance,
  Douglas-Peucker) and written as one ``POLYGON ICRS ra dec ...`` per region (closed: the
  first vertex repeated), the polygons separated by a space. An exposure product of a
  two-chip camera therefore has two polygons (the chip gap is wider than the closing), a
  filter or total product with dithered exposures usually one.
* :func:`add_hapexpname`: HDRTAB's ``HAPEXPNAME`` column, the HAP product name (stem) of the
  exposure each row (input chip) belongs to, at least 51 characters wide, appended after the
  table's other columns (``update_hdrtab``).

Differences from DrizzlePac, all below the 10-pixel simplification tolerance: the outline is
the iso-line at 0.5 of the region mask (``skimage.measure.find_contours``: through pixel-edge
midpoints, half a pixel outside DrizzlePac's edge-pixel centres), simplified with
``skimage.measure.approximate_polygon`` (Douglas-Peucker; DrizzlePac's ``simplify_polyline``
first reduces the closed ring to three Visvalingam-Whyatt points and then adds vertices back
by the same distance rule, so the vertex sets can differ where the outline has no sharp
corner). Vertices run counter-clockwise on the sky (east of north), as DrizzlePac's trace.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from scipy import ndimage
from skimage.measure import approximate_polygon, find_contours

try:  # find_contours' two steps (private; when missing, find_contours traces the whole array)
    from skimage.measure._find_contours import _assemble_contours
    from skimage.measure._find_contours_cy import _get_contour_segments
except ImportError:  # pragma: no cover - depends on the scikit-image version
    _assemble_contours = _get_contour_segments = None

from hapdask._memory import drop_file_pages
from hapdask.archive.sregion import format_s_region

__all__ = ["BLOCK", "HAPEXPNAME", "MaskPart", "add_hapexpname", "data_mask",
           "footprint_regions", "mask_part", "merge_mask", "region_of_mask", "s_region"]

#: HDRTAB column holding the exposure's HAP product name (DrizzlePac ``HAPCOLNAME``).
HAPEXPNAME = "HAPEXPNAME"

_CLOSING = 11        # extract_mask: dilation/erosion iterations (pixels)
_OPENING = 3         # find_corners: erosion/dilation iterations (pixels)
_SMOOTH_SIGMA = 2.0  # find_corners: Gaussian smoothing of the opened mask (pixels)
_TOLERANCE = 10.0    # find_corners: simplify(min_dist=10) (pixels)
#: Block size of the traced mask. 1 (every pixel) reproduces DrizzlePac's outlines of the demo
#: ACS/WFC products (exposure, filter, total: within 3-6 px, areas within 0.05 %) at ~1.5-2 s CPU
#: per 6000^2 product; 4 x 4 blocks cost ~0.5 s but close the 10-12 px wide part of the chip
#: gap that the dithers leave uncovered, which DrizzlePac's outline follows ~320 px deep.
BLOCK = 1


def _pixel_rule(values: np.ndarray) -> tuple[bool, np.ndarray]:
    """``(has_nan, good)`` of float32 pixels: with a NaN among them, ``good`` is not NaN;
    else not 0 (the rule :func:`data_mask` applies to a whole array once it knows whether the
    array holds a NaN)."""
    nan = np.isnan(values)
    if nan.any():
        return True, ~nan
    return False, values != 0


def data_mask(sci: np.ndarray, block: int = BLOCK, band: int = 1024) -> np.ndarray:
    """Blocks with data, ``block x block`` pixels each (the last ones padded with no data).

    A pixel has data when it is not NaN if the array holds a NaN, else when it is not 0
    (``extract_mask``); a block has data when at least half of its pixels have. Read once, in
    bands of ``band`` rows (a multiple of ``block``): memory is two block masks (both rules)
    plus one band. :func:`mask_part` and :func:`merge_mask` give the same from pieces of the
    array (tiles).
    """
    band = max(block, band // block * block)
    ny, nx = sci.shape
    by, bx = -(-ny // block), -(-nx // block)
    not_nan = np.empty((by, bx), dtype=bool)
    not_zero = np.empty((by, bx), dtype=bool)
    has_nan = False
    for r in range(0, ny, band):
        rows = np.asarray(sci[r:r + band], dtype=np.float32)
        drop_file_pages(sci)  # the mapped pages read so far (hapdask._memory)
        nan, good = _pixel_rule(rows)
        has_nan = has_nan or nan
        # once a NaN is seen the zeros no longer matter (the NaN rule is returned); a band
        # without NaN has every pixel not NaN
        masks = ((not_nan, good),) if nan else (
            ((not_nan, np.ones(rows.shape, bool)),) if has_nan
            else ((not_nan, np.ones(rows.shape, bool)), (not_zero, good)))
        for out, ok in masks:
            if block == 1:
                out[r:r + ok.shape[0]] = ok
                continue
            pad = np.zeros((-(-ok.shape[0] // block) * block, bx * block), dtype=np.uint8)
            pad[:ok.shape[0], :nx] = ok
            counts = pad.reshape(pad.shape[0] // block, block, bx, block).sum(axis=(1, 3))
            out[r // block:r // block + counts.shape[0]] = counts * 2 >= block * block
    return not_nan if has_nan else not_zero


@dataclass(frozen=True)
class MaskPart:
    """What :func:`data_mask` needs from one window of the array (:func:`mask_part`).

    Attributes
    ----------
    window : (y0, y1, x0, x1)
        The window on the array (0-based, half-open).
    has_nan : bool
        Whether the window holds a NaN.
    good : np.ndarray
        Block 1: the window's pixels with data by its own rule (not NaN when ``has_nan``, else
        not 0), packed 8 to a byte along rows (``np.packbits``, ``axis=1``). Block > 1: the
        count of those pixels in each block the window reaches (the blocks from ``y0 //
        block`` to ``ceil(y1 / block)`` and likewise in x; a block straddling the window's
        edge counts only the window's pixels: :func:`merge_mask` adds the windows' counts).
    """

    window: tuple[int, int, int, int]
    has_nan: bool
    good: np.ndarray


def _block_counts(good: np.ndarray, window: tuple[int, int, int, int], block: int
                  ) -> np.ndarray:
    """Pixels set in ``good`` (the window's) per block of the array the window reaches."""
    y0, y1, x0, x1 = window
    oy, ox = y0 % block, x0 % block  # the window's offset in its first block
    h = -(-(y1 - y0 + oy) // block) * block
    w = -(-(x1 - x0 + ox) // block) * block
    pad = np.zeros((h, w), dtype=np.uint8)
    pad[oy:oy + good.shape[0], ox:ox + good.shape[1]] = good
    dtype = np.uint16 if block * block <= np.iinfo(np.uint16).max else np.int64
    return pad.reshape(h // block, block, w // block, block).sum(axis=(1, 3), dtype=dtype)


def mask_part(sci: np.ndarray, window: tuple[int, int, int, int], block: int = BLOCK
              ) -> MaskPart:
    """The :class:`MaskPart` of ``sci``, the values (as written: float32) of ``window``.

    The windows of an array (any tiling: :func:`merge_mask` combines blocks that straddle
    windows exactly) give its :func:`data_mask`; a part is ~1/8 of the window's pixels in bytes
    (block 1), the block counts otherwise.
    """
    values = np.asarray(sci, dtype=np.float32)
    y0, y1, x0, x1 = (int(v) for v in window)
    if values.shape != (y1 - y0, x1 - x0):
        raise ValueError(f"mask_part: values {values.shape} do not match window {window}")
    has_nan, good = _pixel_rule(values)
    if block == 1:
        return MaskPart((y0, y1, x0, x1), has_nan, np.packbits(good, axis=1))
    return MaskPart((y0, y1, x0, x1), has_nan, _block_counts(good, (y0, y1, x0, x1), block))


def merge_mask(parts: list[MaskPart], shape: tuple[int, int], block: int = BLOCK
               ) -> np.ndarray:
    """:func:`data_mask` of a ``shape`` array from the :func:`mask_part` of each window of a
    tiling of it (windows covering the array once, in any order).

    The array holds a NaN when a window does; then a window without NaN has every pixel with
    data (not NaN), else each window's own rule is the array's. Block counts are added over
    the windows, so a block straddling windows counts all its pixels.
    """
    ny, nx = shape
    area = sum((p.window[1] - p.window[0]) * (p.window[3] - p.window[2]) for p in parts)
    if area != ny * nx:
        raise ValueError(f"merge_mask: the windows hold {area} pixels, the array {ny * nx}")
    has_nan = any(p.has_nan for p in parts)
    if block == 1:
        out = np.zeros((ny, nx), dtype=bool)
        for p in parts:
            y0, y1, x0, x1 = p.window
            if has_nan and not p.has_nan:
                out[y0:y1, x0:x1] = True
            else:
                out[y0:y1, x0:x1] = np.unpackbits(p.good, axis=1, count=x1 - x0).view(bool)
        return out
    counts = np.zeros((-(-ny // block), -(-nx // block)), dtype=np.int64)
    for p in parts:
        y0, y1, x0, x1 = p.window
        good = p.good
        if has_nan and not p.has_nan:  # every pixel of the window: not NaN
            good = _block_counts(np.ones((y1 - y0, x1 - x0), bool), p.window, block)
        by, bx = y0 // block, x0 // block
        counts[by:by + good.shape[0], bx:bx + good.shape[1]] += good
    return counts * 2 >= block * block


#: pixels (at block 1) around the mask's bounding box that :func:`footprint_regions` keeps:
#: more than the closing's dilation plus the Gaussian's reach (4 sigma), so that every step
#: gives on the cut-out exactly what it gives on the whole array (nothing outside the box
#: plus the dilation is ever set; the smoothing reads only zeros beyond it)
_MARGIN = _CLOSING + int(4 * _SMOOTH_SIGMA) + 5


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes(mask)`` (4-connected background): the components of
    the background not touching the array's edge are holes (:func:`hapdask.svm._holes.
    fill_holes`: runs of background joined by union-find, ~10x cheaper than labelling every
    pixel). Without a hole, ``mask`` in C order (the caller only reads it; a cut-out is
    copied: the later steps read a contiguous array faster than they save on the copy)."""
    from hapdask.svm._holes import fill_holes  # numba module: loaded when a mask is traced

    filled = fill_holes(mask)
    return np.ascontiguousarray(mask) if filled is None else filled


#: least edge (pixels) of the tiles :func:`_smoothed` sorts into constant and boundary tiles
#: by default (rounded up to a multiple of the steps' reach: the cells of the windows'
#: summed-area table are then the reach, not their greatest common divisor)
_TILE = 64


def _smooth_steps(filled: np.ndarray, closing: int, opening: int, sigma: float) -> np.ndarray:
    """The outline steps on an array: ``filled`` ORed with its closing, opened, smoothed by a
    Gaussian and cut at 0.5 (the module docstring)."""
    closed = ndimage.binary_erosion(ndimage.binary_dilation(filled, iterations=closing),
                                    iterations=closing)
    opened = ndimage.binary_dilation(ndimage.binary_erosion(filled | closed, iterations=opening),
                                     iterations=opening)
    del closed
    return ndimage.gaussian_filter(opened.astype(np.float32), sigma=sigma) > 0.5


def _smooth_box(filled: np.ndarray, box: tuple[int, int, int, int], closing: int,
                opening: int, sigma: float) -> np.ndarray:
    """:func:`_smooth_steps` of the whole array on the box ``(y0, y1, x0, x1)`` only.

    The morphology runs on the box grown by the reach of all the steps (clipped to the array:
    ``2 * closing + 2 * opening`` plus the Gaussian's radius; :func:`hapdask.svm._morph.
    close_open`, scipy's steps on that cut-out). A step's result is exact but within its own
    reach of a cut that is not the array's edge (there the cut-out's edge stands for pixels it
    does not hold), so the opened mask is exact on the box grown by the Gaussian's radius,
    the Gaussian's cut-out.
    """
    from hapdask.svm._morph import close_open  # numba module: loaded when a mask is traced

    ny, nx = filled.shape
    y0, y1, x0, x1 = box
    radius = int(4.0 * sigma + 0.5)  # scipy's truncate=4

    def cut(m: int) -> tuple[slice, slice]:
        return (slice(max(y0 - m, 0), min(y1 + m, ny)), slice(max(x0 - m, 0), min(x1 + m, nx)))

    def within(inner: tuple[slice, slice], outer: tuple[slice, slice]) -> tuple[slice, slice]:
        return tuple(slice(i.start - o.start, i.stop - o.start)
                     for i, o in zip(inner, outer, strict=True))

    a = cut(2 * closing + 2 * opening + radius)
    opened = close_open(filled[a], closing, opening)
    e = cut(radius)
    smooth = ndimage.gaussian_filter(opened[within(e, a)].astype(np.float32), sigma=sigma)
    return smooth[within(cut(0), e)] > 0.5


@dataclass(frozen=True)
class _Tiles:
    """The tiles of :func:`_smoothed_tiles`: first rows ``ys`` and columns ``xs``, edge ``size``,
    and which were computed (``todo``; every other tile is constant)."""

    ys: np.ndarray
    xs: np.ndarray
    size: int
    todo: np.ndarray


def _smoothed(filled: np.ndarray, closing: int, opening: int, sigma: float,
              tile: int | None = None) -> np.ndarray:
    """:func:`_smooth_steps` of the whole array, computed only near the mask's boundary
    (:func:`_smoothed_tiles`)."""
    return _smoothed_tiles(filled, closing, opening, sigma, tile)[0]


def _cell_table(mask: np.ndarray, cell: int) -> np.ndarray:
    """Summed-area table of the set pixels of ``cell x cell`` cells (the last ones partial):
    ``table[i, j]`` counts the pixels of the cells above row ``i`` and left of column ``j``."""
    ny, nx = mask.shape
    starts = np.arange(0, nx, cell)
    rows = np.stack([np.add.reduceat(mask[y:y + cell].sum(axis=0, dtype=np.int64), starts)
                     for y in range(0, ny, cell)])
    table = np.zeros((rows.shape[0] + 1, rows.shape[1] + 1), np.int64)
    np.cumsum(np.cumsum(rows, axis=0), axis=1, out=table[1:, 1:])
    return table


def _smoothed_tiles(filled: np.ndarray, closing: int, opening: int, sigma: float,
                    tile: int | None = None) -> tuple[np.ndarray, _Tiles]:
    """:func:`_smooth_steps` of the whole array, computed only near the mask's boundary, and
    the tiles it was cut into.

    A pixel's result depends only on the pixels within ``reach`` (``2 * closing + 2 * opening``
    plus the Gaussian's radius) of it, and the array's edge (erosion treats outside as empty).
    The array is cut into tiles of at least ``reach``: a tile whose window (the tile grown by
    ``reach``, clipped to the array; its pixels counted from a summed-area table) is all empty
    gives False, all set and inside the array gives True (dilation, erosion and the normalised
    Gaussian keep a constant); the other tiles are computed, a row of adjacent tiles at a
    time, by :func:`_smooth_box`, which gives exactly the whole-array values on the tiles
    themselves (~10x less work than the whole array for an ACS/WFC product).
    """
    ny, nx = filled.shape
    reach = 2 * closing + 2 * opening + int(4.0 * sigma + 0.5)  # scipy's truncate=4 radius
    if tile is None:  # the least multiple of the reach >= _TILE
        tile = -(-_TILE // reach) * reach
    tile = max(int(tile), reach)
    ys = np.arange(0, ny, tile)
    xs = np.arange(0, nx, tile)
    # set pixels in each tile's window (the tile grown by ``reach``, clipped to the array),
    # from a summed-area table of cells (their edge divides the tile's and the reach: the
    # windows' edges are cell edges, but at the array's end)
    cell = math.gcd(tile, reach)
    table = _cell_table(filled, cell)
    lo_y, hi_y = np.maximum(ys - reach, 0), np.minimum(ys + tile + reach, ny)
    lo_x, hi_x = np.maximum(xs - reach, 0), np.minimum(xs + tile + reach, nx)
    cy0, cy1 = lo_y // cell, -(-hi_y // cell)
    cx0, cx1 = lo_x // cell, -(-hi_x // cell)
    counts = (table[cy1][:, cx1] - table[cy0][:, cx1] - table[cy1][:, cx0]
              + table[cy0][:, cx0])
    any_set = counts > 0
    # True tiles: every pixel of the window set, the window inside the array
    all_set = counts == np.outer(hi_y - lo_y, hi_x - lo_x)
    all_set &= ((ys - reach >= 0) & (np.minimum(ys + tile, ny) + reach <= ny))[:, None]
    all_set &= ((xs - reach >= 0) & (np.minimum(xs + tile, nx) + reach <= nx))[None, :]
    out = np.zeros((ny, nx), bool)
    for i, j in zip(*np.nonzero(all_set), strict=True):
        out[ys[i]:ys[i] + tile, xs[j]:xs[j] + tile] = True
    todo = any_set & ~all_set
    for i in range(todo.shape[0]):
        cols = np.flatnonzero(todo[i])
        if not cols.size:
            continue
        # runs of adjacent tiles of the row
        breaks = np.flatnonzero(np.diff(cols) > 1)
        for j0, j1 in zip(cols[np.r_[0, breaks + 1]], cols[np.r_[breaks, cols.size - 1]],
                          strict=True):
            y0, y1 = int(ys[i]), min(int(ys[i]) + tile, ny)
            x0, x1 = int(xs[j0]), min(int(xs[j1]) + tile, nx)
            out[y0:y1, x0:x1] = _smooth_box(filled, (y0, y1, x0, x1), closing, opening,
                                            sigma)
    return out, _Tiles(ys, xs, tile, todo)


def _scan_boxes(tiles: _Tiles, shape: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Boxes ``(r0, r1, c0, c1)`` of marching squares (square ``(r, c)``: the pixels ``r, r + 1``
    x ``c, c + 1``) holding every square of :func:`_smoothed_tiles`' result whose corners
    differ, in row order: one strip of square rows per row of tiles, its runs of columns in
    order.

    A square with corners of both values has a pixel in a computed tile: the other tiles are
    constant, and an all-set tile never touches an all-empty one (its window, which reaches
    into all eight neighbours, is full). The squares of a strip reach the next row of tiles by
    one pixel, and a tile's columns are reached by the squares from one column to its left.
    """
    ny, nx = shape
    todo = tiles.todo
    boxes = []
    for i in range(todo.shape[0]):
        r0 = int(tiles.ys[i])
        r1 = min(r0 + tiles.size, ny - 1)
        cols = todo[i] | todo[i + 1] if i + 1 < todo.shape[0] else todo[i]
        j = np.flatnonzero(cols)
        if r0 >= r1 or not j.size:
            continue
        breaks = np.flatnonzero(np.diff(j) > 1)
        for j0, j1 in zip(j[np.r_[0, breaks + 1]], j[np.r_[breaks, j.size - 1]], strict=True):
            c0 = max(int(tiles.xs[j0]) - 1, 0)
            c1 = min(int(tiles.xs[j1]) + tiles.size, nx - 1)
            if c0 < c1:
                boxes.append((r0, r1, c0, c1))
    return boxes


def _square_of(segment: tuple) -> tuple[int, int]:
    """The marching square ``(row, column)`` a segment of :func:`_get_contour_segments` crosses
    (its end points lie on two different edges of the square)."""
    (a, b), (c, d) = segment
    return int(min(a, c) // 1), int(min(b, d) // 1)


#: rows of squares per band when :func:`_contours` traces a whole array (a float64 copy of
#: this many rows is made at a time)
_CONTOUR_BAND = 512


def _contours(smooth: np.ndarray, boxes: list[tuple[int, int, int, int]] | None,
              band: int = _CONTOUR_BAND) -> list[np.ndarray]:
    """``find_contours(smooth, 0.5)`` of a bool array, from the squares in ``boxes`` only
    (:func:`_scan_boxes`; None: the whole array, in bands of ``band`` rows of squares).

    find_contours makes a segment for every square with corners on both sides of the level,
    scanning the squares row by row on a float64 copy of the array, and joins the segments in
    that order; the segments of the boxes (their squares' segments as the whole scan makes
    them, shifted: crossings of 0/1 values at 0.5 are at half-integers, exact after any shift)
    are put in that order and joined the same way: the same contours, without the float64
    copy and scan of the whole array.
    """
    ny, nx = smooth.shape
    if _get_contour_segments is None or ny < 2 or nx < 2:
        return find_contours(smooth, 0.5)
    if boxes is None:
        boxes = [(r0, min(r0 + band, ny - 1), 0, nx - 1) for r0 in range(0, ny - 1, band)]
    segments = []
    for r0, r1, c0, c1 in boxes:
        sub = smooth[r0:r1 + 1, c0:c1 + 1].astype(np.float64)
        segments += [((a + r0, b + c0), (c + r0, d + c0))
                     for (a, b), (c, d) in _get_contour_segments(sub, 0.5, False, None)]
    segments.sort(key=_square_of)  # stable: a square's two segments keep their order
    return _assemble_contours(segments)


def _outer_rings(smooth: np.ndarray, boxes: list[tuple[int, int, int, int]] | None = None
                 ) -> list[tuple[np.ndarray, int, int]] | None:
    """Each region's outline as :func:`footprint_regions` traces it on the region's padded
    cut-out, from one :func:`~skimage.measure.find_contours` of the whole array (made from
    the squares in ``boxes`` only, :func:`_contours`); ``None`` when that does not give them
    (then the regions are labelled and traced one by one).

    Returns, per region in label order, the ring in the coordinates of the region's padded
    cut-out and the cut-out's first row and column. Marching squares builds a contour from the
    squares it crosses, in row order, whatever else the array holds (two regions meeting at a
    corner are kept apart as ``label`` keeps them apart), and a contour's points are
    half-integers, exact after any shift: the whole array's contours are those of the cut-outs,
    shifted. Which contour is whose is known without labels when every contour around a region
    (clockwise, negative area in row/column) is at least as long as every contour around a
    hole: then each region's longest contour is its outer one, created before its holes'. Outer
    contours are created in the order of their region's first pixel (row by row), the label
    order; the region's first row and column are half a pixel inside its outer contour's.
    """
    if smooth[0].any() or smooth[-1].any() or smooth[:, 0].any() or smooth[:, -1].any():
        return None  # contours would be open at the array's edge
    contours = _contours(smooth, boxes)
    outer, holes = [], []
    for c in contours:
        r, q = c[:, 0], c[:, 1]
        area = float(np.sum(r[:-1] * q[1:] - r[1:] * q[:-1]))
        (outer if area < 0 else holes).append(c)
    if not outer or (holes and max(map(len, holes)) > min(map(len, outer))):
        return None
    out = []
    for ring in outer:
        r0 = int(ring[:, 0].min() + 0.5)
        c0 = int(ring[:, 1].min() + 0.5)
        out.append((ring - np.array([r0 - 1, c0 - 1], dtype=ring.dtype), r0, c0))
    return out


def _labelled_rings(smooth: np.ndarray) -> list[tuple[np.ndarray, int, int]]:
    """:func:`_outer_rings` by labelling the regions and tracing each on its padded cut-out
    (its longest contour: the outer boundary unless a hole's is longer)."""
    labels, _ = ndimage.label(smooth)
    out = []
    for label, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        sub = np.pad(labels[sl] == label, 1)
        contours = _contours(sub, None)  # without a float64 copy of the whole cut-out
        del sub
        if contours:
            out.append((max(contours, key=len), sl[0].start, sl[1].start))
    return out


def footprint_regions(mask: np.ndarray, block: int = 1) -> list[np.ndarray]:
    """Outlines (closed ``(n, 2)`` arrays of 0-based x, y pixels) of the regions of a data mask
    made of ``block x block`` blocks (:func:`data_mask`); lengths are scaled to blocks.

    The morphology runs on the mask's bounding box grown by :data:`_MARGIN` pixels (scaled to
    blocks; clipped to the array), and there only near the mask's boundary (:func:`_smoothed`),
    with the same result as on the whole array. Each region's outline is traced on its padded
    cut-out; all of them are taken from one trace of the whole array when that gives the same
    (:func:`_outer_rings`).
    """
    if not mask.any():
        return []
    closing = max(1, round(_CLOSING / block))
    opening = max(1, round(_OPENING / block))
    margin = -(-_MARGIN // block)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    y0, x0 = max(0, int(rows[0]) - margin), max(0, int(cols[0]) - margin)
    mask = mask[y0:int(rows[-1]) + margin + 1, x0:int(cols[-1]) + margin + 1]
    filled = _fill_holes(mask)
    smooth, tiles = _smoothed_tiles(filled, closing, opening, _SMOOTH_SIGMA / block)
    del filled
    rings = _outer_rings(smooth, _scan_boxes(tiles, smooth.shape))
    if rings is None:
        rings = _labelled_rings(smooth)
    del smooth
    out = []
    for ring, r0, c0 in rings:
        ring = approximate_polygon(ring, tolerance=_TOLERANCE / block)
        # (row, col) of the padded cut-out -> (x, y) of the blocks -> pixels (block k spans
        # pixels k*block .. k*block + block - 1)
        xb = ring[:, 1] - 1 + c0 + x0
        yb = ring[:, 0] - 1 + r0 + y0
        xy = np.column_stack([xb, yb]) * block + (block - 1) / 2.0
        if not np.array_equal(xy[0], xy[-1]):
            xy = np.vstack([xy, xy[:1]])
        out.append(xy)
    return out


def _signed_area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def s_region(sci: np.ndarray, wcs, block: int = BLOCK) -> str:
    """HAP's ``S_REGION`` of a drizzled SCI array (module docstring); '' without data.

    Parameters
    ----------
    sci : (ny, nx) array
        The product's SCI data (may be memory-mapped; read in bands).
    wcs : astropy.wcs.WCS
        The product's celestial WCS.
    block : int
        Block size of the traced mask (:data:`BLOCK`; 1 traces every pixel).
    """
    return region_of_mask(data_mask(sci, block), wcs, block)


def region_of_mask(mask: np.ndarray, wcs, block: int = BLOCK) -> str:
    """:func:`s_region` from the array's :func:`data_mask` (or :func:`merge_mask` of its
    tiles' :func:`mask_part`) of the same ``block``.

    Parameters
    ----------
    mask : (by, bx) bool array
        Blocks with data.
    wcs : astropy.wcs.WCS
        The product's celestial WCS.
    block : int
        The mask's block size.
    """
    polys = []
    for xy in footprint_regions(mask, block):
        ra, dec = wcs.all_pix2world(xy[:, 0], xy[:, 1], 0)
        sky = np.column_stack([ra, dec])
        # counter-clockwise on the sky = clockwise in (RA, Dec) seen with RA increasing to the
        # right: the signed area in (RA, Dec) is negative
        if _signed_area(sky) > 0:
            sky = sky[::-1]
        polys.append(sky)
    return format_s_region(polys, digits=8)


#: bytes per element of the binary-table formats :func:`_plain_hdrtab` reads (FITS 4.0, 7.3.3)
_TFORM_BYTES = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16}

#: the leading cards astropy gives a binary table (``_TableBaseHDU``), with their comments
_TABLE_CARDS = (("XTENSION", "binary table extension"), ("BITPIX", "array data type"),
                ("NAXIS", "number of array dimensions"), ("NAXIS1", "length of dimension 1"),
                ("NAXIS2", "length of dimension 2"), ("PCOUNT", "number of group parameters"),
                ("GCOUNT", "number of groups"), ("TFIELDS", "number of table fields"))


def _plain_hdrtab(header: fits.Header) -> list[tuple[str, str, int, int]] | None:
    """Columns ``(name, format, offset, width)`` of a binary table's header when it is as
    :func:`hapdask.export.headers.hdrtab` writes it (the leading cards, then ``TTYPEn`` and
    ``TFORMn`` without comments, then ``EXTNAME`` only; fixed-width formats, no heap), else
    None."""
    cards = header.cards
    lead = [c.keyword for c in cards[:len(_TABLE_CARDS)]]
    if lead != [k for k, _ in _TABLE_CARDS] or header["XTENSION"] != "BINTABLE":
        return None
    if header["BITPIX"] != 8 or header["NAXIS"] != 2 or header["PCOUNT"] != 0 \
            or header["GCOUNT"] != 1:
        return None
    n = int(header["TFIELDS"])
    body = cards[len(_TABLE_CARDS):]
    if len(body) != 2 * n + 1 or body[-1].keyword != "EXTNAME":
        return None
    cols, offset = [], 0
    for i in range(n):
        ttype, tform = body[2 * i], body[2 * i + 1]
        if ttype.keyword != f"TTYPE{i + 1}" or tform.keyword != f"TFORM{i + 1}" \
                or ttype.comment or tform.comment or not isinstance(tform.value, str):
            return None
        form = tform.value.strip()
        code = form.lstrip("0123456789")
        if code not in _TFORM_BYTES or code == "L":  # logicals: astropy maps their bytes
            return None
        repeat = int(form[:-len(code)] or 1)
        width = repeat * _TFORM_BYTES[code]
        cols.append((str(ttype.value), form, offset, width))
        offset += width
    if offset != header["NAXIS1"]:
        return None
    return cols


def _hapexpname_bytes(header: fits.Header, cols: list[tuple[str, str, int, int]], data: bytes,
                      names: dict[str, str], path: str | os.PathLike) -> bytes:
    """The HDRTAB extension (header and padded rows) with HAPEXPNAME appended, from a table of
    :func:`_plain_hdrtab` columns ``cols`` and its rows' bytes ``data``: the bytes astropy
    writes for the :func:`add_hapexpname` table (its header cards: the leading ones with
    astropy's comments, the columns', ``EXTNAME``; the rows copied, the new field's names
    NUL-padded)."""
    rowlen, nrows = int(header["NAXIS1"]), int(header["NAXIS2"])
    rows = np.frombuffer(data, dtype=np.uint8, count=rowlen * nrows).reshape(nrows, rowlen)
    root = next((c for c in cols if c[0] == "ROOTNAME"), None)
    if root is None or not root[1].endswith("A"):
        raise KeyError("ROOTNAME")
    _, _, off, w = root
    roots = [bytes(r[off:off + w]).rstrip(b"\0").decode("ascii") for r in rows]
    names_, width = _hapexpname_values(roots, names, path)
    values = [v.encode("ascii") for v in names_]
    out = np.zeros((nrows, rowlen + width), dtype=np.uint8)
    out[:, :rowlen] = rows
    for _, form, off, w in cols:  # text as astropy writes it back: trailing blanks as NULs
        if form.endswith("A"):
            for r in out:
                text = bytes(r[off:off + w]).rstrip(b"\0")
                if text.endswith(b" "):
                    r[off:off + w] = np.frombuffer(text.rstrip(b" ").ljust(w, b"\0"), np.uint8)
    out[:, rowlen:] = np.array(values, dtype=f"S{width}").view(np.uint8).reshape(nrows, width)
    n = len(cols) + 1
    cards = [fits.Card(k, header[k], c) for k, c in _TABLE_CARDS]
    cards[3] = fits.Card("NAXIS1", rowlen + width, _TABLE_CARDS[3][1])
    cards[7] = fits.Card("TFIELDS", n, _TABLE_CARDS[7][1])
    for i, (name, form, _, _) in enumerate(cols, start=1):
        cards += [fits.Card(f"TTYPE{i}", name), fits.Card(f"TFORM{i}", form)]
    cards += [fits.Card(f"TTYPE{n}", HAPEXPNAME), fits.Card(f"TFORM{n}", f"{width}A")]
    cards.append(header.cards["EXTNAME"])
    table = out.tobytes()
    return (fits.Header(cards).tostring().encode("ascii") + table
            + b"\0" * (-len(table) % 2880))


def _hapexpname_values(roots: list[str], names: dict[str, str], path: str | os.PathLike
                       ) -> tuple[list[str], int]:
    """HAPEXPNAME of each HDRTAB row (``names`` by the first 8 characters of its ROOTNAME, in
    lower case) and the column's width (at least 51 characters)."""
    roots = [str(r).strip().lower()[:8] for r in roots]
    missing = sorted(set(roots) - set(names))
    if missing:
        raise ValueError(f"{path}: HDRTAB rootname(s) {', '.join(missing)} are not "
                         f"exposures of this visit")
    values = [names[r] for r in roots]
    return values, max(51, max((len(v) for v in values), default=0))


def add_hapexpname(path: str | os.PathLike, names: dict[str, str]) -> None:
    """Append HDRTAB's ``HAPEXPNAME`` column to a product file (in place).

    ``names`` maps the first 8 characters of an input rootname (lower case, ``ipppssoo``) to
    the exposure's HAP product stem; HDRTAB's ``ROOTNAME`` column selects the row's name.
    Raises a ValueError naming the file when a row's rootname is not in ``names``.

    HDRTAB is the product's last extension: the file is cut at its header and the new table
    appended, so the image extensions before it are neither read nor rewritten (replacing an
    HDU in astropy's update mode rewrites the whole file, ~430 MB for an ACS/WFC product).
    A table as :func:`hapdask.export.headers.hdrtab` writes it (:func:`_plain_hdrtab`) is
    extended byte by byte, to the bytes astropy's table machinery writes (~0.1 s of astropy
    per product less for the ~170 columns of HST headers); other tables through astropy.
    """
    ext = new = None
    with fits.open(path) as hdul:
        index = hdul.index_of("HDRTAB")
        last = index == len(hdul) - 1
        info = hdul.fileinfo(index)
        start = info["hdrLoc"]
        tab = hdul[index]
        cols = _plain_hdrtab(tab.header) if last else None
        if cols is not None and HAPEXPNAME not in [c[0] for c in cols]:
            with open(path, "rb") as fh:
                fh.seek(info["datLoc"])
                data = fh.read(int(tab.header["NAXIS1"]) * int(tab.header["NAXIS2"]))
            ext = _hapexpname_bytes(tab.header, cols, data, names, path)
        else:
            values, width = _hapexpname_values(list(tab.data["ROOTNAME"]), names, path)
            cols = [c for c in tab.columns if c.name != HAPEXPNAME]
            cols.append(fits.Column(name=HAPEXPNAME, format=f"{width}A",
                                    array=np.array(values, dtype=f"U{width}")))
            new = fits.BinTableHDU.from_columns(fits.ColDefs(cols), header=tab.header.copy())
            new.header["EXTNAME"] = "HDRTAB"
    if ext is not None:
        with open(path, "r+b") as fh:
            fh.truncate(start)
            fh.seek(start)
            fh.write(ext)
        return
    if not last:  # HDRTAB followed by other extensions: astropy rewrites the file
        with fits.open(path, mode="update") as hdul:
            hdul[index] = new
        return
    with open(path, "r+b") as fh:
        fh.truncate(start)
    with fits.open(path, mode="append") as hdul:
        hdul.append(new)
