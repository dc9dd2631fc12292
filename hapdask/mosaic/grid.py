"""Output grids: a celestial WCS with a shape, and the constructors the products need.

* :meth:`OutputGrid.from_wcs` — any celestial WCS with a pixel shape;
* :func:`skycell_grid` — the bounded sub-array of a SkyCell holding some footprints (MVM);
* :func:`north_up_grid` — a visit's north-up grid at the native scale of its first chip,
  enclosing every chip;
* :func:`hap_visit_grid` — HAP's SVM "metawcs" (inventory 4.4): the same construction as
  DrizzlePac's ``make_mosaic_wcs`` + AstroDrizzle's rotation to north up, so the products land
  on DrizzlePac's grid (size, reference pixel and position);
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

__all__ = ["OutputGrid", "astrodrizzle_grid", "aperture_roll", "hap_visit_grid", "north_up_grid",
           "skycell_grid"]


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


def astrodrizzle_default_grid(chip_wcss: Sequence[WCS], scale: float, *,
                              sci_header: fits.Header | None = None,
                              pa_v3: float | None = None,
                              detector: tuple[str, str] | None = None) -> OutputGrid:
    """AstroDrizzle's default output grid (no ``final_*`` parameter, no reference image).

    DrizzlePac's ``wcs_functions.make_outputwcs`` -> ``stwcs.distortion.utils.output_wcs``: a
    square TAN frame at ``scale`` oriented like the first chip's reference tangent plane
    (``make_orthogonal_cd``: the aperture roll from ``pa_v3`` and the chip's
    IDCV2REF/IDCV3REF/IDCTHETA, else the chip's orientation), tangent at the geographic
    midpoint of the chips' corner pixel centres, sized to their extent (ceil) with the
    reference pixel moved to the lower-left corner -- the frame :func:`hap_visit_grid` starts
    from, before its rotation to north up.

    Parameters
    ----------
    chip_wcss : sequence of WCS
        Every input chip (full WCS, ``pixel_shape`` set), the reference chip first.
    scale : float
        Pixel scale (arcsec): the first chip's ``IDCSCALE`` (else sqrt|det CD|).
    sci_header, pa_v3, detector : optional
        As :func:`hap_visit_grid`.
    """
    if not chip_wcss:
        raise ValueError("an AstroDrizzle grid needs at least one input chip")
    frame, (n1, n2) = _reference_frame(chip_wcss, scale, sci_header, pa_v3, detector)
    frame.wcs.cd = _perfect_cd(frame.wcs.cd)
    frame.wcs.set()
    return OutputGrid.from_wcs(frame, (n2, n1))


def _pscale_orientat(cd: np.ndarray) -> tuple[float, float]:
    """HSTWCS's ``pscale`` (arcsec) and ``orientat`` (deg) of a CD matrix, with its arithmetic
    (sizes are ceilings of products with these: the last bit matters)."""
    return (float(np.sqrt(cd[0, 0] ** 2 + cd[1, 0] ** 2) * 3600.0),
            float(np.arctan2(cd[0, 1], cd[1, 1]) * 180.0 / np.pi))


def _perfect_cd(cd: np.ndarray) -> np.ndarray:
    """DrizzlePac's ``make_perfect_cd``: the square, orthogonal CD matrix of ``cd``'s pscale
    and orientat (AstroDrizzle applies it to its default grid)."""
    pscale, orientat = _pscale_orientat(cd)
    t = np.deg2rad(orientat)
    return pscale / 3600.0 * np.array([[-np.cos(t), np.sin(t)], [np.sin(t), np.cos(t)]])


def _pair(name: str, a, b) -> bool:
    """Whether a pair of ``final_*`` values is given; one without the other is an error (as
    AstroDrizzle's ``_check_custom_WCS_pars``)."""
    if (a is None) != (b is None):
        given, missing = name.split("/") if a is not None else name.split("/")[::-1]
        raise ValueError(f"output grid: {given} is given without {missing}")
    return a is not None


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
    sci_header: fits.Header | None = None,
    pa_v3: float | None = None,
    detector: tuple[str, str] | None = None,
) -> OutputGrid:
    """An output grid from AstroDrizzle's ``final_*`` (or ``driz_sep_*``) parameters.

    As DrizzlePac's ``wcs_functions.make_outputwcs`` + ``mergeWCS``: start from the reference
    image's WCS and shape when ``refimage`` is given, otherwise from AstroDrizzle's default
    grid (:func:`astrodrizzle_default_grid` at ``ref_scale``, default the first chip's linear
    scale, with ``sci_header``/``pa_v3``/``detector`` of the first chip); then

    * ``ra``/``dec`` (deg, both or neither) replace the reference position;
    * ``scale`` (arcsec/px) rescales the CD matrix; without an output size the shape becomes
      ``ceil(ratio x shape)`` and CRPIX ``1 + ratio x (CRPIX - 1)``;
    * ``rot`` (PA of +y, deg) rotates the CD matrix; without an output size the shape is that
      of the rotated frame (ceil) and CRPIX ``(-xmin + 0.5, -ymin + 0.5)``;
    * ``outnx``/``outny`` (both or neither) set the shape, CRPIX then defaulting to the array
      centre ``((outnx + 1) / 2, (outny + 1) / 2)``;
    * ``crpix1``/``crpix2`` (1-based, both or neither) set CRPIX.

    Parameters
    ----------
    chip_wcss : sequence of WCS
        Full WCS of every input chip (``pixel_shape`` set), the reference chip first.

    Returns
    -------
    OutputGrid

    Raises
    ------
    ValueError
        A pair given half, a non-positive scale or size.
    """
    custom_crval = _pair("ra/dec", ra, dec)
    custom_crpix = _pair("crpix1/crpix2", crpix1, crpix2)
    custom_shape = _pair("outnx/outny", outnx, outny)
    if refimage is not None:
        base = OutputGrid.from_wcs(refimage)
        if all(v is None for v in (scale, rot, outnx, outny, ra, dec, crpix1, crpix2)):
            return base
        bw = base.wcs()
        cd = bw.pixel_scale_matrix
        ny0, nx0 = base.shape
    else:
        if not chip_wcss:
            raise ValueError("an AstroDrizzle grid needs at least one input chip")
        bw, (nx0, ny0) = _reference_frame(
            chip_wcss, ref_scale if ref_scale is not None else linear_pixel_scale(chip_wcss[0]),
            sci_header, pa_v3, detector)
        # orientat and pscale from the orthogonal frame, then its "perfect" CD (AstroDrizzle)
        cd = _perfect_cd(bw.wcs.cd)
        if all(v is None for v in (scale, rot, outnx, outny, ra, dec, crpix1, crpix2)):
            bw.wcs.cd = cd
            bw.wcs.set()
            return OutputGrid.from_wcs(bw, (ny0, nx0))
    pscale, orientat = _pscale_orientat(bw.wcs.cd if refimage is None else cd)
    crpix = np.array(bw.wcs.crpix, dtype=np.float64)
    crval = np.array(bw.wcs.crval, dtype=np.float64)
    ratio = None
    if scale is not None:
        if not (math.isfinite(float(scale)) and float(scale) > 0):
            raise ValueError(f"output pixel scale must be positive, got {scale}")
        if not np.isclose(float(scale), pscale, rtol=10.0 * np.finfo(float).eps,
                          atol=100.0 * np.finfo(float).tiny):
            ratio = pscale / float(scale)
    delta = None if rot is None or orientat - float(rot) == 0.0 else orientat - float(rot)
    new_crpix = (float(crpix1), float(crpix2)) if custom_crpix else None
    shape = None
    if custom_shape:
        # Python 2 rounding, as AstroDrizzle
        shape = tuple(int(math.floor(float(v) + 0.5)) if float(v) >= 0
                      else int(math.ceil(float(v) - 0.5)) for v in (outnx, outny))
        if shape[0] < 1 or shape[1] < 1:
            raise ValueError(f"output size must be positive, got outnx={outnx}, outny={outny}")
        if new_crpix is None:
            new_crpix = ((shape[0] + 1.0) / 2.0, (shape[1] + 1.0) / 2.0)
    elif delta is None:
        if ratio is not None:
            shape = (max(1, math.ceil(ratio * nx0)), max(1, math.ceil(ratio * ny0)))
            if new_crpix is None:
                new_crpix = tuple(1.0 + ratio * (crpix - 1.0))
    else:
        corners = np.array([[0.5, 0.5], [nx0 + 0.5, 0.5], [0.5, ny0 + 0.5],
                            [nx0 + 0.5, ny0 + 0.5]]) - crpix
        if ratio is not None:
            corners *= ratio
        t = math.radians(delta)
        turned = corners @ np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
        xmin, xmax = turned[:, 0].min(), turned[:, 0].max()
        ymin, ymax = turned[:, 1].min(), turned[:, 1].max()
        shape = (max(1, math.ceil(xmax - xmin)), max(1, math.ceil(ymax - ymin)))
        if new_crpix is None:
            new_crpix = (-xmin + 0.5, -ymin + 0.5)
    if ratio is not None:
        cd = cd / ratio
    if delta is not None:
        t = math.radians(delta)
        cd = cd @ np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
    out = WCS(naxis=2)
    out.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    out.wcs.cd = cd
    out.wcs.crpix = list(new_crpix) if new_crpix is not None else list(crpix)
    out.wcs.crval = [float(ra), float(dec)] if custom_crval else list(crval)
    out.wcs.radesys = "ICRS"
    out.wcs.set()
    nx, ny = shape if shape is not None else (nx0, ny0)
    return OutputGrid.from_wcs(out, (ny, nx))


def _centred_grid(chip_wcss: Sequence[WCS], scale: float, rot: float) -> OutputGrid:
    """TAN grid at ``scale`` and ``rot`` centred on the chips' bounding box (in a tangent plane
    about their mean position), symmetric about its centre and holding every chip."""
    fp = _footprints(chip_wcss)
    mid = _tan(float(np.mean(fp[:, 0])), float(np.mean(fp[:, 1])), scale, rot, (0.0, 0.0))
    x, y = mid.wcs_world2pix(fp[:, 0], fp[:, 1], 0)
    cra, cdec = (float(v) for v in mid.wcs_pix2world(
        [[(x.min() + x.max()) / 2, (y.min() + y.max()) / 2]], 0)[0])
    probe = _tan(cra, cdec, scale, rot, (0.0, 0.0))
    x, y = probe.wcs_world2pix(fp[:, 0], fp[:, 1], 0)
    nx = 2 * math.ceil(max(abs(x.min()), abs(x.max())) + 0.5)
    ny = 2 * math.ceil(max(abs(y.min()), abs(y.max())) + 0.5)
    return OutputGrid.from_wcs(_tan(cra, cdec, scale, rot, (nx / 2.0 + 0.5, ny / 2.0 + 0.5)),
                               (ny, nx))


def north_up_grid(chip_wcss: Sequence[WCS], scale: float | None = None) -> OutputGrid:
    """A visit's north-up grid: native scale of the first chip (or ``scale``), rotation 0,
    centred on the union of the chips and enclosing every one (inventory 4.4)."""
    if not chip_wcss:
        raise ValueError("a north-up grid needs at least one input chip")
    scale = linear_pixel_scale(chip_wcss[0]) if scale is None else float(scale)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"output pixel scale must be positive, got {scale}")
    return _centred_grid(chip_wcss, scale, 0.0)


