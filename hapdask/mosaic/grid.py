"""Output grids: a celestial WCS with a shape, and the constructors the products need.

* :meth:`OutputGrid.from_wcs` — any celestial WCS with a pixel shape;
* :func:`skycell_grid` — the bounded sub-array of a SkyCell holding some footprints (MVM);
* :func:`north_up_grid` — a visit's north-up grid at the native scale of its first chip,
  enclosing every chip (the SVM "meta" grid, inventory 4.4);
* :func:`astrodrizzle_grid` — AstroDrizzle's ``final_*`` / ``driz_sep_*`` grid parameters
  (``scale``, ``rot``, ``outnx``/``outny``, ``ra``/``dec``, ``crpix1``/``crpix2``,
  ``refimage``).

A grid travels as a FITS header string (``NAXIS1``/``NAXIS2`` included); tasks rebuild their
own WCS from it (:func:`hapdask.mosaic.wcsio.thread_header_wcs`). Pixel coordinates are
0-based; windows are ``(y0, y1, x0, x1)``, half-open.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

import skycells
from hapdask.io import linear_pixel_scale
from hapdask.mosaic.wcsio import header_wcs, thread_header_wcs

__all__ = ["OutputGrid", "astrodrizzle_grid", "north_up_grid", "skycell_grid"]


@dataclass(frozen=True)
class OutputGrid:
    """A celestial output grid.

    Attributes
    ----------
    header : str
        FITS header (string) of the WCS, with ``NAXIS1``/``NAXIS2``.
    """

    header: str

    @classmethod
    def from_wcs(cls, wcs: WCS | fits.Header, shape: tuple[int, int] | None = None
                 ) -> OutputGrid:
        """Grid of a celestial WCS (or header); ``shape`` ``(ny, nx)`` defaults to the WCS's."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            w = WCS(wcs) if isinstance(wcs, fits.Header) else wcs
        if not w.has_celestial or w.naxis != 2:
            raise ValueError("an output grid needs a 2-D celestial WCS")
        if shape is None:
            if isinstance(wcs, fits.Header) and "NAXIS1" in wcs and "NAXIS2" in wcs:
                shape = (int(wcs["NAXIS2"]), int(wcs["NAXIS1"]))
            elif w.pixel_shape is not None:
                shape = (int(w.pixel_shape[1]), int(w.pixel_shape[0]))
            else:
                raise ValueError("the output WCS has no pixel shape: give shape=(ny, nx)")
        ny, nx = (int(v) for v in shape)
        if ny < 1 or nx < 1:
            raise ValueError(f"output grid shape must be positive, got {(ny, nx)}")
        hdr = w.to_header()
        hdr["NAXIS1"] = nx
        hdr["NAXIS2"] = ny
        return cls(hdr.tostring())

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``."""
        h = self.fits_header()
        return int(h["NAXIS2"]), int(h["NAXIS1"])

    def fits_header(self) -> fits.Header:
        """The WCS cards with ``NAXIS1``/``NAXIS2`` (a new Header)."""
        return fits.Header.fromstring(self.header)

    def wcs(self) -> WCS:
        """A new astropy WCS of the grid (``pixel_shape`` set)."""
        return header_wcs(self.header)

    def thread_wcs(self) -> WCS:
        """The grid's WCS, private to the calling thread (do not modify)."""
        return thread_header_wcs(self.header)

    @property
    def scale_arcsec(self) -> float:
        """Pixel scale (arcsec) at the reference pixel."""
        return linear_pixel_scale(self.wcs())

    def windows(self, tile_size: int) -> list[tuple[tuple[int, int], tuple[int, int, int, int]]]:
        """``[((ty, tx), (y0, y1, x0, x1)), ...]`` of square tiles, row-major."""
        ny, nx = self.shape
        t = int(tile_size)
        if t < 1:
            raise ValueError(f"tile size must be positive, got {tile_size}")
        out = []
        for ty, y0 in enumerate(range(0, ny, t)):
            for tx, x0 in enumerate(range(0, nx, t)):
                out.append(((ty, tx), (y0, min(y0 + t, ny), x0, min(x0 + t, nx))))
        return out


def skycell_grid(cell: skycells.SkyCell, footprints: Iterable) -> OutputGrid:
    """The smallest sub-array of a SkyCell holding the footprints (:func:`skycells.bounded_wcs`)."""
    return OutputGrid.from_wcs(skycells.bounded_wcs(cell, list(footprints)))


