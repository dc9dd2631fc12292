"""Footprint -> SkyCells, and the bounded sub-array WCS of a SkyCell (exact geometry).

Method (``skycells.md`` section 5, "Exact-geometry equivalent"). A footprint is one or more
sky polygons whose sides are great-circle arcs: the pixel-area outline of each chip (pixel edges
at 0-based -0.5 and n-0.5), densified along every side when the WCS has distortion (SIP,
lookup tables) or a non-TAN projection. Great circles are straight lines in every gnomonic
plane, so the test for one projection cell is planar and exact:

1. Candidate projection cells: every pcell whose tangent point lies within ``r + R_PC`` of the
   centre of the footprint's bounding cap (radius ``r``), where ``R_PC`` is the angular radius
   of the area covered by the pcell's 21 x 21 skycells (3.545 deg). Footprints must fit in a
   cap of radius 40 deg, so every vertex is at most 83.6 deg from a candidate's tangent point
   and never behind its tangent plane.
2. The vertices are projected (one vectorised gnomonic projection per candidate) to the pcell's
   0-based fine pixel frame, and the candidate skycells are those whose rectangle meets the
   projected bounding box.
3. Skycell S overlaps the footprint iff some polygon side passes through the open interior of
   S's pixel-area rectangle, or the rectangle's centre lies inside one of the polygons (then
   the whole rectangle does). This is "intersection with positive area".

Nothing here depends on RA wrapping, ring boundaries or the poles: only unit vectors and
tangent planes are used.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from skycells._grid import grid
from skycells.cells import ProjectionCell, SkyCell

#: Largest angular radius (deg) of the cap holding one footprint (or one of its polygons).
MAX_FOOTPRINT_RADIUS = 40.0

#: Tolerance (pixels) of :func:`bounded_wcs` when an edge falls on a pixel boundary.
BOUNDS_EPS = 1e-6

#: Pixels between outline samples of a distorted chip (at least 4 segments per side).
DENSIFY_STEP = 128

Footprint = WCS | fits.Header | np.ndarray | Sequence


# --------------------------------------------------------------------------------------------
# geometry helpers


def _radec_to_xyz(radec: np.ndarray) -> np.ndarray:
    ra = np.radians(radec[:, 0])
    dec = np.radians(radec[:, 1])
    cd = np.cos(dec)
    return np.column_stack([cd * np.cos(ra), cd * np.sin(ra), np.sin(dec)])


def _frames(crval: np.ndarray) -> np.ndarray:
    """(K, 3, 3) rows (east, north, centre) of the tangent planes at ``crval`` (K, 2) deg."""
    a = np.radians(crval[:, 0])
    d = np.radians(crval[:, 1])
    sa, ca, sd, cdd = np.sin(a), np.cos(a), np.sin(d), np.cos(d)
    east = np.stack([-sa, ca, np.zeros_like(a)], axis=-1)
    north = np.stack([-sd * ca, -sd * sa, cdd], axis=-1)
    centre = np.stack([cdd * ca, cdd * sa, sd], axis=-1)
    return np.stack([east, north, centre], axis=1)


def _standard_coords(xyz: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic standard coordinates (xi east, eta north; degrees), shapes (K, M).

    These equal the FITS TAN intermediate world coordinates (LONPOLE = 180) of the frame.
    """
    p = np.einsum("kij,mj->kim", frames, xyz)
    z = p[:, 2, :]
    return np.degrees(p[:, 0, :] / z), np.degrees(p[:, 1, :] / z)


