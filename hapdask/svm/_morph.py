"""numba kernels of the binary dilation and erosion :func:`hapdask.svm.keywords._smooth_box`
repeats ``iterations`` times with scipy's default (4-connected, cross) structure, in its own
module so that importing :mod:`hapdask.svm` does not load numba (``keywords`` imports it when
a mask is traced).

``iterations`` passes of the cross are one pass of the diamond of that radius: a pixel is set
by the dilation when a set pixel lies within ``iterations`` steps (city-block distance; with
``border_value=0`` nothing outside the array is set, and the shortest path between two pixels
of a rectangle never leaves it), and kept by the erosion when no unset pixel nor the outside
of the array (``border_value=0``) does. Both are read from a city-block distance transform
(separable: two passes along the rows, two along the columns), capped at ``iterations + 1``:
four passes of the array instead of ``iterations``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["dilate", "erode"]


@njit(nogil=True, cache=True)
def _distance(mask, target, outside, cap):  # pragma: no cover - numba
    """City-block distance (capped at ``cap`` <= 255) of each pixel to the nearest pixel whose
    value is ``target``; the outside of the array is at distance ``outside`` (0: the outside
    counts as such a pixel, ``cap``: it does not).

    The metric is separable: the distance along the row first (a pass each way), then the
    least of ``|dy|`` plus that over the column (a pass down and one up, whole rows at a time).
    """
    ny, nx = mask.shape
    c = np.uint8(cap)
    d = np.empty((ny, nx), np.uint8)
    for y in range(ny):
        run = np.uint8(outside)
        for x in range(nx):
            if mask[y, x] == target:
                run = np.uint8(0)
            elif run < c:
                run += np.uint8(1)
            d[y, x] = run
        run = np.uint8(outside)
        for x in range(nx - 1, -1, -1):
            if d[y, x] == 0:
                run = np.uint8(0)
            else:
                if run < c:
                    run += np.uint8(1)
                if run < d[y, x]:
                    d[y, x] = run
    edge = np.full(nx, np.uint8(outside), np.uint8)
    prev = edge
    for y in range(ny):
        row = d[y]
        for x in range(nx):
            v = prev[x] + np.uint8(1) if prev[x] < c else c
            if v < row[x]:
                row[x] = v
        prev = row
    prev = edge
    for y in range(ny - 1, -1, -1):
        row = d[y]
        for x in range(nx):
            v = prev[x] + np.uint8(1) if prev[x] < c else c
            if v < row[x]:
                row[x] = v
        prev = row
    return d


@njit(nogil=True, cache=True)
def dilate(mask, iterations):  # pragma: no cover - numba
    """``scipy.ndimage.binary_dilation(mask, iterations=iterations)`` of a 2-d bool array."""
    if not 0 < iterations < 255:
        raise ValueError("dilate: iterations must be 1 to 254")
    cap = iterations + 1
    return _distance(mask, True, cap, cap) <= iterations


@njit(nogil=True, cache=True)
def erode(mask, iterations):  # pragma: no cover - numba
    """``scipy.ndimage.binary_erosion(mask, iterations=iterations)`` of a 2-d bool array."""
    if not 0 < iterations < 255:
        raise ValueError("erode: iterations must be 1 to 254")
    return _distance(mask, False, 0, iterations + 1) > iterations