#: Parity of HST detector frames relative to the V2/V3 frame: ACS/WFC keeps x and flips y,
#: the others (ACS/HRC/SBC, WFC3/UVIS/IR, WFPC2) flip x (instrument science-frame definitions).
HST_PARITY = {("ACS", "WFC"): np.array([[1.0, 0.0], [0.0, -1.0]])}
_DEFAULT_PARITY = np.array([[-1.0, 0.0], [0.0, 1.0]])


def aperture_roll(pa_v3: float, dec: float, v2: float, v3: float) -> float:
    """Position angle (deg) of the V3 axis at an aperture offset ``(v2, v3)`` (arcsec) from V1,
    for a telescope roll ``pa_v3`` (deg) at V1 and a target at declination ``dec`` (deg).

    Spherical triangle V1 - aperture - north pole: the aperture lies at angular distance rho
    from V1 in direction beta (from +V2 towards +V3 ... measured as in the HST instrument
    handbooks); the roll at the aperture is the V1 roll carried along that arc.
    """
    roll, d = math.radians(pa_v3), math.radians(dec)
    a2, a3 = math.radians(v2 / 3600.0), math.radians(v3 / 3600.0)
    s2, s3 = math.sin(a2), math.sin(a3)
    sin_rho = math.sqrt(s2 * s2 + s3 * s3 - s2 * s2 * s3 * s3)
    rho = math.asin(sin_rho)
    beta = math.asin(s3 / sin_rho)
    if a2 < 0:
        beta = math.pi - beta
    gamma = math.asin(s2 / sin_rho)
    if a3 < 0:
        gamma = math.pi - gamma
    big_a = math.pi / 2.0 + roll - beta
    big_b = math.atan2(math.sin(big_a) * math.cos(d),
                       math.sin(d) * sin_rho - math.cos(d) * math.cos(rho) * math.cos(big_a))
    return math.degrees(math.pi - (gamma + big_b))