@functools.cache
def _consts() -> tuple[float, float, int, int, float]:
    """(pcell 0-based CRPIX, pcell scale deg/pix, skycell step, skycell size, reach deg).

    ``reach`` is the angular radius from a pcell tangent point to its farthest skycell corner.
    Every ring has the same pcell size (checked), so these hold for every pcell.
    """
    g = grid()
    if len(set(g.xcell.tolist()) | set(g.ycell.tolist())) != 1:  # pragma: no cover
        raise OSError("sky-grid table: projection cells of different sizes are not supported")
    pc = ProjectionCell(0)
    step = int(pc.shape[1] / g.sc_nxy + 0.5)
    size = step + 2 * g.sc_olap
    crpix0 = pc.crpix[0] - 1.0
    far = max(crpix0 + 0.5, (g.sc_nxy - 1) * step + size - 0.5 - crpix0)
    t = math.radians(far * pc.scale / 3600.0)
    reach = math.degrees(math.atan(math.hypot(t, t)))
    return crpix0, pc.scale / 3600.0, step, size, reach


def _pc_reach() -> float:
    """Angular radius (deg) from a pcell tangent point to the farthest skycell corner."""
    return _consts()[4]


class _Polys:
    """Concatenated polygons: vertices (M, 3) and, per edge, start/end vertex and polygon id."""

    def __init__(self, radec_list: list[np.ndarray]) -> None:
        self.radec = radec_list
        sizes = np.array([len(p) for p in radec_list], dtype=np.int64)
        self.xyz = _radec_to_xyz(np.concatenate(radec_list))
        first = np.cumsum(sizes) - sizes
        idx = np.arange(int(sizes.sum()))
        self.start = idx
        nxt = idx + 1
        last = first + sizes - 1
        nxt[last] = first
        self.end = nxt
        self.first = first

    def cap(self) -> tuple[np.ndarray, float]:
        s = self.xyz.sum(axis=0)
        n = np.linalg.norm(s)
        if n < 1e-9:
            return s, 180.0
        c = s / n
        r = float(np.degrees(np.arccos(np.clip(self.xyz @ c, -1.0, 1.0))).max())
        return c, r


# --------------------------------------------------------------------------------------------
# footprint normalisation


def _has_distortion(w: WCS) -> bool:
    ctype = [str(c).upper() for c in w.wcs.ctype]
    plain_tan = all(c.endswith("-TAN") for c in ctype) and not any(
        c.endswith("-SIP") for c in ctype
    )
    return bool(
        not plain_tan
        or w.sip is not None
        or w.cpdis1 is not None
        or w.cpdis2 is not None
        or w.det2im1 is not None
        or w.det2im2 is not None
    )


def wcs_outline(w: WCS, step: int = DENSIFY_STEP) -> np.ndarray:
    """Sky outline of a WCS's pixel area, as an (N, 2) RA/Dec (deg) polygon.

    The outline runs along the pixel edges (0-based -0.5 and n-0.5) counter-clockwise in pixel
    space starting at (-0.5, -0.5). A plain TAN WCS gives its 4 corners (exact: its sides are
    great circles); a WCS with SIP, lookup-table distortion or another projection gives
    ``max(4, ceil(n / step))`` segments per side, all mapped with ``all_pix2world``.

    Raises
    ------
    ValueError
        If ``pixel_shape`` is not set, the WCS is not 2-d celestial, or the outline maps to
        non-finite sky positions.
    """
    if w.pixel_shape is None:
        raise ValueError("footprint WCS has no pixel_shape (NAXIS1/NAXIS2): cannot get its outline")
    if w.naxis != 2 or not w.has_celestial:
        raise ValueError(f"footprint WCS must be 2-d celestial, got CTYPE {list(w.wcs.ctype)}")
    nx, ny = (int(v) for v in w.pixel_shape)
    if nx <= 0 or ny <= 0:
        raise ValueError(f"footprint WCS has an empty pixel_shape {w.pixel_shape}")
    if _has_distortion(w):
        sx = max(4, math.ceil(nx / step))
        sy = max(4, math.ceil(ny / step))
    else:
        sx = sy = 1
    xs = np.linspace(-0.5, nx - 0.5, sx + 1)
    ys = np.linspace(-0.5, ny - 0.5, sy + 1)
    px = np.concatenate([xs[:-1], np.full(sy, nx - 0.5), xs[::-1][:-1], np.full(sy, -0.5)])
    py = np.concatenate([np.full(sx, -0.5), ys[:-1], np.full(sx, ny - 0.5), ys[::-1][:-1]])
    ra, dec = w.all_pix2world(px, py, 0)
    out = np.column_stack([ra, dec])
    if not np.all(np.isfinite(out)):
        raise ValueError("footprint WCS maps part of its pixel outline to invalid sky positions")
    if w.wcs.lngtyp and w.wcs.lng == 1:  # latitude first: swap to (ra, dec)
        out = out[:, ::-1]
    return out


