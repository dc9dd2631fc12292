"""numba kernels of the separate drizzle's per-exposure end (:func:`hapdask.mosaic.stages.
_separate_stack`) and of :func:`hapdask.mosaic.stages.reuse_tile`'s, in their own module so
that importing the engine does not load numba.

:func:`finalize_exposure`: one pass over the grown tile instead of numpy's (the tile sums'
two adds, the fill, the masked divide and the weight's copy of
:func:`hapdask.drizzle.finalize_tile`, then :func:`hapdask.combine.weight_sums`' pass over the
tile's weights): the same float64 operations on each pixel, each result rounded to float32
once as numpy's casts do, and the weight sums in the same order (row by row over the tile),
so the same values. :func:`take_counts` and :func:`reuse_finish`: reuse_tile's numpy
operations on whole tiles (counts taken off, context planes, the masks of touched and covered
pixels, the sums' differences, the finalize) as one pass each, the same float64 operations
per pixel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["finalize_exposure", "reuse_finish", "take_counts"]


@njit(nogil=True, cache=True)
def finalize_exposure(num, den, fillval, sci, wht, sum_num, sum_den, add, inner, lower):
    """One exposure's float32 ``sci = num / den`` (``fillval`` where ``den == 0``) and
    ``wht = den``, its ``num``/``den`` added to ``sum_num``/``sum_den`` when ``add``, and the
    sum (float64) and count of the weights ``>= lower`` (float32) in ``inner`` = ``(y0, y1,
    x0, x1)`` of the tile, returned as ``(sum, count)``."""
    ny, nx = num.shape
    y0, y1, x0, x1 = inner
    fill = np.float32(fillval)
    s = 0.0
    c = 0
    for y in range(ny):
        nr = num[y]
        dr = den[y]
        so = sci[y]
        wo = wht[y]
        for x in range(nx):
            d = dr[x]
            so[x] = np.float32(nr[x] / d) if d != 0.0 else fill
            wo[x] = np.float32(d)
        if add:
            an = sum_num[y]
            ad = sum_den[y]
            for x in range(nx):
                an[x] += nr[x]
                ad[x] += dr[x]
        if y0 <= y < y1:
            for x in range(x0, x1):
                w = wo[x]
                if w >= lower:
                    s += np.float64(w)
                    c += 1
    return s, c


@njit(nogil=True, cache=True)
def take_counts(left, cnt, touched):
    """A chip's cosmic-ray pixels' counts ``cnt`` taken off its tile counts ``left``
    (:func:`hapdask.mosaic.stages.reuse_tile`): ``left -= cnt``, ``touched |= cnt > 0``,
    ``cnt`` reset to 0 for the next chip. Returns False when some ``cnt > left`` (the counts
    disagree; ``left`` is then not to be used)."""
    ny, nx = left.shape
    bad = False
    for y in range(ny):
        lr = left[y]
        cr = cnt[y]
        tr = touched[y]
        worse = False
        for x in range(nx):
            c = cr[x]
            v = lr[x]
            worse |= c > v
            lr[x] = v - c
            tr[x] = tr[x] | (c > 0)
            cr[x] = 0
        if worse:
            bad = True
    return not bad


@njit(nogil=True, cache=True)
def reuse_finish(counts, cids, masks, ctx, num, den, num_c, den_c, touched, fillval, sci, wht):
    """The end of :func:`hapdask.mosaic.stages.reuse_tile` in one pass: context bits (for
    n < len(cids), plane ``cids[n] // 32`` of ``ctx`` OR ``masks[n]`` where ``counts[n] > 0``;
    ``ctx`` with no planes: none), ``left = den - den_c`` and ``num - num_c`` (both 0 where the
    pixel was touched and no chip's pixel is left), then ``sci = float32(num / left)``
    (``fillval`` where ``left == 0``) and ``wht = float32(left)``. Returns False when a touched
    pixel keeping a chip's pixel has ``left < 1e-6 den`` (the caller then drizzles the tile in
    full)."""
    nch = cids.shape[0]
    ny, nx = counts.shape[1:]
    with_ctx = ctx.shape[0] > 0
    fill = np.float32(fillval)
    covered = np.empty(nx, np.uint8)
    bad = False
    for y in range(ny):
        covered[:] = 0
        for n in range(nch):
            cr = counts[n, y]
            if with_ctx:
                co = ctx[cids[n] // 32, y]
                m = masks[n]
                for x in range(nx):
                    on = cr[x] > 0
                    covered[x] |= on
                    co[x] |= m if on else np.int32(0)
            else:
                for x in range(nx):
                    covered[x] |= cr[x] > 0
        nr = num[y]
        dr = den[y]
        ncr = num_c[y]
        dcr = den_c[y]
        tr = touched[y]
        so = sci[y]
        wo = wht[y]
        worse = False
        for x in range(nx):
            d = dr[x]
            left = d - dcr[x]
            t = tr[x]
            empty = t & (covered[x] == 0)
            worse |= t & (not empty) & (left < 1e-6 * d)
            v = 0.0 if empty else nr[x] - ncr[x]
            left = 0.0 if empty else left
            so[x] = np.float32(v / left) if left != 0.0 else fill
            wo[x] = np.float32(left)
        if worse:
            bad = True
    return not bad
