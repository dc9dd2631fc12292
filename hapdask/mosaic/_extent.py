"""numba helper of the chip placements (:mod:`hapdask.mosaic.tiles`), in its own module so that
importing the engine does not load numba (``tiles`` imports it when a chip is placed)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["finite_extent"]


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