def _check_polygon(a: object) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 3:
        raise ValueError(
            f"footprint polygon must be an (N, 2) array of (ra, dec) with N >= 3, got shape "
            f"{arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("footprint polygon has non-finite coordinates")
    if np.any(np.abs(arr[:, 1]) > 90.0):
        raise ValueError("footprint polygon has a declination outside -90..90 deg")
    return arr


def footprint_polygons(footprint: Footprint) -> list[np.ndarray]:
    """Normalise a footprint to a list of (N, 2) RA/Dec (deg) polygons.

    Parameters
    ----------
    footprint : WCS, Header, (N, 2) array, or a list of these
        A WCS with ``pixel_shape`` (its pixel-area outline, see :func:`wcs_outline`), a FITS
        header (read with ``WCS(header)``: SIP is honoured, lookup tables need the file, so
        pass ``WCS(header, fobj=hdul)`` instead), or polygon vertices joined by great circles.

    Raises
    ------
    ValueError
        If the footprint is empty or of an unsupported type.
    """
    if isinstance(footprint, WCS):
        return [wcs_outline(footprint)]
    if isinstance(footprint, fits.Header):
        try:
            w = WCS(footprint)
        except Exception as exc:  # astropy raises several kinds for bad headers
            hint = " (pass WCS(header, fobj=hdul) instead)" if "HDUList" in str(exc) else ""
            raise ValueError(f"footprint header has no usable WCS: {exc}{hint}") from exc
        if w.pixel_shape is None and "NAXIS1" in footprint and "NAXIS2" in footprint:
            w.pixel_shape = (int(footprint["NAXIS1"]), int(footprint["NAXIS2"]))
        return [wcs_outline(w)]
    if isinstance(footprint, np.ndarray) and footprint.ndim == 2:
        return [_check_polygon(footprint)]
    if isinstance(footprint, list | tuple):
        if len(footprint) == 0:
            raise ValueError("empty footprint list")
        if all(isinstance(f, int | float | np.number) for f in footprint):
            raise ValueError("footprint must be a WCS, Header, (N, 2) array or a list of them")
        if isinstance(footprint[0], list | tuple) and len(footprint[0]) == 2 and all(
            isinstance(v, int | float | np.number) for v in footprint[0]
        ):
            return [_check_polygon(footprint)]  # a list of (ra, dec) pairs
        out: list[np.ndarray] = []
        for f in footprint:
            out.extend(footprint_polygons(f))
        return out
    if isinstance(footprint, np.ndarray):
        return [_check_polygon(footprint)]
    raise ValueError(
        f"unsupported footprint type {type(footprint).__name__}: expected a WCS, a FITS Header, "
        "an (N, 2) ra/dec array or a list of them"
    )


# --------------------------------------------------------------------------------------------
# overlap tests (vectorised over rectangles x edges)


def _edges_cross_open_rect(ax, ay, bx, by, x0, x1, y0, y1) -> np.ndarray:
    """(R, E) bool: segment a->b has a piece of positive length inside the open rectangle."""
    dx = bx - ax
    dy = by - ay
    with np.errstate(divide="ignore", invalid="ignore"):
        tx0 = (x0 - ax) / dx
        tx1 = (x1 - ax) / dx
        ty0 = (y0 - ay) / dy
        ty1 = (y1 - ay) / dy
    inx = (ax > x0) & (ax < x1)
    iny = (ay > y0) & (ay < y1)
    zx = dx == 0
    zy = dy == 0
    lox = np.where(zx, np.where(inx, -np.inf, np.inf), np.minimum(tx0, tx1))
    hix = np.where(zx, np.where(inx, np.inf, -np.inf), np.maximum(tx0, tx1))
    loy = np.where(zy, np.where(iny, -np.inf, np.inf), np.minimum(ty0, ty1))
    hiy = np.where(zy, np.where(iny, np.inf, -np.inf), np.maximum(ty0, ty1))
    tmin = np.maximum(np.maximum(lox, loy), 0.0)
    tmax = np.minimum(np.minimum(hix, hiy), 1.0)
    return tmin < tmax


def _points_in_polys(ax, ay, bx, by, cx, cy, first) -> np.ndarray:
    """(R,) bool: point (cx, cy)[r] inside any polygon (even-odd rule per polygon)."""
    cond = (ay > cy) != (by > cy)
    with np.errstate(divide="ignore", invalid="ignore"):
        xint = ax + (cy - ay) * (bx - ax) / (by - ay)
    cross = cond & (cx < xint)
    parity = np.add.reduceat(cross.astype(np.int64), first, axis=1) % 2
    return parity.any(axis=1)


def _find_cells(polys: _Polys) -> list[tuple[int, int, int]]:
    g = grid()
    c, r = polys.cap()
    if r > MAX_FOOTPRINT_RADIUS:
        raise ValueError(
            f"footprint spans {r:.1f} deg from its centre (limit {MAX_FOOTPRINT_RADIUS} deg); "
            "split it into smaller polygons"
        )
    reach = _pc_reach() + 1e-6
    cosd = np.clip(g.centres @ c, -1.0, 1.0)
    cand = np.nonzero(cosd >= math.cos(math.radians(min(r + reach, 180.0))))[0]
    if cand.size == 0:
        return []
    frames = _frames(g.crval[cand])
    p = np.einsum("kij,mj->kim", frames, polys.xyz)
    z = p[:, 2, :]
    # Points at or behind a tangent plane cannot happen for these candidates (r + reach keeps
    # every vertex within 84 deg); drop such pcells defensively instead of projecting them.
    ok = z.min(axis=1) > 0.05
    cand, p, z = cand[ok], p[ok], z[ok]
    if cand.size == 0:
        return []
    crpix0, s, step, size, _ = _consts()  # crpix0: 0-based pcell reference pixel
    # 0-based fine pcell pixels (x grows west: CD1_1 = -s).
    X = crpix0 - np.degrees(p[:, 0, :] / z) / s
    Y = crpix0 + np.degrees(p[:, 1, :] / z) / s
    nxy = g.sc_nxy
    # Skycell i (0-based) covers 0-based fine pcell pixel area [i*step - 0.5, i*step+size-0.5].
    lo = np.floor((np.column_stack([X.min(1), Y.min(1)]) - size + 0.5) / step).astype(np.int64) + 1
    hi = np.ceil((np.column_stack([X.max(1), Y.max(1)]) + 0.5) / step).astype(np.int64) - 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, nxy - 1)
    kk, ii, jj = [], [], []
    for k in range(len(cand)):
        if hi[k, 0] < lo[k, 0] or hi[k, 1] < lo[k, 1]:
            continue
        gi, gj = np.meshgrid(
            np.arange(lo[k, 0], hi[k, 0] + 1), np.arange(lo[k, 1], hi[k, 1] + 1), indexing="ij"
        )
        kk.append(np.full(gi.size, k))
        ii.append(gi.ravel())
        jj.append(gj.ravel())
    if not kk:
        return []
    kk = np.concatenate(kk)
    ii = np.concatenate(ii)
    jj = np.concatenate(jj)
    x0 = (ii * step - 0.5)[:, None]
    y0 = (jj * step - 0.5)[:, None]
    x1 = x0 + size
    y1 = y0 + size
    Xk, Yk = X[kk], Y[kk]
    ax, ay = Xk[:, polys.start], Yk[:, polys.start]
    bx, by = Xk[:, polys.end], Yk[:, polys.end]
    hit = _edges_cross_open_rect(ax, ay, bx, by, x0, x1, y0, y1).any(axis=1)
    need = ~hit
    if need.any():
        cx = (x0 + x1)[need] * 0.5
        cy = (y0 + y1)[need] * 0.5
        hit[need] = _points_in_polys(
            ax[need], ay[need], bx[need], by[need], cx, cy, polys.first
        )
    sel = np.nonzero(hit)[0]
    return [(int(cand[kk[n]]), int(ii[n]) + 1, int(jj[n]) + 1) for n in sel]


