"""Footprint -> SkyCells for many polygons at once (vectorised over polygons).

Same geometry as :func:`skycells.cells_for_footprint` (``skycells.md`` section 5, "exact-geometry
equivalent"), run over arrays of polygons instead of one footprint at a time. It uses the same
helpers (gnomonic frames, the pcell pixel constants, the open-rectangle edge test and the
point-in-polygon test) in the same operation order, so a polygon gets the SkyCells
``cells_for_footprint`` gives it.

Only the choice of candidate projection cells differs, and it only has to be a superset: per
polygon, the declination rings within ``r + R_PC`` of its bounding-cap centre, then in each ring
the cells whose RA lies within the great-circle reach, then the same exact angular-distance cut
as ``cells_for_footprint`` (tangent point within ``r + R_PC``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skycells._grid import grid
from skycells.footprint import (
    MAX_FOOTPRINT_RADIUS,
    _consts,
    _edges_cross_open_rect,
    _frames,
    _pc_reach,
    _points_in_polys,
    _radec_to_xyz,
)

__all__ = ["PolygonHits", "cells_for_polygons", "skycell_code", "skycell_names"]

#: Polygons processed per block (bounds the temporary arrays to a few hundred MB).
BLOCK = 8192


@dataclass
class PolygonHits:
    """Polygon-SkyCell overlaps found by :func:`cells_for_polygons` (one entry per overlap).

    Attributes
    ----------
    polygon : ndarray of int64
        Index of the polygon in the input.
    pcell, x, y : ndarray of int64
        Projection cell (0..2643) and 1-based SkyCell indices (1..21).
    box : ndarray of float64, shape (n, 4)
        ``(x0, x1, y0, y1)``: the polygon's vertex bounding box in the SkyCell's 0-based fine
        pixel frame, clipped to the SkyCell's pixel area (``-0.5 .. 21954 - 0.5``).
    bad : ndarray of int64
        Indices of polygons that were skipped because they span more than the largest
        footprint radius (:data:`skycells.footprint.MAX_FOOTPRINT_RADIUS`) or are degenerate.
    """

    polygon: np.ndarray
    pcell: np.ndarray
    x: np.ndarray
    y: np.ndarray
    box: np.ndarray
    bad: np.ndarray

    @property
    def code(self) -> np.ndarray:
        """One integer per SkyCell, see :func:`skycell_code`."""
        return skycell_code(self.pcell, self.x, self.y)


def skycell_code(pcell: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Integer code of SkyCells: ``(pcell * 21 + x - 1) * 21 + y - 1`` (sorts like the names)."""
    n = grid().sc_nxy
    return (np.asarray(pcell, np.int64) * n + np.asarray(x, np.int64) - 1) * n + (
        np.asarray(y, np.int64) - 1)


def skycell_names(code: np.ndarray) -> np.ndarray:
    """``skycell-pPPPPxXXyYY`` names (object array) of :func:`skycell_code` values."""
    n = grid().sc_nxy
    code = np.asarray(code, np.int64)
    p, rest = np.divmod(code, n * n)
    x, y = np.divmod(rest, n)
    return np.array([f"skycell-p{a:04d}x{b + 1:02d}y{c + 1:02d}"
                     for a, b, c in zip(p.tolist(), x.tolist(), y.tolist(), strict=True)],
                    dtype=object)