def _tan(ra: float, dec: float, scale: float, rot: float, crpix: tuple[float, float]) -> WCS:
    """Pure TAN WCS; ``rot`` = position angle of +y east of north (deg), ``crpix`` 1-based."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = list(crpix)
    r = math.radians(rot)
    s = scale / 3600.0
    w.wcs.cd = np.array([[-s * math.cos(r), s * math.sin(r)], [s * math.sin(r), s * math.cos(r)]])
    w.wcs.radesys = "ICRS"
    w.wcs.set()
    return w


def _footprints(chip_wcss: Sequence[WCS]) -> np.ndarray:
    return np.vstack([skycells.wcs_outline(w) for w in chip_wcss])


def _y_axis_pa(w: WCS) -> float:
    """Position angle (deg, east of north) of a chip's +y axis at its centre."""
    nx, ny = w.pixel_shape
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    (ra0, ra1), (de0, de1) = w.all_pix2world([cx, cx], [cy, cy + 10.0], 0)
    dra = (ra1 - ra0) * math.cos(math.radians(de0))
    return math.degrees(math.atan2(dra, de1 - de0))


def astrodrizzle_grid(
    chip_wcss: Sequence[WCS],
    *,
    scale: float | None = None,
    rot: float | None = None,
    outnx: int | None = None,
    outny: int | None = None,
    ra: float | None = None,
    dec: float | None = None,
    crpix1: float | None = None,
    crpix2: float | None = None,
    refimage: WCS | fits.Header | None = None,
    ref_scale: float | None = None,
) -> OutputGrid:
    """An output grid from AstroDrizzle's ``final_*`` (or ``driz_sep_*``) parameters.

    Start: the reference image's WCS and shape when ``refimage`` is given; otherwise an
    undistorted TAN grid at ``ref_scale`` (default: the first chip's linear scale) oriented
    like the first chip, centred on the union of the chips and large enough to hold them.
    Then every parameter given replaces its part: ``scale`` (arcsec/px), ``rot`` (PA of +y,
    deg), ``ra``/``dec`` (centre, deg), ``outnx``/``outny`` and ``crpix1``/``crpix2``
    (1-based; default the array centre). When the size is not given the grid is sized to hold
    every chip.

    Parameters
    ----------
    chip_wcss : sequence of WCS
        Full WCS of every input chip (``pixel_shape`` set).

    Returns
    -------
    OutputGrid
    """
    if refimage is not None:
        base = OutputGrid.from_wcs(refimage)
        if all(v is None for v in (scale, rot, outnx, outny, ra, dec, crpix1, crpix2)):
            return base
        bw = base.wcs()
        ny0, nx0 = base.shape
        cra, cdec = (float(v) for v in bw.wcs_pix2world([[(nx0 - 1) / 2, (ny0 - 1) / 2]], 0)[0])
        scale0, rot0 = linear_pixel_scale(bw), _y_axis_pa(bw)
        size0: tuple[int, int] | None = (nx0, ny0)
    else:
        if not chip_wcss:
            raise ValueError("an AstroDrizzle grid needs at least one input chip")
        scale0 = ref_scale if ref_scale is not None else linear_pixel_scale(chip_wcss[0])
        rot0 = _y_axis_pa(chip_wcss[0])
        cra = cdec = None
        size0 = None
    scale = scale0 if scale is None else float(scale)
    rot = rot0 if rot is None else float(rot)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"output pixel scale must be positive, got {scale}")
    fp = _footprints(chip_wcss) if chip_wcss else None
    if cra is None:
        # centre of the chips' bounding box in a tangent plane about their mean position
        mid = _tan(float(np.mean(fp[:, 0])), float(np.mean(fp[:, 1])), scale, rot, (0.0, 0.0))
        x, y = mid.wcs_world2pix(fp[:, 0], fp[:, 1], 0)
        cra, cdec = (float(v) for v in mid.wcs_pix2world(
            [[(x.min() + x.max()) / 2, (y.min() + y.max()) / 2]], 0)[0])
    cra = cra if ra is None else float(ra)
    cdec = cdec if dec is None else float(dec)
    if outnx is None or outny is None:
        if size0 is None:
            probe = _tan(cra, cdec, scale, rot, (0.0, 0.0))
            x, y = probe.wcs_world2pix(fp[:, 0], fp[:, 1], 0)
            need_x = 2 * math.ceil(max(abs(x.min()), abs(x.max())) + 0.5)
            need_y = 2 * math.ceil(max(abs(y.min()), abs(y.max())) + 0.5)
        else:
            need_x, need_y = size0
        outnx = need_x if outnx is None else outnx
        outny = need_y if outny is None else outny
    outnx, outny = int(outnx), int(outny)
    if outnx < 1 or outny < 1:
        raise ValueError(f"output size must be positive, got outnx={outnx}, outny={outny}")
    c1 = outnx / 2.0 + 0.5 if crpix1 is None else float(crpix1)
    c2 = outny / 2.0 + 0.5 if crpix2 is None else float(crpix2)
    w = _tan(cra, cdec, scale, rot, (c1, c2))
    return OutputGrid.from_wcs(w, (outny, outnx))


def north_up_grid(chip_wcss: Sequence[WCS], scale: float | None = None) -> OutputGrid:
    """A visit's north-up grid: native scale of the first chip (or ``scale``), rotation 0,
    centred on the union of the chips and enclosing every one (inventory 4.4)."""
    return astrodrizzle_grid(chip_wcss, scale=scale, rot=0.0)
