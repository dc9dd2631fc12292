"""The HAP sky-grid definition table (``data/allsky_cells.fits``), loaded once and cached.

The table has one row per declination ring ("band"); see ``skycells.md`` section 1. Everything a
caller needs is precomputed here once per process: the per-ring columns, the ring of every
projection cell, the CRVAL of every projection cell and its centre as a unit vector (for fast
angular-distance searches).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np
from astropy.io import fits

#: Number of projection cells in the table (ids 0..NPCELL-1).
NPCELL = 2644


@dataclass(frozen=True)
class Grid:
    """The grid table, as plain read-only numpy arrays (one entry per ring unless noted).

    Attributes
    ----------
    projcell, nband, xcell, ycell : ndarray of int64
        First projection-cell id, number of cells, pcell size in pixels (per ring).
    dec, dec_min, dec_max : ndarray of float64
        Tangent-point declination and Dec range of the ring (degrees).
    sc_olap, sc_nxy : int
        Skycell overlap margin (fine pixels per side) and skycells per pcell side.
    pc_scale : float
        Projection-cell pixel scale, arcsec/pixel.
    ring_of : ndarray of int64, shape (NPCELL,)
        Ring of every projection cell.
    crval : ndarray of float64, shape (NPCELL, 2)
        CRVAL (RA, Dec) of every projection cell, computed exactly as ``ProjectionCell`` does.
    centres : ndarray of float64, shape (NPCELL, 3)
        Unit vectors of the projection-cell tangent points.
    """

    projcell: np.ndarray
    nband: np.ndarray
    xcell: np.ndarray
    ycell: np.ndarray
    dec: np.ndarray
    dec_min: np.ndarray
    dec_max: np.ndarray
    sc_olap: int
    sc_nxy: int
    pc_scale: float
    ring_of: np.ndarray
    crval: np.ndarray
    centres: np.ndarray


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


@functools.cache
def grid() -> Grid:
    """Return the cached grid table (read from the package data on first call).

    Raises
    ------
    OSError
        If the packaged table cannot be read.
    """
    path = resources.files("skycells").joinpath("data/allsky_cells.fits")
    try:
        with resources.as_file(path) as p, fits.open(p, memmap=False) as hdul:
            hdr = hdul[0].header
            tab = hdul[1].data
            cols = {
                name: np.array(tab[name])
                for name in ("PROJCELL", "NBAND", "XCELL", "YCELL", "DEC", "DEC_MIN", "DEC_MAX")
            }
            sc_olap = int(hdr["SC_OLAP"])
            sc_nxy = int(hdr["SC_NXY"])
            pc_scale = float(hdr["PC_SCALE"])
    except (OSError, KeyError) as exc:  # pragma: no cover - broken installation
        raise OSError(f"cannot read the sky-grid table {path}: {exc}") from exc

    projcell = cols["PROJCELL"].astype(np.int64)
    nband = cols["NBAND"].astype(np.int64)
    dec = cols["DEC"].astype(np.float64)
    ring_of = np.repeat(np.arange(len(nband), dtype=np.int64), nband)
    if len(ring_of) != NPCELL or not np.array_equal(projcell, np.cumsum(nband) - nband):
        raise OSError(f"sky-grid table {path} is inconsistent: expected {NPCELL} cells")
    k = np.arange(NPCELL, dtype=np.int64) - projcell[ring_of]
    # Same operation order as ProjectionCell: (k * 360.0) / NBAND.
    crval1 = (k.astype(np.float64) * 360.0) / nband[ring_of].astype(np.float64)
    crval2 = dec[ring_of]
    crval = np.column_stack([crval1, crval2])
    ra, de = np.radians(crval1), np.radians(crval2)
    centres = np.column_stack([np.cos(de) * np.cos(ra), np.cos(de) * np.sin(ra), np.sin(de)])
    return Grid(
        projcell=_readonly(projcell),
        nband=_readonly(nband),
        xcell=_readonly(cols["XCELL"].astype(np.int64)),
        ycell=_readonly(cols["YCELL"].astype(np.int64)),
        dec=_readonly(dec),
        dec_min=_readonly(cols["DEC_MIN"].astype(np.float64)),
        dec_max=_readonly(cols["DEC_MAX"].astype(np.float64)),
        sc_olap=sc_olap,
        sc_nxy=sc_nxy,
        pc_scale=pc_scale,
        ring_of=_readonly(ring_of),
        crval=_readonly(crval),
        centres=_readonly(centres),
    )