def _candidate_pcells(c: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(polygon index, pcell) pairs: every pcell whose tangent point is within r + reach."""
    g = grid()
    reach = _pc_reach() + 1e-6
    rad = np.radians(np.minimum(r + reach, 180.0))
    dec_c = np.degrees(np.arcsin(np.clip(c[:, 2], -1.0, 1.0)))
    ra_c = np.mod(np.degrees(np.arctan2(c[:, 1], c[:, 0])), 360.0)
    # rings whose tangent declination is within the reach (with a margin; exact cut below)
    near = np.abs(dec_c[:, None] - g.dec[None, :]) <= np.degrees(rad)[:, None] + 1e-6
    n_idx, ring = np.nonzero(near)
    nband = g.nband[ring]
    sd_c, cd_c = np.sin(np.radians(dec_c[n_idx])), np.cos(np.radians(dec_c[n_idx]))
    sd_r, cd_r = np.sin(np.radians(g.dec[ring])), np.cos(np.radians(g.dec[ring]))
    den = cd_c * cd_r
    with np.errstate(divide="ignore", invalid="ignore"):
        q = (np.cos(rad[n_idx]) - sd_c * sd_r) / den
    full = (den < 1e-9) | (q <= -1.0)
    dalpha = np.degrees(np.arccos(np.clip(q, -1.0, 1.0)))
    step = 360.0 / nband
    klo = np.floor((ra_c[n_idx] - dalpha) / step).astype(np.int64) - 1
    khi = np.ceil((ra_c[n_idx] + dalpha) / step).astype(np.int64) + 1
    count = np.where(full, nband, np.minimum(khi - klo + 1, nband))
    klo = np.where(full, 0, klo)
    rep = np.repeat(np.arange(len(n_idx)), count)
    offs = np.cumsum(count) - count
    k = np.mod(klo[rep] + (np.arange(len(rep)) - offs[rep]), nband[rep])
    poly = n_idx[rep]
    pcell = g.projcell[ring[rep]] + k
    # the exact cut of cells_for_footprint: tangent point within r + reach of the cap centre
    cosd = np.clip(np.einsum("ij,ij->i", g.centres[pcell], c[poly]), -1.0, 1.0)
    keep = cosd >= np.cos(rad[poly])
    return poly[keep], pcell[keep]


def _block(radec: np.ndarray) -> tuple[np.ndarray, ...]:
    """Overlaps of one block of polygons (N, V, 2) with the same vertex count."""
    g = grid()
    nv = radec.shape[1]
    xyz = _radec_to_xyz(radec.reshape(-1, 2)).reshape(-1, nv, 3)
    s = xyz.sum(axis=1)
    norm = np.linalg.norm(s, axis=1)
    ok = norm >= 1e-9
    c = s / np.where(ok, norm, 1.0)[:, None]
    r = np.degrees(np.arccos(np.clip(np.einsum("nvj,nj->nv", xyz, c), -1.0, 1.0))).max(axis=1)
    ok &= r <= MAX_FOOTPRINT_RADIUS
    bad = np.nonzero(~ok)[0]
    idx = np.nonzero(ok)[0]
    empty = np.zeros(0, np.int64)
    if idx.size == 0:
        return empty, empty, empty, empty, np.zeros((0, 4)), bad
    poly, pcell = _candidate_pcells(c[idx], r[idx])
    poly = idx[poly]
    frames = _frames(g.crval[pcell])
    p = np.einsum("kij,kmj->kim", frames, xyz[poly])
    z = p[:, 2, :]
    front = z.min(axis=1) > 0.05
    poly, pcell, p, z = poly[front], pcell[front], p[front], z[front]
    crpix0, sc, step, size, _ = _consts()
    X = crpix0 - np.degrees(p[:, 0, :] / z) / sc
    Y = crpix0 + np.degrees(p[:, 1, :] / z) / sc
    nxy = g.sc_nxy
    bmin = np.column_stack([X.min(1), Y.min(1)])
    bmax = np.column_stack([X.max(1), Y.max(1)])
    lo = np.floor((bmin - size + 0.5) / step).astype(np.int64) + 1
    hi = np.ceil((bmax + 0.5) / step).astype(np.int64) - 1
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, nxy - 1)
    nx = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0)
    ny = np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
    cnt = nx * ny
    rep = np.repeat(np.arange(len(poly)), cnt)
    t = np.arange(len(rep)) - (np.cumsum(cnt) - cnt)[rep]
    ii = lo[rep, 0] + t // ny[rep]
    jj = lo[rep, 1] + t % ny[rep]
    x0 = (ii * step - 0.5)[:, None]
    y0 = (jj * step - 0.5)[:, None]
    x1 = x0 + size
    y1 = y0 + size
    Xk, Yk = X[rep], Y[rep]
    nxt = np.roll(np.arange(nv), -1)
    ax, ay = Xk, Yk
    bx, by = Xk[:, nxt], Yk[:, nxt]
    hit = _edges_cross_open_rect(ax, ay, bx, by, x0, x1, y0, y1).any(axis=1)
    need = ~hit
    if need.any():
        cx = (x0 + x1)[need] * 0.5
        cy = (y0 + y1)[need] * 0.5
        hit[need] = _points_in_polys(ax[need], ay[need], bx[need], by[need], cx, cy,
                                     np.zeros(1, np.int64))
    sel = np.nonzero(hit)[0]
    r_sel = rep[sel]
    ox = (ii[sel] * step).astype(np.float64)
    oy = (jj[sel] * step).astype(np.float64)
    box = np.column_stack([
        np.clip(bmin[r_sel, 0] - ox, -0.5, size - 0.5),
        np.clip(bmax[r_sel, 0] - ox, -0.5, size - 0.5),
        np.clip(bmin[r_sel, 1] - oy, -0.5, size - 0.5),
        np.clip(bmax[r_sel, 1] - oy, -0.5, size - 0.5),
    ])
    return poly[r_sel], pcell[r_sel], ii[sel] + 1, jj[sel] + 1, box, bad


def cells_for_polygons(radec: np.ndarray, sizes: np.ndarray | None = None) -> PolygonHits:
    """The SkyCells every polygon overlaps with positive area (exact geometry).

    Parameters
    ----------
    radec : ndarray, shape (N, V, 2) or (M, 2)
        Polygon vertices (RA, Dec) in degrees, joined by great-circle arcs: either N polygons
        of V vertices each, or all vertices of all polygons concatenated (then ``sizes`` gives
        the vertex count of each polygon, each >= 3).
    sizes : ndarray of int, optional
        Vertex counts, for the concatenated form.

    Returns
    -------
    PolygonHits
        One entry per (polygon, SkyCell) overlap, the same overlaps
        :func:`skycells.cells_for_footprint` finds for each polygon on its own.

    Raises
    ------
    ValueError
        If the arrays have the wrong shape, non-finite values or declinations outside -90..90.
    """
    radec = np.asarray(radec, dtype=np.float64)
    if sizes is None:
        if radec.ndim != 3 or radec.shape[2] != 2 or radec.shape[1] < 3:
            raise ValueError(f"polygons must be an (N, V>=3, 2) array, got shape {radec.shape}")
        groups = [(np.arange(radec.shape[0]), radec)]
    else:
        sizes = np.asarray(sizes, dtype=np.int64)
        if radec.ndim != 2 or radec.shape[1] != 2 or int(sizes.sum()) != radec.shape[0]:
            raise ValueError("concatenated polygons: radec must be (sum(sizes), 2)")
        if np.any(sizes < 3):
            raise ValueError("every polygon needs at least 3 vertices")
        first = np.cumsum(sizes) - sizes
        groups = []
        for nv in np.unique(sizes):
            which = np.nonzero(sizes == nv)[0]
            take = first[which][:, None] + np.arange(nv)[None, :]
            groups.append((which, radec[take]))
    if not np.all(np.isfinite(radec)):
        raise ValueError("polygons have non-finite coordinates")
    if np.any(np.abs(radec[..., 1]) > 90.0):
        raise ValueError("polygons have a declination outside -90..90 deg")
    parts: list[tuple[np.ndarray, ...]] = []
    bad: list[np.ndarray] = []
    for which, arr in groups:
        for b0 in range(0, len(which), BLOCK):
            sub = which[b0:b0 + BLOCK]
            poly, pc, x, y, box, bd = _block(arr[b0:b0 + BLOCK])
            parts.append((sub[poly], pc, x, y, box))
            bad.append(sub[bd])
    if not parts:
        e = np.zeros(0, np.int64)
        return PolygonHits(e, e, e, e, np.zeros((0, 4)), e)
    return PolygonHits(
        polygon=np.concatenate([p[0] for p in parts]),
        pcell=np.concatenate([p[1] for p in parts]),
        x=np.concatenate([p[2] for p in parts]),
        y=np.concatenate([p[3] for p in parts]),
        box=np.concatenate([p[4] for p in parts]),
        bad=np.sort(np.concatenate(bad)),
    )

