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
  per axis (Everett's central-difference form, as in drizzle, expanded into sample weights).
  Samples beyond the image are point-reflected through the edge pixel,
  ``d[-k] = 2 d[0] - d[k]`` (x first, then y), which keeps linear trends exact up to the edge.
* lanczos3 / lanczos5: ``sum_ij d_ij L(x - i) L(y - j) / sum_ij L(x - i) L(y - j)`` over the
  ``2a x 2a`` window clipped to the image, ``L(u) = sinc(u) sinc(u / a)`` for ``|u| < a``
  (the sum runs y first, then x).
  ``L`` comes from a table with spacing 1/4096 and linear interpolation (error < 1e-7);
  ``L(k) = 0`` exactly at non-zero integers, so integer positions return the data exactly.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

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
def _poly_weights(s, order, w):
    """Weights of the samples at offsets ``-1 .. 2`` (poly3) or ``-2 .. 3`` (poly5) for ``s``.

    Everett's central-difference formula expanded into sample weights: with ``t = 1 - s``,
    ``A = s (s^2 - 1) / 6``, ``C = t (t^2 - 1) / 6`` (and for poly5 ``B = A (s^2 - 4) / 20``,
    ``D = C (t^2 - 4) / 20``) the cubic is ``C f0 + (A + t - 2C) f1 + (s - 2A + C) f2 + A f3``,
    i.e. the cubic (quintic) Lagrange interpolant through the 4 (6) nearest samples. At
    ``s = 0`` the weights are exactly ``(0, 1, 0, 0)`` (``(0, 0, 1, 0, 0, 0)``).
    """
    t = 1.0 - s
    a = s * (s * s - 1.0) / 6.0
    c = t * (t * t - 1.0) / 6.0
    if order == 3:
        w[0] = c
        w[1] = a + t - 2.0 * c
        w[2] = s - 2.0 * a + c
        w[3] = a
    else:
        b = a * (s * s - 4.0) / 20.0
        d = c * (t * t - 4.0) / 20.0
        w[0] = d
        w[1] = b + c - 4.0 * d
        w[2] = a - 4.0 * b + t - 2.0 * c + 6.0 * d
        w[3] = s - 2.0 * a + 6.0 * b + c - 4.0 * d
        w[4] = a - 4.0 * b + d
        w[5] = b


@njit(nogil=True, cache=True)
def _sep4(data, i0, j0, wx, wy):
    """``sum_rc data[j0 + r, i0 + c] wx[c] wy[r]`` for a 4x4 block inside the image."""
    # unsigned indices: numba's negative-index wrap-around is not needed (block is inside);
    # columns are accumulated in y first, in 4 independent sums
    t0 = t1 = t2 = t3 = 0.0
    i = np.uintp(i0)
    for r in range(4):
        j = np.uintp(j0 + r)
        w = wy[r]
        t0 += data[j, i] * w
        t1 += data[j, i + 1] * w
        t2 += data[j, i + 2] * w
        t3 += data[j, i + 3] * w
    return (t0 * wx[0] + t1 * wx[1]) + (t2 * wx[2] + t3 * wx[3])


@njit(nogil=True, cache=True)
def _sep6(data, i0, j0, wx, wy):
    """``sum_rc data[j0 + r, i0 + c] wx[c] wy[r]`` for a 6x6 block inside the image."""
    t0 = t1 = t2 = t3 = t4 = t5 = 0.0
    i = np.uintp(i0)
    for r in range(6):
        j = np.uintp(j0 + r)
        w = wy[r]
        t0 += data[j, i] * w
        t1 += data[j, i + 1] * w
        t2 += data[j, i + 2] * w
        t3 += data[j, i + 3] * w
        t4 += data[j, i + 4] * w
        t5 += data[j, i + 5] * w
    return (t0 * wx[0] + t1 * wx[1]) + (t2 * wx[2] + t3 * wx[3]) + (t4 * wx[4] + t5 * wx[5])


@intrinsic
def _sep6_simd(typingctx, data, j0, i0, wy, wx):
    """:func:`_sep6` of the 6x6 block of the C-contiguous float32 ``data`` at ``(j0, i0)``
    (inside the image; ``wy``, ``wx``: 6-tuples of float64 weights) in vector registers.

    The same operations in the same order, so the same value: per block row ``r`` the six
    column sums ``t[c] += float64(data[j0 + r, i0 + c]) * wy[r]`` (from ``t = 0``: the
    ``0 + x`` of the first row is kept) as one 4-lane and one 2-lane multiply and add, then
    ``((t0 wx0 + t1 wx1) + (t2 wx2 + t3 wx3)) + (t4 wx4 + t5 wx5)``. LLVM does not vectorise
    the scalar form (36 scalar loads, conversions, multiplies and adds per position).
    """
    sig = types.float64(data, j0, i0, wy, wx)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        inds = [context.cast(builder, args[1], signature.args[1], types.intp),
                context.cast(builder, args[2], signature.args[2], types.intp)]
        strides = cgutils.unpack_tuple(builder, ary.strides)
        ptr = cgutils.get_item_pointer2(
            context, builder, data=ary.data, shape=cgutils.unpack_tuple(builder, ary.shape),
            strides=strides, layout=aryty.layout, inds=inds, wraparound=False,
            boundscheck=False)
        i32 = ir.IntType(32)
        base = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        # columns 0-3 and 4-5 of a block row: (byte offset, float32 lanes, float64 lanes)
        parts = [(4 * first, ir.VectorType(ir.FloatType(), n), ir.VectorType(ir.DoubleType(), n))
                 for first, n in ((0, 4), (4, 2))]
        acc = [ir.Constant(vd, [0.0] * vd.count) for _, _, vd in parts]
        for r in range(6):
            row = builder.gep(base, [builder.mul(strides[0], context.get_constant(types.intp, r))])
            w = builder.extract_value(args[3], r)
            for k, (offset, vf, vd) in enumerate(parts):
                p = builder.gep(row, [context.get_constant(types.intp, offset)])
                x = builder.fpext(builder.load(builder.bitcast(p, vf.as_pointer()), align=4), vd)
                splat = ir.Constant(ir.VectorType(i32, vd.count), [0] * vd.count)
                wv = builder.insert_element(ir.Constant(vd, ir.Undefined), w, ir.Constant(i32, 0))
                wv = builder.shuffle_vector(wv, ir.Constant(vd, ir.Undefined), splat)
                acc[k] = builder.fadd(acc[k], builder.fmul(x, wv))
        t = [builder.extract_element(acc[k], ir.Constant(i32, c))
             for k, (_, _, vd) in enumerate(parts) for c in range(vd.count)]
        p = [builder.fmul(t[c], builder.extract_value(args[4], c)) for c in range(6)]
        return builder.fadd(builder.fadd(builder.fadd(p[0], p[1]), builder.fadd(p[2], p[3])),
                            builder.fadd(p[4], p[5]))

    return sig, codegen


@njit(nogil=True, cache=True)
def _sep_clipped(data, i0, j0, n, wx, wy):
    """Same sum for an ``n x n`` block starting at (i0, j0), skipping samples off the image.

    Returns the sum and the total weight of the samples used.
    """
    ny, nx = data.shape
    acc = 0.0
    sy = 0.0
    sx = 0.0
    for c in range(n):
        if 0 <= i0 + c < nx:
            sx += wx[c]
    for r in range(n):
        j = j0 + r
        if j < 0 or j >= ny:
            continue
        sy += wy[r]
        row = 0.0
        for c in range(n):
            i = i0 + c
            if 0 <= i < nx:
                row += data[j, i] * wx[c]
        acc += row * wy[r]
    return acc, sx * sy


@njit(nogil=True, cache=True)
def _poly(data, x, y, order, wx, wy):
    """poly3 (order 3) or poly5 (order 5) interpolation at (x, y); ``wx``, ``wy``: scratch."""
    ny, nx = data.shape
    ix = int(math.floor(x))
    iy = int(math.floor(y))
    _poly_weights(x - ix, order, wx)
    _poly_weights(y - iy, order, wy)
    h = (order + 1) // 2  # samples at or below ix: 2 for poly3, 3 for poly5
    i0 = ix - h + 1
    j0 = iy - h + 1
    n = order + 1
    if i0 >= 0 and j0 >= 0 and i0 + n <= nx and j0 + n <= ny:
        if order == 3:
            return _sep4(data, i0, j0, wx, wy)
        return _sep6(data, i0, j0, wx, wy)
    acc = 0.0
    for r in range(n):
        row = 0.0
        for c in range(n):
            row += _reflect(data, i0 + c, j0 + r) * wx[c]
        acc += row * wy[r]
    return acc


@njit(nogil=True, cache=True)
def _lanczos_weights(lut, a, x, w):
    """``w[k] = L(x - (i0 + k))`` for ``k = 0 .. 2a - 1``; returns ``i0 = floor(x) - a + 1``.

    With ``s = x - floor(x)`` the arguments are ``|u| = s + q`` (``q = 0 .. a - 1``) and
    ``m - s`` (``m = 1 .. a``), so one table position ``4096 s = k0 + f`` serves all of them:
    ``4096 (s + q) = (k0 + 4096 q) + f`` and ``4096 (m - s) = (4096 m - k0 - 1) + (1 - f)``.
    At ``s = 0`` the weights are exactly ``(0, .., 0, 1, 0, .., 0)``.
    """
    ix = math.floor(x)
    sc = (x - ix) * 4096.0
    k0 = int(sc)
    f = sc - k0
    g = 1.0 - f
    if a == 3:  # constant trip counts: unrolled
        for q in range(3):
            k = np.uintp(k0 + 4096 * q)
            w[2 - q] = lut[k] + f * (lut[k + 1] - lut[k])
        for m in range(1, 4):
            k = np.uintp(4096 * m - k0 - 1)
            w[2 + m] = lut[k] + g * (lut[k + 1] - lut[k])
    else:
        for q in range(a):
            k = k0 + 4096 * q
            w[a - 1 - q] = lut[k] + f * (lut[k + 1] - lut[k])
        for m in range(1, a + 1):
            k = 4096 * m - k0 - 1
            w[a - 1 + m] = lut[k] + g * (lut[k + 1] - lut[k])
    return int(ix) - a + 1


@njit(nogil=True, cache=True)
def _lanczos(data, lut, a, x, y, wx, wy):
    ny, nx = data.shape
    n = 2 * a
    i0 = _lanczos_weights(lut, a, x, wx)
    j0 = _lanczos_weights(lut, a, y, wy)
    if i0 >= 0 and j0 >= 0 and i0 + n <= nx and j0 + n <= ny:
        if a == 3:
            sx = (wx[0] + wx[1]) + (wx[2] + wx[3]) + (wx[4] + wx[5])
            sy = (wy[0] + wy[1]) + (wy[2] + wy[3]) + (wy[4] + wy[5])
            return _sep6(data, i0, j0, wx, wy) / (sx * sy)
        sx = 0.0
        sy = 0.0
        for k in range(n):
            sx += wx[k]
            sy += wy[k]
        acc, _ = _sep_clipped(data, i0, j0, n, wx, wy)
        return acc / (sx * sy)
    acc, wsum = _sep_clipped(data, i0, j0, n, wx, wy)
    return acc / wsum


@njit(nogil=True, cache=True)
def _poly5_row(pos, n, w):
    """``w[k, ii]``: the poly5 weights of :func:`_poly_weights` for ``pos[ii] - floor(pos[ii])``,
    ``ii < n`` (a loop the compiler vectorises; the same operations per element, so the same
    values; garbage for non-finite positions, which the caller skips)."""
    for ii in range(n):
        p = pos[ii]
        s = p - math.floor(p)
        t = 1.0 - s
        a = s * (s * s - 1.0) / 6.0
        c = t * (t * t - 1.0) / 6.0
        b = a * (s * s - 4.0) / 20.0
        d = c * (t * t - 4.0) / 20.0
        w[0, ii] = d
        w[1, ii] = b + c - 4.0 * d
        w[2, ii] = a - 4.0 * b + t - 2.0 * c + 6.0 * d
        w[3, ii] = s - 2.0 * a + 6.0 * b + c - 4.0 * d
        w[4, ii] = a - 4.0 * b + d
        w[5, ii] = b


@njit(nogil=True, cache=True)
def _blot_poly5(data, pixmap, out, scale, fillval, wx, wy, ox, oy, add, do_add):
    """poly5 over every pixmap position: :func:`_poly` with the weights of a whole row
    computed first in vectorised loops (:func:`_poly5_row`) for stencils inside the image;
    the same operations in the same order, so the same values. Stencils that cross an edge
    take :func:`_poly`.

    Per output row, three loops: where each stencil starts and whether it lies inside the
    image (``kind``: 2) or crosses an edge (1) or the position is off the image (0); the 6x6
    sums of every position (:func:`_sep6_simd`) stored as outputs, without a branch
    (stencils not inside are computed at the corner ``(0, 0)``); then, in rows that have
    any, the outputs of the positions not inside. Measured against one loop that branches
    per position: 16-17 vs 18.5-19.5 ns/px (1100x1100 rotated map, CPU time, scalar sums),
    the same values; the vector sums: 20.3 -> 14.6 ms per bench region (1026 x 1028
    positions, rotated map, CPU time). ``(ox, oy)`` is subtracted from every position and
    ``add`` added when ``do_add`` (see :func:`blot_kernel`)."""
    ny, nx = data.shape
    no = out.shape[1]
    xhi = nx - 0.5
    yhi = ny - 0.5
    px = np.empty(no)
    py = np.empty(no)
    wxr = np.empty((6, no))
    wyr = np.empty((6, no))
    ia = np.empty(no, np.int64)
    ja = np.empty(no, np.int64)
    kind = np.empty(no, np.uint8)
    add32 = np.float32(add)
    sums = ny >= 6 and nx >= 6  # else no stencil is inside (and (0, 0) is not readable)
    for jj in range(out.shape[0]):
        for ii in range(no):
            px[ii] = pixmap[jj, ii, 0] - ox
            py[ii] = pixmap[jj, ii, 1] - oy
        _poly5_row(px, no, wxr)
        _poly5_row(py, no, wyr)
        n_in = 0
        for ii in range(no):
            x = px[ii]
            y = py[ii]
            on = x >= -0.5 and x < xhi and y >= -0.5 and y < yhi  # False for NaN
            # converted only when on the image (finite, in range)
            i0 = int(math.floor(x if on else 0.0)) - 2
            j0 = int(math.floor(y if on else 0.0)) - 2
            inside = on and i0 >= 0 and j0 >= 0 and i0 + 6 <= nx and j0 + 6 <= ny
            ia[ii] = i0 if inside else 0
            ja[ii] = j0 if inside else 0
            kind[ii] = 2 if inside else (1 if on else 0)
            n_in += inside
        if sums:
            for ii in range(no):
                v = _sep6_simd(
                    data, ja[ii], ia[ii],
                    (wyr[0, ii], wyr[1, ii], wyr[2, ii], wyr[3, ii], wyr[4, ii], wyr[5, ii]),
                    (wxr[0, ii], wxr[1, ii], wxr[2, ii], wxr[3, ii], wxr[4, ii], wxr[5, ii]))
                r = np.float32(v * scale)
                out[jj, ii] = r + add32 if do_add else r
        if n_in < no:
            for ii in range(no):
                k = kind[ii]
                if k == 2:
                    continue
                if k == 1:
                    r = np.float32(_poly(data, px[ii], py[ii], 5, wx, wy) * scale)
                else:
                    r = np.float32(fillval)
                out[jj, ii] = r + add32 if do_add else r


@njit(nogil=True, cache=True)
def blot_kernel(data, pixmap, out, mode, scale, fillval, lut, a, ox=0.0, oy=0.0, add=0.0,
                do_add=False):
    """Interpolate ``data`` at every pixmap position into ``out`` (see module docstring).

    A position is on the image when ``-0.5 <= x < nx - 0.5`` and ``-0.5 <= y < ny - 0.5``
    (the area covered by the image's pixels); elsewhere, and for NaN, ``out = fillval``.
    On-image values are ``interp(x, y) * scale``. The positions are the pixmap's minus
    ``(ox, oy)`` (float64 subtractions, as the caller's own would be: a pixmap in another
    frame is used without a shifted copy). With ``do_add``, ``float32(add)`` is added to
    every float32 output (the fill value included) in float32, as ``out += float32(add)``
    after the call would (a blot with its sky added back, without a second pass).
    """
    ny, nx = data.shape
    add32 = np.float32(add)
    wx = np.empty(max(2 * a + 2, 6))
    wy = np.empty(max(2 * a + 2, 6))
    if mode == 3:
        _blot_poly5(data, pixmap, out, scale, fillval, wx, wy, ox, oy, add, do_add)
        return

    xhi = nx - 0.5
    yhi = ny - 0.5
    for jj in range(out.shape[0]):
        for ii in range(out.shape[1]):
            x = pixmap[jj, ii, 0] - ox
            y = pixmap[jj, ii, 1] - oy
            if not (x >= -0.5 and x < xhi and y >= -0.5 and y < yhi):
                r = np.float32(fillval)
                out[jj, ii] = r + add32 if do_add else r
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
                v = _poly(data, x, y, 3, wx, wy)
            elif mode == 3:
                v = _poly(data, x, y, 5, wx, wy)
            elif mode == 4:  # literal orders: constant-folded after inlining
                v = _lanczos(data, lut, 3, x, y, wx, wy)
            else:
                v = _lanczos(data, lut, 5, x, y, wx, wy)
            r = np.float32(v * scale)
            out[jj, ii] = r + add32 if do_add else r
