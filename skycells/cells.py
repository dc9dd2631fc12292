"""ProjectionCell and SkyCell: the WCS of the HAP sky grid (``skycells.md`` sections 2-3).

The arithmetic copies the operation order of the reference implementation, so every CRVAL,
CRPIX, CD and NAXIS value is bit-identical to DrizzlePac's ``cell_utils``.

Thread safety: astropy ``WCS`` objects are not thread safe. The ``.wcs`` property of both
classes therefore builds a NEW ``WCS`` object on every access; callers may modify or share
the object they get without affecting anybody else.
"""

from __future__ import annotations

import re
from functools import cached_property

import numpy as np
from astropy.wcs import WCS

from skycells._grid import NPCELL, grid

#: Named pixel scales in arcsec/pixel.
SCALES: dict[str, float] = {"fine": 0.04, "coarse": 0.12}

_NAME_RE = re.compile(r"(?:skycell-)?p(\d{4})x(\d{2})y(\d{2})")


#: Largest SkyCell side (pixels) a scale may give: the fine grid is 21954, so a scale about
#: 45 times finer than the fine layer is still allowed.
MAX_SIDE = 1_000_000


def parse_scale(scale: str | float) -> float:
    """Return a pixel scale in arcsec/pixel.

    Parameters
    ----------
    scale : str or float
        ``"fine"`` (0.04), ``"coarse"`` (0.12), a positive number, or a string holding one.

    Raises
    ------
    ValueError
        If ``scale`` is none of these.
    """
    if isinstance(scale, str):
        key = scale.strip().lower()
        if key in SCALES:
            return SCALES[key]
        try:
            value = float(key)
        except ValueError:
            raise ValueError(
                f"invalid scale {scale!r}: expected 'fine', 'coarse' or arcsec/pixel"
            ) from None
    elif isinstance(scale, bool):
        raise ValueError(f"invalid scale {scale!r}: expected 'fine', 'coarse' or arcsec/pixel")
    else:
        try:
            value = float(scale)
        except (TypeError, ValueError):
            raise ValueError(
                f"invalid scale {scale!r}: expected 'fine', 'coarse' or arcsec/pixel"
            ) from None
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"invalid scale {scale!r}: must be a positive number of arcsec/pixel")
    return value


def _check_index(value: object, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{what} must be an integer in {lo}..{hi}, got {value!r}")
    value = int(value)
    if not lo <= value <= hi:
        raise ValueError(f"{what} {value} is out of range {lo}..{hi}")
    return value


def _make_wcs(
    crval: tuple[float, float], crpix: tuple[float, float], cd: np.ndarray, shape_xy: tuple
) -> WCS:
    w = WCS(naxis=2)
    w.wcs.crpix = list(crpix)
    w.wcs.crval = list(crval)
    w.wcs.cd = cd
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.cunit = ["deg", "deg"]
    w.pixel_shape = shape_xy
    w.wcs.set()
    return w


class _TangentGrid:
    """A pixel grid on a gnomonic tangent plane: ``crval``, ``crpix``, ``cd`` and ``shape``."""

    crval: tuple[float, float]
    crpix: tuple[float, float]
    cd: np.ndarray
    shape: tuple[int, int]

    @property
    def wcs(self) -> WCS:
        """A NEW astropy TAN WCS of the whole grid (``pixel_shape`` set) on every access."""
        ny, nx = self.shape
        return _make_wcs(self.crval, self.crpix, self.cd.copy(), (nx, ny))

    @cached_property
    def corners(self) -> np.ndarray:
        """(4, 2) RA/Dec (deg, RA in [0, 360)) of the outer corners of the pixel area.

        The corners are the pixel edges (0-based -0.5 and n-0.5) in the order
        (xmin, ymin), (xmax, ymin), (xmax, ymax), (xmin, ymax).
        """
        ny, nx = self.shape
        px = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5])
        py = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
        ra, dec = self.wcs.wcs_pix2world(px, py, 0)
        out = np.column_stack([np.mod(ra, 360.0), dec])
        out.flags.writeable = False
        return out


class ProjectionCell(_TangentGrid):
    """One of the 2644 HAP projection cells: a 0.04"/pix gnomonic (TAN) tangent plane.

    Parameters
    ----------
    index : int
        Projection-cell id, 0..2643 (0 is the south-pole cell, 2643 the north-pole cell).

    Attributes
    ----------
    index : int
        The id.
    name : str
        ``"p%04d"``, e.g. ``"p1889"``.
    ring : int
        Declination ring (0..45, from the south pole).
    ring_index : int
        Position ``k`` in the ring (0 is the cell at RA = 0).
    crval : tuple of float
        Tangent point (RA, Dec) in degrees: ``((k * 360.0) / NBAND, DEC)``.
    crpix : tuple of float
        FITS 1-based reference pixel, ``NAXIS / 2 + 0.5`` (225144.0).
    shape : tuple of int
        ``(ny, nx)`` = (450287, 450287).
    scale : float
        0.04 arcsec/pixel.

    Raises
    ------
    ValueError
        If ``index`` is not an integer in 0..2643.
    """

    def __init__(self, index: int) -> None:
        self.index = _check_index(index, "projection cell", 0, NPCELL - 1)
        g = grid()
        self.ring = int(g.ring_of[self.index])
        self.ring_index = self.index - int(g.projcell[self.ring])
        nband = int(g.nband[self.ring])
        self.crval = ((self.ring_index * 360.0) / nband, float(g.dec[self.ring]))
        nx, ny = int(g.xcell[self.ring]), int(g.ycell[self.ring])
        self.shape = (ny, nx)
        self.crpix = (nx / 2.0 + 0.5, ny / 2.0 + 0.5)
        self.scale = float(g.pc_scale)
        s = self.scale / 3600.0
        self.cd = np.array([[-s, 0.0], [0.0, s]], dtype=np.float64)

    @property
    def name(self) -> str:
        """``"p%04d"`` name of the projection cell."""
        return f"p{self.index:04d}"

    def skycell(self, x: int, y: int, scale: str | float = "fine") -> SkyCell:
        """Return the SkyCell ``(x, y)`` (1-based, 1..21) of this projection cell."""
        return SkyCell(self, x, y, scale=scale)

    def __repr__(self) -> str:
        return f"ProjectionCell({self.index})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProjectionCell) and other.index == self.index

    def __hash__(self) -> int:
        return hash(("ProjectionCell", self.index))


