"""numba kernels of the source finder (private): single passes over a chip, GIL released.

Plain arrays in and out; nothing here knows about files, WCS or Dask. Used by
:func:`hapdask.align.sources.find_sources` to keep the full-chip passes (a 2048 x 4096 chip is
8 M pixels) out of Python and NumPy temporaries.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def block_mean(sci, dq, ignore_bits, b):  # pragma: no cover - compiled
    """Mean of the good pixels of every ``b x b`` block, and how many were good.

    A pixel is good when it is finite and has no DQ bit outside ``ignore_bits``. Blocks at the
    right and top edges may be partial. Returns ``(mean float64, ngood int32)`` of shape
    ``(ceil(ny/b), ceil(nx/b))``; ``mean`` is 0 where ``ngood`` is 0.
    """
    ny, nx = sci.shape
    nyb = (ny + b - 1) // b
    nxb = (nx + b - 1) // b
    s = np.zeros((nyb, nxb), np.float64)
    n = np.zeros((nyb, nxb), np.int32)
    keep = ~np.int64(ignore_bits)
    for y in range(ny):
        yb = y // b
        for x in range(nx):
            v = sci[y, x]
            if (np.int64(dq[y, x]) & keep) == 0 and math.isfinite(v):
                s[yb, x // b] += v
                n[yb, x // b] += 1
    for yb in range(nyb):
        for xb in range(nxb):
            if n[yb, xb] > 0:
                s[yb, xb] /= n[yb, xb]
    return s, n


@njit(nogil=True, cache=True)
def residual(sci, dq, ignore_bits, grid, c0, step):  # pragma: no cover - compiled
    """Chip minus its background, 0 on bad pixels, and the good-pixel mask.

    The background ``grid`` (a background mesh) is interpolated bilinearly to every chip
    pixel: grid cell ``j`` is centred on chip pixel ``c0 + j step`` (same along both axes;
    constant beyond the outer centres). Returns ``(float32 (ny, nx), uint8 good)``.
    """
    ny, nx = sci.shape
    nyb, nxb = grid.shape
    bkg = grid
    out = np.zeros((ny, nx), np.float32)
    good = np.zeros((ny, nx), np.uint8)
    keep = ~np.int64(ignore_bits)
    x0 = np.empty(nx, np.int64)
    x1 = np.empty(nx, np.int64)
    wx = np.empty(nx, np.float64)
    for x in range(nx):
        f = min(max((x - c0) / step, 0.0), nxb - 1.0)
        x0[x] = int(math.floor(f))
        x1[x] = min(x0[x] + 1, nxb - 1)
        wx[x] = f - x0[x]
    for y in range(ny):
        f = min(max((y - c0) / step, 0.0), nyb - 1.0)
        y0 = int(math.floor(f))
        y1 = min(y0 + 1, nyb - 1)
        wy = f - y0
        for x in range(nx):
            v = sci[y, x]
            if (np.int64(dq[y, x]) & keep) != 0 or not math.isfinite(v):
                continue
            a = bkg[y0, x0[x]] * (1.0 - wx[x]) + bkg[y0, x1[x]] * wx[x]
            c = bkg[y1, x0[x]] * (1.0 - wx[x]) + bkg[y1, x1[x]] * wx[x]
            out[y, x] = v - (a * (1.0 - wy) + c * wy)
            good[y, x] = 1
    return out, good


@njit(nogil=True, cache=True)
def convolve(img, weights):  # pragma: no cover - compiled
    """``scipy.ndimage.convolve(img, weights, mode="constant", cval=0.0)`` of a float32 image
    with odd-sized float64 ``weights``, to the same bits.

    As ndimage's correlation: the flipped weights of magnitude above DBL_EPSILON, in C order,
    each times the pixel (``0.0`` beyond the image) summed in float64 from ``0.0``, the sum
    rounded to float32. Returns float32 ``(ny, nx)``.
    """
    ny, nx = img.shape
    fy, fx = weights.shape
    hy, hx = fy // 2, fx // 2
    eps = np.finfo(np.float64).eps
    n = 0
    for j in range(fy):
        for i in range(fx):
            if abs(weights[fy - 1 - j, fx - 1 - i]) > eps:
                n += 1
    dy = np.empty(n, np.int64)
    dx = np.empty(n, np.int64)
    w = np.empty(n, np.float64)
    n = 0
    for j in range(fy):
        for i in range(fx):
            v = weights[fy - 1 - j, fx - 1 - i]
            if abs(v) > eps:
                dy[n] = j - hy
                dx[n] = i - hx
                w[n] = v
                n += 1
    out = np.empty((ny, nx), np.float32)
    acc = np.empty(nx, np.float64)
    for y in range(ny):
        acc[:] = 0.0
        # tap by tap along the row: every pixel still sums its taps in C order
        for k in range(n):
            yy = y + dy[k]
            wk = w[k]
            if yy < 0 or yy >= ny:
                for x in range(nx):
                    acc[x] += wk * 0.0
                continue
            d = dx[k]
            lo = max(0, -d)
            hi = min(nx, nx - d)
            for x in range(lo):
                acc[x] += wk * 0.0
            src = img[yy, lo + d:hi + d]
            dst = acc[lo:hi]
            for x in range(hi - lo):
                dst[x] += wk * np.float64(src[x])
            for x in range(hi, nx):
                acc[x] += wk * 0.0
        for x in range(nx):
            out[y, x] = np.float32(acc[x])
    return out


@njit(nogil=True, cache=True)
def stamps(img, y0, x0, half, fill):  # pragma: no cover - compiled
    """``(n, 2 half + 1, 2 half + 1)`` stamps of ``img`` (its dtype) centred on ``(y0, x0)``,
    ``fill`` (cast to that dtype) on the pixels beyond the image."""
    ny, nx = img.shape
    s = 2 * half + 1
    n = y0.size
    out = np.empty((n, s, s), img.dtype)
    f = img.dtype.type(fill)
    for k in range(n):
        for j in range(s):
            yy = y0[k] + j - half
            row_in = yy >= 0 and yy < ny
            for i in range(s):
                xx = x0[k] + i - half
                if row_in and xx >= 0 and xx < nx:
                    out[k, j, i] = img[yy, xx]
                else:
                    out[k, j, i] = f
    return out


@njit(nogil=True, cache=True)
def peaks(img, good, footprint, threshold, border):  # pragma: no cover - compiled
    """Local maxima of ``img`` within ``footprint`` above ``threshold`` (photutils
    ``find_peaks`` with a footprint, as DAOStarFinder calls it).

    A peak is a good pixel at least ``border`` pixels from every edge whose value exceeds
    ``threshold`` and every value under the footprint centred on it (pixels beyond the image
    count as 0); of equal values the first in raster order wins. Returns ``(y, x)`` int64.
    """
    ny, nx = img.shape
    fy, fx = footprint.shape
    hy, hx = fy // 2, fx // 2
    ys = np.empty(0, np.int64)
    xs = np.empty(0, np.int64)
    cap = 0
    n = 0
    for y in range(border, ny - border):
        for x in range(border, nx - border):
            v = img[y, x]
            if not good[y, x] or not v > threshold:
                continue
            best = True
            for j in range(fy):
                yy = y + j - hy
                for i in range(fx):
                    if not footprint[j, i] or (j == hy and i == hx):
                        continue
                    xx = x + i - hx
                    w = 0.0 if (yy < 0 or yy >= ny or xx < 0 or xx >= nx) else img[yy, xx]
                    # earlier pixels must be strictly lower, later ones not higher
                    if w > v or (w == v and (j < hy or (j == hy and i < hx))):
                        best = False
                        break
                if not best:
                    break
            if best:
                if n == cap:
                    cap = max(64, 2 * cap)
                    ys2 = np.empty(cap, np.int64)
                    xs2 = np.empty(cap, np.int64)
                    ys2[:n] = ys[:n]
                    xs2[:n] = xs[:n]
                    ys, xs = ys2, xs2
                ys[n] = y
                xs[n] = x
                n += 1
    return ys[:n].copy(), xs[:n].copy()


@njit(nogil=True, cache=True)
def windowed_centroids(data, valid, x, y, sigma, niter, tol):  # pragma: no cover - compiled
    """Gaussian-windowed centroids (see :func:`hapdask.align.sources.windowed_centroids`).

    For each start ``(x[k], y[k])`` iterates ``x += 2 sum(w I dx) / sum(w I)`` over the
    ``valid`` pixels within ``ceil(3 sigma)`` of the rounded estimate; NaN where the window
    lost all flux or the step did not fall below ``tol`` within ``niter`` iterations.
    """
    half = int(math.ceil(3.0 * sigma))
    ny, nx = data.shape
    n = x.size
    xc = np.full(n, np.nan)
    yc = np.full(n, np.nan)
    inv = 0.5 / (sigma * sigma)
    for k in range(n):
        cx = x[k]
        cy = y[k]
        if not (math.isfinite(cx) and math.isfinite(cy)):
            continue
        for _ in range(niter):
            ix = int(np.rint(cx))
            iy = int(np.rint(cy))
            sw = 0.0
            sx = 0.0
            sy = 0.0
            for j in range(-half, half + 1):
                yy = iy + j
                if yy < 0 or yy >= ny:
                    continue
                ddy = yy - cy
                for i in range(-half, half + 1):
                    xx = ix + i
                    if xx < 0 or xx >= nx or not valid[yy, xx]:
                        continue
                    ddx = xx - cx
                    wv = data[yy, xx] * math.exp(-(ddx * ddx + ddy * ddy) * inv)
                    sw += wv
                    sx += wv * ddx
                    sy += wv * ddy
            if not sw > 0:
                break
            stx = 2.0 * sx / sw
            sty = 2.0 * sy / sw
            cx += stx
            cy += sty
            if math.hypot(stx, sty) < tol:
                xc[k] = cx
                yc[k] = cy
                break
    return xc, yc
