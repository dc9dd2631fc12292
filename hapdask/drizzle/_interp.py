"""Numba interpolation kernels for blot (inverse resampling).

All kernels take plain arrays: ``data[j, i]`` (float32), ``pixmap[jj, ii] = (x, y)`` (float64,
0-based positions in ``data``), and write ``out[jj, ii]`` (float32). Arithmetic is float64;
only the result is rounded to float32. Every output pixel depends only on its own pixmap
entry, so any split of the output (rows, tiles, threads) gives identical values.

Interpolants (``x``, ``y`` 0-based, pixel centres at integers):

* nearest: ``data[floor(y + 0.5), floor(x + 0.5)]``.
* linear: bilinear between the 4 surrounding pixel centres; beyond the outermost centres
  (the outer half pixel of the image) the edge value is extended (constant).
* poly3 / poly5: separable cubic / quintic interpolation through the 4 / 6 nearest samples
  per axis, written in Everett's central-difference form. Samples beyond the image are
  point-reflected through the edge pixel, ``d[-k] = 2 d[0] - d[k]`` (x first, then y), which
  keeps linear trends exact up to the edge.
* lanczos3 / lanczos5: ``sum_ij d_ij L(x - i) L(y - j) / sum_ij L(x - i) L(y - j)`` over the
  ``2a x 2a`` window clipped to the image, ``L(u) = sinc(u) sinc(u / a)`` for ``|u| < a``.
  ``L`` comes from a table with spacing 1/4096 and linear interpolation (error < 1e-7);
  ``L(k) = 0`` exactly at non-zero integers, so integer positions return the data exactly.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["INTERP_CODES", "blot_kernel", "lanczos_table"]

INTERP_CODES = {"nearest": 0, "linear": 1, "poly3": 2, "poly5": 3, "lanczos3": 4, "lanczos5": 5}

# Lanczos table: L(k / _LUT_N) for k = 0 .. a * _LUT_N (+ 1 guard entry of 0).
_LUT_N = 4096


def lanczos_table(a: int) -> np.ndarray:
    """Table of ``L(u) = sinc(u) sinc(u / a)`` at ``u = k / 4096``, ``k = 0 .. a * 4096 + 1``.

    ``L(0) = 1`` and ``L(u) = 0`` at non-zero integers and for ``u >= a`` (exactly).
    """
    u = np.arange(a * _LUT_N + 2, dtype=np.float64) / _LUT_N
    lut = np.sinc(u) * np.sinc(u / a)
    lut[u >= a] = 0.0
    lut[(u == np.round(u)) & (u > 0)] = 0.0
    lut[0] = 1.0
    return lut


@njit(nogil=True, cache=True)
def _reflect_x(data, i, j):
    """``data[j, i]`` with point reflection through the edge pixels in x (0 <= j < ny)."""
    nx = data.shape[1]
    last = nx - 1
    if i < 0:
        m = -i
        if m > last:
            m = last
        return 2.0 * data[j, 0] - data[j, m]
    if i > last:
        m = 2 * last - i
        if m < 0:
            m = 0
        return 2.0 * data[j, last] - data[j, m]
    return float(data[j, i])


@njit(nogil=True, cache=True)
def _reflect(data, i, j):
    """``data[j, i]`` extended by point reflection through the edges, in x then in y."""
    ny = data.shape[0]
    last = ny - 1
    if j < 0:
        m = -j
        if m > last:
            m = last
        return 2.0 * _reflect_x(data, i, 0) - _reflect_x(data, i, m)
    if j > last:
        m = 2 * last - j
        if m < 0:
            m = 0
        return 2.0 * _reflect_x(data, i, last) - _reflect_x(data, i, m)
    return _reflect_x(data, i, j)


@njit(nogil=True, cache=True)
def _everett3(f0, f1, f2, f3, s):
    """Cubic through samples at -1, 0, 1, 2, evaluated at ``s`` in [0, 1)."""
    t = 1.0 - s
    d0 = (f2 - 2.0 * f1 + f0) / 6.0
    d1 = (f3 - 2.0 * f2 + f1) / 6.0
    return s * (f2 + (s * s - 1.0) * d1) + t * (f1 + (t * t - 1.0) * d0)


@njit(nogil=True, cache=True)
def _everett5(f0, f1, f2, f3, f4, f5, s):
    """Quintic through samples at -2 .. 3, evaluated at ``s`` in [0, 1)."""
    t = 1.0 - s
    s2 = s * s
    t2 = t * t
    d20 = (f3 - 2.0 * f2 + f1) / 6.0
    d21 = (f4 - 2.0 * f3 + f2) / 6.0
    d40 = (f0 - 4.0 * f1 + 6.0 * f2 - 4.0 * f3 + f4) / 120.0
    d41 = (f1 - 4.0 * f2 + 6.0 * f3 - 4.0 * f4 + f5) / 120.0
    return s * (f3 + (s2 - 1.0) * (d21 + (s2 - 4.0) * d41)) + t * (
        f2 + (t2 - 1.0) * (d20 + (t2 - 4.0) * d40)
    )


@njit(nogil=True, cache=True)
def _poly(data, x, y, order, row, col):
    """poly3 (order 3) or poly5 (order 5) interpolation at (x, y); ``row``, ``col``: scratch."""
    ny, nx = data.shape
    ix = int(math.floor(x))
    iy = int(math.floor(y))
    sx = x - ix
    sy = y - iy
    h = (order + 1) // 2  # samples below and including ix: 2 for poly3, 3 for poly5
    i0 = ix - h + 1
    j0 = iy - h + 1
    n = order + 1
    inside = i0 >= 0 and j0 >= 0 and i0 + n <= nx and j0 + n <= ny
    for r in range(n):
        j = j0 + r
        for c in range(n):
            if inside:
                row[c] = data[j, i0 + c]
            else:
                row[c] = _reflect(data, i0 + c, j)
        if order == 3:
            col[r] = _everett3(row[0], row[1], row[2], row[3], sx)
        else:
            col[r] = _everett5(row[0], row[1], row[2], row[3], row[4], row[5], sx)
    if order == 3:
        return _everett3(col[0], col[1], col[2], col[3], sy)
    return _everett5(col[0], col[1], col[2], col[3], col[4], col[5], sy)


@njit(nogil=True, cache=True)
def _lanczos_weights(lut, a, x, n, w):
    """Weights ``L(x - i)`` for ``i = i0 .. i0 + 2a - 1`` clipped to ``[0, n)``; returns i0, i1."""
    ix = int(math.floor(x))
    i0 = ix - a + 1
    i1 = ix + a + 1  # exclusive
    if i0 < 0:
        i0 = 0
    if i1 > n:
        i1 = n
    for i in range(i0, i1):
        u = abs(x - i) * 4096.0
        k = int(u)
        f = u - k
        w[i - i0] = lut[k] + f * (lut[k + 1] - lut[k])
    return i0, i1


@njit(nogil=True, cache=True)
def _lanczos(data, lut, a, x, y, wx, wy):
    ny, nx = data.shape
    i0, i1 = _lanczos_weights(lut, a, x, nx, wx)
    j0, j1 = _lanczos_weights(lut, a, y, ny, wy)
    sx = 0.0
    for i in range(i1 - i0):
        sx += wx[i]
    sy = 0.0
    for j in range(j1 - j0):
        sy += wy[j]
    acc = 0.0
    for j in range(j0, j1):
        racc = 0.0
        for i in range(i0, i1):
            racc += data[j, i] * wx[i - i0]
        acc += racc * wy[j - j0]
    return acc / (sx * sy)


@njit(nogil=True, cache=True)
def blot_kernel(data, pixmap, out, mode, scale, fillval, lut, a):
    """Interpolate ``data`` at every pixmap position into ``out`` (see module docstring).

    A position is on the image when ``-0.5 <= x < nx - 0.5`` and ``-0.5 <= y < ny - 0.5``
    (the area covered by the image's pixels); elsewhere, and for NaN, ``out = fillval``.
    On-image values are ``interp(x, y) * scale``.
    """
    ny, nx = data.shape
    wx = np.empty(2 * a + 2)
    wy = np.empty(2 * a + 2)
    row = np.empty(6)
    col = np.empty(6)
    xhi = nx - 0.5
    yhi = ny - 0.5
    for jj in range(out.shape[0]):
        for ii in range(out.shape[1]):
            x = pixmap[jj, ii, 0]
            y = pixmap[jj, ii, 1]
            if not (x >= -0.5 and x < xhi and y >= -0.5 and y < yhi):
                out[jj, ii] = fillval
                continue
            if mode == 0:
                i = int(math.floor(x + 0.5))
                j = int(math.floor(y + 0.5))
                if i > nx - 1:
                    i = nx - 1
                if j > ny - 1:
                    j = ny - 1
                v = float(data[j, i])
            elif mode == 1:
                i = int(math.floor(x))
                j = int(math.floor(y))
                sx = x - i
                sy = y - j
                i1 = min(i + 1, nx - 1)
                j1 = min(j + 1, ny - 1)
                i = max(i, 0)
                j = max(j, 0)
                tx = 1.0 - sx
                ty = 1.0 - sy
                v = (
                    tx * ty * data[j, i]
                    + sx * ty * data[j, i1]
                    + tx * sy * data[j1, i]
                    + sx * sy * data[j1, i1]
                )
            elif mode == 2:
                v = _poly(data, x, y, 3, row, col)
            elif mode == 3:
                v = _poly(data, x, y, 5, row, col)
            else:
                v = _lanczos(data, lut, a, x, y, wx, wy)
            out[jj, ii] = v * scale
