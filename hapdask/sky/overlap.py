"""Where two chips overlap on the sky, as the pixels of each chip inside the overlap.

AstroDrizzle's sky matching (skypac) takes each chip's footprint as the spherical polygon of its
four outer pixel-edge corners (``(-0.5, -0.5)`` .. ``(nx - 0.5, ny - 0.5)``, through the full
distortion model), intersects the two polygons and fills the intersection, projected back into
each chip's pixels with straight edges, to select the pixels that enter the statistic.

Here the other chip's four corners are projected into this chip's pixel frame (full distortion
both ways) and the pixels whose *centres* fall inside that quadrilateral are selected, row by
row (:class:`Spans`: one ``[xlo, xhi]`` interval per row, no full-size mask is stored). The
intersection with this chip's own outline is implicit (only its own pixels are candidates).
Both selections agree with skypac's except along the overlap edge (a one-pixel-wide band where
rounding rules differ).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Overlap", "Spans", "chip_overlap", "corners_sky", "spans_in"]

#: margin (pixels) of the cheap distortion-free pre-test before the full projection
_MARGIN = 256.0


@dataclass(frozen=True)
class Spans:
    """Pixels of one chip inside a region: rows ``y0 .. y0 + len(xlo) - 1``, and in each row the
    columns ``xlo[k] .. xhi[k]`` (inclusive, 0-based; ``xlo > xhi`` for an empty row)."""

    y0: int
    xlo: np.ndarray
    xhi: np.ndarray

    @property
    def npix(self) -> int:
        return int(np.maximum(self.xhi - self.xlo + 1, 0).sum())

    @property
    def rows(self) -> tuple[int, int]:
        """Half-open row range ``(y0, y1)``."""
        return self.y0, self.y0 + len(self.xlo)

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Boolean mask of these pixels in an array of ``shape``."""
        m = np.zeros(shape, dtype=bool)
        x = np.arange(shape[1])
        y0, y1 = self.rows
        m[y0:y1] = (x >= self.xlo[:, None]) & (x <= self.xhi[:, None])
        return m


@dataclass(frozen=True)
class Overlap:
    """Pixels of chip ``a`` and of chip ``b`` inside their common sky region."""

    a: Spans
    b: Spans


def corners_sky(ref) -> np.ndarray:
    """RA/Dec (deg, ``(4, 2)``) of a chip's outer pixel-edge corners, full distortion (the
    chip's WCS private to this thread, :meth:`~hapdask.mosaic.inputs.ChipRef.thread_wcs`:
    built once per thread, not per call)."""
    ny, nx = ref.shape
    x = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5])
    y = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
    ra, dec = ref.thread_wcs().all_pix2world(x, y, 0)
    return np.column_stack([ra, dec])


def spans_in(w, shape: tuple[int, int], radec: np.ndarray) -> Spans | None:
    """Pixels (centres) of a chip with WCS ``w`` and ``shape`` inside the sky quadrilateral
    ``radec`` (four corners in order); None when there is none."""
    ny, nx = shape
    lx, ly = w.wcs_world2pix(radec[:, 0], radec[:, 1], 0)  # cheap test without distortion
    if not (np.all(np.isfinite(lx)) and np.all(np.isfinite(ly))):
        return None
    if (lx.max() < -_MARGIN or lx.min() > nx + _MARGIN or ly.max() < -_MARGIN
            or ly.min() > ny + _MARGIN):
        return None
    px, py = w.all_world2pix(radec[:, 0], radec[:, 1], 0, quiet=True, maxiter=50)
    if not (np.all(np.isfinite(px)) and np.all(np.isfinite(py))):
        return None
    ylo = max(0, int(np.ceil(py.min())))
    yhi = min(ny - 1, int(np.floor(py.max())))
    if ylo > yhi:
        return None
    y = np.arange(ylo, yhi + 1, dtype=np.float64)
    xlo = np.full(y.size, -np.inf)
    xhi = np.full(y.size, np.inf)
    # orientation of the quadrilateral: inside is on the same side of every edge
    area2 = np.sum(px * np.roll(py, -1) - np.roll(px, -1) * py)
    s = 1.0 if area2 > 0 else -1.0
    for k in range(4):
        x0, y0 = px[k], py[k]
        dx, dy = px[(k + 1) % 4] - x0, py[(k + 1) % 4] - y0
        c = s * dx * (y - y0)  # inside: c - s*dy*(x - x0) >= 0
        d = s * dy
        if d > 0:
            xhi = np.minimum(xhi, x0 + c / d)
        elif d < 0:
            xlo = np.maximum(xlo, x0 + c / d)
        else:
            xhi = np.where(c >= 0, xhi, -np.inf)
    ilo = np.clip(np.ceil(xlo), 0, nx).astype(np.int64)
    ihi = np.clip(np.floor(xhi), -1, nx - 1).astype(np.int64)
    keep = np.nonzero(ilo <= ihi)[0]
    if keep.size == 0:
        return None
    a, b = keep[0], keep[-1] + 1
    ilo, ihi = ilo[a:b], ihi[a:b]
    empty = ilo > ihi
    ilo[empty], ihi[empty] = 1, 0
    return Spans(int(ylo + a), ilo.astype(np.int32), ihi.astype(np.int32))


def chip_overlap(ref_a, ref_b) -> Overlap | None:
    """The pixels of two chips (:class:`hapdask.mosaic.inputs.ChipRef`) inside their common sky
    region, or None when they do not overlap. Each chip's WCS is built once per thread
    (:meth:`~hapdask.mosaic.inputs.ChipRef.thread_wcs`; the pairs of a chip share it)."""
    sa = spans_in(ref_a.thread_wcs(), ref_a.shape, corners_sky(ref_b))
    if sa is None:
        return None
    sb = spans_in(ref_b.thread_wcs(), ref_b.shape, corners_sky(ref_a))
    if sb is None:
        return None
    return Overlap(sa, sb)