def _reference_rotation_rad(sci: fits.Header | None, pa_v3: float | None, w: WCS,
                        detector: tuple[str, str] | None) -> float:
    """Orientation (radians) of HAP's reference tangent plane: the aperture roll from PA_V3 and the
    chip's IDCV2REF/IDCV3REF (+ IDCTHETA) with the HST parity, else the chip's ORIENTAT (PA of
    its y axis from the CD matrix)."""
    keys = ("IDCV2REF", "IDCV3REF")
    if sci is not None and pa_v3 is not None and all(k in sci for k in keys):
        pv = aperture_roll(float(pa_v3), float(w.wcs.crval[1]), float(sci["IDCV2REF"]),
                           float(sci["IDCV3REF"])) + float(sci.get("IDCTHETA", 0.0) or 0.0)
        c, s = math.cos(math.radians(pv)), math.sin(math.radians(pv))
        parity = HST_PARITY.get(tuple(v.upper() for v in detector or ("", "")),
                                _DEFAULT_PARITY)
        m = np.array([[c, s], [-s, c]]) @ parity
        return math.atan2(m[0, 1], m[1, 1])
    cd = w.pixel_scale_matrix
    return math.atan2(cd[0, 1], cd[1, 1])


def _reference_frame(chip_wcss: Sequence[WCS], scale: float, sci_header: fits.Header | None,
                     pa_v3: float | None, detector: tuple[str, str] | None
                     ) -> tuple[WCS, tuple[int, int]]:
    """stwcs ``output_wcs`` (AstroDrizzle's default grid): ``(frame WCS, (nx, ny))``; see
    :func:`astrodrizzle_default_grid`."""
    corners = np.vstack([w.calc_footprint(undistort=True) for w in chip_wcss])
    a, d = np.radians(corners[:, 0]), np.radians(corners[:, 1])
    xm, ym, zm = (np.mean(np.cos(d) * np.cos(a)), np.mean(np.cos(d) * np.sin(a)),
                  np.mean(np.sin(d)))
    crval = (math.degrees(math.atan2(ym, xm)) % 360.0,
             math.degrees(math.atan2(zm, math.hypot(xm, ym))))
    rot = _reference_rotation_rad(sci_header, pa_v3, chip_wcss[0], detector)
    s = scale / 3600.0
    c, n = math.cos(rot), math.sin(rot)
    frame = WCS(naxis=2)
    frame.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    frame.wcs.cd = s * np.array([[-c, n], [n, c]])
    frame.wcs.crval = crval
    frame.wcs.crpix = [0.0, 0.0]
    frame.wcs.set()
    x, y = frame.wcs_world2pix(corners[:, 0], corners[:, 1], 0)
    n1, n2 = int(math.ceil(x.max() - x.min())), int(math.ceil(y.max() - y.min()))
    frame.wcs.crpix = [n1 / 2.0, n2 / 2.0]
    frame.wcs.set()
    x, y = frame.wcs_world2pix(corners[:, 0], corners[:, 1], 0)
    corner = [n1 / 2.0 + x.min(), n2 / 2.0 + y.min()]
    frame.wcs.crval = frame.wcs_pix2world([corner], 1)[0]
    frame.wcs.set()
    return frame, (n1, n2)


