"""Coverage of an output grid by input chips: C(p) (chips covering each pixel) and T(p) (their
summed exposure time), from the chip outlines (inventory 4.5). Pixel coordinates are 0-based;
windows are ``(y0, y1, x0, x1)``, half-open.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_CODE_POLYGONS", "coverage_code_counts", "coverage_codes", "rasterize_polygon",
           "tile_coverage"]


def _crossings(poly: np.ndarray, window: tuple[int, int, int, int]
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """Where the polygon's edges cross the window's pixel-centre rows: ``(rows, cols)`` of the
    first pixel centre right of each crossing (0-based in the window; ``cols`` may be the
    window width), or None when no edge crosses the window."""
    y0, y1, x0, x1 = window
    tw = x1 - x0
    px = np.asarray(poly[:, 0], np.float64)
    py = np.asarray(poly[:, 1], np.float64)
    if py.max() < y0 - 1 or py.min() > y1 or px.max() < x0 - 1 or px.min() > x1:
        return None
    ax, ay = px, py
    bx, by = np.roll(px, -1), np.roll(py, -1)
    ys = np.arange(y0, y1, dtype=np.float64)[:, None]
    # edge k crosses the centre line of row y when lo_k <= y < hi_k (half-open: no double count)
    cross = (np.minimum(ay, by) <= ys) & (ys < np.maximum(ay, by))
    rows, edges = np.nonzero(cross)
    if rows.size == 0:
        return None
    t = (ys[rows, 0] - ay[edges]) / (by[edges] - ay[edges])
    xs = ax[edges] + t * (bx[edges] - ax[edges])
    # pixel centre c is right of a crossing at xs when c >= ceil(xs): toggle from that column
    cols = np.clip(np.ceil(xs) - x0, 0, tw).astype(np.int64)
    return rows, cols


def rasterize_polygon(poly: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """Pixels of a window whose centre is inside a polygon (even-odd rule).

    Parameters
    ----------
    poly : (N, 2) array
        Vertices ``(x, y)`` in 0-based layer pixel coordinates (not closed).
    window : (y0, y1, x0, x1)
        0-based, half-open.

    Returns
    -------
    (y1-y0, x1-x0) bool array
    """
    y0, y1, x0, x1 = window
    th, tw = y1 - y0, x1 - x0
    hit = _crossings(poly, window)
    if hit is None:
        return np.zeros((th, tw), bool)
    toggles = np.zeros((th, tw + 1), np.int32)
    np.add.at(toggles, hit, 1)
    return (np.cumsum(toggles[:, :tw], axis=1) & 1).astype(bool)


#: most polygons :func:`coverage_codes` takes (one bit each of an int64)
MAX_CODE_POLYGONS = 63


def coverage_codes(polys: list[np.ndarray], window: tuple[int, int, int, int], *,
                   compact: bool = False) -> np.ndarray:
    """Which polygons cover each pixel centre of a window, as bits: bit ``i`` of the int64
    result is :func:`rasterize_polygon` of ``polys[i]`` (even-odd rule), for all polygons in
    one pass (an XOR scan of every polygon's crossings). At most :data:`MAX_CODE_POLYGONS`.
    ``compact``: the same bits in the smallest unsigned integer type holding one per polygon
    (uint8 up to 8 polygons: an eighth of the memory to scan).
    """
    if len(polys) > MAX_CODE_POLYGONS:
        raise ValueError(f"coverage_codes takes at most {MAX_CODE_POLYGONS} polygons, "
                         f"got {len(polys)}")
    dtype = np.dtype(np.int64)
    if compact:
        dtype = next(np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64)
                     if len(polys) <= 8 * np.dtype(t).itemsize)
    y0, y1, x0, x1 = window
    th, tw = y1 - y0, x1 - x0
    toggles = np.zeros((th, tw + 1), dtype)
    for i, poly in enumerate(polys):
        hit = _crossings(poly, window)
        if hit is not None:
            np.bitwise_xor.at(toggles, hit, dtype.type(1) << dtype.type(i))
    return np.bitwise_xor.accumulate(toggles[:, :tw], axis=1)


def coverage_code_counts(polys: list[np.ndarray], window: tuple[int, int, int, int]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The histogram of :func:`coverage_codes` (distinct codes and their pixel counts) without
    the per-pixel array: the crossings of each row, in column order, cut it into runs of one
    code, whose lengths are added up (cost ~ crossings, not pixels).

    Returns
    -------
    codes, counts : int64 arrays
        Distinct codes in increasing order (0 included when some pixel has it) and how many
        pixels of the window have each.
    """
    if len(polys) > MAX_CODE_POLYGONS:
        raise ValueError(f"coverage_code_counts takes at most {MAX_CODE_POLYGONS} polygons, "
                         f"got {len(polys)}")
    y0, y1, x0, x1 = window
    th, tw = y1 - y0, x1 - x0
    parts = [(hit, np.int64(1) << i) for i, poly in enumerate(polys)
             if (hit := _crossings(poly, window)) is not None]
    if not parts or th * tw == 0:
        return np.array([0], np.int64), np.array([th * tw], np.int64)
    rows = np.concatenate([h[0] for h, _ in parts])
    cols = np.concatenate([h[1] for h, _ in parts])
    bits = np.concatenate([np.full(h[0].size, b) for h, b in parts])
    order = np.lexsort((cols, rows))
    rows, cols, bits = rows[order], cols[order], bits[order]
    # code of the run starting at crossing k: XOR of the row's crossings up to k
    acc = np.bitwise_xor.accumulate(bits)
    first = np.r_[True, rows[1:] != rows[:-1]]
    before = np.where(first, np.int64(0), np.r_[np.int64(0), acc[:-1]])
    start = np.maximum.accumulate(np.where(first, np.arange(rows.size), 0))
    code = acc ^ before[start]
    last = np.r_[rows[1:] != rows[:-1], True]
    length = np.where(last, tw, np.r_[cols[1:], tw]) - cols
    # pixels of code 0: rows without crossings and the columns left of each row's first one
    zeros = (th - int(first.sum())) * tw + int(cols[first].sum())
    codes = np.concatenate([code, [0]])
    lengths = np.concatenate([length, [zeros]])
    keep = lengths > 0
    vals, inverse = np.unique(codes[keep], return_inverse=True)
    counts = np.bincount(inverse, weights=lengths[keep], minlength=vals.size)
    return vals, counts.astype(np.int64)


def tile_coverage(polys: list[np.ndarray], exptimes: list[float],
                  window: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """C(p) (chips covering each pixel) and T(p) (their summed EXPTIME) on a window."""
    y0, y1, x0, x1 = window
    count = np.zeros((y1 - y0, x1 - x0), np.int32)
    expt = np.zeros((y1 - y0, x1 - x0), np.float64)
    for poly, t in zip(polys, exptimes, strict=True):
        m = rasterize_polygon(poly, window)
        count += m
        expt[m] += t
    return count, expt
