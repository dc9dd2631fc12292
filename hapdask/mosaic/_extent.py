"""numba helpers of the chip placements (:mod:`hapdask.mosaic.tiles`), in their own module so
that importing the engine does not load numba (``tiles`` imports it when a chip is placed)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from hapdask.drizzle._kernels import _pixel_reach

__all__ = ["finite_extent", "rows_block_bounds"]


@njit(nogil=True, cache=True)
def finite_extent(pixmap, y0, y1, x0, x1):  # pragma: no cover - numba
    """Extent of the positions of ``pixmap[y0:y1, x0:x1]`` (``(ny, nx, 2)`` of ``(x, y)``)
    whose ``x`` and ``y`` are both finite, in one pass: ``(count, xmin, xmax, ymin, ymax)``
    (``count`` 0: no such position, the extremes are then meaningless). The minima and maxima
    are exact, so the same as numpy's over the selected values."""
    n = 0
    xmn = np.inf
    xmx = -np.inf
    ymn = np.inf
    ymx = -np.inf
    for j in range(y0, y1):
        for i in range(x0, x1):
            x = pixmap[j, i, 0]
            y = pixmap[j, i, 1]
            if math.isfinite(x) and math.isfinite(y):
                n += 1
                xmn = min(xmn, x)
                xmx = max(xmx, x)
                ymn = min(ymn, y)
                ymx = max(ymx, y)
    return n, xmn, xmx, ymn, ymx


@njit(nogil=True, cache=True)
def _all_finite(bits, j0, j1, i0, i1):  # pragma: no cover - numba
    """Whether every position of ``bits[j0:j1, i0:i1]`` (the pixmap viewed as uint64) is
    finite: no exponent field all ones, i.e. the largest exponent field is not all ones
    (integer maximum over contiguous row slices indexed from 0: vectorised; a count of the
    non-finite values with signed indices measured 3x slower)."""
    expo = np.uint64(0x7FF0000000000000)
    top = np.uint64(0)
    n = 2 * (i1 - i0)
    for j in range(j0, j1):
        row = bits[j].reshape(-1)[2 * i0 : 2 * i1]
        for k in range(n):
            v = row[k] & expo
            top = v if v > top else top
    return top != expo


@njit(nogil=True, cache=True, fastmath=True)
def _finite_block(pixmap, j0, j1, i0, i1, ga, gb, ha, hb):  # pragma: no cover - numba
    """For a block whose grown region ``[ga:gb, ha:hb]`` has only finite positions:
    ``(xmin, xmax, ymin, ymax)`` of the block ``[j0:j1, i0:i1]`` and the largest ``|dx|``,
    ``|dy|`` of the row and column steps of the grown region. Finite values only, so the
    fast-math minima, maxima and absolute values are exact (vectorised over contiguous row
    slices indexed from 0, which spares the negative-index wraparound code)."""
    xmn = np.inf
    xmx = -np.inf
    ymn = np.inf
    ymx = -np.inf
    n = i1 - i0
    for j in range(j0, j1):
        row = pixmap[j].reshape(-1)[2 * i0 : 2 * i1]
        for i in range(n):
            x = row[2 * i]
            y = row[2 * i + 1]
            xmn = min(xmn, x)
            xmx = max(xmx, x)
            ymn = min(ymn, y)
            ymx = max(ymx, y)
    hx = 0.0
    hy = 0.0
    vx = 0.0
    vy = 0.0
    m = hb - ha
    for j in range(ga, gb):
        row = pixmap[j].reshape(-1)[2 * ha : 2 * hb]
        for i in range(m - 1):
            hx = max(hx, abs(row[2 * i + 2] - row[2 * i]))
            hy = max(hy, abs(row[2 * i + 3] - row[2 * i + 1]))
        if j + 1 < gb:
            nxt = pixmap[j + 1].reshape(-1)[2 * ha : 2 * hb]
            for i in range(m):
                vx = max(vx, abs(nxt[2 * i] - row[2 * i]))
                vy = max(vy, abs(nxt[2 * i + 1] - row[2 * i + 1]))
    return xmn, xmx, ymn, ymx, hx, hy, vx, vy