def cells_for_footprint(footprint: Footprint) -> list[str]:
    """Names of the SkyCells whose area overlaps a footprint with positive area.

    Parameters
    ----------
    footprint : WCS, list of WCS, Header, or (N, 2) array
        An exposure: one chip WCS with ``pixel_shape``, a list of them (all chips of one
        exposure; the union is used), a FITS header, or (ra, dec) polygon vertices in degrees
        joined by great-circle arcs (a list of such arrays is a union too). Distorted WCSs are
        handled by projecting their densified outline (see :func:`wcs_outline`). Each polygon
        must fit in a cap of radius 40 deg.

    Returns
    -------
    list of str
        ``"skycell-pPPPPxXXyYY"`` names sorted by projection cell, then x, then y (which is
        also plain string order, since the names have fixed width). Overlap is decided at the
        fine scale on each skycell's full pixel area (0-based -0.5 .. 21954-0.5); coarse
        layers use the same names.

    Raises
    ------
    ValueError
        If the footprint is malformed or too large.
    """
    polys = footprint_polygons(footprint)
    found: set[tuple[int, int, int]] = set()
    allp = _Polys(polys)
    _, r = allp.cap()
    groups = [allp] if r <= MAX_FOOTPRINT_RADIUS else [_Polys([p]) for p in polys]
    for grp in groups:
        found.update(_find_cells(grp))
    return [f"skycell-p{p:04d}x{x:02d}y{y:02d}" for p, x, y in sorted(found)]


