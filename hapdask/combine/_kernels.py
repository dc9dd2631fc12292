"""numba kernels of the combine package (private; plain arrays in and out).

Floating point follows AstroDrizzle's own arithmetic so that results can be compared bit for bit:

* ``stsci.image`` combines convert the inputs to float64, sort the good values of a pixel, and
  store the float64 median/mean into a float32 output.
* ``minmed`` mixes float32 arrays (images, weights, their products) with float64 ones (background,
  read noise, rms); every float32 operation here is done in float64 and rounded to float32, which
  gives the correctly rounded float32 result for ``+ - * / sqrt`` (53 >= 2 * 24 + 2 bits).
* ``driz_cr`` is evaluated by AstroDrizzle entirely in float32 (float32 arrays with Python float
  scalars, NumPy 2 promotion rules); it is emulated the same way.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

KIND_MEDIAN = 0
KIND_MEAN = 1


@njit(nogil=True, cache=True)
def _f32(x):
    return np.float32(x)


@njit(nogil=True, cache=True)
def _insert_sorted(buf, g, v):
    """Insert ``v`` into the ascending ``buf[:g]`` (insertion sort step); return ``g + 1``."""
    k = g
    while k > 0 and buf[k - 1] > v:
        buf[k] = buf[k - 1]
        k -= 1
    buf[k] = v
    return g + 1


@njit(nogil=True, cache=True)
def _gather_sorted(images, weights, thr, lo, hi, y, x, buf):
    """Insert the valid values of pixel ``(y, x)`` of the ``(n, ny, nx)`` stacks into ``buf``
    in ascending order; return the count.

    Valid: weight > 0, not weight < thr[i], finite value, not value < lo, not value >= hi
    (lo/hi are float32; +-inf disables them). The stacks are read in place: the loops over a
    row's pixels stream each image's row (a pixel-major copy of the row cost more).
    """
    g = 0
    for i in range(images.shape[0]):
        wt = np.float64(weights[i, y, x])
        v32 = images[i, y, x]
        # weight > 0 (False for NaN), not below the cut, value finite and within [lo, hi)
        if not (wt > 0.0 and wt >= thr[i] and v32 >= lo and v32 < hi and v32 - v32 == 0):
            continue
        g = _insert_sorted(buf, g, np.float64(v32))
    return g


@njit(nogil=True, cache=True)
def _first_nonzero(images, y, x, buf):
    """The 'i' combine types: with no valid value, use the first non-zero input value."""
    for i in range(images.shape[0]):
        if images[i, y, x] != 0:
            buf[0] = np.float64(images[i, y, x])
            return 1
    return 0


@njit(nogil=True, cache=True)
def _median_of(buf, g, nlow, nhigh):
    """Median of ``buf[:g]`` after rejecting ``nlow`` low and ``nhigh`` high values.

    When the rejection would leave nothing, both counts are lowered one step at a time until a
    value remains (IRAF imcombine / stsci.image behaviour); no value at all gives 0.
    """
    if g <= 0:
        return 0.0
    while nlow + nhigh >= g:
        if nhigh > 0:
            nhigh -= 1
        if nlow > 0:
            nlow -= 1
    m = g - nlow - nhigh
    mid = m // 2
    if m % 2:
        return buf[mid + nlow]
    return (buf[mid + nlow] + buf[mid + nlow - 1]) / 2.0


@njit(nogil=True, cache=True)
def _mean_of(buf, g, nlow, nhigh):
    """Mean of ``buf[:g]`` after rejecting ``nlow``/``nhigh`` values; nothing left gives 0."""
    m = g - nlow - nhigh
    if m <= 0:
        return 0.0
    s = 0.0
    for k in range(nlow, nlow + m):
        s += buf[k]
    return s / m


@njit(nogil=True, cache=True)
def numcombine(images, weights, thr, lo, hi, kind, nlow, nhigh, fill, out):
    """Median or mean over the valid values of every pixel (``stsci.image`` semantics).

    images, weights (n, ny, nx) float32; thr (n,) float64 weight cut; lo/hi float32 value
    thresholds; out (ny, nx) float32.
    """
    n, ny, nx = images.shape
    buf = np.empty(max(n, 1), np.float64)
    for y in range(ny):
        for x in range(nx):
            g = _gather_sorted(images, weights, thr, lo, hi, y, x, buf)
            if g == 0 and fill:
                g = _first_nonzero(images, y, x, buf)
            if kind == KIND_MEDIAN:
                out[y, x] = _f32(_median_of(buf, g, nlow, nhigh))
            else:
                out[y, x] = _f32(_mean_of(buf, g, nlow, nhigh))


@njit(nogil=True, cache=True)
def minmed_pass1(images, weights, thr, sky_rate, rn2, n_inputs, fill, nsigma1, nsigma2,
                 minimum, median, flag1, take2, allbad):
    """Per-pixel part of AstroDrizzle's ``minmed``.

    thr[i] = weight cut of image i; sky_rate[i] = background electrons / exptime of image i;
    rn2[i] = readnoise**2 (e-**2). Fills minimum/median (float32 data values), flag1 (the minimum
    wins at nsigma1), take2 (it wins at nsigma2) and allbad (no valid input).
    """
    n, ny, nx = images.shape
    buf = np.empty(max(n, 1), np.float64)
    for y in range(ny):
        for x in range(nx):
            # one pass over the inputs: the sorted valid values (as _gather_sorted), the
            # float32 weight sum, the background and the read-noise terms
            g = 0
            w = np.float32(0.0)
            bk = 0.0
            rn = 0.0
            for i in range(n):
                wi = weights[i, y, x]
                v32 = images[i, y, x]
                w = _f32(np.float64(w) + np.float64(wi))
                bk += np.float64(wi) * sky_rate[i]
                wt = np.float64(wi)
                if not (wt > 0.0 and wt >= thr[i] and v32 - v32 == 0):
                    continue
                rn += rn2[i]
                g = _insert_sorted(buf, g, np.float64(v32))
            allbad[y, x] = g == 0
            # minimum of the valid values (0 if none)
            mn = buf[0] if g > 0 else 0.0
            if g == 0:
                rn = 0.0
                if fill:
                    g = _first_nonzero(images, y, x, buf)
            if n_inputs == 2:
                md = _mean_of(buf, g, 0, 0)
            else:
                md = _median_of(buf, g, 0, 1)
            mn32 = _f32(mn)
            md32 = _f32(md)
            minimum[y, x] = mn32
            median[y, x] = md32
            mw = np.float64(_f32(np.float64(mn32) * np.float64(w)))
            dw = np.float64(_f32(np.float64(md32) * np.float64(w)))
            r2 = dw + bk + rn
            rms = math.sqrt(r2) if r2 > 0.0 else 0.0
            flag1[y, x] = mw < dw - rms * nsigma1
            take2[y, x] = mw < dw - rms * nsigma2


#: largest stack :func:`minmed_rows` takes (its rank sort makes n * (n - 1) passes over a row)
MINMED_ROWS_MAX = 8


@njit(nogil=True, cache=True)
def _minmed_emit(yo, ny, grow, R, mins_r, meds_r, f1_r, t2_r, bad_r, across_r, near, out):
    """Output row ``yo`` of :func:`minmed_rows` from its ring of rows (:func:`minmed_pass2`'s
    choice: the rows ``yo - grow .. yo + grow`` within the frame are in the ring)."""
    nx = near.shape[0]
    s = yo % R
    o = out[yo]
    mnr = mins_r[s]
    mdr = meds_r[s]
    b = bad_r[s]
    if grow > 0:
        near[:] = 0
        for yy in range(max(0, yo - grow), min(ny, yo + grow + 1)):
            a = across_r[yy % R]
            for x in range(nx):
                near[x] |= a[x]
        t = t2_r[s]
        for x in range(nx):
            v = mnr[x] if (near[x] & t[x]) != 0 else mdr[x]
            o[x] = np.float32(0.0) if b[x] != 0 else v
    else:
        f = f1_r[s]
        for x in range(nx):
            v = mnr[x] if f[x] != 0 else mdr[x]
            o[x] = np.float32(0.0) if b[x] != 0 else v


@njit(nogil=True, cache=True)
def minmed_rows(images, weights, thr, sky_rate, rn2, mean2, nsigma1, nsigma2, grow, out):
    """:func:`minmed_pass1` then :func:`minmed_pass2` without the ``i`` fill (``mean2``:
    ``n_inputs == 2``, the mean of the valid values as :func:`_mean_of`, else the median less
    the highest), a row at a time in branch-free loops over the row's pixels (vectorised) instead of
    a sort per pixel, each output row made once the ``grow`` rows after it are known (a ring
    of ``2 grow + 1`` rows instead of whole-tile temporaries).

    The valid values of a pixel are ranked (the number of smaller values, ties in stack order:
    the positions of a stable sort, as :func:`_insert_sorted` gives), invalid ones get +inf
    and rank after them; the minimum and the two middle values are picked by rank. The sums
    (weight, background, read noise) are taken in stack order per pixel as in
    :func:`minmed_pass1` (adding 0.0 for an invalid input changes no sum: they are >= +0), so
    every output is the same bits.
    """
    n, ny, nx = images.shape
    R = 2 * grow + 1
    vals = np.empty((n, nx), np.float32)  # float32: exact values, twice the lanes
    rank = np.empty((n, nx), np.int32)
    cnt = np.empty(nx, np.int32)
    wsum = np.empty(nx, np.float32)
    bks = np.empty(nx, np.float64)
    rns = np.empty(nx, np.float64)
    lo = np.empty(nx, np.float32)
    hi = np.empty(nx, np.float32)
    mins = np.empty(nx, np.float32)
    rlo = np.empty(nx, np.int32)
    rhi = np.empty(nx, np.int32)
    mins_r = np.empty((R, nx), np.float32)
    meds_r = np.empty((R, nx), np.float32)
    f1_r = np.empty((R, nx), np.uint8)
    t2_r = np.empty((R, nx), np.uint8)
    bad_r = np.empty((R, nx), np.uint8)
    across_r = np.zeros((R, nx), np.uint8)
    near = np.empty(nx, np.uint8)
    inf = np.float32(np.inf)
    done = 0
    for y in range(ny):
        cnt[:] = 0
        wsum[:] = 0.0
        bks[:] = 0.0
        rns[:] = 0.0
        for i in range(n):
            irow = images[i, y]
            wrow = weights[i, y]
            vi = vals[i]
            ti = thr[i]
            si = sky_rate[i]
            ri = rn2[i]
            for x in range(nx):
                wt = np.float64(wrow[x])
                v = irow[x]
                ok = (wt > 0.0) & (wt >= ti) & (v - v == 0)
                vi[x] = v if ok else inf
                cnt[x] += ok
                wsum[x] = np.float32(np.float64(wsum[x]) + wt)
                bks[x] += wt * si
                rns[x] += ri if ok else 0.0
        # stable ranks: earlier inputs (j < i) rank before equal values
        for i in range(n):
            ri_ = rank[i]
            ri_[:] = 0
            vi = vals[i]
            for j in range(n):
                vj = vals[j]
                if j < i:
                    for x in range(nx):
                        ri_[x] += vj[x] <= vi[x]
                elif j > i:
                    for x in range(nx):
                        ri_[x] += vj[x] < vi[x]
        # the median of the g valid values less the highest (_median_of(.., 0, 1)): m = g - 1
        # values (1 for g == 1), the mean of ranks (m - 1) // 2 and m // 2 when m is even
        for x in range(nx):
            lo[x] = 0
            hi[x] = 0
            mins[x] = 0
            m = max(cnt[x] - 1, 1)
            rlo[x] = 0 if mean2 else (m - 1) >> 1
            rhi[x] = 1 if mean2 else m >> 1
        for i in range(n):
            ri_ = rank[i]
            vi = vals[i]
            for x in range(nx):
                r = ri_[x]
                v = vi[x]
                lo[x] = v if r == rlo[x] else lo[x]
                hi[x] = v if r == rhi[x] else hi[x]
                mins[x] = v if r == 0 else mins[x]
        s = y % R
        mnr = mins_r[s]
        mdr = meds_r[s]
        f1 = f1_r[s]
        t2 = t2_r[s]
        ab = bad_r[s]
        for x in range(nx):
            g = cnt[x]
            m = max(g - 1, 1)
            h = np.float64(hi[x])
            if mean2:  # _mean_of: 0.0 + the values in order, over their count (1 or 2)
                lv = 0.0 + np.float64(lo[x])
                md = (lv + h) / 2.0 if g >= 2 else lv
            else:
                md = h if m % 2 == 1 else (h + np.float64(lo[x])) / 2.0
            none = g == 0
            mn = 0.0 if none else np.float64(mins[x])
            md = 0.0 if none else md
            rn = 0.0 if none else rns[x]
            mn32 = np.float32(mn)
            md32 = np.float32(md)
            mnr[x] = mn32
            mdr[x] = md32
            w = np.float64(wsum[x])
            mw = np.float64(np.float32(np.float64(mn32) * w))
            dw = np.float64(np.float32(np.float64(md32) * w))
            r2 = dw + bks[x] + rn
            rms = math.sqrt(r2) if r2 > 0.0 else 0.0
            f1[x] = mw < dw - rms * nsigma1
            t2[x] = mw < dw - rms * nsigma2
            ab[x] = none
        if grow > 0:  # the flags OR-ed over 2 grow + 1 columns (beyond the edges: not flagged)
            a = across_r[s]
            a[:] = 0
            for d in range(-grow, grow + 1):
                x0 = max(0, -d)
                x1 = min(nx, nx - d)
                if x1 <= x0:
                    continue
                # slices indexed from 0: no negative-index wrap-around (gathers) in the loop
                dst = a[x0:x1]
                src = f1[x0 + d:x1 + d]
                for k in range(x1 - x0):
                    dst[k] |= src[k]
        while done <= y - grow:
            _minmed_emit(done, ny, grow, R, mins_r, meds_r, f1_r, t2_r, bad_r, across_r, near,
                         out)
            done += 1
    while done < ny:
        _minmed_emit(done, ny, grow, R, mins_r, meds_r, f1_r, t2_r, bad_r, across_r, near, out)
        done += 1


@njit(nogil=True, cache=True)
def minmed_pass2(minimum, median, flag1, take2, allbad, grow, out):
    """Choose minimum or median per pixel; within ``grow`` pixels (box) of a pixel where the
    minimum wins at nsigma1 the nsigma2 decision is used (``grow`` 0: nsigma1 everywhere).
    Pixels beyond the array edges count as not flagged (AstroDrizzle's zero-filled boxcar).

    The box test is separable: ``near`` = the flags OR-ed over ``2 grow + 1`` columns, then
    over as many rows (branch-free byte loops)."""
    ny, nx = minimum.shape
    near = np.zeros((ny if grow > 0 else 1, nx), np.uint8)
    if grow > 0:
        across = np.zeros((ny, nx), np.uint8)
        for y in range(ny):
            f = flag1[y].view(np.uint8)
            a = across[y]
            for d in range(-grow, grow + 1):
                for x in range(max(0, -d), min(nx, nx - d)):
                    a[x] |= f[x + d]
        for y in range(ny):
            r = near[y]
            for yy in range(max(0, y - grow), min(ny, y + grow + 1)):
                a = across[yy]
                for x in range(nx):
                    r[x] |= a[x]
    for y in range(ny):
        nr = near[y if grow > 0 else 0]
        f = flag1[y].view(np.uint8)
        t = take2[y].view(np.uint8)
        b = allbad[y].view(np.uint8)
        mnr = minimum[y]
        mdr = median[y]
        o = out[y]
        for x in range(nx):
            take = (nr[x] & t[x]) if grow > 0 else f[x]
            v = mnr[x] if take != 0 else mdr[x]
            o[x] = np.float32(0.0) if b[x] != 0 else v


# ------------------------------------------------------------------------------------------
# driz_cr


@njit(nogil=True, cache=True)
def _reflect(c, n):
    """scipy.signal 'symm' boundary: -1 -> 0, -2 -> 1, n -> n-1, n+1 -> n-2."""
    if c < 0:
        return -c - 1
    if c >= n:
        return 2 * n - c - 1
    return c


@njit(nogil=True, cache=True)
def _local(c, origin, size):
    """Region index of chip index ``c``, clamped into the region (only reached in the halo)."""
    k = c - origin
    if k < 0:
        return 0
    if k >= size:
        return size - 1
    return k


@njit(nogil=True, cache=True)
def _qderiv_at(a, y, x, oy, ox, NY, NX):
    """:func:`qderiv` of one pixel ``(y, x)`` of the region, any position (edge rules)."""
    h, w = a.shape
    i = oy + y
    j = ox + x
    v = np.float64(a[y, x])
    m = 0.0
    # left neighbour
    if i <= NY - 2 and 1 <= j <= NX - 2:
        d = abs(v - np.float64(a[y, _local(j - 1, ox, w)]))
    else:
        d = abs(v)
    m = max(m, d)
    # right neighbour
    if i <= NY - 2 and j <= NX - 3:
        d = abs(v - np.float64(a[y, _local(j + 1, ox, w)]))
    else:
        d = abs(v)
    m = max(m, d)
    # previous row
    if 1 <= i <= NY - 2 and j <= NX - 2:
        d = abs(v - np.float64(a[_local(i - 1, oy, h), x]))
    else:
        d = abs(v)
    m = max(m, d)
    # next row
    if i <= NY - 3 and j <= NX - 2:
        d = abs(v - np.float64(a[_local(i + 1, oy, h), x]))
    else:
        d = abs(v)
    m = max(m, d)
    return np.float32(m)


@njit(nogil=True, cache=True)
def qderiv(a, oy, ox, NY, NX, out):
    """AstroDrizzle's quick derivative of the region ``a`` whose [0, 0] is chip pixel (oy, ox).

    out = max over the 4 neighbours of |a - neighbour| (float64, stored as float32), where a
    neighbour that AstroDrizzle's shifted copies do not provide (the chip's last row, its last
    one or two columns, the first row/column depending on direction) counts as 0.

    Pixels whose four neighbours are all in the region and in the chip's shifted copies
    (region rows/columns 1 .. size - 2 at chip rows 1 .. NY - 3 and columns 1 .. NX - 3) take
    a loop without branches (the same operations as :func:`_qderiv_at`, vectorised); the
    others :func:`_qderiv_at`.
    """
    h, w = a.shape
    xa = max(1, 1 - ox)
    xb = min(w - 1, NX - 2 - ox)
    ya = max(1, 1 - oy)
    yb = min(h - 1, NY - 2 - oy)
    for y in range(h):
        if ya <= y < yb and xa < xb:
            for x in range(xa):
                out[y, x] = _qderiv_at(a, y, x, oy, ox, NY, NX)
            # slices indexed from 0: no negative-index wrap-around (gathers) in the loop
            mid = a[y, xa:xb]
            left = a[y, xa - 1:xb - 1]
            right = a[y, xa + 1:xb + 1]
            up = a[y - 1, xa:xb]
            dn = a[y + 1, xa:xb]
            o = out[y, xa:xb]
            for k in range(xb - xa):
                v = np.float64(mid[k])
                m = 0.0
                m = max(m, abs(v - np.float64(left[k])))
                m = max(m, abs(v - np.float64(right[k])))
                m = max(m, abs(v - np.float64(up[k])))
                m = max(m, abs(v - np.float64(dn[k])))
                o[k] = np.float32(m)
            for x in range(xb, w):
                out[y, x] = _qderiv_at(a, y, x, oy, ox, NY, NX)
        else:
            for x in range(w):
                out[y, x] = _qderiv_at(a, y, x, oy, ox, NY, NX)


@njit(nogil=True, cache=True)
def crmask(sci, blot, deriv, conv, backg, gain, rn2, snr1, snr2, mult1, mult2, grow, ctegrow,
           cte_dir, oy, ox, NY, NX, out):
    """AstroDrizzle's driz_cr on a region; out[y, x] = True where a cosmic ray is found.

    sci/blot/deriv float32 (deriv already in converted units); conv/backg/gain/rn2/snr/mult
    float32 scalars; grow, ctegrow, cte_dir ints; (oy, ox) = chip position of the region's [0, 0];
    (NY, NX) = chip shape.
    """
    h, w = sci.shape
    good1 = np.empty((h, w), np.bool_)
    good2 = np.empty((h, w), np.bool_)
    for y in range(h):
        for x in range(w):
            b = _f32(np.float64(blot[y, x]) * np.float64(conv))
            s = _f32(np.float64(sci[y, x]) * np.float64(conv))
            t1 = abs(_f32(np.float64(s) - np.float64(b)))
            a = abs(_f32(np.float64(b) + np.float64(backg)))
            a = _f32(np.float64(gain) * np.float64(a))
            a = _f32(np.float64(a) + np.float64(rn2))
            ta = _f32(math.sqrt(np.float64(a)))
            d = np.float64(deriv[y, x])
            u1 = _f32(np.float64(mult1) * d)
            v1 = _f32(_f32(np.float64(snr1) * np.float64(ta)) / np.float64(gain))
            u2 = _f32(np.float64(mult2) * d)
            v2 = _f32(_f32(np.float64(snr2) * np.float64(ta)) / np.float64(gain))
            good1[y, x] = t1 <= _f32(np.float64(u1) + np.float64(v1))
            good2[y, x] = t1 <= _f32(np.float64(u2) + np.float64(v2))
    # a pixel is good if it passes the second test or its whole 3x3 neighbourhood the first;
    # the neighbours' rows and columns (reflected at the chip's edges, clamped into the
    # region) from index tables, so the loops are branch-free byte ANDs
    ys = np.empty((3, h), np.int64)
    xs = np.empty((3, w), np.int64)
    for d in range(3):
        for y in range(h):
            ys[d, y] = _local(_reflect(oy + y + d - 1, NY), oy, h)
        for x in range(w):
            xs[d, x] = _local(_reflect(ox + x + d - 1, NX), ox, w)
    g1 = good1.view(np.uint8)
    g2 = good2.view(np.uint8)
    lo = grow // 2
    hi = (grow - 1) // 2
    m = lo + hi + 1
    nct = ctegrow if (ctegrow > 0 and cte_dir != 0) else 0
    if h == 0 or w == 0:  # nothing to flag (the edge columns below need w >= 1)
        return
    # no growth (grow 1, no CTE tail): the mask is "not good", written row by row
    direct = m == 1 and nct == 0
    good = np.empty((1 if direct else h, w), np.uint8)
    for y in range(h):
        r0 = g1[ys[0, y]]
        r1 = g1[ys[1, y]]
        r2 = g1[ys[2, y]]
        g = good[0 if direct else y]
        s2 = g2[y]
        for x in (0, w - 1):  # the edge columns (reflected or clamped neighbours)
            a = xs[0, x]
            b = xs[1, x]
            c = xs[2, x]
            allg = (r0[a] & r0[b] & r0[c]) & (r1[a] & r1[b] & r1[c]) & (r2[a] & r2[b] & r2[c])
            g[x] = s2[x] | allg
        # columns 1 .. w - 2: the neighbours are x - 1, x, x + 1 (xs); slices from 0 so the
        # loop is vectorised (no index tables, no negative-index wrap-around)
        n = w - 2
        if n > 0:
            a0, b0, c0 = r0[0:n], r0[1:n + 1], r0[2:n + 2]
            a1, b1, c1 = r1[0:n], r1[1:n + 1], r1[2:n + 2]
            a2, b2, c2 = r2[0:n], r2[1:n + 1], r2[2:n + 2]
            gi = g[1:n + 1]
            si = s2[1:n + 1]
            for k in range(n):
                allg = ((a0[k] & b0[k] & c0[k]) & (a1[k] & b1[k] & c1[k])
                        & (a2[k] & b2[k] & c2[k]))
                gi[k] = si[k] | allg
        if direct:
            o = out[y]
            for x in range(w):
                o[x] = g[x] == 0
    if direct:
        return
    gy = np.empty((max(m, 1), h), np.int64)
    gx = np.empty((max(m, 1), w), np.int64)
    for d in range(m):
        for y in range(h):
            gy[d, y] = _local(_reflect(oy + y + d - lo, NY), oy, h)
        for x in range(w):
            gx[d, x] = _local(_reflect(ox + x + d - lo, NX), ox, w)
    cy = np.empty((max(nct, 1), h), np.int64)
    for k in range(nct):
        for y in range(h):
            cy[k, y] = _local(_reflect(oy + y + (k + 1) * cte_dir, NY), oy, h)
    ok = np.empty(w, np.uint8)
    for y in range(h):
        # radial: every pixel of the grow x grow box (offsets -lo..hi) must be good
        ok[:] = 1
        for dy in range(m):
            row = good[gy[dy, y]]
            for dx in range(m):
                cols = gx[dx]
                for x in range(w):
                    ok[x] &= row[cols[x]]
        # CTE tail: the ctegrow pixels on the read-out side must be good
        for k in range(nct):
            row = good[cy[k, y]]
            for x in range(w):
                ok[x] &= row[x]
        o = out[y]
        for x in range(w):
            o[x] = ok[x] == 0


@njit(nogil=True, cache=True)
def weight_sums(weights, lower, sums, counts):
    """Per-image sum (float64) and count of the weights >= ``lower`` (float32)."""
    n, ny, nx = weights.shape
    for i in range(n):
        s = 0.0
        c = 0
        for y in range(ny):
            for x in range(nx):
                w = weights[i, y, x]
                if w >= lower:
                    s += np.float64(w)
                    c += 1
        sums[i] = s
        counts[i] = c
