"""Offline reference catalogs: the :class:`RefCatalog` interface and :class:`FileCatalog`.

A reference catalog answers one question: which reference sources (RA/Dec at a given epoch, with
weights) lie inside a footprint. :class:`FileCatalog` answers it from a local table (ECSV, FITS,
CSV or Parquet) with Gaia archive column names or plain ``ra``/``dec``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from astropy.table import Table
from skimage.measure import points_in_poly

#: Reference epoch assumed when the table has neither a ``ref_epoch`` column nor meta (Gaia DR3).
DEFAULT_EPOCH = 2016.0

#: Position error assumed (mas) when the table has no ``ra_error``/``dec_error``.
DEFAULT_ERROR_MAS = 10.0

_FORMATS = {".ecsv": "ascii.ecsv", ".fits": "fits", ".fit": "fits", ".fits.gz": "fits",
            ".csv": "ascii.csv", ".parquet": "parquet"}


class CatalogError(ValueError):
    """A reference catalog that cannot be used (names the file and what is wrong)."""


@runtime_checkable
class RefCatalog(Protocol):
    """What the fits need from a reference catalog."""

    name: str

    def query(self, footprint: np.ndarray, epoch: float) -> Table:
        """Reference sources inside ``footprint`` at ``epoch``.

        Parameters
        ----------
        footprint : ndarray (N, 2)
            Polygon vertices (ra, dec) in degrees (the union of an exposure set's chips is
            passed as the concatenation of closed chip outlines separated by NaN rows).
        epoch : float
            Julian year (e.g. 2019.5) the positions are wanted at.

        Returns
        -------
        astropy.table.Table
            ``RA``, ``DEC`` (deg, at ``epoch``), ``weight`` (1 / (sigma_ra^2 + sigma_dec^2),
            mas^-2), ``mag`` (NaN when unknown), ``objID``; possibly empty.
        """
        ...


def _format_for(path: Path) -> str:
    name = path.name.lower()
    for ext, fmt in _FORMATS.items():
        if name.endswith(ext):
            return fmt
    raise CatalogError(f"{path}: unknown catalog format (use one of {', '.join(_FORMATS)})")


def _find(table: Table, *names: str) -> str | None:
    lower = {c.lower(): c for c in table.colnames}
    for n in names:
        if n.lower() in lower:
            return lower[n.lower()]
    return None


def _inside(ra: np.ndarray, dec: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Which points lie inside any of the (NaN-separated) polygons of ``footprint``."""
    fp = np.asarray(footprint, dtype=float)
    ra0, dec0 = np.nanmean(fp[:, 0]), np.nanmean(fp[:, 1])
    # local tangent-plane offsets (degrees) around the footprint centre
    cosd = math.cos(math.radians(dec0))

    def proj(r: np.ndarray, d: np.ndarray) -> np.ndarray:
        return np.column_stack([((r - ra0 + 180.0) % 360.0 - 180.0) * cosd, d - dec0])

    pts = proj(ra, dec)
    out = np.zeros(len(ra), bool)
    breaks = np.flatnonzero(~np.isfinite(fp[:, 0]))
    for poly in np.split(fp, breaks):
        poly = poly[np.isfinite(poly[:, 0])]
        if len(poly) >= 3:
            out |= points_in_poly(pts, proj(poly[:, 0], poly[:, 1]))
    return out