# --------------------------------------------------------------------------------------------
# bounded WCS


def _clip_polygon_to_rect(
    x: np.ndarray, y: np.ndarray, x0: float, x1: float, y0: float, y1: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sutherland-Hodgman clip of a polygon (any shape) against an axis-aligned rectangle."""
    pts = np.column_stack([x, y])
    for axis, bound, keep_greater in ((0, x0, True), (0, x1, False), (1, y0, True), (1, y1, False)):
        if len(pts) == 0:
            break
        nxt = np.roll(pts, -1, axis=0)
        a = pts[:, axis] - bound
        b = nxt[:, axis] - bound
        if not keep_greater:
            a, b = -a, -b
        ina = a >= 0
        inb = b >= 0
        den = a - b
        t = a / np.where(den == 0, 1.0, den)
        inter = pts + t[:, None] * (nxt - pts)
        inter[:, axis] = bound
        out = []
        for n in range(len(pts)):
            if ina[n]:
                out.append(pts[n])
                if not inb[n]:
                    out.append(inter[n])
            elif inb[n]:
                out.append(inter[n])
        pts = np.array(out).reshape(-1, 2)
    return pts[:, 0], pts[:, 1]


def _polygon_area(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3:
        return 0.0
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def cell_pixels(cell: SkyCell, radec: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0-based pixel coordinates of RA/Dec points in ``cell`` (at the cell's scale).

    Returns ``(x, y, front)``; ``front`` is False for points at or behind the tangent plane
    (their x, y are meaningless).
    """
    xyz = _radec_to_xyz(np.asarray(radec, dtype=np.float64).reshape(-1, 2))
    frame = _frames(np.array([cell.crval]))
    p = np.einsum("kij,mj->kim", frame, xyz)[0]
    z = p[2]
    front = z > 0
    zz = np.where(front, z, 1.0)
    xi = np.degrees(p[0] / zz)
    eta = np.degrees(p[1] / zz)
    x = xi / cell.cd[0, 0] + (cell.crpix[0] - 1.0)
    y = eta / cell.cd[1, 1] + (cell.crpix[1] - 1.0)
    return x, y, front


def bounded_wcs(cell: SkyCell, footprints: Iterable[Footprint]) -> WCS:
    """The smallest sub-array of ``cell`` (at the cell's own scale) holding every footprint.

    Like DrizzlePac's MVM product WCS: the cell's WCS with CRPIX shifted by the integer 0-based
    offsets ``(xmin, ymin)`` of the sub-array and ``pixel_shape = (xmax-xmin+1, ymax-ymin+1)``.

    Rounding: the sub-array holds exactly the pixels whose area (0-based pixel p covers
    [p-0.5, p+0.5]) the footprints touch with positive length along each axis: the footprint
    polygons are clipped to the cell's pixel area, and ``xmin = floor(bx0 - 0.5 + eps) + 1``,
    ``xmax = ceil(bx1 + 0.5 - eps) - 1`` for the clipped bounding box [bx0, bx1] (same in y),
    with ``eps = 1e-6`` pixel so that a footprint edge lying on a pixel boundary (up to float
    noise) does not pull in the next pixel.
    Compute fine and coarse products separately by passing the fine or the coarse cell.

    Parameters
    ----------
    cell : SkyCell
        The SkyCell (any scale).
    footprints : iterable of (N, 2) arrays and/or WCS (or anything :func:`cells_for_footprint`
        accepts)
        Each polygon must fit in a cap of radius 40 deg.

    Returns
    -------
    astropy.wcs.WCS
        A new WCS with ``pixel_shape`` set.

    Raises
    ------
    ValueError
        If no footprint overlaps the cell with positive area.
    """
    if isinstance(footprints, WCS | fits.Header | np.ndarray):
        footprints = [footprints]
    polys: list[np.ndarray] = []
    for f in footprints:
        polys.extend(footprint_polygons(f))
    if not polys:
        raise ValueError(f"no footprints given for {cell.name}")
    ny, nx = cell.shape
    centre = _radec_to_xyz(np.array([cell.crval]))[0]
    reach = _pc_reach() + 1.0
    bx0 = by0 = np.inf
    bx1 = by1 = -np.inf
    for poly in polys:
        pp = _Polys([poly])
        c, r = pp.cap()
        if r > MAX_FOOTPRINT_RADIUS:
            raise ValueError(
                f"footprint spans {r:.1f} deg from its centre (limit {MAX_FOOTPRINT_RADIUS} deg)"
            )
        if math.degrees(math.acos(float(np.clip(c @ centre, -1, 1)))) > r + reach:
            continue
        x, y, front = cell_pixels(cell, poly)
        if not front.all():  # pragma: no cover - excluded by the distance test above
            continue
        cx, cy = _clip_polygon_to_rect(x, y, -0.5, nx - 0.5, -0.5, ny - 0.5)
        if _polygon_area(cx, cy) <= 1e-9:
            continue
        bx0, bx1 = min(bx0, cx.min()), max(bx1, cx.max())
        by0, by1 = min(by0, cy.min()), max(by1, cy.max())
    if not np.isfinite(bx0):
        raise ValueError(f"none of the {len(polys)} footprint(s) overlaps {cell.name}")
    eps = BOUNDS_EPS
    xmin = max(int(math.floor(bx0 - 0.5 + eps)) + 1, 0)
    ymin = max(int(math.floor(by0 - 0.5 + eps)) + 1, 0)
    xmax = min(int(math.ceil(bx1 + 0.5 - eps)) - 1, nx - 1)
    ymax = min(int(math.ceil(by1 + 0.5 - eps)) - 1, ny - 1)
    w = cell.wcs
    w.wcs.crpix = [cell.crpix[0] - xmin, cell.crpix[1] - ymin]
    w.pixel_shape = (xmax - xmin + 1, ymax - ymin + 1)
    w.wcs.set()
    return w
