"""Numba evaluation of the HST distortion model carried by an astropy FITS WCS.

This module turns an astropy :class:`~astropy.wcs.WCS` into plain numpy arrays
(:class:`ForwardModel`, :class:`TanTarget`) once, and then evaluates the pixel-to-pixel
mapping between two such WCSs in a ``@njit(nogil=True, cache=True)`` kernel.

The forward model reproduces astropy's ``all_pix2world`` pipeline (``astropy/wcs/src/pipeline.c``):

1. Pixel coordinates are made 1-based (FITS): ``P = p + 1``.
2. ``det2im`` (D2IM, ``D2IMARR`` lookup tables): ``d[k] = P[k] + table_k(P)`` for each axis ``k``
   with a table; the tables are evaluated at the *original* ``P``.
3. Focal-plane coordinates: ``F = d + SIP(d - CRPIX_sip) + cpdis(d)``; SIP (A/B polynomials,
   evaluated with astropy's Horner scheme) and the NPOL lookup tables (``CPDISj``/``WCSDVARR``)
   are both evaluated on the det2im-corrected coordinates ``d``.
4. Linear transform to intermediate world coordinates (degrees):
   ``X[i] = sum_j CDELT[i] * PC[i, j] * (F[j] - CRPIX[j])`` (``CD`` headers have CDELT=1, PC=CD).
5. TAN deprojection to native spherical coordinates and rotation to celestial coordinates.

The lookup tables are evaluated exactly as astropy's ``get_distortion_offset``
(``astropy/wcs/src/distortion.c``): the fractional table coordinate on axis ``k`` is
``u = (P[k] - CRVAL_k) / CDELT_k + CRPIX_k - 1`` (the table's own header keywords; ``- 1``
because the table is a 0-based C array indexed by 1-based pixel coordinates), clamped to
``[0, n_k - 1]``; the value is the bilinear interpolation of the 4 surrounding table entries
(indices clamped to the table), weights ``(1 - fx)(1 - fy)``, ``(1 - fx) fy``, ``fx (1 - fy)``,
``fx fy``, summed in that order in float64 from the float32 table values.

The output (``to``) side must be a pure TAN WCS (no SIP, NPOL or D2IM): world coordinates are
projected back with the TAN projection and the inverse linear transform.

Instead of the trigonometric form of the spherical rotation, both rotations are applied as one
3x3 matrix acting on native direction vectors: the TAN deprojection of intermediate coordinates
``(X, Y)`` (radians) is the direction ``(-Y, X, 1)`` (unnormalised) in the native frame, and
the TAN projection of a native direction ``(n0, n1, n2)`` is ``X = n1 / n2, Y = -n0 / n2``
(only for ``n2 > 0``; the other hemisphere gives NaN, as wcslib reports it invalid). This is
mathematically identical to wcslib and agrees with astropy to ~1e-9 pixel.

Nothing in this module is shared between threads except read-only numpy arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

__all__ = [
    "ForwardModel", "TanTarget", "extract_forward", "extract_target", "fill_segments",
    "grown_segments", "need_segments", "pixmap_kernel", "pixmap_points_kernel",
    "pixmap_segments_kernel",
]

# Columns of the lookup-table parameter rows: present, crpix1, crpix2, crval1, crval2,
# cdelt1, cdelt2 (the table's own header keywords, as astropy stores them), inv1, inv2.
_NO_TABLE = np.zeros((1, 1), dtype=np.float32)


@dataclass(frozen=True)
class ForwardModel:
    """Distortion model of an input (``from``) WCS as plain arrays.

    Attributes
    ----------
    tables : tuple of 4 float32 arrays
        ``(det2im1, det2im2, cpdis1, cpdis2)`` lookup tables (``(1, 1)`` zeros when absent).
    table_par : (4, 9) float64 array
        Per table: present flag, CRPIX1, CRPIX2, CRVAL1, CRVAL2, CDELT1, CDELT2, and 1/CDELT1,
        1/CDELT2 where CDELT is a power of two (exact reciprocal), else 0.
    sip_a, sip_b : 2-D float64 arrays
        SIP coefficients ``a[p, q]`` of ``u**p v**q`` (``(1, 1)`` zeros when absent).
    sip_par : (5,) float64 array
        present flag, A_ORDER, B_ORDER, SIP CRPIX1, SIP CRPIX2 (1-based).
    lin : (2, 2) float64 array
        ``CDELT[i] * PC[i, j]`` (degrees per pixel).
    crpix : (2,) float64 array
        CRPIX (1-based).
    native_to_cel : (3, 3) float64 array
        Rotation from native to celestial direction vectors.
    """

    tables: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    table_par: np.ndarray
    sip_a: np.ndarray
    sip_b: np.ndarray
    sip_par: np.ndarray
    lin: np.ndarray
    crpix: np.ndarray
    native_to_cel: np.ndarray


@dataclass(frozen=True)
class TanTarget:
    """A pure TAN output (``to``) WCS as plain arrays.

    Attributes
    ----------
    cel_to_native : (3, 3) float64 array
        Rotation from celestial to native direction vectors.
    lin_inv : (2, 2) float64 array
        Inverse of ``CDELT[i] * PC[i, j]`` (pixels per degree).
    crpix : (2,) float64 array
        CRPIX (1-based).
    """

    cel_to_native: np.ndarray
    lin_inv: np.ndarray
    crpix: np.ndarray


def _rz(angle_deg: float) -> np.ndarray:
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _native_to_celestial(alpha_p: float, delta_p: float, phi_p: float) -> np.ndarray:
    """Rotation matrix taking native direction vectors to celestial ones.

    ``(alpha_p, delta_p)`` are the celestial coordinates of the native pole and ``phi_p`` the
    native longitude of the celestial pole (LONPOLE), all in degrees (Calabretta & Greisen 2002,
    eq. 2).
    """
    d = math.radians(delta_p)
    sd, cd = math.sin(d), math.cos(d)
    flip = np.array([[-sd, 0.0, cd], [0.0, -1.0, 0.0], [cd, 0.0, sd]])
    return _rz(alpha_p) @ flip @ _rz(-phi_p)


def _tan_celestial(wcs, role: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    """Linear part and native->celestial rotation of a TAN WCS, or why it is unsupported.

    ``wcs`` must be a private copy: ``wcs.wcs.set()`` is called on it.
    """
    from astropy.wcs import WCS

    if not isinstance(wcs, WCS):
        return f"{role} WCS is a {type(wcs).__name__}, not an astropy.wcs.WCS"
    w = wcs.wcs
    if w.naxis != 2:
        return f"{role} WCS has {w.naxis} axes, not 2"
    try:
        w.set()
    except Exception as exc:  # wcslib refuses the header: let astropy report it later
        return f"{role} WCS cannot be set up by wcslib: {exc}"
    if w.lng != 0 or w.lat != 1:
        return f"{role} WCS axes are not (longitude, latitude): lng={w.lng}, lat={w.lat}"
    for ctype in w.ctype:
        if len(ctype) < 8 or ctype[4:8] != "-TAN" or ctype[8:] not in ("", "-SIP"):
            return f"{role} WCS projection {ctype!r} is not TAN"
    cel = w.cel
    prj = cel.prj
    if prj.code != "TAN" or cel.offset or cel.phi0 != 0.0 or cel.theta0 != 90.0:
        return f"{role} WCS TAN projection has non-default PHI0/THETA0 or offset"
    if prj.r0 != 180.0 / math.pi:
        return f"{role} WCS TAN projection has a non-default R0"
    if any(str(u) not in ("deg", "") for u in w.cunit):
        return f"{role} WCS units {list(w.cunit)} are not degrees"
    if w.get_pv():
        return f"{role} WCS has PV keywords {w.get_pv()}"
    pc = np.array(w.get_pc(), dtype=np.float64)
    cdelt = np.array(w.get_cdelt(), dtype=np.float64)
    lin = cdelt[:, None] * pc
    if not np.all(np.isfinite(lin)) or np.linalg.det(lin) == 0.0:
        return f"{role} WCS linear transform is singular or not finite"
    alpha_p, delta_p, phi_p = (float(v) for v in cel.ref[:3])
    rot = _native_to_celestial(alpha_p, delta_p, phi_p)
    return lin, np.array(w.crpix, dtype=np.float64), rot


def _table(tab) -> tuple[np.ndarray | None, np.ndarray]:
    if tab is None:
        return _NO_TABLE, np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    data = np.ascontiguousarray(tab.data, dtype=np.float32)
    if data.ndim != 2:
        return None, np.zeros(9)
    cdelt = [float(c) for c in tab.cdelt]
    # exact reciprocals of powers of two (see _axis); 0 = divide
    inv = [1.0 / c if c != 0.0 and abs(math.frexp(c)[0]) == 0.5 else 0.0 for c in cdelt]
    par = np.array(
        [1.0, tab.crpix[0], tab.crpix[1], tab.crval[0], tab.crval[1], *cdelt, *inv],
        dtype=np.float64,
    )
    return data, par


def extract_forward(wcs) -> ForwardModel | str:
    """Extract the forward (pixel -> celestial) model of a private copy of ``wcs``.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        A copy owned by the caller (it is modified by ``wcs.wcs.set()``).

    Returns
    -------
    ForwardModel or str
        The model, or a sentence saying why the fast path does not support this WCS.
    """
    res = _tan_celestial(wcs, "input")
    if isinstance(res, str):
        return res
    lin, crpix, rot = res
    tabs = []
    pars = []
    for tab in (wcs.det2im1, wcs.det2im2, wcs.cpdis1, wcs.cpdis2):
        data, par = _table(tab)
        if data is None:
            return "a distortion lookup table is not 2-D"
        if par[0] and not (np.isfinite(par[5:7]).all() and (par[5:7] != 0.0).all()):
            return "a distortion lookup table has CDELT = 0"
        tabs.append(data)
        pars.append(par)
    sip = wcs.sip
    if sip is not None:
        a = np.ascontiguousarray(sip.a, dtype=np.float64)
        b = np.ascontiguousarray(sip.b, dtype=np.float64)
        sip_par = np.array(
            [1.0, sip.a_order, sip.b_order, sip.crpix[0], sip.crpix[1]], dtype=np.float64
        )
        if a.shape != (sip.a_order + 1,) * 2 or b.shape != (sip.b_order + 1,) * 2:
            return "SIP coefficient arrays do not match their orders"
    else:
        a = b = np.zeros((1, 1))
        sip_par = np.zeros(5)
    return ForwardModel(
        tables=tuple(tabs),
        table_par=np.array(pars),
        sip_a=a,
        sip_b=b,
        sip_par=sip_par,
        lin=lin,
        crpix=crpix,
        native_to_cel=rot,
    )


def extract_target(wcs) -> TanTarget | str:
    """Extract a pure TAN output model from a private copy of ``wcs``, or say why not."""
    res = _tan_celestial(wcs, "output")
    if isinstance(res, str):
        return res
    if wcs.sip is not None or any(
        t is not None for t in (wcs.det2im1, wcs.det2im2, wcs.cpdis1, wcs.cpdis2)
    ):
        return "output WCS has SIP/NPOL/D2IM distortion (inverse distortion not in fast path)"
    lin, crpix, rot = res
    return TanTarget(cel_to_native=rot.T.copy(), lin_inv=np.linalg.inv(lin), crpix=crpix)


# --------------------------------------------------------------------------------------------
# numba kernels
# --------------------------------------------------------------------------------------------

# error_model="numpy": IEEE division (x / 0 gives inf or NaN) instead of Python's ZeroDivisionError
# check. The check is a branch in every division that stops LLVM from vectorising the loops;
# without it the same operations run 4 at a time and give the same bits.
_JIT = {"nogil": True, "cache": True, "error_model": "numpy"}


@njit(**_JIT)
def _axis(p, crval, cdelt, inv, crpix, n):
    """Cell index, next index and weights of 1-based pixel ``p`` on one table axis.

    Same arithmetic as astropy's ``image_coord_to_distortion_coord``: ``u = (p - CRVAL) /
    CDELT + CRPIX - 1`` clamped to ``[0, n - 1]``; the upper neighbour is clamped to the table
    (where astropy's clamped and unclamped branches give identical values). When CDELT is a
    power of two, ``inv`` is its exact reciprocal and the division becomes a multiplication,
    which gives the same bits, faster; otherwise ``inv`` is 0.
    """
    if inv != 0.0:
        u = (p - crval) * inv + crpix - 1.0
    else:
        u = (p - crval) / cdelt + crpix - 1.0
    hi = float(n - 1)
    if not u >= 0.0:  # also NaN (undefined in astropy): never index outside the table
        u = 0.0
    elif u > hi:
        u = hi
    i = int(u)  # u >= 0: truncation is floor
    w = u - i
    i1 = i + 1
    if i1 > n - 1:
        i1 = n - 1
    return i, i1, w, 1.0 - w


@njit(**_JIT)
def _bilin(data, ix, ix1, wx, iwx, iy, iy1, wy, iwy):
    """astropy's bilinear sum, same terms in the same order (float32 table, float64 sum).

    The indices are already clamped to the table, so they are used unsigned (no negative-index
    handling).
    """
    jx = np.uintp(ix)
    jx1 = np.uintp(ix1)
    jy = np.uintp(iy)
    jy1 = np.uintp(iy1)
    return (
        float(data[jy, jx]) * iwx * iwy
        + float(data[jy1, jx]) * iwx * wy
        + float(data[jy, jx1]) * wx * iwy
        + float(data[jy1, jx1]) * wx * wy
    )


@njit(**_JIT)
def _x_parts(data, par, p, ci, ci1, cw):
    """x-axis cell indices and weights of a table for the 1-based x coordinates ``p``."""
    n = data.shape[1]
    for ii in range(p.shape[0]):
        i, i1, w, _ = _axis(p[ii], par[3], par[5], par[7], par[1], n)
        ci[ii] = i
        ci1[ii] = i1
        cw[ii] = w


@njit(**_JIT)
def _col_products(data, ci, ci1, cw, iy, iy1, q):
    """Per-column products of a table row pair: the x-halves of :func:`_bilin`'s terms.

    ``_bilin`` sums ``(v * iwx) * iwy + ...`` left to right, so ``v * iwx`` (and ``v * wx``)
    can be formed once for all rows that share the table cell rows ``iy, iy1`` and the
    column parts, with the same rounding.
    """
    jy = np.uintp(iy)
    jy1 = np.uintp(iy1)
    for ii in range(q.shape[1]):
        wx = cw[ii]
        iwx = 1.0 - wx
        jx = np.uintp(ci[ii])
        jx1 = np.uintp(ci1[ii])
        q[0, ii] = float(data[jy, jx]) * iwx
        q[1, ii] = float(data[jy1, jx]) * iwx
        q[2, ii] = float(data[jy, jx1]) * wx
        q[3, ii] = float(data[jy1, jx1]) * wx


@njit(**_JIT)
def _add_products(q, wy, iwy, out):
    """``out[ii] += `` the bilinear sum from :func:`_col_products` (same order as _bilin)."""
    for ii in range(out.shape[0]):
        out[ii] += q[0, ii] * iwy + q[1, ii] * wy + q[2, ii] * iwy + q[3, ii] * wy


@njit(**_JIT)
def _base_plus_products(q, wy, iwy, base, out):
    """``out[ii] = base[ii] + `` the bilinear sum from :func:`_col_products`."""
    for ii in range(out.shape[0]):
        out[ii] = base[ii] + (q[0, ii] * iwy + q[1, ii] * wy + q[2, ii] * iwy + q[3, ii] * wy)


@njit(**_JIT)
def _y_parts(data, par, p, ci, ci1, cw):
    """y-axis cell indices and weights of a table for the 1-based y coordinates ``p``."""
    n = data.shape[0]
    for ii in range(p.shape[0]):
        i, i1, w, _ = _axis(p[ii], par[4], par[6], par[8], par[2], n)
        ci[ii] = i
        ci1[ii] = i1
        cw[ii] = w


@njit(**_JIT)
def _table_add_xy(data, xi, xi1, xw, yi, yi1, yw, out):
    """``out[ii] += table`` with x- and y-parts known per pixel (same sum as :func:`_bilin`)."""
    for ii in range(out.shape[0]):
        wx = xw[ii]
        wy = yw[ii]
        out[ii] += _bilin(data, xi[ii], xi1[ii], wx, 1.0 - wx, yi[ii], yi1[ii], wy, 1.0 - wy)


@njit(**_JIT)
def _sip_const_v(coef, order, v, hc):
    """Horner sums in ``v`` of the SIP columns (astropy's order) for a constant ``v``."""
    for j in range(order + 1):
        t = coef[order - j, j]
        for k in range(j - 1, -1, -1):
            t = v * t + coef[order - j, k]
        hc[j] = t


@njit(**_JIT)
def _sip_add_const(hc, order, ux, base, out):
    """``out[ii] = base[ii] + SIP`` when the Horner sums in v are the constants ``hc``."""
    n = out.shape[0]
    c0 = hc[0]
    for ii in range(n):
        out[ii] = c0
    for j in range(order, 0, -1):
        t = hc[order - j + 1]
        for ii in range(n):
            out[ii] = ux[ii] * out[ii] + t
    for ii in range(n):
        out[ii] = base[ii] + out[ii]


@njit(**_JIT)
def _sip_add(coef, order, sy, dy, ux, tmp, base, out):
    """``out[ii] = base[ii] + SIP(ux[ii], dy[ii] - sy)`` with astropy's Horner order."""
    n = out.shape[0]
    for j in range(order + 1):
        c = coef[order - j, j]
        for ii in range(n):
            tmp[j, ii] = c
        for k in range(j - 1, -1, -1):
            c = coef[order - j, k]
            for ii in range(n):
                tmp[j, ii] = (dy[ii] - sy) * tmp[j, ii] + c
    for ii in range(n):
        out[ii] = tmp[0, ii]
    for j in range(order, 0, -1):
        t = tmp[order - j + 1]
        for ii in range(n):
            out[ii] = ux[ii] * out[ii] + t[ii]
    for ii in range(n):
        out[ii] = base[ii] + out[ii]


@njit(**_JIT)
def _sip_add4(coef, sy, dy, ux, base, out):
    """:func:`_sip_add` for order 4 (every HST SIP header), one pass the compiler vectorises.

    Same operations in the same order: ``t_j`` is the Horner sum in ``v`` of column
    ``coef[4 - j, :]``, then ``s = ((((t_0) u + t_1) u + t_2) u + t_3) u + t_4``.
    """
    c00, c01, c02, c03, c04 = coef[0, 0], coef[0, 1], coef[0, 2], coef[0, 3], coef[0, 4]
    c10, c11, c12, c13 = coef[1, 0], coef[1, 1], coef[1, 2], coef[1, 3]
    c20, c21, c22 = coef[2, 0], coef[2, 1], coef[2, 2]
    c30, c31 = coef[3, 0], coef[3, 1]
    c40 = coef[4, 0]
    for ii in range(out.shape[0]):
        v = dy[ii] - sy
        u = ux[ii]
        t1 = v * c31 + c30
        t2 = v * (v * c22 + c21) + c20
        t3 = v * (v * (v * c13 + c12) + c11) + c10
        t4 = v * (v * (v * (v * c04 + c03) + c02) + c01) + c00
        out[ii] = base[ii] + (u * (u * (u * (u * c40 + t1) + t2) + t3) + t4)


@njit(**_JIT)
def _same_grid(ta, tb, pa, pb):
    """Whether two tables share shape and grid keywords (then their cell parts are equal)."""
    if ta.shape[0] != tb.shape[0] or ta.shape[1] != tb.shape[1]:
        return False
    for k in range(1, 9):
        if pa[k] != pb[k]:
            return False
    return True


@njit(**_JIT)
def _project_row(fx, fy, c, ax, ay, out_row):
    """Linear, TAN deprojection, rotation, TAN projection and output linear for one row.

    ``c`` holds the constants (see :func:`pixmap_kernel`). The results go to the contiguous
    ``ax``/``ay`` first (a loop LLVM vectorises), then are interleaved into ``out_row``.
    """
    cx, cy = c[0], c[1]
    l00, l01, l10, l11 = c[2], c[3], c[4], c[5]
    r00, r01, r02 = c[6], c[7], c[8]
    r10, r11, r12 = c[9], c[10], c[11]
    r20, r21, r22 = c[12], c[13], c[14]
    m00, m01, m10, m11 = c[15], c[16], c[17], c[18]
    ox, oy = c[19], c[20]
    deg = 180.0 / math.pi
    rad = math.pi / 180.0
    nan = np.nan
    for ii in range(fx.shape[0]):
        ex = fx[ii] - cx
        ey = fy[ii] - cy
        xr = (l00 * ex + l01 * ey) * rad
        yr = (l10 * ex + l11 * ey) * rad
        # native direction (-Y, X, 1) rotated into the output native frame
        n0 = r00 * -yr + r01 * xr + r02
        n1 = r10 * -yr + r11 * xr + r12
        n2 = r20 * -yr + r21 * xr + r22
        xo = n1 / n2 * deg
        yo = -n0 / n2 * deg
        ok = n2 > 0.0
        ax[ii] = m00 * xo + m01 * yo + ox - 1.0 if ok else nan
        ay[ii] = m10 * xo + m11 * yo + oy - 1.0 if ok else nan
    for ii in range(fx.shape[0]):
        out_row[ii, 0] = ax[ii]
        out_row[ii, 1] = ay[ii]


@njit(**_JIT)
def _project_px(fx, fy, c):
    """:func:`_project_row`'s operations on one pixel (``c``: its constants as a tuple)."""
    cx, cy, l00, l01, l10, l11, r00, r01, r02, r10, r11, r12, r20, r21, r22, m00, m01, m10, \
        m11, ox, oy = c
    deg = 180.0 / math.pi
    rad = math.pi / 180.0
    ex = fx - cx
    ey = fy - cy
    xr = (l00 * ex + l01 * ey) * rad
    yr = (l10 * ex + l11 * ey) * rad
    n0 = r00 * -yr + r01 * xr + r02
    n1 = r10 * -yr + r11 * xr + r12
    n2 = r20 * -yr + r21 * xr + r22
    xo = n1 / n2 * deg
    yo = -n0 / n2 * deg
    ok = n2 > 0.0
    return (m00 * xo + m01 * yo + ox - 1.0 if ok else np.nan,
            m10 * xo + m11 * yo + oy - 1.0 if ok else np.nan)


@njit(**_JIT)
def _row_fused(py, hca, hcb, q20, q21, q22, q23, q30, q31, q32, q33, wy, c, dx, ux, ax, ay,
               out_row, a):
    """Steps 2-4 of :func:`pixmap_segments_kernel` on some pixels of one row in one pass, for
    the usual HST model: no det2im y table (``dy`` is the row coordinate ``py``), SIP of order
    4 in both axes (``hca``, ``hcb``: the row's Horner sums in ``v``, :func:`_sip_const_v`),
    both NPOL tables (``q20`` ... ``q23`` and ``q30`` ... ``q33``: their per-column products,
    :func:`_col_products`, with the row's y weights ``wy[2]``, ``wy[3]``).

    ``dx``, ``ux`` and the products: 1-D, the pixels' values (e.g. a segment's slices); the
    map goes to ``out_row[a:a + len(dx)]`` (through ``ax``/``ay``, at least as long). Per
    pixel, the operations of :func:`_sip_add_const`, :func:`_add_products` and
    :func:`_project_row` in the same order (the same bits), without their intermediate rows:
    one loop that the compiler vectorises, its values kept in registers (~2x faster). Its
    arrays are 1-D from index 0: a loop from a run-time start, or over 2-D slices, is not
    vectorised as well.
    """
    a0, a1, a2, a3, a4 = hca[0], hca[1], hca[2], hca[3], hca[4]
    b0, b1, b2, b3, b4 = hcb[0], hcb[1], hcb[2], hcb[3], hcb[4]
    w2 = wy[2]
    w3 = wy[3]
    iw2 = 1.0 - w2
    iw3 = 1.0 - w3
    cc = (c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12],
          c[13], c[14], c[15], c[16], c[17], c[18], c[19], c[20])
    n = dx.shape[0]
    for ii in range(n):
        u = ux[ii]
        fx = dx[ii] + (u * (u * (u * (u * a0 + a1) + a2) + a3) + a4)
        fy = py + (u * (u * (u * (u * b0 + b1) + b2) + b3) + b4)
        fx += q20[ii] * iw2 + q21[ii] * w2 + q22[ii] * iw2 + q23[ii] * w2
        fy += q30[ii] * iw3 + q31[ii] * w3 + q32[ii] * iw3 + q33[ii] * w3
        ax[ii], ay[ii] = _project_px(fx, fy, cc)
    for ii in range(n):
        out_row[a + ii, 0] = ax[ii]
        out_row[a + ii, 1] = ay[ii]


@njit(**_JIT)
def pixmap_kernel(
    xs,
    ys,
    out,
    lo,
    hi,
    t0,
    t1,
    t2,
    t3,
    tpar,
    sip_a,
    sip_b,
    sip_par,
    lin,
    crpix,
    rot,
    lin_inv,
    crpix_to,
):
    """Fill ``out[jj, ii] = (x, y)``: 0-based output pixel of input pixel ``(xs[ii], ys[jj])``.

    ``xs``, ``ys``: int64 arrays of 0-based input columns and rows (a region's ``arange``, or
    any grid of check points).

    Only columns ``lo[jj] <= ii < hi[jj]`` of row ``jj`` are computed (``lo``, ``hi``: int64,
    indices into ``xs``, within ``[0, nx]``); the rest of the row is set to NaN. This is
    :func:`pixmap_segments_kernel` with one segment per row.
    """
    ptr = np.arange(out.shape[0] + 1)
    pixmap_segments_kernel(xs, ys, out, ptr, lo, hi, True, t0, t1, t2, t3, tpar, sip_a, sip_b,
                           sip_par, lin, crpix, rot, lin_inv, crpix_to)


@njit(**_JIT)
def pixmap_segments_kernel(
    xs,
    ys,
    out,
    ptr,
    lo,
    hi,
    fill,
    t0,
    t1,
    t2,
    t3,
    tpar,
    sip_a,
    sip_b,
    sip_par,
    lin,
    crpix,
    rot,
    lin_inv,
    crpix_to,
):
    """Fill ``out[jj, ii] = (x, y)``: 0-based output pixel of input pixel ``(xs[ii], ys[jj])``,
    in some column segments of each row.

    ``xs``, ``ys``: int64 arrays of 0-based input columns and rows (a region's ``arange``, or
    any grid of check points).

    Row ``jj``'s segments are ``k`` in ``ptr[jj]:ptr[jj + 1]`` (``ptr``: int64, ``ny + 1``
    entries), columns ``lo[k] <= ii < hi[k]`` (indices into ``xs``, within ``[0, nx]``, in
    increasing order, not overlapping; empty ones are skipped); only these are computed. With
    ``fill``, the rest of each row is set to NaN; without, it is left as it is (a caller's
    buffer kept NaN there: e.g. the sparse neighbourhoods of cosmic-ray pixels).
    Every value depends only on the absolute (0-based) input pixel, never on the others or the
    shape of ``out``, so a sub-region is bit-identical to the same pixels of a full-chip call.
    The work is done row by row in simple passes (lookup tables, SIP, projection) that the
    compiler vectorises. The distortion part (det2im, SIP, NPOL) does the same floating-point
    operations as astropy for every pixel; the linear and TAN steps are the mathematically
    identical matrix form described in the module docstring. ``rot`` maps input-native to
    output-native direction vectors.

    Parts that do not change from one row to the next are kept, not recomputed (each is the
    same arithmetic on the same inputs, so the values are the same bits):

    * the det2im-corrected x row ``dx = P_x + det2im1(P)`` while det2im1's y cell and weight
      are unchanged (always, for ACS/WFC's one-row table), and with it the NPOL tables' x
      cells and weights at ``dx`` and the SIP ``u = dx - CRPIX``;
    * without a det2im y table, ``dy`` is the constant row coordinate: the SIP Horner sums in
      ``v`` are per-row constants, and the NPOL products ``table * x-weight`` are per-column
      constants while the row stays in the same table cell rows.
    """
    ny, nx = out.shape[0], out.shape[1]
    has_d1 = tpar[0, 0] != 0.0
    has_d2 = tpar[1, 0] != 0.0
    has_c1 = tpar[2, 0] != 0.0
    has_c2 = tpar[3, 0] != 0.0
    has_sip = sip_par[0] != 0.0
    ma = int(sip_par[1])
    mb = int(sip_par[2])
    sx = sip_par[3]
    sy = sip_par[4]
    pars = tpar
    tabs = (t0, t1, t2, t3)
    tmp = np.empty((max(ma, mb) + 2, nx))
    hca = np.empty(max(ma, mb) + 1)
    hcb = np.empty(max(ma, mb) + 1)
    px = np.empty(nx)
    for ii in range(nx):
        px[ii] = float(xs[ii]) + 1.0
    pyr = np.empty(nx)
    # x cells/weights per column: [0], [1] det2im at the raw column; [2], [3] NPOL at dx
    ci = np.zeros((4, nx), dtype=np.int64)
    ci1 = np.zeros((4, nx), dtype=np.int64)
    cw = np.zeros((4, nx))
    if has_d1:
        _x_parts(t0, pars[0], px, ci[0], ci1[0], cw[0])
    if has_d2:
        _x_parts(t1, pars[1], px, ci[1], ci1[1], cw[1])
    # the two NPOL tables on one grid share their cell parts (computed for table 2)
    npol_pair = has_c1 and has_c2 and _same_grid(t2, t3, pars[2], pars[3])
    xc3 = 2 if npol_pair else 3
    # the usual HST model: steps 2-4 in one pass per row (_row_fused)
    fused = not has_d2 and has_sip and ma == 4 and mb == 4 and has_c1 and has_c2
    # per-column products (table value * x weight) of each table, valid for the table cell
    # rows q_iy, q_iy1 (and, for NPOL, the current dx)
    q = np.empty((4, 4, nx))
    q_iy = np.full(4, -1, dtype=np.int64)
    q_iy1 = np.full(4, -1, dtype=np.int64)
    # NPOL y cells/weights per pixel (when dy varies along the row)
    yi = np.zeros((2, nx), dtype=np.int64)
    yi1 = np.zeros((2, nx), dtype=np.int64)
    yw = np.zeros((2, nx))
    dx = px.copy()
    dy = np.empty(nx)
    ux = np.empty(nx)
    fx = np.empty(nx)
    fy = np.empty(nx)
    ax = np.empty(nx)
    ay_ = np.empty(nx)
    # a row's columns gathered from its segments: their parts, their map
    cols = np.empty(nx, dtype=np.int64)
    gdx = np.empty(nx)
    gux = np.empty(nx)
    gq = np.empty((4, 4, nx))
    gci = np.zeros((4, nx), dtype=np.int64)
    gci1 = np.zeros((4, nx), dtype=np.int64)
    gcw = np.zeros((4, nx))
    gout = np.empty((nx, 2))
    c = np.empty(21)
    c[0], c[1] = crpix[0], crpix[1]
    c[2], c[3], c[4], c[5] = lin[0, 0], lin[0, 1], lin[1, 0], lin[1, 1]
    for k in range(9):
        c[6 + k] = rot[k // 3, k % 3]
    c[15], c[16], c[17], c[18] = lin_inv[0, 0], lin_inv[0, 1], lin_inv[1, 0], lin_inv[1, 1]
    c[19], c[20] = crpix_to[0], crpix_to[1]
    ay = np.empty(4, dtype=np.int64)
    ay1 = np.empty(4, dtype=np.int64)
    wy = np.empty(4)
    d1_iy = -1
    d1_iy1 = -1
    d1_wy = 0.0
    first = True
    nan = np.nan
    for jj in range(ny):
        used = False
        end = 0  # with fill: columns before ``end`` are written
        for s in range(ptr[jj], ptr[jj + 1]):
            if hi[s] > lo[s]:
                used = True
                if fill:
                    for ii in range(end, lo[s]):
                        out[jj, ii, 0] = nan
                        out[jj, ii, 1] = nan
                    end = hi[s]
        if fill:
            for ii in range(end, nx):
                out[jj, ii, 0] = nan
                out[jj, ii, 1] = nan
        if not used:
            continue
        py = float(ys[jj]) + 1.0
        # y-parts constant along the row (tables evaluated at the raw row coordinate)
        for k in range(4):
            a, b, v, _ = _axis(py, pars[k, 4], pars[k, 6], pars[k, 8], pars[k, 2], tabs[k].shape[0])
            ay[k], ay1[k], wy[k] = a, b, v
        # 1. det2im, evaluated at the raw pixel; dx kept while det2im1's y-part is unchanged
        new_dx = first
        first = False
        if has_d1 and (new_dx or ay[0] != d1_iy or ay1[0] != d1_iy1 or wy[0] != d1_wy):
            d1_iy, d1_iy1, d1_wy = ay[0], ay1[0], wy[0]
            if q_iy[0] != ay[0] or q_iy1[0] != ay1[0]:
                _col_products(t0, ci[0], ci1[0], cw[0], ay[0], ay1[0], q[0])
                q_iy[0], q_iy1[0] = ay[0], ay1[0]
            _base_plus_products(q[0], wy[0], 1.0 - wy[0], px, dx)
            new_dx = True
        if new_dx:
            for ii in range(nx):
                ux[ii] = dx[ii] - sx
            if has_c1:
                _x_parts(t2, pars[2], dx, ci[2], ci1[2], cw[2])
            if has_c2 and not npol_pair:
                _x_parts(t3, pars[3], dx, ci[3], ci1[3], cw[3])
            q_iy[2:] = -1
        # per-row parts of the tables' products (whole row; kept while the cells are the same)
        if has_d2 and (q_iy[1] != ay[1] or q_iy1[1] != ay1[1]):
            _col_products(t1, ci[1], ci1[1], cw[1], ay[1], ay1[1], q[1])
            q_iy[1], q_iy1[1] = ay[1], ay1[1]
        if not has_d2:  # dy = the row coordinate: NPOL products per column
            for t in range(2, 4):
                if (has_c1 if t == 2 else has_c2) and (q_iy[t] != ay[t] or q_iy1[t] != ay1[t]):
                    xc = 2 if t == 2 else xc3
                    _col_products(tabs[t], ci[xc], ci1[xc], cw[xc], ay[t], ay1[t], q[t])
                    q_iy[t], q_iy1[t] = ay[t], ay1[t]
            if has_sip:
                _sip_const_v(sip_a, ma, py - sy, hca)
                _sip_const_v(sip_b, mb, py - sy, hcb)
        # steps 2-4: on the row's one segment in place, or on its segments' columns gathered
        # into one short row (many small segments: the neighbourhoods of scattered pixels)
        s0 = ptr[jj]
        nseg = 0
        for s in range(s0, ptr[jj + 1]):
            if hi[s] > lo[s]:
                nseg += 1
                s0 = s if nseg == 1 else s0
        if nseg == 1 and fused:
            a0, b0 = lo[s0], hi[s0]
            _row_fused(py, hca, hcb, q[2, 0, a0:b0], q[2, 1, a0:b0], q[2, 2, a0:b0],
                       q[2, 3, a0:b0], q[3, 0, a0:b0], q[3, 1, a0:b0], q[3, 2, a0:b0],
                       q[3, 3, a0:b0], wy, c, dx[a0:b0], ux[a0:b0], ax, ay_, out[jj], a0)
            continue
        if nseg == 1:
            a0, b0 = lo[s0], hi[s0]
            _row_steps(py, has_d2, has_sip, has_c1, has_c2, xc3, ma, mb, sy, sip_a, sip_b,
                       hca, hcb, tabs, pars, wy, c, dx[a0:b0], ux[a0:b0], q[:, :, a0:b0],
                       ci[:, a0:b0], ci1[:, a0:b0], cw[:, a0:b0], dy[a0:b0], pyr[a0:b0],
                       fx[a0:b0], fy[a0:b0], tmp[:, a0:b0], yi[:, a0:b0], yi1[:, a0:b0],
                       yw[:, a0:b0], ax[a0:b0], ay_[a0:b0], out[jj, a0:b0])
            continue
        n = 0
        for s in range(ptr[jj], ptr[jj + 1]):
            for ii in range(lo[s], hi[s]):
                cols[n] = ii
                n += 1
        for m in range(n):
            ii = cols[m]
            gdx[m] = dx[ii]
            gux[m] = ux[ii]
        for t in range(1, 4):
            if t == 1 and not has_d2 or t > 1 and (has_d2 or not (has_c1 if t == 2 else has_c2)):
                continue
            for r in range(4):
                for m in range(n):
                    gq[t, r, m] = q[t, r, cols[m]]
        if has_d2:
            for xc in range(2, 4):
                for m in range(n):
                    gci[xc, m] = ci[xc, cols[m]]
                    gci1[xc, m] = ci1[xc, cols[m]]
                    gcw[xc, m] = cw[xc, cols[m]]
        if fused:
            _row_fused(py, hca, hcb, gq[2, 0, :n], gq[2, 1, :n], gq[2, 2, :n], gq[2, 3, :n],
                       gq[3, 0, :n], gq[3, 1, :n], gq[3, 2, :n], gq[3, 3, :n], wy, c, gdx[:n],
                       gux[:n], ax, ay_, gout, 0)
        else:
            _row_steps(py, has_d2, has_sip, has_c1, has_c2, xc3, ma, mb, sy, sip_a, sip_b, hca,
                       hcb, tabs, pars, wy, c, gdx[:n], gux[:n], gq[:, :, :n], gci[:, :n],
                       gci1[:, :n], gcw[:, :n], dy[:n], pyr[:n], fx[:n], fy[:n], tmp[:, :n],
                       yi[:, :n], yi1[:, :n], yw[:, :n], ax[:n], ay_[:n], gout[:n])
        for m in range(n):
            out[jj, cols[m], 0] = gout[m, 0]
            out[jj, cols[m], 1] = gout[m, 1]


@njit(**_JIT)
def _row_steps(py, has_d2, has_sip, has_c1, has_c2, xc3, ma, mb, sy, sip_a, sip_b, hca, hcb,
               tabs, pars, wy, c, sdx, sux, qv, civ, ci1v, cwv, sdy, pyr, sfx, sfy, tmp, yi, yi1,
               yw, ax, ay_, out_row):
    """Steps 2-4 of :func:`pixmap_segments_kernel` on some pixels of one row: ``sdx``, ``sux``
    (det2im-corrected x and SIP u) and the tables' per-column parts ``qv``, ``civ``, ``ci1v``,
    ``cwv`` at these pixels; ``sdy`` ... ``ay_``: scratch of their length; the map into
    ``out_row``. The same operations on each pixel, whatever pixels are passed together."""
    if has_d2:
        pyr[:] = py
        _base_plus_products(qv[1], wy[1], 1.0 - wy[1], pyr, sdy)
    else:
        sdy[:] = py
    # 2. SIP on the det2im-corrected coordinates: f = d + SIP
    if has_sip and not has_d2:
        _sip_add_const(hca, ma, sux, sdx, sfx)
        _sip_add_const(hcb, mb, sux, sdy, sfy)
    elif has_sip:
        if ma == 4:
            _sip_add4(sip_a, sy, sdy, sux, sdx, sfx)
        else:
            _sip_add(sip_a, ma, sy, sdy, sux, tmp, sdx, sfx)
        if mb == 4:
            _sip_add4(sip_b, sy, sdy, sux, sdy, sfy)
        else:
            _sip_add(sip_b, mb, sy, sdy, sux, tmp, sdy, sfy)
    else:
        sfx[:] = sdx
        sfy[:] = sdy
    # 3. NPOL tables on the det2im-corrected coordinates: f += cpdis(d)
    npol_pair = xc3 == 2
    for k in range(2):
        t = 2 + k
        if not (has_c1 if k == 0 else has_c2):
            continue
        xc = 2 if k == 0 else xc3
        f = sfx if k == 0 else sfy
        if not has_d2:  # dy = the row coordinate: products per column
            _add_products(qv[t], wy[t], 1.0 - wy[t], f)
        else:
            yc = 0 if (k == 0 or npol_pair or not has_c1) else 1
            if k == 0 or yc == 1 or not has_c1:
                _y_parts(tabs[t], pars[t], sdy, yi[yc], yi1[yc], yw[yc])
            _table_add_xy(tabs[t], civ[xc], ci1v[xc], cwv[xc], yi[yc], yi1[yc], yw[yc], f)
    # 4. linear, TAN deprojection, rotation, TAN projection, output linear
    _project_row(sfx, sfy, c, ax, ay_, out_row)


@njit(**_JIT)
def need_segments(need):
    """The runs of True of each row of the bool array ``need``: ``(ptr, lo, hi)``, int64; row
    ``r``'s runs are columns ``lo[k] <= i < hi[k]`` for ``k`` in ``ptr[r]:ptr[r + 1]`` (the
    layout of :func:`pixmap_segments_kernel`)."""
    ny, nx = need.shape[0], need.shape[1]
    ptr = np.zeros(ny + 1, dtype=np.int64)
    lo = np.empty(ny * ((nx + 1) // 2), dtype=np.int64)
    hi = np.empty_like(lo)
    n = 0
    for jj in range(ny):
        ii = 0
        while ii < nx:
            if not need[jj, ii]:
                ii += 1
                continue
            lo[n] = ii
            while ii < nx and need[jj, ii]:
                ii += 1
            hi[n] = ii
            n += 1
        ptr[jj + 1] = n
    return ptr, lo[:n].copy(), hi[:n].copy()


@njit(**_JIT)
def grown_segments(points, ny, nx):
    """The 3 x 3 neighbourhoods of some pixels of an ``(ny, nx)`` array, as row segments.

    ``points``: int64 flat (row-major) indices of the pixels, increasing. Returns ``(ptr, lo,
    hi)`` as :func:`need_segments` of the pixels grown by one in every direction (8
    neighbours, clipped to the array), without an array of the region's size: each row's
    segments merge the column ranges ``[c - 1, c + 2)`` of the pixels of the row and of the
    rows above and below.
    """
    npts = points.shape[0]
    # first point of each row (rows ny.. hold none)
    start = np.zeros(ny + 1, dtype=np.int64)
    for k in range(npts):
        start[points[k] // nx + 1] += 1
    for r in range(ny):
        start[r + 1] += start[r]
    ptr = np.zeros(ny + 1, dtype=np.int64)
    lo = np.empty(3 * npts + 1, dtype=np.int64)
    hi = np.empty_like(lo)
    heads = np.empty(3, dtype=np.int64)
    ends = np.empty(3, dtype=np.int64)
    n = 0
    for r in range(ny):
        for d in range(3):
            rr = r - 1 + d
            if 0 <= rr < ny:
                heads[d] = start[rr]
                ends[d] = start[rr + 1]
            else:
                heads[d] = 0
                ends[d] = 0
        cur_lo = -1
        cur_hi = -1
        while True:
            best = -1
            col = nx
            for d in range(3):
                if heads[d] < ends[d]:
                    c = points[heads[d]] % nx
                    if c < col:
                        col = c
                        best = d
            if best < 0:
                break
            heads[best] += 1
            a = col - 1 if col > 0 else 0
            b = col + 2 if col + 2 < nx else nx
            if a <= cur_hi:
                if b > cur_hi:
                    cur_hi = b
            else:
                if cur_hi >= 0:
                    lo[n] = cur_lo
                    hi[n] = cur_hi
                    n += 1
                cur_lo = a
                cur_hi = b
        if cur_hi >= 0:
            lo[n] = cur_lo
            hi[n] = cur_hi
            n += 1
        ptr[r + 1] = n
    return ptr, lo[:n].copy(), hi[:n].copy()


@njit(**_JIT)
def fill_segments(out, ptr, lo, hi, value):
    """``out[r, lo[k]:hi[k]] = value`` for every row ``r`` and its segments ``k`` (the layout
    of :func:`need_segments`); ``out``: 2-D, or 3-D (every value of the last axis)."""
    for r in range(ptr.shape[0] - 1):
        for k in range(ptr[r], ptr[r + 1]):
            out[r, lo[k]:hi[k]] = value


@njit(**_JIT)
def pixmap_points_kernel(
    need,
    y0,
    x0,
    out,
    fill,
    t0,
    t1,
    t2,
    t3,
    tpar,
    sip_a,
    sip_b,
    sip_par,
    lin,
    crpix,
    rot,
    lin_inv,
    crpix_to,
):
    """Fill ``out[j, i]`` with the map of input pixel ``(x0 + i, y0 + j)`` where ``need[j, i]``
    is True, NaN elsewhere when ``fill`` (else the rest of ``out`` is left as it is); ``need``:
    bool, the shape of ``out`` without its last axis, or its runs ``(ptr, lo, hi)``
    (:func:`need_segments`).

    The runs of each row are :func:`pixmap_segments_kernel`'s segments: every value is the
    same arithmetic on the same absolute input pixel as in a whole-region call, so the values
    are bit-identical to it.
    """
    ny, nx = out.shape[0], out.shape[1]
    if isinstance(need, tuple):
        ptr, lo, hi = need
    else:
        ptr, lo, hi = need_segments(need)
    xs = np.arange(x0, x0 + nx)
    ys = np.arange(y0, y0 + ny)
    pixmap_segments_kernel(xs, ys, out, ptr, lo, hi, fill, t0, t1, t2, t3, tpar, sip_a, sip_b,
                           sip_par, lin, crpix, rot, lin_inv, crpix_to)