def hap_visit_grid(chip_wcss: Sequence[WCS], scale: float, *, sci_header: fits.Header | None
                   = None, pa_v3: float | None = None, detector: tuple[str, str] | None = None
                   ) -> OutputGrid:
    """HAP's SVM output grid ("metawcs", inventory 4.4): north up, ``scale`` arcsec/px.

    Construction (the one DrizzlePac's SVM products get): the chips' corner pixel centres (full
    distortion) define the footprint; its geographic midpoint is the first tangent point; a
    square frame at ``scale`` oriented like the first chip's reference tangent plane
    (:func:`aperture_roll` from ``pa_v3`` and ``sci_header``'s IDCV2REF/IDCV3REF/IDCTHETA, else
    the chip's own orientation) is sized to the footprint's extent (ceil), its reference point
    moved to the footprint's lower-left corner; that frame is then rotated to north up about its
    reference pixel, the output sized to hold the rotated frame (ceil) with the reference pixel
    at ``(-xmin + 0.5, -ymin + 0.5)`` (AstroDrizzle's ``final_rot``).

    Parameters
    ----------
    chip_wcss : sequence of WCS
        Every chip of the detector, the first chip of the first exposure first.
    scale : float
        Output scale (arcsec), HAP's: the first chip's ``IDCSCALE`` (else sqrt|det CD|).
    sci_header, pa_v3, detector : optional
        SCI header of the first chip, the exposure's ``PA_V3`` (deg) and its
        ``(INSTRUME, DETECTOR)`` (frame parity, :data:`HST_PARITY`).
    """
    if not chip_wcss:
        raise ValueError("a visit grid needs at least one input chip")
    frame, (n1, n2) = _reference_frame(chip_wcss, scale, sci_header, pa_v3, detector)
    rot = _reference_rotation_rad(sci_header, pa_v3, chip_wcss[0], detector)
    c, n = math.cos(rot), math.sin(rot)
    # rotate to north up (rotation by the frame's orientation about its reference pixel)
    box = np.array([[0.5, 0.5], [n1 + 0.5, 0.5], [0.5, n2 + 0.5], [n1 + 0.5, n2 + 0.5]]) \
        - np.array([n1 / 2.0, n2 / 2.0])
    rm = np.array([[c, n], [-n, c]])
    turned = box @ rm
    (x0, x1), (y0, y1) = (turned[:, 0].min(), turned[:, 0].max()), \
        (turned[:, 1].min(), turned[:, 1].max())
    nx, ny = max(1, int(math.ceil(x1 - x0))), max(1, int(math.ceil(y1 - y0)))
    out = WCS(naxis=2)
    out.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    out.wcs.cd = frame.wcs.cd @ rm
    out.wcs.crval = frame.wcs.crval
    out.wcs.crpix = [-x0 + 0.5, -y0 + 0.5]
    out.wcs.radesys = "ICRS"
    out.wcs.set()
    return OutputGrid.from_wcs(out, (ny, nx))
