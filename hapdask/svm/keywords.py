"""HAP keywords of SVM drizzle products that depend on the product's data or the visit's tree
(DrizzlePac ``processing_utils.refine_product_headers``, inventory 4.5).

* :func:`s_region`: ``S_REGION`` traced from the drizzled SCI array as DrizzlePac's
  ``compute_sregion`` -> ``cell_utils.SkyFootprint.extract_mask``/``find_corners`` does: pixels
  with data (not NaN; not 0 when the array has no NaN), holes filled, the mask ORed with its
  closing (dilation then erosion by 11), opened by 3, smoothed (Gaussian sigma 2, > 0.5),
  split into connected regions, each region's outline traced and simplified (10 px tolerance,
  Douglas-Peucker) and written as one ``POLYGON ICRS ra dec ...`` per region (closed: the
  first vertex repeated), the polygons separated by a space. An exposure product of a
  two-chip camera therefore has two polygons (the chip gap is wider than the closing), a
  filter or total product with dithered exposures usually one.
* :func:`add_hapexpname`: HDRTAB's ``HAPEXPNAME`` column, the HAP product name (stem) of the
  exposure each row (input chip) belongs to, at least 51 characters wide, appended after the
  table's other columns (``update_hdrtab``).

Differences from DrizzlePac, all below the 10-pixel simplification tolerance: the outline is
the iso-line at 0.5 of the region mask (``skimage.measure.find_contours``: through pixel-edge
midpoints, half a pixel outside DrizzlePac's edge-pixel centres), simplified with
``skimage.measure.approximate_polygon`` (Douglas-Peucker; DrizzlePac's ``simplify_polyline``
first reduces the closed ring to three Visvalingam-Whyatt points and then adds vertices back
by the same distance rule, so the vertex sets can differ where the outline has no sharp
corner). Vertices run counter-clockwise on the sky (east of north), as DrizzlePac's trace.
"""

from __future__ import annotations

import os

import numpy as np
from astropy.io import fits
from scipy import ndimage
from skimage.measure import approximate_polygon, find_contours

from hapdask.archive.sregion import format_s_region

__all__ = ["BLOCK", "HAPEXPNAME", "add_hapexpname", "data_mask", "footprint_regions", "s_region"]

#: HDRTAB column holding the exposure's HAP product name (DrizzlePac ``HAPCOLNAME``).
HAPEXPNAME = "HAPEXPNAME"

_CLOSING = 11        # extract_mask: dilation/erosion iterations (pixels)
_OPENING = 3         # find_corners: erosion/dilation iterations (pixels)
_SMOOTH_SIGMA = 2.0  # find_corners: Gaussian smoothing of the opened mask (pixels)
_TOLERANCE = 10.0    # find_corners: simplify(min_dist=10) (pixels)
#: Block size of the traced mask. 1 (every pixel) reproduces DrizzlePac's outlines of the demo
#: ACS/WFC products (exposure, filter, total: within 3-6 px, areas within 0.05 %) at ~2-4 s CPU
#: per 6000^2 product; 4 x 4 blocks cost ~0.5 s but close the 10-12 px wide part of the chip
#: gap that the dithers leave uncovered, which DrizzlePac's outline follows ~320 px deep.
BLOCK = 1


