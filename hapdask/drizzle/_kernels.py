"""numba drizzle kernels (private).

Every kernel adds the contributions of the input pixels ``[j0:j1, i0:i1]`` of one image into a pair
of accumulators ``num`` (sum of ``dow * d``) and ``den`` (sum of ``dow``), both float64, that cover
the output window whose pixel ``[0, 0]`` sits at ``(oy, ox)`` in the big output frame. The caller
divides once at the end (:func:`hapdask.drizzle.tile.finalize_tile`).

Coordinates: the pixmap gives 0-based pixel coordinates of input pixel centres in the big output
frame; output pixel ``(ii, jj)`` covers ``[ii-0.5, ii+0.5] x [jj-0.5, jj+0.5]``. All geometry is
computed in the big-frame coordinates and only the array index is shifted by the window origin, so
the contribution an input pixel gives an output pixel is bit-for-bit the same whatever the window
(tiling) and the order of the contributions to one output pixel is always the input raster order.

Why float64 accumulators: the division happens once, so ``num`` and ``den`` must carry the sums
without the ~1e-7-per-add loss of float32; float64 also keeps the tile sums independent of the
number of inputs at the 1e-16 level. A tile of 4096x4096 costs 256 MiB for the pair, which the MVM
tiles (smaller) can afford.

The context plane ``ctx`` is a 2-D int32 array (or a 0x0 array to disable it); ``ctxmask`` is the
int32 bit to OR in where a contribution has ``dow > 0``.

The last argument ``ext = (num2, data2, iscale2, dq, dqo, direct, stats, count)`` of every kernel
holds the optional parts (each None when unused; see :func:`_accumulate`): variance (``data2``)
and DQ propagation, ``direct`` mode (``num``/``den`` are then the float32 ``out_img``/``out_wht``
of ``Drizzle``, updated with the C code's running mean contribution by contribution, so that no
scratch accumulators and no merge pass are needed), ``stats`` (miss and row-hit counts) and
``count`` (per output pixel, the number of input pixels giving it ``dow > 0``: how many set its
context bit).
numba compiles a kernel per argument types and prunes the ``is None`` branches, so the unused
parts cost nothing in the inner loops.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

LANCZOS_LUT_STEP = 0.003

KERNEL_CODES = {"square": 0, "point": 1, "turbo": 2, "gaussian": 3, "lanczos2": 4, "lanczos3": 5}


@intrinsic
def _prefetch(typingctx, arr, j, i):
    """Hint the CPU to bring the cache line of ``arr[j, i, 0...]`` (a C-contiguous array of 2
    or more dimensions, in bounds) into its caches (LLVM ``prefetch``: read, high locality).
    No effect on any value."""
    sig = types.void(arr, j, i)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        zero = context.get_constant(types.intp, 0)
        inds = [context.cast(builder, args[1], signature.args[1], types.intp),
                context.cast(builder, args[2], signature.args[2], types.intp)]
        inds += [zero] * (aryty.ndim - 2)
        ptr = cgutils.get_item_pointer2(
            context, builder, data=ary.data, shape=cgutils.unpack_tuple(builder, ary.shape),
            strides=cgutils.unpack_tuple(builder, ary.strides), layout=aryty.layout, inds=inds,
            wraparound=False, boundscheck=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3),
                          ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(nogil=True, cache=True)
def _round_away(x):
    """Round half away from zero (C ``round``), returning an int."""
    if x >= 0.0:
        return int(math.floor(x + 0.5))
    return -int(math.floor(-x + 0.5))


@njit(nogil=True, cache=True)
def _cell(x):
    """Index of the output pixel whose extent ``[k-0.5, k+0.5)`` holds ``x``."""
    return int(math.floor(x + 0.5))


STRIP = 128
# the point kernel's strips: 256 columns were 1.45-1.5x faster than whole rows on the
# bench_kernels chip (rotated ~63 deg on the output, so each input row touches a new output
# cache line per pixel in each of the 3 output arrays; a strip keeps them cached until the next
# rows reuse them) and 128 columns 0.8-0.85x (in-process A/B, CPU time, load 8-10)
POINT_STRIP = 256


@njit(nogil=True, cache=True)
def _nstrips(i0, i1, sx, width=STRIP):
    """Number of column strips of [i0, i1); strip edges at multiples of ``width`` in chip
    columns.

    The input is scanned strip by strip (rows within a strip) so that the output pixels being
    updated stay in cache. ``sx`` is the chip column of local column 0: anchoring the strips to
    the chip keeps the contribution order, hence the sums, identical for any sub-array.
    """
    if i1 <= i0:
        return 0
    return (i1 - 1 + sx) // width - (i0 + sx) // width + 1


@njit(nogil=True, cache=True)
def _strip(i0, i1, sx, k, width=STRIP):
    first = (i0 + sx) // width
    s0 = max(i0, (first + k) * width - sx)
    s1 = min(i1, (first + k + 1) * width - sx)
    return s0, s1


@njit(nogil=True, cache=True)
def _lerp(a, b, t):
    return a + t * (b - a)


@njit(nogil=True, cache=True)
def _accumulate(
    num, den, ctx, use_ctx, ctxmask, ly, lx, dow, d, num2, data2, iscale2, dq, dqo, direct,
    count, j, i
):
    """Add one contribution ``dow`` of input pixel ``(i, j)`` (value ``d``) to output ``(ly, lx)``.

    The kernels take ``ext = (num2, data2, iscale2, dq, dqo, direct, stats, count)`` and unpack it
    once (``stats``: None, or int64 ``[nmiss, row flags...]`` filled by :func:`_miss`/:func:`_hit`;
    ``count``: None, or a 2-D unsigned integer tile incremented by 1 wherever the context bit is
    set, i.e. per contribution with ``dow > 0``). The
    optional parts are None when unused: numba compiles this function per argument types and
    prunes the ``is None`` branches, so the unused paths cost nothing in the inner loop.

    * ``direct`` None (sums; float64 ``num``/``den``/``num2``): ``num += dow d``, ``den += dow``,
      ``num2[k] += dow**2 data2[k] iscale2``, ``dqo |= dq``;
    * ``direct`` not None (``num``/``den``/``num2`` are the float32 running outputs
      ``out_img``/``out_wht``/``out_img2``): the C code's running weighted mean, contribution by
      contribution, with ``dow`` in single precision: the first contributor (``wht == 0``) sets
      ``out = d``, ``out2 = d2`` and ``outdq = dq``; later ones give
      ``out = (out wht + d dow) / (wht + dow)``, ``out2 = (out2 wht**2 + d2 dow**2) /
      (wht + dow)**2``, ``outdq |= dq``.

    ``num2``/``data2`` have one plane per ``data2`` array. The context bit is set where
    ``dow > 0``. The caller guarantees ``0 <= ly < th`` and ``0 <= lx < tw``: the indices are
    made unsigned, which spares numba's negative-index wraparound on every access.
    """
    ly = np.uintp(ly)
    lx = np.uintp(lx)
    if direct is not None:
        dowf = np.float32(dow)
        if dowf == 0.0:
            return
        vc = den[ly, lx]
        tot = vc + dowf
        first = vc == 0.0
        if first:
            num[ly, lx] = d
        elif tot == 0.0:
            # the weight sum cancelled (negative lanczos lobes): C divides by 0; the fill value
            # replaces it afterwards unless it is INDEF
            num[ly, lx] = np.nan
        else:
            num[ly, lx] = (
                np.float64(num[ly, lx] * vc) + np.float64(np.float32(d) * dowf)
            ) / np.float64(tot)
        den[ly, lx] = tot
        if num2 is not None:
            for k in range(num2.shape[0]):
                d2 = data2[k, j, i] * iscale2
                if first:
                    num2[k, ly, lx] = d2
                elif tot == 0.0:
                    num2[k, ly, lx] = np.nan
                else:
                    v64 = np.float64(vc)
                    w64 = np.float64(dowf)
                    t64 = np.float64(tot)
                    num2[k, ly, lx] = (np.float64(num2[k, ly, lx]) * v64 * v64 + d2 * w64 * w64) / (
                        t64 * t64
                    )
        if dqo is not None:
            if first:
                dqo[ly, lx] = dq[j, i]
            else:
                dqo[ly, lx] |= dq[j, i]
        if use_ctx and dowf > 0.0:
            ctx[ly, lx] |= ctxmask
        if count is not None and dowf > 0.0:
            count[ly, lx] += 1
    else:
        num[ly, lx] += dow * d
        den[ly, lx] += dow
        if num2 is not None:
            for k in range(num2.shape[0]):
                num2[k, ly, lx] += dow * dow * (data2[k, j, i] * iscale2)
        if dqo is not None:
            dqo[ly, lx] |= dq[j, i]
        if use_ctx and dow > 0.0:
            ctx[ly, lx] |= ctxmask
        if count is not None and dow > 0.0:
            count[ly, lx] += 1


@njit(nogil=True, cache=True)
def _miss(stats):
    """Count an input pixel that contributes nothing (``stats[0]``; ``stats`` None: no counts)."""
    if stats is not None:
        stats[0] += 1


@njit(nogil=True, cache=True)
def _misses(stats, n):
    """Count ``n`` input pixels that contribute nothing (as :func:`_miss`)."""
    if stats is not None:
        stats[0] += n


@njit(nogil=True, cache=True)
def _hit(stats, row):
    """Flag input row ``row`` (relative to the box) as having a pixel on the output."""
    if stats is not None:
        stats[1 + row] = 1


@njit(nogil=True, cache=True)
def _valid(pixmap, j, i):
    return math.isfinite(pixmap[j, i, 0]) and math.isfinite(pixmap[j, i, 1])


@njit(nogil=True, cache=True)
def _affine_corners(pixmap, j, i, h, qx, qy):
    """Corners from the pixel centre and a local Jacobian of its valid neighbours.

    Used only where a neighbour needed for bilinear corner interpolation is NaN. Returns False
    when the pixel has no valid neighbour along one axis (then it cannot be placed).
    """
    ny, nx = pixmap.shape[0], pixmap.shape[1]
    cx = pixmap[j, i, 0]
    cy = pixmap[j, i, 1]
    left = i > 0 and _valid(pixmap, j, i - 1)
    right = i < nx - 1 and _valid(pixmap, j, i + 1)
    if left and right:
        dxx = 0.5 * (pixmap[j, i + 1, 0] - pixmap[j, i - 1, 0])
        dxy = 0.5 * (pixmap[j, i + 1, 1] - pixmap[j, i - 1, 1])
    elif right:
        dxx = pixmap[j, i + 1, 0] - cx
        dxy = pixmap[j, i + 1, 1] - cy
    elif left:
        dxx = cx - pixmap[j, i - 1, 0]
        dxy = cy - pixmap[j, i - 1, 1]
    else:
        return False
    down = j > 0 and _valid(pixmap, j - 1, i)
    up = j < ny - 1 and _valid(pixmap, j + 1, i)
    if down and up:
        dyx = 0.5 * (pixmap[j + 1, i, 0] - pixmap[j - 1, i, 0])
        dyy = 0.5 * (pixmap[j + 1, i, 1] - pixmap[j - 1, i, 1])
    elif up:
        dyx = pixmap[j + 1, i, 0] - cx
        dyy = pixmap[j + 1, i, 1] - cy
    elif down:
        dyx = cx - pixmap[j - 1, i, 0]
        dyy = cy - pixmap[j - 1, i, 1]
    else:
        return False
    # same corner order as the bilinear path: (-h,-h), (+h,-h), (+h,+h), (-h,+h)
    sx = (-h, h, h, -h)
    sy = (-h, -h, h, h)
    for k in range(4):
        qx[k] = cx + sx[k] * dxx + sy[k] * dyx
        qy[k] = cy + sx[k] * dxy + sy[k] * dyy
    return True


@njit(nogil=True, cache=True)
def _row_pair(j, h, ny):
    """Rows and fractions interpolating the pixmap to rows ``j - h`` (``ra``, ``rb``, ``ta``)
    and ``j + h`` (``sa``, ``sb``, ``tb``); clamped cells at the first and last rows (linear
    extrapolation), as :func:`_row_corners` describes."""
    if j >= 1:
        ra, rb, ta = j - 1, j, 1.0 - h
    else:
        ra, rb, ta = 0, 1, -h
    if j <= ny - 2:
        sa, sb, tb = j, j + 1, h
    else:
        sa, sb, tb = ny - 2, ny - 1, 1.0 + h
    return ra, rb, ta, sa, sb, tb


@njit(nogil=True, cache=True)
def _shares_row(j, h, ny):
    """True when row ``j``'s lower interpolated row (``j - h``) is computed exactly as row
    ``j - 1``'s upper one (same rows and fraction in :func:`_row_pair`): always for ``h = 1/2``
    (pixfrac 1), where the corners of neighbouring pixels coincide, never otherwise."""
    if j < 1:
        return False
    ra, rb, ta, _, _, _ = _row_pair(j, h, ny)
    _, _, _, sa, sb, tb = _row_pair(j - 1, h, ny)
    return ra == sa and rb == sb and ta == tb


@njit(nogil=True, cache=True)
def _row_corners(pixmap, j, h, s0, s1, lo, hi, buf, keep_lo=False):
    """Corners of the shrunk pixels ``(i, j)``, ``s0 <= i < s1``, into ``buf[k * STRIP + i - s0]``.

    ``k`` = 0-3: x of the corners ``(-h, -h)``, ``(+h, -h)``, ``(+h, +h)``, ``(-h, +h)`` (input
    pixel offsets), 4-7: their y. The pixmap is first interpolated to rows ``j - h`` (``lo``) and
    ``j + h`` (``hi``), ``(2, nx)``, then to columns ``i -+ h``. The cells and fractions depend only
    on ``(i, j)`` and the array shape, never on coordinates, so a sub-array with a one-pixel margin
    gives bit-identical values (tiling invariance). At the first and last rows and columns the
    bilinear cell is clamped, i.e. the map is extrapolated linearly. The interior columns run in
    plain loops over contiguous rows, which the compiler vectorises. ``keep_lo``: ``lo`` already
    holds row ``j - h`` over the columns needed (the previous row's ``hi``, see
    :func:`_shares_row`), so only ``hi`` is interpolated.
    """
    ny, nx = pixmap.shape[0], pixmap.shape[1]
    ra, rb, ta, sa, sb, tb = _row_pair(j, h, ny)
    ilo = max(s0 - 1, 0)
    ihi = min(s1 + 1, nx)
    if s1 - s0 < 16:
        _row_corners_short(
            pixmap, ra, rb, ta, sa, sb, tb, h, s0, s1, ilo, ihi, lo, hi, buf, keep_lo
        )
        return
    for c in range(2):
        if not keep_lo:
            _lerp_rows(pixmap[ra].reshape(-1), pixmap[rb].reshape(-1), ta, lo[c], c, ilo, ihi)
        _lerp_rows(pixmap[sa].reshape(-1), pixmap[sb].reshape(-1), tb, hi[c], c, ilo, ihi)
    a0 = max(s0, 1)
    a1 = min(s1, nx - 1)
    if a1 > a0:
        _lerp_corners(lo[0], hi[0], a0, a1 - a0, a0 - s0, 0, h, buf)
        _lerp_corners(lo[1], hi[1], a0, a1 - a0, a0 - s0, 4 * STRIP, h, buf)
    for c in range(2):
        k = 4 * c
        lc = lo[c]
        hc = hi[c]
        for i in (0, nx - 1):
            if s0 <= i < s1:
                q = i - s0
                buf[k * STRIP + q], buf[(k + 1) * STRIP + q] = _col_interp(lc, i, h, nx)
                buf[(k + 3) * STRIP + q], buf[(k + 2) * STRIP + q] = _col_interp(hc, i, h, nx)


@njit(nogil=True, cache=True)
def _row_corners_short(pixmap, ra, rb, ta, sa, sb, tb, h, s0, s1, ilo, ihi, lo, hi, buf, keep_lo):
    """:func:`_row_corners` for a run of under 16 pixels: the same interpolations in plain
    loops (the vectorised ones cost more to start than they save there)."""
    nx = pixmap.shape[1]
    for c in range(2):
        if not keep_lo:
            for i in range(ilo, ihi):
                lo[c, i] = _lerp(pixmap[ra, i, c], pixmap[rb, i, c], ta)
        for i in range(ilo, ihi):
            hi[c, i] = _lerp(pixmap[sa, i, c], pixmap[sb, i, c], tb)
    g = 1.0 - h
    for c in range(2):
        k = 4 * c
        lc = lo[c]
        hc = hi[c]
        for i in range(s0, s1):
            q = i - s0
            if 1 <= i <= nx - 2:
                buf[k * STRIP + q] = _lerp(lc[i - 1], lc[i], g)
                buf[(k + 1) * STRIP + q] = _lerp(lc[i], lc[i + 1], h)
                buf[(k + 2) * STRIP + q] = _lerp(hc[i], hc[i + 1], h)
                buf[(k + 3) * STRIP + q] = _lerp(hc[i - 1], hc[i], g)
            else:
                buf[k * STRIP + q], buf[(k + 1) * STRIP + q] = _col_interp(lc, i, h, nx)
                buf[(k + 3) * STRIP + q], buf[(k + 2) * STRIP + q] = _col_interp(hc, i, h, nx)


@njit(nogil=True, cache=True, inline="always")
def _lerp_rows(a, b, t, out, c, i0, i1):
    """``out[i] = _lerp(a[2 i + c], b[2 i + c], t)`` for ``i0 <= i < i1``: component ``c`` of
    two flattened ``(x, y)`` pixmap rows interpolated (unsigned indices: the loop
    vectorises)."""
    two = np.uintp(2)
    uc = np.uintp(c)
    u0 = np.uintp(i0)
    for p in range(np.uintp(i1 - i0)):
        i = u0 + p
        out[i] = _lerp(a[two * i + uc], b[two * i + uc], t)


@njit(nogil=True, cache=True, inline="always")
def _lerp_corners(lc, hc, a0, n, q0, k0, h, buf):
    """The four corner values of one coordinate for the columns ``a0 <= i < a0 + n`` (all
    interior: ``1 <= i <= nx - 2``) from the interpolated rows ``lc`` (``j - h``) and ``hc``
    (``j + h``), into ``buf[k0 + k * STRIP + q0 + i - a0]``, ``k`` = 0-3 (see
    :func:`_row_corners`); unsigned indices and one buffer at fixed plane offsets, so the
    loop vectorises."""
    g = 1.0 - h
    one = np.uintp(1)
    u = np.uintp(STRIP)
    b0 = np.uintp(k0) + np.uintp(q0)
    ua = np.uintp(a0)
    for p in range(np.uintp(n)):
        i = ua + p
        buf[b0 + p] = _lerp(lc[i - one], lc[i], g)
        buf[b0 + u + p] = _lerp(lc[i], lc[i + one], h)
        buf[b0 + np.uintp(2) * u + p] = _lerp(hc[i], hc[i + one], h)
        buf[b0 + np.uintp(3) * u + p] = _lerp(hc[i - one], hc[i], g)


@njit(nogil=True, cache=True)
def _gather_corners(pixmap, j, h, idx, n, lo, hi, buf):
    """:func:`_row_corners` for the pixels ``(idx[k], j)``, ``k < n``, only, into buffer
    position ``k``: the same interpolations (bit-identical corners), computed per pixel from its
    three columns of the interpolated rows ``lo``/``hi``."""
    ny, nx = pixmap.shape[0], pixmap.shape[1]
    ra, rb, ta, sa, sb, tb = _row_pair(j, h, ny)
    g = 1.0 - h
    for k in range(n):
        i = idx[k]
        for c in range(2):
            for m in range(max(i - 1, 0), min(i + 2, nx)):
                lo[c, m] = _lerp(pixmap[ra, m, c], pixmap[rb, m, c], ta)
                hi[c, m] = _lerp(pixmap[sa, m, c], pixmap[sb, m, c], tb)
            q = 4 * c * STRIP + k
            if 1 <= i <= nx - 2:
                buf[q] = _lerp(lo[c, i - 1], lo[c, i], g)
                buf[q + STRIP] = _lerp(lo[c, i], lo[c, i + 1], h)
                buf[q + 2 * STRIP] = _lerp(hi[c, i], hi[c, i + 1], h)
                buf[q + 3 * STRIP] = _lerp(hi[c, i - 1], hi[c, i], g)
            else:
                buf[q], buf[q + STRIP] = _col_interp(lo[c], i, h, nx)
                buf[q + 3 * STRIP], buf[q + 2 * STRIP] = _col_interp(hi[c], i, h, nx)


@njit(nogil=True, cache=True)
def _col_interp(row, i, h, nx):
    """Return ``row`` (1-D, ``nx`` columns) interpolated at columns ``i - h`` and ``i + h``."""
    if i >= 1:
        a = _lerp(row[i - 1], row[i], 1.0 - h)
    else:
        a = _lerp(row[0], row[1], -h)
    if i <= nx - 2:
        b = _lerp(row[i], row[i + 1], h)
    else:
        b = _lerp(row[nx - 2], row[nx - 1], 1.0 + h)
    return a, b


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _edge(xa, ya, xb, yb):
    """Edge ``(xa, ya) -> (xb, yb)`` as ``(xl, yl, xr, yr, sgn, m, im)``: left and right ends,
    ``sgn`` = +1 when it runs towards +x (else -1), slope ``m`` (0 for a vertical edge) and
    ``im = 0.5 / |m|`` (used only where a part crosses a line, so never with ``m = 0``)."""
    fwd = xb > xa
    xl = min(xa, xb)
    xr = max(xa, xb)
    yl = ya if fwd else yb
    yr = yb if fwd else ya
    dx = xr - xl
    dy = yr - yl
    m = dy / (dx if dx > 0.0 else 1.0)
    im = 0.5 * dx / (abs(dy) if dy != 0.0 else 1.0)
    return xl, yl, xr, yr, 1.0 if fwd else -1.0, m, im


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _piece(xl, yl, xr, yr, sgn, m, im, c):
    """Part of an edge (from :func:`_edge`) in the cell column ``[c, c + 1]``.

    Returns ``(lo, hi, t, p1, p2)``: its lowest and highest y (+inf/-inf when the part has zero
    width), and ``sgn * integral`` over it of ``y``, ``max(y - 1, 0)`` and ``max(y - 2, 0)``.
    Branch-free (selects only), so that a loop of these over the pixels of a row vectorises. An
    edge outside the column gives width 0, hence zero integrals. A part ending on a vertex takes
    the vertex's y exactly; a column-line crossing is computed from the edge's left end, as in
    the general path of :func:`drizzle_square`.
    """
    u0 = min(max(xl, c), c + 1.0)
    u1 = min(max(xr, c), c + 1.0)
    w = u1 - u0
    y0 = yl if u0 == xl else yl + m * (u0 - xl)
    y1 = yr if u1 == xr else yl + m * (u1 - xl)
    sw = sgn * w
    t = sw * (0.5 * (y0 + y1))
    p1 = _pos_part(y0 - 1.0, y1 - 1.0, sw, sgn, im)
    p2 = _pos_part(y0 - 2.0, y1 - 2.0, sw, sgn, im)
    valid = w > 0.0
    lo = min(y0, y1) if valid else np.inf
    hi = max(y0, y1) if valid else -np.inf
    return lo, hi, t, p1, p2


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _pos_part(a, b, sw, sgn, im):
    """``sgn`` times the integral of ``max(p, 0)`` over a part of width ``|sw|`` along which
    ``p`` goes linearly from ``a`` to ``b`` (``im`` = 0.5 / slope, used where it changes sign)."""
    hi = max(a, b)
    both = sw * (0.5 * (a + b))
    cross = sgn * (hi * hi * im)
    v = both if min(a, b) >= 0.0 else cross
    return v if hi > 0.0 else 0.0


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _column(cf, ea, eb, ec, ed):
    """Signed areas ``(a0, a1, a2)`` of a quad in the three cells of box column ``cf`` (rows 0,
    1, 2; see :func:`_square_row_small`), from its four edges ``ea``-``ed`` as given by
    :func:`_edge`; exactly 0 for the cells the quad does not overlap."""
    la, ha, ta, pa, qa = _piece(ea[0], ea[1], ea[2], ea[3], ea[4], ea[5], ea[6], cf)
    lb, hb, tb, pb, qb = _piece(eb[0], eb[1], eb[2], eb[3], eb[4], eb[5], eb[6], cf)
    lc, hc, tc, pc, qc = _piece(ec[0], ec[1], ec[2], ec[3], ec[4], ec[5], ec[6], cf)
    ld, hd, td, pd, qd = _piece(ed[0], ed[1], ed[2], ed[3], ed[4], ed[5], ed[6], cf)
    lo = min(min(la, lb), min(lc, ld))
    hi = max(max(ha, hb), max(hc, hd))
    t = (ta + tb) + (tc + td)
    p1 = (pa + pb) + (pc + pd)
    p2 = (qa + qb) + (qc + qd)
    a2 = p2 if (lo < 3.0 and hi > 2.0) else 0.0
    a1 = (p1 - p2) if (lo < 2.0 and hi > 1.0) else 0.0
    a0 = (t - p1) if (lo < 1.0 and hi > 0.0) else 0.0
    return a0, a1, a2


@njit(nogil=True, cache=True, error_model="numpy")
def _square_row_small(buf, n):
    """Overlaps of the first ``n`` shrunk pixels of a strip row with the cells of their bounding
    boxes, for boxes of at most 3x3 output pixels.

    ``buf`` holds planes of ``STRIP`` values (pixel ``i - s0`` of the strip): planes 0-7 the
    corners (from :func:`_row_corners`); this fills planes 8-11 with the first cell column, first
    cell row, last column and last row (as floats), 12 with the quad area ``jaco`` (signed), 13
    with 1.0 where this fast path applies (finite corners, box at most 3x3; else 0), and 14-22
    with the signed area (sign of ``-jaco``) of the quad in cell ``(c, r)`` of the box (plane
    ``14 + 3 c + r``), exactly 0 for the cells the quad does not overlap: a cell counts iff, in
    its column, the quad's y-range (over the parts of its edges of non-zero width there)
    overlaps the cell's row with non-zero length, the exact form of C's ``overlap > 0``.

    Per column the areas come from Green's theorem on the edges' parts in that column: ``T`` =
    integral of ``y``, ``P(Y)`` = integral of ``max(y - Y, 0)`` for the lines ``Y`` = 1, 2, so
    the top row's area is ``P`` of its lower line (accurate for slivers) and the rows below are
    differences. The loop is branch-free and vectorises: one buffer with planes at compile-time
    offsets (so LLVM sees the stores cannot overlap) and unsigned indices (no wraparound code);
    with a 2-D ``(planes, nx)`` array or signed indices it stays scalar, 2.2x slower.
    """
    u = np.uintp(STRIP)
    for i in range(np.uintp(n)):
        qx0 = buf[np.uintp(0) * u + i]
        qx1 = buf[np.uintp(1) * u + i]
        qx2 = buf[np.uintp(2) * u + i]
        qx3 = buf[np.uintp(3) * u + i]
        qy0 = buf[np.uintp(4) * u + i]
        qy1 = buf[np.uintp(5) * u + i]
        qy2 = buf[np.uintp(6) * u + i]
        qy3 = buf[np.uintp(7) * u + i]
        xmin = min(min(qx0, qx1), min(qx2, qx3))
        xmax = max(max(qx0, qx1), max(qx2, qx3))
        ymin = min(min(qy0, qy1), min(qy2, qy3))
        ymax = max(max(qy0, qy1), max(qy2, qy3))
        c0 = np.floor(xmin + 0.5)
        c1 = np.floor(xmax + 0.5)
        r0 = np.floor(ymin + 0.5)
        r1 = np.floor(ymax + 0.5)
        # finite corners (numba's min/max can drop a NaN): s - s is 0 unless s is NaN or inf
        sq = (qx0 + qx1) + (qx2 + qx3) + ((qy0 + qy1) + (qy2 + qy3))
        ok = (sq - sq == 0.0) and (c1 - c0 <= 2.0) and (r1 - r0 <= 2.0)
        buf[np.uintp(8) * u + i] = c0
        buf[np.uintp(9) * u + i] = r0
        buf[np.uintp(10) * u + i] = c1
        buf[np.uintp(11) * u + i] = r1
        buf[np.uintp(12) * u + i] = 0.5 * ((qx0 - qx2) * (qy1 - qy3) - (qx1 - qx3) * (qy0 - qy2))
        buf[np.uintp(13) * u + i] = 1.0 if ok else 0.0
        bx = c0 - 0.5
        by = r0 - 0.5
        x0 = qx0 - bx
        x1 = qx1 - bx
        x2 = qx2 - bx
        x3 = qx3 - bx
        y0 = qy0 - by
        y1 = qy1 - by
        y2 = qy2 - by
        y3 = qy3 - by
        al, ayl, ar, ayr, asg, am, aim = _edge(x0, y0, x1, y1)
        bl, byl, br, byr, bsg, bm, bim = _edge(x1, y1, x2, y2)
        cl, cyl, cr, cyr, csg, cm, cim = _edge(x2, y2, x3, y3)
        dl, dyl, dr, dyr, dsg, dm, dim = _edge(x3, y3, x0, y0)
        ea = (al, ayl, ar, ayr, asg, am, aim)
        eb = (bl, byl, br, byr, bsg, bm, bim)
        ec = (cl, cyl, cr, cyr, csg, cm, cim)
        ed = (dl, dyl, dr, dyr, dsg, dm, dim)
        # the three cell columns written out: as a loop over c they were not unrolled, and the
        # loop over the pixels then ran scalar (37 ns/px against 11 ns/px, bit-identical)
        a00, a01, a02 = _column(0.0, ea, eb, ec, ed)
        a10, a11, a12 = _column(1.0, ea, eb, ec, ed)
        a20, a21, a22 = _column(2.0, ea, eb, ec, ed)
        buf[np.uintp(14) * u + i] = a00
        buf[np.uintp(15) * u + i] = a01
        buf[np.uintp(16) * u + i] = a02
        buf[np.uintp(17) * u + i] = a10
        buf[np.uintp(18) * u + i] = a11
        buf[np.uintp(19) * u + i] = a12
        buf[np.uintp(20) * u + i] = a20
        buf[np.uintp(21) * u + i] = a21
        buf[np.uintp(22) * u + i] = a22


@njit(nogil=True, cache=True)
def square_reach_radius(h):
    """Bound of a square-kernel footprint's reach from its pixel centre, in units of the
    largest step of the pixmap to the 8 neighbours (:func:`_pixel_reach`), for the half-size
    ``h = pixfrac / 2``: corners interpolated bilinearly (inside the 8 neighbours' range),
    extrapolated at the array edges (at most ``2 h (1 + h) + h**2`` steps) or affine next to
    NaNs (``2 h``), with 10 % to spare, and at least 2."""
    return max(2.0, 1.1 * (2.0 * h * (1.0 + h) + h * h))


@njit(nogil=True, cache=True, fastmath=True)
def _grid_steps(pixmap, j0, j1, i0, i1):
    """Largest step in ``x`` or ``y`` between row neighbours (``h``) and between column
    neighbours (``v``) of ``pixmap[j0:j1, i0:i1]``, and whether all its positions are finite
    (else the maxima are meaningless). One pass over the rows, each as one contiguous run of
    ``(x, y)`` values: its finiteness is checked on its bits (integer operations, exact under
    fast-math) before its steps, whose fast-math maxima and absolute values are then exact;
    all three loops vectorise."""
    bits = pixmap.view(np.uint64)
    expo = np.uint64(0x7FF0000000000000)
    h = 0.0
    v = 0.0
    n = 2 * (i1 - i0)
    for j in range(j0, j1):
        # row slices indexed from 0 (a range from 0: no negative-index wraparound code)
        brow = bits[j].reshape(-1)[2 * i0 : 2 * i1]
        bad = 0
        for k in range(n):
            bad += (brow[k] & expo) == expo
        if bad:
            return h, v, False
        row = pixmap[j].reshape(-1)[2 * i0 : 2 * i1]
        for k in range(n - 2):
            d = abs(row[k + 2] - row[k])
            h = d if d > h else h
        if j > j0:
            prv = pixmap[j - 1].reshape(-1)[2 * i0 : 2 * i1]
            for k in range(n):
                d = abs(row[k] - prv[k])
                v = d if d > v else v
    return h, v, True


@njit(nogil=True, cache=True)
def _landing_bound(pixmap, box, radius, fallback=True):
    """Box-wide bound ``(bx, by)`` of the square footprints' reach (``radius`` as in
    :func:`_pixel_reach`) for the pixels of ``box = (j0, j1, i0, i1)``, and the largest row
    steps ``(hx, hy)`` there, for :func:`_landing_run`.

    Where the box grown by one pixel has only finite positions: from one vectorised pass,
    ``radius`` times the largest row step plus the largest column step, in ``x`` or ``y`` (a
    diagonal step is at most one of each; times ``1 + 1e-9`` against rounding), for both
    axes, and ``hx = hy`` = the largest row step; otherwise :func:`_reach_bound`
    (8-neighbour steps, NaN ignored) and ``hx = hy = -1`` (no step bound holds across a NaN,
    so :func:`_skip` is not used), or, with ``fallback`` False, ``-1`` for all four (no
    bound: the caller tests every pixel with its own reach)."""
    ny, nx = pixmap.shape[0], pixmap.shape[1]
    ga = max(box[0] - 1, 0)
    gb = min(box[1] + 1, ny)
    ha = max(box[2] - 1, 0)
    hb = min(box[3] + 1, nx)
    h, v, finite = _grid_steps(pixmap, ga, gb, ha, hb)
    if finite:
        r = radius * ((h + v) * (1.0 + 1e-9))
        return r, r, h, h
    if not fallback:
        return -1.0, -1.0, -1.0, -1.0
    bx, by = _reach_bound(pixmap, box[0], box[1], box[2], box[3], 0, radius)
    return bx, by, -1.0, -1.0


@njit(nogil=True, cache=True)
def _steps_to(dist, h):
    """``dist / h`` (how many steps of at most ``h`` fit in ``dist``); inf for ``h = 0`` (no
    move at all) and 0 for steps under 1e-3 (too small a margin against rounding)."""
    if h == 0.0:
        return np.inf
    if h < 1e-3:
        return 0.0
    return dist / h


@njit(nogil=True, cache=True)
def _skip(x, y, rx, ry, win, hx, hy, n):
    """How far (>= 1, <= ``n``) along a row to move from a pixel at ``(x, y)`` that cannot
    reach the window ``win`` with the box-wide reach ``(rx, ry)``: the pixels in between
    cannot either, their centres being at most ``hx``/``hy`` per column away
    (:func:`_landing_bound`).
    The distance is taken 0.1 % short, and one pixel less, to stay clear of rounding."""
    d = 0.0
    if x + rx <= win[0]:
        d = max(d, _steps_to(win[0] - (x + rx), hx))
    if x - rx >= win[1]:
        d = max(d, _steps_to((x - rx) - win[1], hx))
    if y + ry <= win[2]:
        d = max(d, _steps_to(win[2] - (y + ry), hy))
    if y - ry >= win[3]:
        d = max(d, _steps_to((y - ry) - win[3], hy))
    m = min(0.999 * d, float(n)) - 1.0
    return max(int(m), 1)


@njit(nogil=True, cache=True)
def _count_weighted(weight, j0, j1, i0, i1):
    """Number of non-zero weights in ``weight[j0:j1, i0:i1]`` (vectorised)."""
    n = 0
    for j in range(j0, j1):
        row = weight[j, i0:i1]
        for k in range(i1 - i0):
            n += row[k] != 0.0
    return n


@njit(nogil=True, cache=True)
def _weighted_span(weight, j, s0, s1):
    """``(f0, f1)``: from the first to the last non-zero weight of ``weight[j, s0:s1]``
    (half-open; ``f0 == f1`` when there is none), in one vectorised pass (integer minimum and
    maximum of selects)."""
    row = weight[j, s0:s1]
    n = s1 - s0
    a = n
    b = 0
    for k in range(n):
        on = row[k] != 0.0
        a = min(a, k if on else n)
        b = max(b, k + 1 if on else 0)
    if b == 0:
        return s0, s0
    return s0 + a, s0 + b


@njit(nogil=True, cache=True)
def _landing_run(pixmap, weight, j, s0, s1, win, box, radius, reach):
    """The run ``[w0, w1)`` of strip row ``j`` from its first to its last pixel that can add
    to the window ``win = (xlo, xhi, ylo, yhi)`` (cell edges, output frame), ``w0 == w1`` when
    none can.

    A pixel adds nothing when its weight is 0, it has no position (NaN), or its centre lies
    beyond one of the window's edges by more than the bound of every footprint's reach in the
    input box ``box = (j0, j1, i0, i1)``, plus 1e-6 (the test of :func:`footprint_bbox`).
    The bound is the pixel's own reach (:func:`_pixel_reach` with ``radius``) for the first
    ``reach[2]`` pixels tested, then the box-wide bound of :func:`_landing_bound`, computed
    once (one vectorised pass over the box) and kept in ``reach[:2]`` (negative until then),
    with the box's largest row steps in ``reach[3:5]`` (negative: none, NaN positions): only
    calls with many pixels off the window pay for it, never one whose window holds the whole
    input (as in ``Drizzle``). With the box-wide bound, a pixel beyond an edge moves the walk
    on by as many pixels as surely stay beyond it (:func:`_skip`) instead of one. One call
    per strip row: a per-pixel helper taking arrays cost ~30 ns/px (reference counting).
    Replaying 20 tile calls of the bench (13.7 M box pixels, 7.6 M landing): the runs took
    0.077 s against 0.105 s when every pixel off the window was tested (own reach for 1/8 of
    the box, then the 8-neighbour bound pass).
    """
    w0 = s0
    w1 = s1
    for end in range(2):
        while w0 < w1:
            i = w0 if end == 0 else w1 - 1
            step = 1
            if weight[j, i] != 0.0:
                x = pixmap[j, i, 0]
                y = pixmap[j, i, 1]
                if math.isfinite(x) and math.isfinite(y):
                    if win[0] < x < win[1] and win[2] < y < win[3]:
                        break
                    if reach[0] < 0.0 and reach[2] > 0.0:
                        # the pixel's own reach (~20 ns), until as many as ``reach[2]`` have
                        # been tested: then the box-wide bound (~3 ns/px of the box) is cheaper
                        reach[2] -= 1.0
                        rx, ry = _pixel_reach(pixmap, j, i, 0, radius)
                    else:
                        if reach[0] < 0.0:
                            bx, by, hx, hy = _landing_bound(pixmap, box, radius)
                            reach[0] = bx
                            reach[1] = by
                            reach[3] = hx
                            reach[4] = hy
                        rx = reach[0]
                        ry = reach[1]
                    rx += 1e-6
                    ry += 1e-6
                    if not (x + rx <= win[0] or x - rx >= win[1] or y + ry <= win[2]
                            or y - ry >= win[3]):
                        break
                    if reach[3] >= 0.0 and rx == reach[0] + 1e-6:
                        step = _skip(x, y, rx, ry, win, reach[3], reach[4], w1 - w0)
            if end == 0:
                w0 += step
            else:
                w1 -= step
    return w0, w1


# Speed notes (cachegrind, rows 1000-1016 of the bench_kernels chip, direct mode): this kernel
# runs ~1570 instructions and ~13.6 mispredicted branches per input pixel. Tried and slower
# (session 18): sharing each edge between the two pixels it bounds (pixfrac = 1; pieces recorded
# per edge, horizontal edges kept per strip column, replayed with the sign flipped): 2227
# instructions/px in the first variant, and 0.4-0.65x the speed whether the records were 7 arrays
# or one, numba-inlined or not; moving the 4-edge loop into a per-edge function with scalar
# corners (bit-identical): 1822 instructions/px, 15.1 mispredicts/px. Session 19 (in-process A/B
# against the previous version, CPU time, load 13-20 on 2 cores, so +-5 % noise): corners
# interpolated once per row in vectorised loops (``_row_corners``) 1.00-1.03x; plus unsigned
# indices (no wraparound code) and a straight-line piece for one row crossing 1.05-1.15x (direct
# mode), 1.07-1.12x (sums). Tried and dropped: every piece split at the column line with the
# second piece of width 0 and a branch-free one-crossing formula (no branch on the number of
# columns or rows; 2 divisions per edge) 0.84x; the first contributor of the running mean as a
# select instead of a branch, no measurable change. Geometry-only probes (same A/B): skipping
# the accumulation leaves ~77 % of the time, skipping the 4-edge loop as well ~27 %.
# Session 20 (cachegrind over rows 1000-1256, direct mode; in-process A/B CPU time at load 3-15):
# corners as scalars and min/max (no branches) for a piece's row range and the per-column row
# bounds: 1386 vs 1420 instructions/px, 8.9 vs 12.6 mispredicted branches/px (cachegrind's
# predictor model); 1.03-1.10x at 0.04"/pix, 1.18-1.22x at the MVM ratio (0.8). Tried and
# dropped (bit-identical, but slower): one-or-two-row pieces without a branch (select, the
# second row getting +-0) 0.92-0.98x; the slope only for edges crossing a column line
# 0.93-0.99x; the piece code as a helper function 0.3x (not inlined, arrays passed to a call);
# a fixed 3x3 scatter for boxes up to 3x3 with the running-mean update in select form (no branch
# on the box shape or on which cells get weight) 0.91-1.13x, 1519 instructions/px and no fewer
# mispredictions; routing point/turbo through that select-form update slowed them 2.7x/1.8x.
# Session 21: the notes above are about the general path, which now serves only boxes larger
# than 3x3 cells and pixels with NaN corners. Boxes up to 3x3 (all of them for HST at the SkyCell
# scales) take _square_row_small: per cell column, Green's theorem on the edges' parts with fixed
# trip counts and selects, vectorised over the pixels of a strip row (AVX2 on this machine). In
# isolation it costs ~47 ns/px against ~103 ns/px for the same code compiled scalar (2-D plane
# array or signed indices: LLVM finds unsafe dependences and gives up). Probes on rows 600-1400
# of the bench chip (0.04"/pix, load 6-8): geometry only 0.19 s, with the scatter 0.28 s (the
# general path: 0.37 s); the scatter with a fixed 3x3 trip count 1.2x slower; sum-mode updates
# (no running mean) instead of the direct running mean no faster (1.03x), so the direct mode
# stays. Whole add_image call: 1.27-1.32x main at 0.04"/pix, 1.17-1.36x at the MVM ratio
# (in-process interleaved CPU time, load 7-17); products identical to main's on the bench chip.
# Whole input rows (C's raster order) instead of strips: 1.2x slower (strips keep the outputs
# of the 3 arrays in cache).
# Session 23 (in-process interleaved CPU time, load 5-14): _square_row_small wrote its three cell
# columns in a loop over c that LLVM did not unroll, so the loop over the pixels stayed scalar;
# with the columns written out (_column) it vectorises: 37 -> 11 ns/px in isolation (8-wide
# AVX-512 on this machine; 42 -> 12.5 ns/px compiled for AVX2 only, NUMBA_CPU_NAME=haswell), the
# whole kernel 0.59 -> 0.32 s on a 47-deg ACS-like chip (sums mode), bit-identical. Reusing the
# previous strip row's upper interpolated pixmap row (pixfrac 1): 1.03-1.04x. What is left on
# that chip (~36-38 ns/px): overlaps ~11, corners ~5-7, the scatter with its updates ~15
# (probes), the rest ~4. Tried and dropped: the overlaps in float32 with a float64
# recomputation of close calls (11.8 vs 10.6 ns/px once both vectorise, and ~1e-5 relative
# weight differences to C at the 1 %-weight edge cells); a branch-free fixed 3x3 scatter adding
# +0 to the cells without overlap (sums mode) 0.36x; a 9-bit mask of the cells with dow > 0 and
# a table-driven loop over its set bits 0.75x; skipping the per-cell window tests for boxes
# inside the window 0.90-1.07x (noise).
# Session 31 (14 separate-drizzle calls of bench_drizzle replayed in-process, sums mode with
# counts, 1.92 M weighted pixels, thread CPU, load 6-12): ~60 ns/px; probes cutting the work
# after each step: run finding (and the input prefetches) ~10, corners ~9, small-box overlaps
# ~16, the scatter ~20-26 ns/px (of which loading ``d`` and ``fac``'s division ~3). py-spy
# --native on the whole run: ~30 % of this kernel's samples sit on the scatter's ``num`` and
# ``den`` loads (the read-modify-write of the accumulators). All bit-identical and dropped: the
# cells with dow > 0 listed without branches and updated in one loop 0.65x; fixed 3x3 loops
# with the per-cell tests 0.65x (LLVM unrolls them); prefetching the accumulator lines the
# pixel 1 or 3 rows on will update (from the pixmap) 1.00x, so cache misses are not what holds
# those loads; ``den`` 8 or 264 doubles off ``num``'s 4 KiB alignment 1.00x; an unsigned
# buffer index in the scatter 1.00x. Scattering half the pixels (alternate ones, or blocks of
# 32) still costs ~70 % of the full scatter, so neither chains through the cells shared by
# neighbours nor the number of updates alone set it.
# Session 33 (the 272 drizzle_square calls of bench_drizzle captured and replayed in-process,
# thread CPU, 20 of the 136 separate-drizzle calls for timing, load 5-14; every variant
# checked byte-identical on all 272): 39 ns per box pixel (~70 ns per landing pixel); probes
# cutting the work after each step: run finding 6.3, corners 6.2, small-box overlaps 10.8,
# scatter ~16 ns/box-px. _row_corners' loops had stayed scalar (signed indices into slices):
# with unsigned indices they vectorise, corners 6.2 -> 2.9 ns/box-px. The run finding of every
# separate-drizzle call computes the box-wide bound through _reach_bound, as the pixmap is NaN
# wherever the weight is 0 (~45 % of the box), ~3.5 ns/box-px in a scalar _max_steps: now
# vectorised, 1.7x faster (it reads the whole map once more). The small-box cells visited
# row by row: 0.95-0.97x. Together 0.87x the kernel's CPU on all 136 calls (4.62 -> 4.02 s).
# Runs under 16 pixels (the final tiles' cosmic-ray pixels) keep plain loops: vectorised
# they made the final-tile calls 1.1x slower. Tried, bit-identical and
# dropped: the weighted span (_weighted_span) before every landing run, not only for mostly
# empty boxes, 1.00x; the contributions' factor and dow (area * fac) computed in
# _square_row_small's vectorised loop 1.00x; the cells with dow > 0 as a 9-bit mask (20
# patterns cover ~100 % of the bench's pixels: 2x2 boxes 35 % all 4 cells, 3x3 boxes mostly
# the 5-cell cross) and straight-line updates per pattern for boxes inside the window 1.5x
# slower (2.5x with numba-inlined helpers, 4.4x as helper calls taking arrays), even with the
# 2x2 pattern alone 1.1x slower: the scatter is not held by its branches.
@njit(nogil=True, cache=True, error_model="numpy")
def drizzle_square(
    data, weight, pixmap, j0, j1, i0, i1, num, den, ctx, ctxmask, oy, ox, sx, pixfrac, iscale, ext
):
    """Square kernel: exact overlap of the pixfrac-shrunk quadrilateral with output pixels.

    The shrunk pixel has corners ``(i -+ h, j -+ h)``, ``h = pixfrac / 2``, mapped to the output by
    bilinear interpolation of the pixmap (linear extrapolation at the array edges). Each output
    pixel receives ``dow = w * overlap / area(quad)``, so an input pixel adds exactly ``w`` of
    weight when its footprint is entirely on the output. The overlaps with all the output pixels
    of the quad's bounding box come from one pass over its 4 edges split into per-column pieces
    (Green's theorem: signed area under each piece clamped to each pixel row, in closed form for
    the rows a piece crosses); only the rows the quad really occupies in each column are kept, so
    pixels it does not touch get exactly 0. Geometry is done relative to the lower left corner of
    the bounding box (an exact shift). Compiled with numpy's error model: every division is
    guarded (non-vertical edge, piece crossing a row, ``jaco != 0``), and Python's ZeroDivision
    checks slowed the piece code about 3x in a geometry-only micro-benchmark.

    Pixels whose box has at most 3x3 cells (and finite corners) get their overlaps from
    :func:`_square_row_small`, computed for a whole strip row at once (vectorised); the per-edge
    code below is the general path for larger boxes and NaN corners. Both give every cell the
    same overlap up to rounding (~1e-16) and apply the same exact ``overlap > 0`` rule.
    """
    ny, nx = data.shape
    th, tw = num.shape
    use_ctx = ctx.shape[0] > 0
    num2, data2, iscale2, dq, dqo, direct, stats, count = ext
    h = 0.5 * pixfrac
    radius = square_reach_radius(h)
    # the window grown by a hair (footprint_bbox's test): a pixel whose footprint bound stays
    # outside it gets no overlap > 0 with any output pixel of the window
    win = (ox - 0.5, ox + tw - 0.5, oy - 0.5, oy + th - 0.5)
    box = (j0, j1, i0, i1)
    # _landing_run's state: the box-wide reach bound (x, y; -1 until computed) and how many
    # pixels may still have their own reach computed first
    reach = np.array([-1.0, -1.0, (j1 - j0) * (i1 - i0) / 64.0, -1.0, -1.0])
    lo = np.empty((2, nx))
    hi = np.empty((2, nx))
    # strip buffer, planes of STRIP values indexed from the strip start: 0-7 the corners
    # (_row_corners), 8-22 the small-box data (_square_row_small)
    buf = np.empty(23 * STRIP)
    idx = np.empty(STRIP, np.int64)
    qx = np.empty(4)
    qy = np.empty(4)
    # scratch for the per-pixel overlap computation (grown on demand)
    maxc = 8
    part = np.zeros((maxc, maxc))
    full = np.zeros((maxc, maxc))
    rmin = np.empty(maxc, np.int64)
    rmax = np.empty(maxc, np.int64)
    sxk = np.empty(4)
    syk = np.empty(4)
    nweighted = _count_weighted(weight, j0, j1, i0, i1)
    few = 4 * nweighted < (j1 - j0) * (i1 - i0)
    if few:
        # only weighted pixels are tested: their own reaches cost less than a box-wide pass
        reach[2] = nweighted + 1.0
    ns = _nstrips(i0, i1, sx)
    for strip in range(ns):
        s0, s1 = _strip(i0, i1, sx, strip)
        # the row whose upper interpolated row ``hi`` holds columns [plo, phi) (-2: none)
        prev = -2
        plo = 0
        phi = 0
        for j in range(j0, j1):
            if not few:
                # the next rows' parts of the strip, requested ahead: the pixel map row that
                # row j + 1 adds to its corners, and row j + 1's weights and data (the
                # strip-by-strip walk jumps to another page every row, where the hardware
                # prefetcher starts anew; 0.93x the CPU time on 8 bench tile calls)
                if j + 2 < ny:
                    for ip in range(max(s0 - 1, 0), min(s1 + 1, nx), 4):
                        _prefetch(pixmap, j + 2, ip)
                if j + 1 < j1:
                    for ip in range(s0, s1, 16):
                        _prefetch(weight, j + 1, ip)
                        _prefetch(data, j + 1, ip)
            # only the run from the first to the last weighted pixel of the strip row whose
            # footprint can reach the window gets its corners and small-box overlaps: a tile's
            # input box around a rotated footprint piece holds up to ~2x the pixels that land
            # (weight 0 where the caller knew it, else they land off the window)
            if few:
                # mostly weight 0 (e.g. the cosmic-ray pixels of a final tile made from the
                # separate drizzles' sums): the first and last weighted pixels in one
                # vectorised pass instead of a walk over the zeros
                f0, f1 = _weighted_span(weight, j, s0, s1)
                w0, w1 = _landing_run(pixmap, weight, j, f0, f1, win, box, radius, reach)
            else:
                w0, w1 = _landing_run(pixmap, weight, j, s0, s1, win, box, radius, reach)
            _misses(stats, (s1 - s0) - (w1 - w0))
            if w0 == w1:
                continue
            # the pixels to compute, into buffer positions 0..n-1: the whole run, or only its
            # weighted pixels where they are under a quarter of it (e.g. the cosmic-ray pixels
            # of a final tile made from the separate drizzles' sums)
            nw = 0
            for i in range(w0, w1):
                nw += weight[j, i] != 0.0
            sparse = 4 * nw < w1 - w0
            if sparse:
                n = 0
                for i in range(w0, w1):
                    if weight[j, i] != 0.0:
                        idx[n] = i
                        n += 1
                _gather_corners(pixmap, j, h, idx, n, lo, hi, buf)
                prev = -2
            else:
                n = w1 - w0
                # pixfrac 1: the previous row's upper interpolated row is this row's lower one
                # (bit-identical), when it covers the columns needed
                ilo = max(w0 - 1, 0)
                ihi = min(w1 + 1, nx)
                keep = prev == j - 1 and plo <= ilo and ihi <= phi and _shares_row(j, h, ny)
                if keep:
                    lo, hi = hi, lo
                _row_corners(pixmap, j, h, w0, w1, lo, hi, buf, keep)
                prev = j
                plo = ilo
                phi = ihi
            _square_row_small(buf, n)
            # the loop runs over i (a range: LLVM then knows i >= 0 and drops the negative-index
            # wraparound of every array access; i = w0 + p or idx[p] measured 0.84x on a tile's
            # span-limited rows); p is the pixel's buffer position
            p = -1
            for i in range(w0, w1):
                w = weight[j, i]
                if w == 0.0:
                    _miss(stats)
                    continue
                p = p + 1 if sparse else i - w0
                if buf[13 * STRIP + p] != 0.0:
                    # box of at most 3x3 cells: overlaps from _square_row_small
                    c0 = int(buf[8 * STRIP + p])
                    r0 = int(buf[9 * STRIP + p])
                    c1 = int(buf[10 * STRIP + p])
                    r1 = int(buf[11 * STRIP + p])
                    jaco = buf[12 * STRIP + p]
                    if c1 < ox or c0 >= ox + tw or r1 < oy or r0 >= oy + th:
                        _miss(stats)
                        continue
                    if not (jaco != 0.0 and math.isfinite(jaco)):
                        _miss(stats)
                        continue
                    _hit(stats, j - j0)
                    d = data[j, i] * iscale
                    fac = -w / jaco
                    # cells row by row (neighbouring cells of an accumulator row together; a
                    # pixel's cells are distinct, so their order changes no sum): 0.95-0.97x
                    # the kernel's CPU time of column by column on 20 bench tile calls
                    for r in range(r1 - r0 + 1):
                        ly = r0 + r - oy
                        if ly < 0 or ly >= th:
                            continue
                        for c in range(c1 - c0 + 1):
                            lx = c0 + c - ox
                            dow = buf[(14 + 3 * c + r) * STRIP + p] * fac
                            if dow > 0.0 and lx >= 0 and lx < tw:
                                _accumulate(
                                    num,
                                    den,
                                    ctx,
                                    use_ctx,
                                    ctxmask,
                                    ly,
                                    lx,
                                    dow,
                                    d,
                                    num2,
                                    data2,
                                    iscale2,
                                    dq,
                                    dqo,
                                    direct,
                                    count,
                                    j,
                                    i,
                                )
                    continue
                # corners: (-h,-h), (+h,-h), (+h,+h), (-h,+h) in input pixel offsets
                qx0 = buf[0 * STRIP + p]
                qx1 = buf[1 * STRIP + p]
                qx2 = buf[2 * STRIP + p]
                qx3 = buf[3 * STRIP + p]
                qy0 = buf[4 * STRIP + p]
                qy1 = buf[5 * STRIP + p]
                qy2 = buf[6 * STRIP + p]
                qy3 = buf[7 * STRIP + p]
                if not (
                    math.isfinite(qx0 + qx1 + qx3 + qx2) and math.isfinite(qy0 + qy1 + qy3 + qy2)
                ):
                    if not _valid(pixmap, j, i):
                        _miss(stats)
                        continue
                    if not _affine_corners(pixmap, j, i, h, qx, qy):
                        _miss(stats)
                        continue
                    qx0, qx1, qx2, qx3 = qx[0], qx[1], qx[2], qx[3]
                    qy0, qy1, qy2, qy3 = qy[0], qy[1], qy[2], qy[3]
                xmin = min(min(qx0, qx1), min(qx2, qx3))
                xmax = max(max(qx0, qx1), max(qx2, qx3))
                ymin = min(min(qy0, qy1), min(qy2, qy3))
                ymax = max(max(qy0, qy1), max(qy2, qy3))
                c0 = _cell(xmin)
                c1 = _cell(xmax)
                r0 = _cell(ymin)
                r1 = _cell(ymax)
                if c1 < ox or c0 >= ox + tw or r1 < oy or r0 >= oy + th:
                    _miss(stats)
                    continue
                jaco = 0.5 * ((qx0 - qx2) * (qy1 - qy3) - (qx1 - qx3) * (qy0 - qy2))
                if not (jaco != 0.0 and math.isfinite(jaco)):
                    _miss(stats)
                    continue
                _hit(stats, j - j0)
                ncol = c1 - c0 + 1
                nrow = r1 - r0 + 1
                if ncol > maxc or nrow > maxc:
                    maxc = max(ncol, nrow) + 2
                    part = np.zeros((maxc, maxc))
                    full = np.zeros((maxc, maxc))
                    rmin = np.empty(maxc, np.int64)
                    rmax = np.empty(maxc, np.int64)
                # part/full are all zero here: the scatter below clears what the edges wrote
                for c in range(ncol):
                    rmin[c] = nrow
                    rmax[c] = -1
                # corners relative to the lower left corner of the bounding box of cells, where
                # the cell lines are the integers (the shift is exact: Sterbenz)
                bx = c0 - 0.5
                by = r0 - 0.5
                sxk[0] = qx0 - bx
                sxk[1] = qx1 - bx
                sxk[2] = qx2 - bx
                sxk[3] = qx3 - bx
                syk[0] = qy0 - by
                syk[1] = qy1 - by
                syk[2] = qy2 - by
                syk[3] = qy3 - by
                for k in range(4):
                    xa = sxk[k]
                    ya = syk[k]
                    xb = sxk[(k + 1) & 3]
                    yb = syk[(k + 1) & 3]
                    if xa == xb:
                        continue
                    if xa < xb:
                        sgn = 1.0
                        xl, yl, xr, yr = xa, ya, xb, yb
                    else:
                        sgn = -1.0
                        xl, yl, xr, yr = xb, yb, xa, ya
                    m = (yr - yl) / (xr - xl)
                    cl = min(int(xl), ncol - 1)
                    cr = min(int(xr), ncol - 1)
                    u0 = xl
                    y0 = yl
                    for c in range(cl, cr + 1):
                        if c < cr:
                            u1 = c + 1.0
                            y1 = yl + m * (u1 - xl)
                        else:
                            u1 = xr
                            y1 = yr
                        if u1 > u0:
                            # the piece in column c: signed width sw, height y0 -> y1
                            sw = sgn * (u1 - u0)
                            ylo = min(y0, y1)
                            yhi = max(y0, y1)
                            rhi = min(int(yhi), nrow - 1)
                            rlo = min(int(ylo), rhi)
                            f = 0.5 * (y0 + y1) - rlo
                            # unsigned indices (no negative-index wraparound code): the box
                            # coordinates are >= 0 exactly, so c, rlo >= 0 (int truncates)
                            uc = np.uintp(c)
                            ulo = np.uintp(rlo)
                            if rlo == rhi:
                                part[uc, ulo] += sw * f
                            elif rhi == rlo + 1:
                                t = yhi - rhi
                                fn = t * t * (0.5 / (yhi - ylo))
                                part[uc, ulo] += sw * (f - fn)
                                part[uc, ulo + np.uintp(1)] += sw * fn
                            else:
                                inv = 0.5 / (yhi - ylo)
                                for r in range(rlo, rhi):
                                    t = yhi - (r + 1)
                                    fn = t * t * inv
                                    part[uc, np.uintp(r)] += sw * (f - fn)
                                    f = fn
                                part[uc, np.uintp(rhi)] += sw * f
                            full[uc, ulo] += sw
                            rmin[uc] = min(rmin[uc], rlo)
                            rmax[uc] = max(rmax[uc], rhi)
                        u0 = u1
                        y0 = y1
                # scatter: overlap_signed = -(part + widths of the pieces above), dow = w *
                # overlap / jaco. Only the rows the quad occupies in a column are visited: the
                # widths below its lowest point cancel mathematically (their rounding residue
                # must not become a contribution).
                d = data[j, i] * iscale
                fac = -w / jaco
                for c in range(ncol):
                    lx = c0 + c - ox
                    inx = lx >= 0 and lx < tw
                    acc = 0.0
                    uc = np.uintp(c)
                    for r in range(rmax[uc], rmin[uc] - 1, -1):
                        ur = np.uintp(r)
                        a = part[uc, ur] + acc
                        acc += full[uc, ur]
                        part[uc, ur] = 0.0
                        full[uc, ur] = 0.0
                        ly = r0 + r - oy
                        if inx and ly >= 0 and ly < th and a != 0.0:
                            _accumulate(
                                num,
                                den,
                                ctx,
                                use_ctx,
                                ctxmask,
                                ly,
                                lx,
                                a * fac,
                                d,
                                num2,
                                data2,
                                iscale2,
                                dq,
                                dqo,
                                direct,
                                count,
                                j,
                                i,
                            )


@njit(nogil=True, cache=True)
def drizzle_point(
    data, weight, pixmap, j0, j1, i0, i1, num, den, ctx, ctxmask, oy, ox, sx, iscale, ext,
    width=0
):
    """Point kernel: all of the pixel's weight goes to the output pixel holding its centre.

    ``width`` 0: input rows scanned whole, in raster order (C's order); else in strips of
    ``width`` columns anchored to the chip (``sx``), which keeps the output lines of the last
    rows cached where the map turns input rows across output rows (see ``POINT_STRIP``).
    """
    th, tw = num.shape
    uth = np.uintp(th)
    utw = np.uintp(tw)
    use_ctx = ctx.shape[0] > 0
    num2, data2, iscale2, dq, dqo, direct, stats, count = ext
    wid = width if width > 0 else max(i1 - i0, 1)
    ns = _nstrips(i0, i1, sx if width > 0 else -i0, wid)
    for strip in range(ns):
        s0, s1 = _strip(i0, i1, sx if width > 0 else -i0, strip, wid)
        for j in range(j0, j1):
            hit = False
            for i in range(s0, s1):
                w = weight[j, i]
                if w == 0.0:
                    _miss(stats)
                    continue
                x = pixmap[j, i, 0]
                y = pixmap[j, i, 1]
                if not (math.isfinite(x) and math.isfinite(y)):
                    _miss(stats)
                    continue
                lx = _round_away(x) - ox
                ly = _round_away(y) - oy
                # one unsigned test per axis: a negative index wraps to a huge one
                if np.uintp(lx) >= utw or np.uintp(ly) >= uth:
                    _miss(stats)
                    continue
                hit = True
                _accumulate(
                    num,
                    den,
                    ctx,
                    use_ctx,
                    ctxmask,
                    ly,
                    lx,
                    float(w),
                    data[j, i] * iscale,
                    num2,
                    data2,
                    iscale2,
                    dq,
                    dqo,
                    direct,
                    count,
                    j,
                    i,
                )
            if hit:
                _hit(stats, j - j0)


@njit(nogil=True, cache=True)
def drizzle_turbo(
    data,
    weight,
    pixmap,
    j0,
    j1,
    i0,
    i1,
    num,
    den,
    ctx,
    ctxmask,
    oy,
    ox,
    sx,
    pixfrac,
    iscale,
    pscale,
    ext,
):
    """Turbo kernel: axis-aligned box of half-width ``pixfrac / (2 s)`` around the mapped centre."""
    th, tw = num.shape
    use_ctx = ctx.shape[0] > 0
    num2, data2, iscale2, dq, dqo, direct, stats, count = ext
    pfo = 0.5 * pixfrac / pscale
    ac = (pscale * pscale) / (pixfrac * pixfrac)
    ns = _nstrips(i0, i1, sx)
    for strip in range(ns):
        s0, s1 = _strip(i0, i1, sx, strip)
        for j in range(j0, j1):
            for i in range(s0, s1):
                w = weight[j, i]
                if w == 0.0:
                    _miss(stats)
                    continue
                x = pixmap[j, i, 0]
                y = pixmap[j, i, 1]
                if not (math.isfinite(x) and math.isfinite(y)):
                    _miss(stats)
                    continue
                xlo = x - pfo
                xhi = x + pfo
                ylo = y - pfo
                yhi = y + pfo
                c0 = max(_cell(xlo), ox)
                c1 = min(_cell(xhi), ox + tw - 1)
                r0 = max(_cell(ylo), oy)
                r1 = min(_cell(yhi), oy + th - 1)
                if c0 > c1 or r0 > r1:
                    _miss(stats)
                    continue
                _hit(stats, j - j0)
                d = data[j, i] * iscale
                wac = w * ac
                for jj in range(r0, r1 + 1):
                    oyv = min(yhi, jj + 0.5) - max(ylo, jj - 0.5)
                    if oyv <= 0.0:
                        continue
                    for ii in range(c0, c1 + 1):
                        oxv = min(xhi, ii + 0.5) - max(xlo, ii - 0.5)
                        if oxv <= 0.0:
                            continue
                        _accumulate(
                            num,
                            den,
                            ctx,
                            use_ctx,
                            ctxmask,
                            jj - oy,
                            ii - ox,
                            oxv * oyv * wac,
                            d,
                            num2,
                            data2,
                            iscale2,
                            dq,
                            dqo,
                            direct,
                            count,
                            j,
                            i,
                        )


@njit(nogil=True, cache=True)
def drizzle_gaussian(
    data,
    weight,
    pixmap,
    j0,
    j1,
    i0,
    i1,
    num,
    den,
    ctx,
    ctxmask,
    oy,
    ox,
    sx,
    pixfrac,
    iscale,
    pscale,
    ext,
):
    """Gaussian kernel: unit-integral Gaussian of FWHM ``pixfrac`` input pixels (C cut-off box)."""
    th, tw = num.shape
    use_ctx = ctx.shape[0] > 0
    num2, data2, iscale2, dq, dqo, direct, stats, count = ext
    pfo = max(2.5 * pixfrac / 2.3548 / pscale, 1.2 / pscale)
    efac = 2.3548 * 2.3548 * pscale * pscale / (2.0 * pixfrac * pixfrac)
    es = efac / math.pi
    ns = _nstrips(i0, i1, sx)
    for strip in range(ns):
        s0, s1 = _strip(i0, i1, sx, strip)
        for j in range(j0, j1):
            for i in range(s0, s1):
                w = weight[j, i]
                if w == 0.0:
                    _miss(stats)
                    continue
                x = pixmap[j, i, 0]
                y = pixmap[j, i, 1]
                if not (math.isfinite(x) and math.isfinite(y)):
                    _miss(stats)
                    continue
                c0 = max(_round_away(x - pfo), ox)
                c1 = min(_round_away(x + pfo), ox + tw - 1)
                r0 = max(_round_away(y - pfo), oy)
                r1 = min(_round_away(y + pfo), oy + th - 1)
                if c0 > c1 or r0 > r1:
                    _miss(stats)
                    continue
                _hit(stats, j - j0)
                d = data[j, i] * iscale
                for jj in range(r0, r1 + 1):
                    ddy = y - jj
                    for ii in range(c0, c1 + 1):
                        ddx = x - ii
                        dow = es * math.exp(-(ddx * ddx + ddy * ddy) * efac) * w
                        if dow != 0.0:
                            _accumulate(
                                num,
                                den,
                                ctx,
                                use_ctx,
                                ctxmask,
                                jj - oy,
                                ii - ox,
                                dow,
                                d,
                                num2,
                                data2,
                                iscale2,
                                dq,
                                dqo,
                                direct,
                                count,
                                j,
                                i,
                            )


@njit(nogil=True, cache=True)
def lanczos_lut(order):
    """``L(u) = sinc(u) sinc(u / order)`` sampled every 0.003 on ``[0, order]`` (float32)."""
    n = int(math.ceil(order / LANCZOS_LUT_STEP)) + 1
    lut = np.empty(n, np.float32)
    lut[0] = 1.0
    for k in range(1, n):
        u = k * LANCZOS_LUT_STEP
        pu = math.pi * u
        lut[k] = (math.sin(pu) / pu) * (math.sin(pu / order) / (pu / order))
    return lut


@njit(nogil=True, cache=True)
def drizzle_lanczos(
    data,
    weight,
    pixmap,
    j0,
    j1,
    i0,
    i1,
    num,
    den,
    ctx,
    ctxmask,
    oy,
    ox,
    sx,
    iscale,
    pscale,
    lut,
    order,
    normalize,
    ext,
):
    """Lanczos kernel of the given order, weights from the 0.003-step LUT.

    With ``normalize`` the weights of each input pixel are divided by their sum over the whole
    kernel footprint (on or off the output), so each pixel adds exactly ``w`` of weight; without
    it the weights are those of the C code (summing to about ``1 / s**2``).
    """
    th, tw = num.shape
    use_ctx = ctx.shape[0] > 0
    num2, data2, iscale2, dq, dqo, direct, stats, count = ext
    # the C code keeps the scale ratio in single precision; using the same value makes the LUT
    # indices (rounded) identical to C's
    pscale = np.float64(np.float32(pscale))
    pfo = order / pscale
    nlut = lut.shape[0]
    scl = pscale / LANCZOS_LUT_STEP
    nk = int(2 * pfo) + 3
    wx = np.empty(nk)
    wy = np.empty(nk)
    ns = _nstrips(i0, i1, sx)
    for strip in range(ns):
        s0, s1 = _strip(i0, i1, sx, strip)
        for j in range(j0, j1):
            for i in range(s0, s1):
                w = weight[j, i]
                if w == 0.0:
                    _miss(stats)
                    continue
                x = pixmap[j, i, 0]
                y = pixmap[j, i, 1]
                if not (math.isfinite(x) and math.isfinite(y)):
                    _miss(stats)
                    continue
                c0 = int(math.floor(x - pfo)) + 1
                c1 = int(math.floor(x + pfo))
                r0 = int(math.floor(y - pfo)) + 1
                r1 = int(math.floor(y + pfo))
                if c1 < ox or c0 >= ox + tw or r1 < oy or r0 >= oy + th:
                    _miss(stats)
                    continue
                sumx = 0.0
                for ii in range(c0, c1 + 1):
                    k = int(math.floor(abs(x - ii) * scl + 0.5))
                    v = float(lut[k]) if k < nlut else 0.0
                    wx[ii - c0] = v
                    sumx += v
                sumy = 0.0
                for jj in range(r0, r1 + 1):
                    k = int(math.floor(abs(y - jj) * scl + 0.5))
                    v = float(lut[k]) if k < nlut else 0.0
                    wy[jj - r0] = v
                    sumy += v
                ws = w
                if normalize:
                    tot = sumx * sumy
                    if tot == 0.0:
                        _miss(stats)
                        continue
                    ws = w / tot
                _hit(stats, j - j0)
                d = data[j, i] * iscale
                for jj in range(max(r0, oy), min(r1, oy + th - 1) + 1):
                    vy = wy[jj - r0]
                    if vy == 0.0:
                        continue
                    for ii in range(max(c0, ox), min(c1, ox + tw - 1) + 1):
                        vx = wx[ii - c0]
                        if vx == 0.0:
                            continue
                        _accumulate(
                            num,
                            den,
                            ctx,
                            use_ctx,
                            ctxmask,
                            jj - oy,
                            ii - ox,
                            vx * vy * ws,
                            d,
                            num2,
                            data2,
                            iscale2,
                            dq,
                            dqo,
                            direct,
                            count,
                            j,
                            i,
                        )


@njit(nogil=True, cache=True)
def _pixel_reach(pixmap, j, i, kind, radius):
    """Half-sizes ``(rx, ry)`` in output pixels bounding the footprint of input pixel (i, j).

    ``kind`` 0 (square): ``radius`` times the largest step of the pixmap to the 8 neighbours
    (bilinear corners, extrapolated at the edges or affine next to NaNs, stay inside it);
    1: the fixed kernel ``radius``.
    """
    if kind != 0:
        return radius, radius
    ny, nx = pixmap.shape[0], pixmap.shape[1]
    x = pixmap[j, i, 0]
    y = pixmap[j, i, 1]
    rx = 0.0
    ry = 0.0
    for jn in range(max(j - 1, 0), min(j + 2, ny)):
        for iN in range(max(i - 1, 0), min(i + 2, nx)):
            ex = abs(pixmap[jn, iN, 0] - x)
            ey = abs(pixmap[jn, iN, 1] - y)
            if ex > rx:
                rx = ex
            if ey > ry:
                ry = ey
    return radius * rx, radius * ry


@njit(nogil=True, cache=True)
def footprint_bbox(pixmap, sj0, sj1, si0, si1, wy0, wy1, wx0, wx1, kind, radius):
    """Bounding box of the input pixels of ``[sj0:sj1, si0:si1]`` whose footprint can touch the
    output window ``[wy0:wy1, wx0:wx1]`` (footprints as in :func:`_pixel_reach`).

    Returns ``(j0, j1, i0, i1)`` half-open, or ``j1 == 0`` when nothing touches the window.

    Only the pixels near the window's edges need their own reach: a centre inside the window
    touches it whatever the reach, and one beyond an edge by more than a bound of every
    reach here (square: :func:`_landing_bound`'s, from one vectorised pass, when the
    positions around are all finite) cannot, so the result is the same as testing every
    pixel with its own reach.
    """
    ny, nx = pixmap.shape[0], pixmap.shape[1]
    lox = wx0 - 0.5
    hix = wx1 - 0.5
    loy = wy0 - 0.5
    hiy = wy1 - 0.5
    eps = 1e-6
    if sj1 <= sj0 or si1 <= si0:
        return 0, 0, 0, 0
    coarse = True
    if kind == 0:
        bx, by, _, _ = _landing_bound(pixmap, (sj0, sj1, si0, si1), radius, False)
        coarse = bx >= 0.0
    else:
        bx = by = radius
    bx += eps
    by += eps
    bj0 = ny
    bj1 = 0
    bi0 = nx
    bi1 = 0
    for j in range(sj0, sj1):
        for i in range(si0, si1):
            x = pixmap[j, i, 0]
            y = pixmap[j, i, 1]
            if not (math.isfinite(x) and math.isfinite(y)):
                continue
            if not (lox < x < hix and loy < y < hiy):
                if coarse and (x + bx <= lox or x - bx >= hix or y + by <= loy
                                  or y - by >= hiy):
                    continue
                rx, ry = _pixel_reach(pixmap, j, i, kind, radius)
                rx += eps
                ry += eps
                if x + rx <= lox or x - rx >= hix or y + ry <= loy or y - ry >= hiy:
                    continue
            if j < bj0:
                bj0 = j
            if j + 1 > bj1:
                bj1 = j + 1
            if i < bi0:
                bi0 = i
            if i + 1 > bi1:
                bi1 = i + 1
    if bj1 == 0:
        return 0, 0, 0, 0
    return bj0, bj1, bi0, bi1


@njit(nogil=True, cache=True)
def block_extents(pixmap, block, kind, radius):
    """Footprint extent ``(xmin, xmax, ymin, ymax)`` (output frame, eps-padded) of every
    ``block x block`` group of input pixels; ``+inf/-inf`` for blocks without a valid pixel."""
    ny, nx = pixmap.shape[0], pixmap.shape[1]
    nby = (ny + block - 1) // block
    nbx = (nx + block - 1) // block
    ext = np.empty((nby, nbx, 4))
    ext[:, :, 0] = np.inf
    ext[:, :, 1] = -np.inf
    ext[:, :, 2] = np.inf
    ext[:, :, 3] = -np.inf
    eps = 1e-6
    for j in range(ny):
        bj = j // block
        for i in range(nx):
            x = pixmap[j, i, 0]
            y = pixmap[j, i, 1]
            if not (math.isfinite(x) and math.isfinite(y)):
                continue
            rx, ry = _pixel_reach(pixmap, j, i, kind, radius)
            bi = i // block
            ext[bj, bi, 0] = min(ext[bj, bi, 0], x - rx - eps)
            ext[bj, bi, 1] = max(ext[bj, bi, 1], x + rx + eps)
            ext[bj, bi, 2] = min(ext[bj, bi, 2], y - ry - eps)
            ext[bj, bi, 3] = max(ext[bj, bi, 3], y + ry + eps)
    return ext


@njit(nogil=True, cache=True)
def _max_steps(pixmap, j0, j1, i0, i1):
    """Largest ``|x|`` and ``|y|`` steps of the pixmap between any two 8-connected neighbours of
    ``[j0:j1, i0:i1]`` grown by one pixel (NaN steps are ignored, as in :func:`_pixel_reach`).

    The steps are kept per position of the flattened ``(x, y)`` rows (:func:`_max_into`,
    element-wise, so the loops vectorise without fast-math) and reduced once at the end; a
    maximum does not depend on the order, so the values are those of a pixel-by-pixel scan."""
    ny, nx = pixmap.shape[0], pixmap.shape[1]
    ja = max(j0 - 1, 0)
    jb = min(j1 + 1, ny)
    ia = max(i0 - 1, 0)
    ib = min(i1 + 1, nx)
    mx = 0.0
    my = 0.0
    if ib <= ia:
        return mx, my
    n = 2 * (ib - ia)
    acc = np.zeros(n)
    k0 = 2 * ia
    for j in range(ja, jb):
        cur = pixmap[j].reshape(-1)
        # row neighbours (i, i + 1)
        _max_into(acc, 0, cur, k0, cur, k0 + 2, n - 2)
        if j + 1 < jb:
            nxt = pixmap[j + 1].reshape(-1)
            # (i, j) to (i + di, j + 1), di = 0, +1, -1
            _max_into(acc, 0, cur, k0, nxt, k0, n)
            _max_into(acc, 0, cur, k0, nxt, k0 + 2, n - 2)
            _max_into(acc, 2, cur, k0 + 2, nxt, k0, n - 2)
    for k in range(0, n, 2):
        mx = acc[k] if acc[k] > mx else mx
        my = acc[k + 1] if acc[k + 1] > my else my
    return mx, my


@njit(nogil=True, cache=True, inline="always")
def _max_into(acc, q, a, ka, b, kb, n):
    """``acc[q + p] = max(acc[q + p], |b[kb + p] - a[ka + p]|)`` for ``p < n``, a NaN step
    leaving ``acc`` as it is (unsigned indices: the loop vectorises)."""
    uq = np.uintp(q)
    ua = np.uintp(ka)
    ub = np.uintp(kb)
    for p in range(np.uintp(n)):
        e = abs(b[ub + p] - a[ua + p])
        m = acc[uq + p]
        acc[uq + p] = e if e > m else m


@njit(nogil=True, cache=True)
def _reach_bound(pixmap, j0, j1, i0, i1, kind, radius):
    """Global bound ``(bx, by)`` of the footprint reach of the pixels of the box."""
    if kind == 0:
        mx, my = _max_steps(pixmap, j0, j1, i0, i1)
        return radius * mx, radius * my
    return radius, radius


@njit(nogil=True, cache=True)
def _extent_box(pixmap, j0, j1, i0, i1, kind, radius, oh, ow, bx, by, hit, hoff):
    """Extent ``(ymin, ymax, xmin, xmax)`` and miss count of the box (see footprint_extent);
    sets ``hit[j - hoff]`` for the rows with a footprint on the output."""
    xmn = np.inf
    xmx = -np.inf
    ymn = np.inf
    ymx = -np.inf
    nmiss = 0
    lo_x = -0.5
    lo_y = -0.5
    hi_x = ow - 0.5
    hi_y = oh - 0.5
    ix0 = lo_x + bx
    ix1 = hi_x - bx
    iy0 = lo_y + by
    iy1 = hi_y - by
    for j in range(j0, j1):
        row_hit = False
        for i in range(i0, i1):
            x = pixmap[j, i, 0]
            y = pixmap[j, i, 1]
            if not (math.isfinite(x) and math.isfinite(y)):
                nmiss += 1
                continue
            if x > ix0 and x < ix1 and y > iy0 and y < iy1:
                rx = bx
                ry = by
            else:
                rx, ry = _pixel_reach(pixmap, j, i, kind, radius)
                if x + rx <= lo_x or x - rx >= hi_x or y + ry <= lo_y or y - ry >= hi_y:
                    nmiss += 1
                    continue
            row_hit = True
            xmn = min(xmn, x - rx)
            xmx = max(xmx, x + rx)
            ymn = min(ymn, y - ry)
            ymx = max(ymx, y + ry)
        if row_hit:
            hit[j - hoff] = True
    return ymn, ymx, xmn, xmx, nmiss


@njit(nogil=True, cache=True)
def footprint_extent(pixmap, j0, j1, i0, i1, kind, radius, oh, ow):
    """Extent of the footprints of ``[j0:j1, i0:i1]`` that touch an ``(oh, ow)`` output.

    Same footprint bound as :func:`footprint_bbox`. Returns ``(ymin, ymax, xmin, xmax, nmiss,
    nskip)``: a conservative output-frame extent of the footprints (NaNs if no footprint touches
    the output), the number of pixels that are NaN or whose footprint misses the output, and the
    number of rows with no footprint on it.

    For speed, a pixel whose centre lies farther inside the output than a global bound of the
    reach (square: ``radius`` times the largest step between 8-connected neighbours anywhere in
    the box) is counted without its exact reach, and the bound is used for the extent; only
    pixels near the output border get the exact 9-neighbour reach. The counts are exactly those
    of the exact test (such a pixel hits the output whatever its reach); the extent can be
    larger (by the difference between the global and the local reach, about a pixel for HST).
    """
    bx, by = _reach_bound(pixmap, j0, j1, i0, i1, kind, radius)
    hit = np.zeros(max(j1 - j0, 0), np.bool_)
    ymn, ymx, xmn, xmx, nmiss = _extent_box(
        pixmap, j0, j1, i0, i1, kind, radius, oh, ow, bx, by, hit, j0
    )
    nskip = (j1 - j0) - int(hit.sum())
    if xmn > xmx:
        return np.nan, np.nan, np.nan, np.nan, nmiss, nskip
    return ymn, ymx, xmn, xmx, nmiss, nskip


@njit(nogil=True, cache=True)
def footprint_extents_blocked(pixmap, j0, j1, i0, i1, kind, radius, oh, ow, block):
    """:func:`footprint_extent` per ``block x block`` group of input pixels of the box.

    Blocks start at ``j0`` and ``i0``. Returns ``ext`` of shape ``(nby, nbx, 4)`` holding each
    block's ``(ymin, ymax, xmin, xmax)`` (NaNs for a block with no footprint on the output), and
    ``nmiss`` and ``nskip`` for the whole box, exactly as :func:`footprint_extent`.
    """
    nby = (j1 - j0 + block - 1) // block
    nbx = (i1 - i0 + block - 1) // block
    ext = np.full((nby, nbx, 4), np.nan)
    bx, by = _reach_bound(pixmap, j0, j1, i0, i1, kind, radius)
    hit = np.zeros(j1 - j0, np.bool_)
    nmiss = 0
    for kb in range(nby):
        ja = j0 + kb * block
        jb = min(ja + block, j1)
        for lb in range(nbx):
            ia = i0 + lb * block
            ib = min(ia + block, i1)
            ymn, ymx, xmn, xmx, m = _extent_box(
                pixmap, ja, jb, ia, ib, kind, radius, oh, ow, bx, by, hit, j0
            )
            nmiss += m
            if xmn <= xmx:
                ext[kb, lb, 0] = ymn
                ext[kb, lb, 1] = ymx
                ext[kb, lb, 2] = xmn
                ext[kb, lb, 3] = xmx
    nskip = (j1 - j0) - int(hit.sum())
    return ext, nmiss, nskip


@njit(nogil=True, cache=True)
def merge_and_clear(out, wht, octx, num, den, ctx, wy0, wx0, use_ctx):
    """:func:`merge_running_mean` of one window, OR-ing its context scratch ``ctx`` into the
    output context plane ``octx`` (if ``use_ctx``), then zeroing ``num``, ``den`` and ``ctx`` so
    the scratch can be reused for the next window."""
    th, tw = num.shape
    for y in range(th):
        for x in range(tw):
            dw = den[y, x]
            nm = num[y, x]
            den[y, x] = 0.0
            num[y, x] = 0.0
            if use_ctx:
                octx[y + wy0, x + wx0] |= ctx[y, x]
                ctx[y, x] = 0
            if dw == 0.0:
                continue
            vc = float(wht[y + wy0, x + wx0])
            tot = vc + dw
            if vc == 0.0:
                out[y + wy0, x + wx0] = nm / dw
            else:
                out[y + wy0, x + wx0] = (float(out[y + wy0, x + wx0]) * vc + nm) / tot
            wht[y + wy0, x + wx0] = tot


@njit(nogil=True, cache=True)
def merge_running_mean(out, wht, num, den, wy0, wx0):
    """Fold one image's accumulators into a C-compatible running mean ``out``/``wht`` (float32).

    ``out = (out * wht + num) / (wht + den)`` (``num / den`` where ``wht`` was 0) and
    ``wht += den``, for the window whose ``[0, 0]`` is at ``(wy0, wx0)`` of ``out``.
    """
    th, tw = num.shape
    for y in range(th):
        for x in range(tw):
            dw = den[y, x]
            if dw == 0.0:
                continue
            vc = float(wht[y + wy0, x + wx0])
            tot = vc + dw
            if vc == 0.0:
                out[y + wy0, x + wx0] = num[y, x] / dw
            else:
                out[y + wy0, x + wx0] = (float(out[y + wy0, x + wx0]) * vc + num[y, x]) / tot
            wht[y + wy0, x + wx0] = tot