class SkyCell(_TangentGrid):
    """A SkyCell: sub-array ``(x, y)`` of a projection cell's tangent plane.

    Parameters
    ----------
    projection_cell : int or ProjectionCell
        The projection cell (id 0..2643).
    x, y : int
        1-based skycell indices, 1..21. x grows westwards, y northwards.
    scale : str or float
        ``"fine"`` (0.04"/pix), ``"coarse"`` (0.12"/pix) or a pixel scale in arcsec/pixel.

    Attributes
    ----------
    name : str
        ``"skycell-p%04dx%02dy%02d"``.
    projection_cell : ProjectionCell
    x, y : int
        1-based indices.
    scale : float
        Pixel scale in arcsec/pixel.
    shape : tuple of int
        ``(ny, nx)``, 21954 x 21954 at fine scale, 7318 x 7318 at coarse scale.
    crval, crpix : tuple of float
        CRVAL (deg) and FITS 1-based CRPIX, computed in the reference operation order.
    cd : ndarray, shape (2, 2)
        CD matrix (deg/pixel).

    Raises
    ------
    ValueError
        If the projection cell is not in 0..2643, x or y not in 1..21, or the scale is invalid.
    """

    def __init__(
        self, projection_cell: int | ProjectionCell, x: int, y: int, scale: str | float = "fine"
    ) -> None:
        if not isinstance(projection_cell, ProjectionCell):
            projection_cell = ProjectionCell(projection_cell)
        g = grid()
        nxy = g.sc_nxy
        self.projection_cell = projection_cell
        self.x = _check_index(x, "skycell x index", 1, nxy)
        self.y = _check_index(y, "skycell y index", 1, nxy)
        self.scale = parse_scale(scale)
        pc = projection_cell
        ratio = pc.scale / self.scale
        pc_ny, pc_nx = pc.shape
        step_x = int(pc_nx / nxy + 0.5)
        step_y = int(pc_ny / nxy + 0.5)
        side = (max(step_x, step_y) + g.sc_olap * 2) * ratio
        if not 1 <= side <= MAX_SIDE:
            raise ValueError(
                f"scale {self.scale!r} arcsec/pixel gives a SkyCell of {side:.3g} pixels a "
                f"side; use a scale between {side * self.scale / MAX_SIDE:.3g} and "
                f"{side * self.scale:.3g}")
        nx = int((step_x + g.sc_olap * 2) * ratio)
        ny = int((step_y + g.sc_olap * 2) * ratio)
        i, j = self.x - 1, self.y - 1
        self.crpix = ((pc.crpix[0] - i * step_x) * ratio, (pc.crpix[1] - j * step_y) * ratio)
        self.crval = pc.crval
        self.cd = pc.cd / ratio
        self.shape = (ny, nx)
        #: Fine (0.04") pcell pixel offset of the cell's first column/row (i*step, j*step).
        self.pc_offset = (i * step_x, j * step_y)

    @classmethod
    def from_name(cls, name: str, scale: str | float = "fine") -> SkyCell:
        """Build a SkyCell from ``"skycell-p1889x07y19"`` or ``"p1889x07y19"``.

        Raises
        ------
        ValueError
            If the name is malformed or an index is out of range.
        """
        if not isinstance(name, str):
            raise ValueError(f"SkyCell name must be a string, got {name!r}")
        m = _NAME_RE.fullmatch(name.strip())
        if m is None:
            raise ValueError(
                f"malformed SkyCell name {name!r}: expected 'skycell-pNNNNxXXyYY' or "
                "'pNNNNxXXyYY' (e.g. 'skycell-p1889x07y19')"
            )
        p, x, y = (int(v) for v in m.groups())
        scale = parse_scale(scale)  # a bad scale is not a bad name
        try:
            return cls(p, x, y, scale=scale)
        except ValueError as exc:
            if "scale" in str(exc):
                raise
            raise ValueError(f"invalid SkyCell name {name!r}: {exc}") from None

    @property
    def name(self) -> str:
        """``"skycell-p%04dx%02dy%02d"``."""
        return f"skycell-p{self.projection_cell.index:04d}x{self.x:02d}y{self.y:02d}"

    @property
    def id(self) -> str:
        """The name without ``skycell-`` (the SCELLID keyword), e.g. ``"p1889x07y19"``."""
        return self.name[len("skycell-") :]

    def with_scale(self, scale: str | float) -> SkyCell:
        """The same SkyCell at another pixel scale."""
        return SkyCell(self.projection_cell, self.x, self.y, scale=scale)

    def __repr__(self) -> str:
        return f"SkyCell({self.name!r}, scale={self.scale!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SkyCell)
            and (other.projection_cell.index, other.x, other.y, other.scale)
            == (self.projection_cell.index, self.x, self.y, self.scale)
        )

    def __hash__(self) -> int:
        return hash(("SkyCell", self.projection_cell.index, self.x, self.y, self.scale))