@njit(nogil=True, cache=True)
def _any_block(pixmap, j0, j1, i0, i1):  # pragma: no cover - numba
    """:func:`_finite_block`'s extremes for a block with non-finite positions nearby: the
    positions that are finite, and the largest steps from them to their 8 neighbours (NaN
    steps ignored, as the exact reach does); returned as ``(..., sx, sy, 0, 0)``."""
    xmn = np.inf
    xmx = -np.inf
    ymn = np.inf
    ymx = -np.inf
    sx = 0.0
    sy = 0.0
    for j in range(j0, j1):
        for i in range(i0, i1):
            x = pixmap[j, i, 0]
            y = pixmap[j, i, 1]
            if not (math.isfinite(x) and math.isfinite(y)):
                continue
            xmn = min(xmn, x)
            xmx = max(xmx, x)
            ymn = min(ymn, y)
            ymx = max(ymx, y)
            ex, ey = _pixel_reach(pixmap, j, i, 0, 1.0)  # the exact reach's own steps
            sx = max(sx, ex)
            sy = max(sy, ey)
    return xmn, xmx, ymn, ymx, sx, sy, 0.0, 0.0


@njit(nogil=True, cache=True)
def rows_block_bounds(pixmap, r0, r1, block, kind, radius):  # pragma: no cover - numba
    """Footprint extents ``(xmin, xmax, ymin, ymax)`` of every ``block x block`` group of input
    pixels of the rows ``[r0, r1)`` of ``pixmap`` (blocks of ``block`` rows from ``r0``, the
    last one ending at ``r1``; ``(nby, nbx, 4)``) that hold the exact ones of
    :class:`hapdask.drizzle.tile.FootprintIndex` (its ``block_extents``), from a few
    vectorised passes: ``+inf/-inf`` for blocks without a valid pixel.

    The exact extent pads each pixel's position by its own reach (``kind`` 0, the square
    kernel: ``radius`` times the largest step of the map to its 8 neighbours, NaN steps
    ignored; ``kind`` 1: ``radius``). Here a block's positions are padded by a bound of the
    largest reach of its pixels: ``radius`` times the largest row step plus the largest column
    step of the block grown by one pixel (a diagonal step is at most one of each), times
    ``1 + 1e-9`` against rounding; blocks with a non-finite position nearby take the largest
    step to the 8 neighbours of their own finite pixels. Rounding is monotonic, so
    ``xmin - r - eps`` is never above any pixel's ``x - r_pixel - eps``. The extents are larger
    than the exact ones by about one reach at most.

    The rows just outside ``[r0, r1)`` (when ``pixmap`` has them) are read as the blocks'
    neighbours, as in the whole map: for a band of a chip's map holding one more row on each
    side where the chip has one, the extents are those of the same blocks of the whole map
    (:func:`hapdask.mosaic.tiles.place_chip_configs` maps chips band by band)."""
    nx = pixmap.shape[1]
    ny = pixmap.shape[0]
    nby = (r1 - r0 + block - 1) // block
    nbx = (nx + block - 1) // block
    ext = np.empty((nby, nbx, 4))
    eps = 1e-6
    bits = pixmap.view(np.uint64)
    for bj in range(nby):
        j0 = r0 + bj * block
        j1 = min(j0 + block, r1)
        ga = max(j0 - 1, 0)
        gb = min(j1 + 1, ny)
        for bi in range(nbx):
            i0 = bi * block
            i1 = min(i0 + block, nx)
            ha = max(i0 - 1, 0)
            hb = min(i1 + 1, nx)
            if _all_finite(bits, ga, gb, ha, hb):
                xmn, xmx, ymn, ymx, hx, hy, vx, vy = _finite_block(pixmap, j0, j1, i0, i1,
                                                                    ga, gb, ha, hb)
            else:
                xmn, xmx, ymn, ymx, hx, hy, vx, vy = _any_block(pixmap, j0, j1, i0, i1)
            if kind == 0:
                rx = radius * ((hx + vx) * (1.0 + 1e-9))
                ry = radius * ((hy + vy) * (1.0 + 1e-9))
            else:
                rx = radius
                ry = radius
            ext[bj, bi, 0] = xmn - rx - eps
            ext[bj, bi, 1] = xmx + rx + eps
            ext[bj, bi, 2] = ymn - ry - eps
            ext[bj, bi, 3] = ymx + ry + eps
    return ext