class FileCatalog:
    """A reference catalog read from a local file.

    Parameters
    ----------
    path : path-like
        ECSV, FITS (first table HDU), CSV or Parquet file.
    name : str, optional
        Catalog name used in WCSNAME (``...-FIT_SVM_<name>``); default the table's ``catalog``
        meta value, else the file stem in upper case.

    Notes
    -----
    Columns (case-insensitive): ``ra``, ``dec`` (deg) are required; optional ``ra_error``,
    ``dec_error`` (mas), ``pmra`` (mu_alpha* = mu_alpha cos(dec)), ``pmdec`` (mas/yr),
    ``ref_epoch`` (Julian year; else meta ``ref_epoch``/``epoch``, else 2016.0),
    ``phot_g_mean_mag`` or ``mag``, ``source_id``/``objID``/``id``. Rows with a non-finite
    position are dropped; a missing proper motion counts as zero.

    Raises
    ------
    CatalogError
        The file is missing, unreadable, empty or lacks ``ra``/``dec`` (the message names the
        file and the column).
    """

    def __init__(self, path: str | os.PathLike[str], name: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CatalogError(f"{self.path}: reference catalog file not found")
        fmt = _format_for(self.path)
        try:
            t = Table.read(self.path, format=fmt)
        except Exception as exc:  # astropy raises many types for a corrupt file
            raise CatalogError(f"{self.path}: cannot read the reference catalog ({fmt}): "
                               f"{exc}") from exc
        cra, cdec = _find(t, "ra", "RA_ICRS", "RAJ2000"), _find(t, "dec", "DE_ICRS", "DEJ2000")
        if cra is None or cdec is None:
            missing = "ra" if cra is None else "dec"
            raise CatalogError(f"{self.path}: reference catalog has no '{missing}' column "
                               f"(columns: {', '.join(t.colnames) or 'none'})")
        if len(t) == 0:
            raise CatalogError(f"{self.path}: reference catalog is empty")
        self.name = str(name or t.meta.get("catalog") or t.meta.get("CATALOG")
                        or self.path.stem.split(".")[0].upper())

        def col(c: str | None, fill: float) -> np.ndarray:
            if c is None:
                return np.full(len(t), fill)
            v = np.ma.filled(np.ma.asarray(t[c], dtype=float), np.nan)
            return np.where(np.isfinite(v), v, fill)

        ra = np.ma.filled(np.ma.asarray(t[cra], dtype=float), np.nan)
        dec = np.ma.filled(np.ma.asarray(t[cdec], dtype=float), np.nan)
        good = np.isfinite(ra) & np.isfinite(dec)
        if not good.any():
            raise CatalogError(f"{self.path}: no row has a finite '{cra}'/'{cdec}'")
        meta_epoch = t.meta.get("ref_epoch", t.meta.get("epoch", DEFAULT_EPOCH))
        self.ra = ra[good]
        self.dec = dec[good]
        self.ra_error = col(_find(t, "ra_error"), DEFAULT_ERROR_MAS)[good]
        self.dec_error = col(_find(t, "dec_error"), DEFAULT_ERROR_MAS)[good]
        self.pmra = col(_find(t, "pmra", "pm_ra"), 0.0)[good]
        self.pmdec = col(_find(t, "pmdec", "pm_dec"), 0.0)[good]
        self.pmra_error = col(_find(t, "pmra_error"), 0.0)[good]
        self.pmdec_error = col(_find(t, "pmdec_error"), 0.0)[good]
        self.ref_epoch = col(_find(t, "ref_epoch", "epoch"), float(meta_epoch))[good]
        self.mag = col(_find(t, "phot_g_mean_mag", "mag"), np.nan)[good]
        cid = _find(t, "source_id", "objID", "id")
        self.ids = (np.asarray(t[cid])[good] if cid is not None
                    else np.flatnonzero(good) + 1)

    def __len__(self) -> int:
        return len(self.ra)

    def __repr__(self) -> str:
        return f"FileCatalog({str(self.path)!r}, name={self.name!r}, {len(self)} sources)"

    def query(self, footprint: np.ndarray, epoch: float) -> Table:
        """Sources inside ``footprint`` propagated to ``epoch`` (see :class:`RefCatalog`).

        Proper motions are applied linearly in the tangent plane (exact to < 0.01 mas for
        the few years and mas/yr motions involved); position errors grow by the proper-motion
        errors times the epoch difference.
        """
        dt = float(epoch) - self.ref_epoch
        cosd = np.cos(np.radians(self.dec))
        ra = self.ra + self.pmra * dt / 3.6e6 / np.maximum(cosd, 1e-9)
        dec = self.dec + self.pmdec * dt / 3.6e6
        sel = _inside(ra, dec, footprint)
        var = (self.ra_error ** 2 + self.dec_error ** 2
               + (self.pmra_error ** 2 + self.pmdec_error ** 2) * dt ** 2)
        t = Table()
        t["RA"] = ra[sel]
        t["DEC"] = dec[sel]
        t["weight"] = 1.0 / np.maximum(var[sel], 1e-6)
        t["mag"] = self.mag[sel]
        t["objID"] = self.ids[sel]
        return t
