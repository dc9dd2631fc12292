"""numba kernel of :func:`hapdask.svm.keywords._fill_holes` (the holes of a data mask), in its
own module so that importing :mod:`hapdask.svm` does not load numba (``keywords`` imports it
when a mask's holes are filled)."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["fill_holes"]


@njit(nogil=True, cache=True)
def _find(parent, i):  # pragma: no cover - numba
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@njit(nogil=True, cache=True)
def _runs(mask):  # pragma: no cover - numba
    """Runs of False of each row: ``(row, start, stop)`` arrays (row order, then column)."""
    ny, nx = mask.shape
    n = 0
    for y in range(ny):
        prev = True
        for x in range(nx):
            v = mask[y, x]
            if not v and prev:
                n += 1
            prev = v
    rows = np.empty(n, np.int64)
    starts = np.empty(n, np.int64)
    stops = np.empty(n, np.int64)
    k = 0
    for y in range(ny):
        x = 0
        while x < nx:
            if mask[y, x]:
                x += 1
                continue
            s = x
            while x < nx and not mask[y, x]:
                x += 1
            rows[k] = y
            starts[k] = s
            stops[k] = x
            k += 1
    return rows, starts, stops


@njit(nogil=True, cache=True)
def _hole_runs(rows, starts, stops, ny, nx):  # pragma: no cover - numba
    """Which runs belong to a hole: a 4-connected component of False not touching the array's
    edge (runs of adjacent rows are connected when they share a column)."""
    n = rows.size
    parent = np.arange(n)
    # first run of each row (runs are in row order), n for the rows after the last
    first = np.full(ny + 1, n, np.int64)
    for k in range(n - 1, -1, -1):
        first[rows[k]] = k
    for y in range(ny - 1, -1, -1):
        if first[y] == n:
            first[y] = first[y + 1]
    for y in range(1, ny):
        i, i1 = first[y - 1], first[y]  # the previous row's runs
        j, j1 = first[y], first[y + 1]  # this row's
        while i < i1 and j < j1:
            if starts[i] < stops[j] and starts[j] < stops[i]:  # they share a column
                a, b = _find(parent, i), _find(parent, j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            # the run ending first cannot overlap the other row's next run
            if stops[i] <= stops[j]:
                i += 1
            else:
                j += 1
    edge = np.zeros(n, np.bool_)
    for k in range(n):
        if rows[k] == 0 or rows[k] == ny - 1 or starts[k] == 0 or stops[k] == nx:
            edge[_find(parent, k)] = True
    hole = np.empty(n, np.bool_)
    for k in range(n):
        hole[k] = not edge[_find(parent, k)]
    return hole


@njit(nogil=True, cache=True)
def _set_runs(out, rows, starts, stops, hole):  # pragma: no cover - numba
    for k in range(rows.size):
        if hole[k]:
            out[rows[k], starts[k]:stops[k]] = True


def fill_holes(mask: np.ndarray) -> np.ndarray | None:
    """``scipy.ndimage.binary_fill_holes(mask)`` (4-connected background) of a 2-D bool array,
    from its runs of False and their union-find; None when ``mask`` has no hole.

    Parameters
    ----------
    mask : (ny, nx) bool array

    Returns
    -------
    np.ndarray or None
        A new C-ordered array: ``mask`` with its holes set.
    """
    mask = np.ascontiguousarray(mask, dtype=bool)
    ny, nx = mask.shape
    rows, starts, stops = _runs(mask)
    hole = _hole_runs(rows, starts, stops, ny, nx)
    if not hole.any():
        return None
    out = mask.copy()
    _set_runs(out, rows, starts, stops, hole)
    return out
