"""A drizzled product as the catalog and preview code sees it: SCI, WHT, WCS, header.

:class:`DrizzleProduct` holds the arrays in memory (a ``*_drz.fits``/``*_drc.fits`` file through
:func:`read_product`, or arrays made elsewhere). Arrays are ``[row, column]``; pixel positions
in the catalogs are 0-based.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

__all__ = ["DrizzleProduct", "read_product", "context_count", "nan_to_zero"]


def nan_to_zero(x: np.ndarray) -> np.ndarray:
    """``np.nan_to_num(x, copy=False, nan=0.0)`` of a writeable float array, in place: NaN
    becomes 0 (and +-inf the largest finite values, as numpy's function does when any is
    there); returns ``x``.

    The same values with fewer passes: numpy's function also finds and replaces the infinities
    of each sign (``isposinf``/``isneginf``, two masks and two more passes), which the drizzled
    products do not hold (NaN marks no data); here one ``isinf`` pass checks it and numpy's
    function is called only when some is found."""
    np.copyto(x, 0, where=np.isnan(x))
    if np.isinf(x).any():
        np.nan_to_num(x, copy=False)
    return x


@dataclass
class DrizzleProduct:
    """A drizzled image in memory.

    Attributes
    ----------
    sci : (ny, nx) float array
        Science image, electrons/s (count rate), NaN or 0 where there is no data.
    wht : (ny, nx) float array
        Drizzle weight (0 = no data).
    wcs : astropy.wcs.WCS
        Celestial WCS of the arrays.
    header : astropy.io.fits.Header
        Keywords (primary and SCI merged, SCI wins): ``PHOTFLAM``, ``PHOTPLAM``, ``EXPTIME``/
        ``TEXPTIME``, ``NDRIZIM``/``NUMEXP``, ``READNSE*``, ``ATODGN*``, ``FILTER``, ...
    nexp : (ny, nx) int array or None
        Number of exposures contributing to each pixel (HAP's ``num_images_mask``; from the CTX
        extension); None means "1 where WHT > 0".
    name : str
        File name (or a label) used in messages and catalog metadata.
    """

    sci: np.ndarray
    wht: np.ndarray
    wcs: WCS
    header: fits.Header = field(default_factory=fits.Header)
    nexp: np.ndarray | None = None
    name: str = "<memory>"

    def __post_init__(self) -> None:
        self.sci = np.asarray(self.sci)
        self.wht = np.asarray(self.wht)
        if self.sci.ndim != 2:
            raise ValueError(f"{self.name}: SCI must be 2-D, got shape {self.sci.shape}")
        if self.wht.shape != self.sci.shape:
            raise ValueError(f"{self.name}: WHT shape {self.wht.shape} != SCI shape "
                             f"{self.sci.shape}")
        if self.nexp is not None and np.shape(self.nexp) != self.sci.shape:
            raise ValueError(f"{self.name}: exposure-count map shape {np.shape(self.nexp)} != "
                             f"SCI shape {self.sci.shape}")

    @property
    def pixel_scale(self) -> float:
        """Pixel scale in arcsec (geometric mean of the two axes)."""
        sx, sy = proj_plane_pixel_scales(self.wcs.celestial)
        return float(math.sqrt(sx * sy) * 3600.0)

    @property
    def exposure_count(self) -> np.ndarray:
        """Per-pixel number of contributing exposures (``nexp``, else WHT > 0 as 0/1)."""
        if self.nexp is not None:
            return np.asarray(self.nexp)
        return (self.wht > 0).astype(np.int32)

    def keyword(self, *names: str, default: object = None) -> object:
        """First of ``names`` present in the header, else ``default``."""
        for n in names:
            if n in self.header:
                return self.header[n]
        return default

    def keyword_values(self, prefix: str) -> list[float]:
        """Values of all numeric keywords starting with ``prefix`` (e.g. ``READNSE``)."""
        return [float(v) for k, v in self.header.items()
                if k.startswith(prefix) and isinstance(v, (int, float)) and not isinstance(v, bool)]

    @property
    def exptime(self) -> float:
        """Total exposure time (``TEXPTIME``, else ``EXPTIME``), seconds."""
        value = self.keyword("TEXPTIME", "EXPTIME")
        if value is None or not float(value) > 0:
            raise ValueError(f"{self.name}: no positive TEXPTIME/EXPTIME keyword")
        return float(value)

    def photometry_keywords(self) -> tuple[float, float]:
        """``(PHOTFLAM, PHOTPLAM)``; ValueError naming the product when missing."""
        flam, plam = self.keyword("PHOTFLAM"), self.keyword("PHOTPLAM")
        if flam is None or plam is None:
            raise ValueError(f"{self.name}: PHOTFLAM/PHOTPLAM keywords missing; pass them in the "
                             f"header")
        return float(flam), float(plam)


#: rows counted, read and converted at a time (:func:`context_count`, :func:`read_product`)
_BAND = 256


def _count_dtype(nplanes: int) -> type:
    """Smallest unsigned type holding ``32 x nplanes`` (the most exposures a CTX can count)."""
    return np.uint8 if 32 * nplanes <= 255 else np.uint16 if 32 * nplanes <= 65535 else np.uint32


def _count_band(band: np.ndarray, out: np.ndarray) -> None:
    """Set bits per pixel of ``band`` ``(nplanes, rows, nx)`` summed over planes into ``out``."""
    bits = np.ascontiguousarray(band, dtype=np.uint32)  # int32 CTX: the same bit pattern
    np.sum(np.bitwise_count(bits), axis=0, dtype=out.dtype, out=out)


def context_count(ctx: np.ndarray) -> np.ndarray:
    """Number of set bits per pixel of a CTX array ``(ny, nx)`` or ``(nplanes, ny, nx)``.

    Counted band by band (memory: the result plus a few rows), in the smallest unsigned type
    that holds ``32 x nplanes`` (uint8 up to 7 planes, i.e. 224 exposures).
    """
    ctx = np.asarray(ctx)
    if ctx.ndim == 2:
        ctx = ctx[None]
    out = np.empty(ctx.shape[1:], _count_dtype(ctx.shape[0]))
    for r0 in range(0, ctx.shape[1], _BAND):
        _count_band(ctx[:, r0:r0 + _BAND], out[r0:r0 + _BAND])
    return out


def _read_image(hdu: fits.ImageHDU, dtype: type) -> np.ndarray:
    """``hdu.data`` as a native-endian ``dtype`` array, read band by band through
    ``hdu.section`` (the same values as ``np.asarray(hdu.data, dtype)`` without holding the
    file's big-endian copy of the whole image as well)."""
    out = np.empty(hdu.shape, dtype)
    for r0 in range(0, hdu.shape[0], _BAND):
        out[r0:r0 + _BAND] = hdu.section[r0:r0 + _BAND]
    return out


def _read_context(hdu: fits.ImageHDU) -> np.ndarray:
    """:func:`context_count` of a CTX extension, read band by band (never the whole CTX)."""
    shape = hdu.shape
    if len(shape) == 2:
        out = np.empty(shape, _count_dtype(1))
        for r0 in range(0, shape[0], _BAND):
            _count_band(hdu.section[r0:r0 + _BAND][None], out[r0:r0 + _BAND])
        return out
    out = np.empty(shape[1:], _count_dtype(shape[0]))
    for r0 in range(0, shape[1], _BAND):
        _count_band(hdu.section[:, r0:r0 + _BAND], out[r0:r0 + _BAND])
    return out


def read_product(path: str | os.PathLike[str], *, memmap: bool = False,
                 weights: bool = True, sci_dtype: type = np.float32) -> DrizzleProduct:
    """Read a drizzle product (``SCI``, ``WHT`` and optional ``CTX`` extensions).

    ``memmap=True`` leaves SCI and WHT memory-mapped (pixels read where used, e.g. by the band-wise
    previews) and skips the exposure count (CTX). Otherwise SCI and WHT are read as native
    float32 (SCI as ``sci_dtype``: e.g. float64 for a caller that converts it anyway, without a
    whole float32 copy besides) and CTX as the exposure count (:func:`context_count`), band by
    band. ``weights=False`` leaves WHT memory-mapped (read only where used: the filter products
    of the catalogs never read it).
    """
    path = os.fspath(path)
    with fits.open(path, memmap=memmap) as hdul:
        names = [h.name for h in hdul]
        for need in ("SCI", "WHT"):
            if need not in names:
                raise ValueError(f"{path}: no {need} extension (found {names})")
        header = hdul[0].header.copy()
        sci_hdr = hdul["SCI"].header
        header.update({k: v for k, v in sci_hdr.items() if k not in ("", "COMMENT", "HISTORY")})
        if memmap:
            sci, wht, nexp = hdul["SCI"].data, hdul["WHT"].data, None
        else:
            sci = _read_image(hdul["SCI"], sci_dtype)
            wht = _read_image(hdul["WHT"], np.float32) if weights else None
            nexp = _read_context(hdul["CTX"]) if "CTX" in names and \
                hdul["CTX"].header.get("NAXIS", 0) >= 2 else None
        wcs = WCS(sci_hdr)
    if wht is None:
        with fits.open(path, memmap=True) as hdul:
            wht = hdul["WHT"].data
    return DrizzleProduct(sci=sci, wht=wht, wcs=wcs, header=header, nexp=nexp,
                          name=os.path.basename(path))