def data_mask(sci: np.ndarray, block: int = BLOCK, band: int = 1024) -> np.ndarray:
    """Blocks with data, ``block x block`` pixels each (the last ones padded with no data).

    A pixel has data when it is not NaN if the array holds a NaN, else when it is not 0
    (``extract_mask``); a block has data when at least half of its pixels have. Read in bands
    of ``band`` rows (a multiple of ``block``): memory is the block mask plus one band.
    """
    band = max(block, band // block * block)
    ny, nx = sci.shape
    has_nan = any(np.isnan(np.asarray(sci[r:r + band], dtype=np.float32)).any()
                  for r in range(0, ny, band))
    by, bx = -(-ny // block), -(-nx // block)
    out = np.empty((by, bx), dtype=bool)
    for r in range(0, ny, band):
        rows = np.asarray(sci[r:r + band], dtype=np.float32)
        good = ~np.isnan(rows) if has_nan else rows != 0
        pad = np.zeros((-(-good.shape[0] // block) * block, bx * block), dtype=np.uint8)
        pad[:good.shape[0], :nx] = good
        counts = pad.reshape(pad.shape[0] // block, block, bx, block).sum(axis=(1, 3))
        out[r // block:r // block + counts.shape[0]] = counts * 2 >= block * block
    return out


def footprint_regions(mask: np.ndarray, block: int = 1) -> list[np.ndarray]:
    """Outlines (closed ``(n, 2)`` arrays of 0-based x, y pixels) of the regions of a data mask
    made of ``block x block`` blocks (:func:`data_mask`); lengths are scaled to blocks."""
    if not mask.any():
        return []
    closing = max(1, round(_CLOSING / block))
    opening = max(1, round(_OPENING / block))
    filled = ndimage.binary_fill_holes(mask)
    closed = ndimage.binary_erosion(ndimage.binary_dilation(filled, iterations=closing),
                                    iterations=closing)
    total = filled | closed
    del filled, closed
    opened = ndimage.binary_dilation(ndimage.binary_erosion(total, iterations=opening),
                                     iterations=opening)
    del total
    smooth = ndimage.gaussian_filter(opened.astype(np.float32),
                                     sigma=_SMOOTH_SIGMA / block) > 0.5
    del opened
    labels, _ = ndimage.label(smooth)
    del smooth
    out = []
    for label, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        sub = np.pad(labels[sl] == label, 1)
        contours = find_contours(sub.astype(np.float32), 0.5)
        if not contours:
            continue
        ring = max(contours, key=len)  # the outer boundary (holes were filled)
        ring = approximate_polygon(ring, tolerance=_TOLERANCE / block)
        # (row, col) of the padded cut-out -> (x, y) of the blocks -> pixels (block k spans
        # pixels k*block .. k*block + block - 1)
        xb = ring[:, 1] - 1 + sl[1].start
        yb = ring[:, 0] - 1 + sl[0].start
        xy = np.column_stack([xb, yb]) * block + (block - 1) / 2.0
        if not np.array_equal(xy[0], xy[-1]):
            xy = np.vstack([xy, xy[:1]])
        out.append(xy)
    return out


def _signed_area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def s_region(sci: np.ndarray, wcs, block: int = BLOCK) -> str:
    """HAP's ``S_REGION`` of a drizzled SCI array (module docstring); '' without data.

    Parameters
    ----------
    sci : (ny, nx) array
        The product's SCI data (may be memory-mapped; read in bands).
    wcs : astropy.wcs.WCS
        The product's celestial WCS.
    block : int
        Block size of the traced mask (:data:`BLOCK`; 1 traces every pixel).
    """
    polys = []
    for xy in footprint_regions(data_mask(sci, block), block):
        ra, dec = wcs.all_pix2world(xy[:, 0], xy[:, 1], 0)
        sky = np.column_stack([ra, dec])
        # counter-clockwise on the sky = clockwise in (RA, Dec) seen with RA increasing to the
        # right: the signed area in (RA, Dec) is negative
        if _signed_area(sky) > 0:
            sky = sky[::-1]
        polys.append(sky)
    return format_s_region(polys, digits=8)


def add_hapexpname(path: str | os.PathLike, names: dict[str, str]) -> None:
    """Append HDRTAB's ``HAPEXPNAME`` column to a product file (in place).

    ``names`` maps the first 8 characters of an input rootname (lower case, ``ipppssoo``) to
    the exposure's HAP product stem; HDRTAB's ``ROOTNAME`` column selects the row's name.
    Raises a ValueError naming the file when a row's rootname is not in ``names``.
    """
    with fits.open(path, mode="update") as hdul:
        tab = hdul["HDRTAB"]
        roots = [str(r).strip().lower()[:8] for r in tab.data["ROOTNAME"]]
        missing = sorted(set(roots) - set(names))
        if missing:
            raise ValueError(f"{path}: HDRTAB rootname(s) {', '.join(missing)} are not "
                             f"exposures of this visit")
        values = [names[r] for r in roots]
        width = max(51, max((len(v) for v in values), default=0))
        cols = [c for c in tab.columns if c.name != HAPEXPNAME]
        cols.append(fits.Column(name=HAPEXPNAME, format=f"{width}A",
                                array=np.array(values, dtype=f"U{width}")))
        new = fits.BinTableHDU.from_columns(fits.ColDefs(cols), header=tab.header.copy())
        new.header["EXTNAME"] = "HDRTAB"
        index = hdul.index_of("HDRTAB")
        hdul[index] = new
