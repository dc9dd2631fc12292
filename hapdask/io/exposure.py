"""Lazy HST exposures (FLT/FLC/DRZ/DRC): headers on open, pixels on demand.

An :class:`Exposure` holds the primary header, one :class:`Chip` per ``SCI`` extension and the
small distortion lookup tables (``WCSDVARR`` NPOL and ``D2IMARR`` detector-to-image
extensions). It never holds pixel arrays, so it pickles in well under a millisecond (headers
travel as their 80-character card images) and can be shipped to Dask workers freely. Pixels
are read per chip, optionally per region, by :meth:`Chip.read`, through a per-process cache of
open file handles (:mod:`hapdask.io._cache`: a region read does not reopen the file or re-parse
its headers; a file replaced on disk is reopened). :func:`open_exposure` results are cached per
process the same way (keyed on path, size and modification time), so planning parses each
file's headers once.

Conventions
-----------
* Pixel coordinates are 0-based; a ``region`` is ``(y0, y1, x0, x1)``, half-open, in the
  chip's array index space (``sci[y0:y1, x0:x1]``).
* Units: ``Chip.bunit`` is the ``BUNIT`` of the SCI extension (``ELECTRONS``,
  ``ELECTRONS/S``, ``COUNTS`` ...). ``Chip.is_rate`` tells whether SCI is per second;
  :meth:`Chip.to_rate` converts an array to per-second units.
* HST "constant arrays": an ERR or DQ extension may be stored without pixels (``NAXIS=0``
  with ``PIXVALUE``/``NPIX1``/``NPIX2``) or, in some archive files, as a tiny stub array (e.g.
  2x2) of one constant value. Both mean "no per-pixel information": :meth:`Chip.read`
  expands them to the chip shape filled with that constant (0 in practice: no error estimate,
  no DQ flags). A stub that is *not* constant is rejected as corrupt. A missing ERR or DQ
  extension (DRZ/DRC products, header-only files) is read as zeros as well;
  ``Chip.err_source``/``Chip.dq_source`` say which case applies (``"image"``,
  ``"constant"`` or ``"missing"``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_area

from hapdask.io._cache import cached_exposure, fits_handle
from hapdask.io._fits import iter_hdus, normalize_path
from hapdask.io.filters import normalize_filter, raw_filters

__all__ = ["Chip", "Exposure", "open_exposure"]

_KIND_RE = re.compile(r"_(flt|flc|drz|drc)\.fits(?:\.gz|\.fz|\.bz2)?$", re.IGNORECASE)
_LOOKUP_EXTNAMES = ("WCSDVARR", "D2IMARR")
_MAX_STUB_PIXELS = 4096


@dataclass(frozen=True)
class _ArraySpec:
    """Where one chip array lives: ``kind`` is ``image``, ``constant``, ``missing``, ``none``.

    ``none`` (SCI only) means a header-only extension: there are no pixels to read.
    """

    kind: str
    hdu: int | None = None
    value: float = 0.0
    extname: str = ""


def _header_from_str(text: str) -> fits.Header:
    return fits.Header.fromstring(text)


def linear_pixel_scale(w: WCS) -> float:
    """Pixel scale (arcsec) of the linear part of a celestial WCS (``sqrt(|det CD|)``)."""
    return math.sqrt(proj_plane_pixel_area(w.celestial)) * 3600.0


class Chip:
    """One chip (``SCI`` extension and its ``ERR``/``DQ``) of an exposure.

    Attributes
    ----------
    path : str
        File path (absolute) or URL.
    extver : int
        ``EXTVER`` of the SCI extension (1-based, as in the file).
    shape : tuple of int
        ``(ny, nx)`` of the SCI array.
    bunit : str
        SCI ``BUNIT``, upper case.
    exptime : float
        SCI ``EXPTIME`` if present, else the primary ``EXPTIME`` (seconds).
    ccdchip : int or None
        ``CCDCHIP`` if present.
    wcsname : str
        ``WCSNAME`` of the SCI header ("" if absent).
    err_source, dq_source : str
        ``"image"``, ``"constant"`` or ``"missing"`` (see the module docstring).
    has_data : bool
        False for header-only extensions (``NAXIS=0`` without ``PIXVALUE``).
    """

    def __init__(
        self,
        *,
        path: str,
        extver: int,
        shape: tuple[int, int],
        header_str: str,
        bunit: str,
        exptime: float,
        sci: _ArraySpec,
        err: _ArraySpec,
        dq: _ArraySpec,
        lookups: tuple[tuple[str, int, str, np.ndarray], ...] = (),
    ) -> None:
        self.path = path
        self.extver = int(extver)
        self.shape = (int(shape[0]), int(shape[1]))
        self._header_str = header_str
        self.bunit = bunit
        self.exptime = float(exptime)
        self._sci = sci
        self._err = err
        self._dq = dq
        self._lookups = lookups
        self._header: fits.Header | None = None
        hdr = self.header
        self.ccdchip = int(hdr["CCDCHIP"]) if "CCDCHIP" in hdr else None
        self.wcsname = str(hdr.get("WCSNAME", "")).strip()

    # -- pickling: card images only, no parsed headers, no WCS objects -----------------------
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_header"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (
            f"Chip(path={os.path.basename(self.path)!r}, extver={self.extver}, "
            f"shape={self.shape}, bunit={self.bunit!r})"
        )

    @property
    def header(self) -> fits.Header:
        """The SCI extension header (parsed on first use; treat as read-only)."""
        if self._header is None:
            self._header = _header_from_str(self._header_str)
        return self._header

    @property
    def err_source(self) -> str:
        return self._err.kind

    @property
    def dq_source(self) -> str:
        return self._dq.kind

    @property
    def has_data(self) -> bool:
        return self._sci.kind != "none"

    @property
    def is_rate(self) -> bool:
        """True if SCI is per second (``BUNIT`` ending in ``/S``, e.g. ``ELECTRONS/S``)."""
        return self.bunit.replace(" ", "").endswith("/S")

    @property
    def distortion(self) -> tuple[str, ...]:
        """Distortion components in the header: a subset of ``("SIP", "NPOL", "D2IM")``."""
        hdr = self.header
        parts = []
        if "A_ORDER" in hdr and "-SIP" in str(hdr.get("CTYPE1", "")):
            parts.append("SIP")
        if "CPDIS1" in hdr or "CPDIS2" in hdr:
            parts.append("NPOL")
        if "D2IMDIS1" in hdr or "D2IMDIS2" in hdr:
            parts.append("D2IM")
        return tuple(parts)

    @property
    def pixel_scale(self) -> float:
        """Nominal input pixel scale (arcsec), the one DrizzlePac drizzles this chip with.

        FLT/FLC pixels are flat-fielded to a uniform surface brightness per *nominal* pixel, the
        distortion model's ``IDCSCALE``; the drizzle overlap geometry already accounts for each
        pixel's true area on the sky. So the flux scale of a chip is
        ``(output scale / pixel_scale) ** 2``.

        The value follows DrizzlePac 3.11 (``imageObject.compute_wcslin`` ->
        ``stwcs.distortion.utils.output_wcs``/``make_orthogonal_cd``, whose ``pscale`` becomes
        ``wcslin_pscale`` and ``pix_ratio = output scale / wcslin_pscale`` in ``adrizzle``):

        * header with SIP distortion (``A_ORDER``) and ``IDCSCALE`` > 0: ``IDCSCALE``;
        * SIP but no usable ``IDCSCALE``: ``sqrt(|det CD|)`` (DrizzlePac warns "IDCSCALE is
          missing, computing it from CD matrix");
        * no SIP (plain TAN, e.g. a file never run through ``updatewcs``, even if its primary
          header names an ``IDCTAB``): the length of the CD matrix's first column,
          ``sqrt(CD1_1**2 + CD2_1**2)`` (``HSTWCS.pscale``); ``IDCSCALE`` is not used then.

        The IDCTAB itself is never read here, as DrizzlePac does not read it either (only
        ``updatewcs`` does, which writes ``IDCSCALE``). One DrizzlePac quirk is not copied: its
        loop over the chips keeps ``undistort=False`` for every later chip once one chip lacks
        SIP; each chip is judged on its own header here.
        """
        hdr = self.header
        w = self.wcs()
        if w.sip is None:
            cd = w.celestial.pixel_scale_matrix
            return math.hypot(cd[0, 0], cd[1, 0]) * 3600.0
        try:
            idc = float(hdr.get("IDCSCALE", 0.0))
        except (TypeError, ValueError):
            idc = 0.0
        if math.isfinite(idc) and idc > 0:
            return idc
        return linear_pixel_scale(w)

    def to_rate(self, array: np.ndarray) -> np.ndarray:
        """Return ``array`` (SCI or ERR of this chip) in per-second units.

        Arrays already per second are returned unchanged; counts are divided by ``exptime``.

        Raises
        ------
        ValueError
            If the data are counts and ``exptime`` is not positive.
        """
        if self.is_rate:
            return array
        if not self.exptime > 0:
            raise ValueError(
                f"{self.path}: SCI,{self.extver}: cannot convert {self.bunit} to a rate, "
                f"EXPTIME={self.exptime}"
            )
        return array / np.float32(self.exptime)

    # -- WCS ----------------------------------------------------------------------------------
    def wcs(self) -> WCS:
        """Return a NEW :class:`astropy.wcs.WCS` with the full distortion model.

        SIP, NPOL (``CPDISj`` + ``WCSDVARR``) and D2IM (``D2IMDISj`` + ``D2IMARR``) are loaded
        the way ``WCS(header, fobj=hdulist)`` loads them, from the lookup tables kept in memory
        (the file is not reopened). ``pixel_shape`` is set to ``(nx, ny)``. Each call returns
        an independent object (astropy WCS objects are not thread-safe); the parsed template is
        cached per process so repeated calls cost a deep copy (~0.1 ms).

        Raises
        ------
        ValueError
            If the header does not hold a valid WCS (the message names the file and HDU).
        """
        template = _wcs_template(self)
        with _WCS_LOCK:
            return copy.deepcopy(template)

    def _build_wcs(self) -> WCS:
        hdulist = fits.HDUList([fits.PrimaryHDU()])
        for extname, extver, hdr_str, data in self._lookups:
            hdr = _header_from_str(hdr_str)
            hdr["EXTNAME"] = extname
            hdr["EXTVER"] = extver
            hdulist.append(fits.ImageHDU(data=data, header=hdr))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FITSFixedWarning)
                # from the header text the template cache is keyed on, never from the parsed
                # ``self.header`` a caller may have edited in place
                w = WCS(_header_from_str(self._header_str), fobj=hdulist)
                w.pixel_shape = (self.shape[1], self.shape[0])
                w.wcs.set()
        except Exception as exc:  # astropy raises many types for bad WCS headers
            raise ValueError(
                f"{self.path}: SCI,{self.extver}: invalid or incomplete WCS: {exc}"
            ) from exc
        if not w.has_celestial:
            raise ValueError(f"{self.path}: SCI,{self.extver}: header has no celestial WCS")
        return w

    def footprint(self, step: float = 64.0) -> np.ndarray:
        """Densified outline of the chip on the sky, ``(N, 2)`` RA/Dec in degrees.

        The outline runs along the outer pixel edges, 0-based pixel coordinates
        ``-0.5 .. n-0.5``, starting at ``(x, y) = (-0.5, -0.5)`` and going along +x first
        (``(-0.5,-0.5) -> (nx-0.5,-0.5) -> (nx-0.5,ny-0.5) -> (-0.5,ny-0.5)``), with a point at
        least every ``step`` pixels, through the full distortion model. The polygon is not
        explicitly closed (the first point is not repeated). RA is in [0, 360).
        """
        ny, nx = self.shape
        x, y = _outline_pixels(nx, ny, step)
        w = self.wcs()
        ra, dec = w.all_pix2world(x, y, 0)
        out = np.column_stack([np.mod(ra, 360.0), dec])
        if not np.all(np.isfinite(out)):
            raise ValueError(f"{self.path}: SCI,{self.extver}: WCS gives non-finite footprint")
        return out

    # -- pixels -------------------------------------------------------------------------------
    def read(
        self, region: tuple[int, int, int, int] | None = None, *, err: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Read SCI, ERR and DQ for the whole chip or a region.

        Parameters
        ----------
        region : (y0, y1, x0, x1), optional
            0-based, half-open array-index bounds (``sci[y0:y1, x0:x1]``); must lie inside the
            chip. Only that region is read from disk where the format allows it (memory-mapped
            local files, byte-range reads for URLs; gzip files are decompressed up to it).
        err : bool
            Read ERR (default); False: ERR is not read and None is returned in its place.

        Returns
        -------
        sci : ndarray of float32
            In ``bunit`` units (see :attr:`is_rate`, :meth:`to_rate`).
        err : ndarray of float32, or None with ``err=False``
        dq : ndarray of uint16 (uint32 for 32-bit DQ)
            Constant/missing ERR and DQ are expanded (see the module docstring).

        Raises
        ------
        ValueError
            For a bad region or a header-only chip.
        OSError
            If the file cannot be read (named with its HDU).
        """
        y0, y1, x0, x1 = self._check_region(region)
        if self._sci.kind == "none":
            raise ValueError(
                f"{self.path}: SCI,{self.extver} has no pixel data (header-only extension)"
            )
        shape = (y1 - y0, x1 - x0)
        arrays = (self._sci, self._err, self._dq) if err else (self._sci, self._dq)
        if not any(s.kind == "image" for s in arrays):
            return (
                np.full(shape, self._sci.value, np.float32),
                np.full(shape, self._err.value, np.float32) if err else None,
                np.full(shape, int(self._dq.value), np.uint16),
            )
        with fits_handle(self.path) as handle:
            # copy (and convert) while the handle is in use: regions of memory-mapped files
            # are views into the map
            box = (y0, y1, x0, x1)
            sci = _own(self._read_one(handle, self._sci, box), np.float32)
            e = None
            if err:
                e = _own(self._read_one(handle, self._err, box), np.float32)
            dq = _as_unsigned_dq(self._read_one(handle, self._dq, box), self.path, self.extver)
        return sci, e, dq

    def read_at(self, rows: np.ndarray, cols: np.ndarray, *, err: bool = True
                ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Read SCI, ERR and DQ at scattered pixels ``(rows[k], cols[k])`` only.

        The same values as :meth:`read` of a region holding them, indexed there, without
        reading the region: for a few pixels of a large region (e.g. its cosmic rays), only the
        file pages holding them are touched where the file is memory-mapped (local
        uncompressed images); elsewhere their bounding box is read and indexed.

        Parameters
        ----------
        rows, cols : 1-D integer arrays of one length
            0-based pixel indices (``sci[rows, cols]``), inside the chip.
        err : bool
            Read ERR (default); False: None in its place.

        Returns
        -------
        sci : (n,) float32
        err : (n,) float32 or None
        dq : (n,) uint16 (uint32 for 32-bit DQ)

        Raises
        ------
        ValueError
            For pixels outside the chip, arrays of different lengths or a header-only chip.
        OSError
            If the file cannot be read (named with its HDU).
        """
        rows = np.asarray(rows, np.intp).ravel()
        cols = np.asarray(cols, np.intp).ravel()
        ny, nx = self.shape
        if rows.shape != cols.shape:
            raise ValueError(f"rows and cols differ in length: {rows.size} != {cols.size}")
        if rows.size and not (0 <= rows.min() and rows.max() < ny
                              and 0 <= cols.min() and cols.max() < nx):
            raise ValueError(f"{self.path}: SCI,{self.extver}: pixels outside the chip "
                             f"(ny, nx) = {self.shape}")
        if self._sci.kind == "none":
            raise ValueError(
                f"{self.path}: SCI,{self.extver} has no pixel data (header-only extension)"
            )
        box = ((int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)
               if rows.size else (0, 1, 0, 1))
        with fits_handle(self.path) as handle:
            sci = _own(self._read_points(handle, self._sci, rows, cols, box), np.float32)
            e = None
            if err:
                e = _own(self._read_points(handle, self._err, rows, cols, box), np.float32)
            dq = _as_unsigned_dq(self._read_points(handle, self._dq, rows, cols, box),
                                 self.path, self.extver)
        return sci, e, dq

    def _read_points(self, handle, spec: _ArraySpec, rows: np.ndarray, cols: np.ndarray,
                     box: tuple[int, int, int, int]) -> np.ndarray:
        """One array at the pixels ``(rows, cols)`` (inside ``box``): gathered from the file's
        memory map where :meth:`_read_one` would read it from there, else ``box`` read and
        indexed."""
        if spec.kind == "image":
            where = f"{self.path}: {spec.extname},{self.extver} (HDU {spec.hdu})"
            try:
                with handle.lock:
                    hdu = handle.hdul[spec.hdu]
                    if str(hdu.header.get("EXTNAME", "")).strip().upper() != spec.extname:
                        raise OSError("file changed since it was opened (extension order "
                                      "differs)")
                    layout = handle.raw_layout(spec.hdu, hdu)
                if layout is not None:
                    return handle.read_raw_at(layout, rows, cols)
            except OSError as exc:
                raise OSError(f"{where}: cannot read pixels: {exc}") from exc
        arr = self._read_one(handle, spec, box)
        return np.asarray(arr)[rows - box[0], cols - box[2]]

    def read_sci(self, region: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Read only SCI (float32), for a region like :meth:`read`."""
        y0, y1, x0, x1 = self._check_region(region)
        if self._sci.kind == "none":
            raise ValueError(
                f"{self.path}: SCI,{self.extver} has no pixel data (header-only extension)"
            )
        if self._sci.kind != "image":
            return np.full((y1 - y0, x1 - x0), self._sci.value, np.float32)
        with fits_handle(self.path) as handle:
            sci = self._read_one(handle, self._sci, (y0, y1, x0, x1))
            return _own(sci, np.float32)

    def sci_all_zero(self, block_rows: int = 256) -> bool | None:
        """True if every SCI pixel is exactly 0 (NaN counts as non-zero).

        Reads the chip in blocks of ``block_rows`` rows and stops at the first block holding a
        non-zero pixel, so ordinary exposures cost one small read. Returns ``None`` for a
        header-only chip (nothing to test).
        """
        if self._sci.kind == "none":
            return None
        if self._sci.kind != "image":
            return self._sci.value == 0
        ny, nx = self.shape
        with fits_handle(self.path) as handle:
            for y0 in range(0, ny, max(1, int(block_rows))):
                block = self._read_one(handle, self._sci, (y0, min(ny, y0 + block_rows), 0, nx))
                if np.any(block != 0):
                    return False
        return True

    def _check_region(self, region) -> tuple[int, int, int, int]:
        ny, nx = self.shape
        if region is None:
            return 0, ny, 0, nx
        try:
            y0, y1, x0, x1 = (int(v) for v in region)
        except (TypeError, ValueError):
            raise ValueError(f"region must be (y0, y1, x0, x1) integers, got {region!r}") from None
        if not (0 <= y0 < y1 <= ny and 0 <= x0 < x1 <= nx):
            raise ValueError(
                f"{self.path}: SCI,{self.extver}: region {(y0, y1, x0, x1)} is empty or outside "
                f"the chip (ny, nx) = {self.shape} (0-based, half-open)"
            )
        return y0, y1, x0, x1

    def _read_one(self, handle, spec: _ArraySpec, region) -> np.ndarray:
        """One array of ``region`` from an open :class:`~hapdask.io._cache.FitsHandle`.

        Images of local uncompressed files come as fresh native-endian arrays
        (:meth:`~hapdask.io._cache.FitsHandle.read_raw`), others possibly as big-endian views
        of the file: callers convert with :func:`_own`.
        """
        y0, y1, x0, x1 = region
        if spec.kind != "image":
            dtype = np.uint16 if spec.extname == "DQ" else np.float32
            if spec.extname == "DQ":
                return np.full((y1 - y0, x1 - x0), int(spec.value), dtype)
            return np.full((y1 - y0, x1 - x0), spec.value, dtype)
        where = f"{self.path}: {spec.extname},{self.extver} (HDU {spec.hdu})"
        try:
            with handle.lock:  # astropy HDU loading, seeks and reads are not thread-safe
                hdu = handle.hdul[spec.hdu]
                if str(hdu.header.get("EXTNAME", "")).strip().upper() != spec.extname:
                    raise OSError("file changed since it was opened (extension order differs)")
                layout = handle.raw_layout(spec.hdu, hdu)
                if layout is None:  # URL, gzip or scaled data: astropy's section reader
                    arr = np.asarray(hdu.section[y0:y1, x0:x1])
            if layout is not None:
                # uncompressed local file, unscaled data: positional reads of the region's
                # bytes only, outside the lock
                arr = handle.read_raw(layout, region)
        except OSError as exc:
            raise OSError(f"{where}: cannot read pixels: {exc}") from exc
        except (ValueError, TypeError, IndexError, EOFError) as exc:
            raise OSError(
                f"{where}: cannot read pixels (file truncated or corrupt?): {exc}"
            ) from exc
        arr = np.asarray(arr)
        if arr.shape != (y1 - y0, x1 - x0):
            raise OSError(
                f"{where}: read {arr.shape} pixels instead of {(y1 - y0, x1 - x0)} "
                "(file truncated?)"
            )
        return arr


def _own(arr: np.ndarray, dtype: type) -> np.ndarray:
    """``arr`` as a C-contiguous, writable array of ``dtype`` that is the caller's own:
    ``arr`` itself when it already is one (a fresh array of
    :meth:`~hapdask.io._cache.FitsHandle.read_raw`), else a converted copy (a view of a
    memory map, a big-endian or another-typed array)."""
    arr = np.asarray(arr)
    if (arr.dtype == np.dtype(dtype) and arr.dtype.isnative and arr.flags.c_contiguous
            and arr.flags.owndata and arr.flags.writeable):
        return arr
    return np.array(arr, dtype=dtype, order="C")


def _as_unsigned_dq(dq: np.ndarray, path: str, extver: int) -> np.ndarray:
    dq = np.asarray(dq)
    if dq.dtype.kind == "u":
        return _own(dq, np.uint16 if dq.dtype.itemsize <= 2 else np.uint32)
    if dq.dtype.kind == "i":
        if dq.dtype.itemsize <= 2:
            return _own(dq, np.int16).view(np.uint16)
        if dq.dtype.itemsize == 4:
            return _own(dq, np.int32).view(np.uint32)
    raise OSError(f"{path}: DQ,{extver}: unsupported DQ data type {dq.dtype} (need integers)")


def _outline_pixels(nx: int, ny: int, step: float) -> tuple[np.ndarray, np.ndarray]:
    if not step > 0:
        raise ValueError(f"footprint step must be > 0, got {step}")
    xs0, xs1 = -0.5, nx - 0.5
    ys0, ys1 = -0.5, ny - 0.5
    nxs = max(2, int(np.ceil(nx / step)) + 1)
    nys = max(2, int(np.ceil(ny / step)) + 1)
    bx = np.linspace(xs0, xs1, nxs)
    by = np.linspace(ys0, ys1, nys)
    x = np.concatenate([bx[:-1], np.full(nys - 1, xs1), bx[::-1][:-1], np.full(nys - 1, xs0)])
    y = np.concatenate([np.full(nxs - 1, ys0), by[:-1], np.full(nxs - 1, ys1), by[::-1][:-1]])
    return x, y


# -- per-process WCS template cache ----------------------------------------------------------
_WCS_LOCK = threading.Lock()
_WCS_CACHE: OrderedDict[tuple, WCS] = OrderedDict()
_WCS_CACHE_SIZE = 256


def _wcs_template(chip: Chip) -> WCS:
    key = (
        chip.path,
        chip.extver,
        chip.shape,
        hash(chip._header_str),
        tuple((n, v, hash(h), d.shape, hash(d.tobytes())) for n, v, h, d in chip._lookups),
    )
    with _WCS_LOCK:
        template = _WCS_CACHE.get(key)
        if template is not None:
            _WCS_CACHE.move_to_end(key)
            return template
    template = chip._build_wcs()
    with _WCS_LOCK:
        _WCS_CACHE[key] = template
        while len(_WCS_CACHE) > _WCS_CACHE_SIZE:
            _WCS_CACHE.popitem(last=False)
    return template


@dataclass
class Exposure:
    """A lazily opened HST exposure: headers, chips and lookup tables, no pixels.

    Attributes
    ----------
    path : str
        Absolute local path or URL.
    rootname : str
        ``ROOTNAME`` (lower case), e.g. ``"j8bt06nyq"``.
    instrument, detector : str
        Upper case (``"ACS"``, ``"WFC"``); WFPC2 exposures get detector ``"PC"`` as in HAP.
    filter : str
        Normalised HAP filter name (:func:`hapdask.io.filters.normalize_filter`).
    filters_raw : str
        The raw ``;``-separated filter keywords, as in a poller.
    exptime : float
        Primary ``EXPTIME`` (s).
    bunit : str
        ``BUNIT`` of the first SCI extension.
    kind : str
        ``"flt"``, ``"flc"``, ``"drz"`` or ``"drc"`` (from the file name, else the contents).
    chips : list of Chip
        One per SCI extension, in file order.
    """

    path: str
    rootname: str
    instrument: str
    detector: str
    filter: str
    filters_raw: str
    exptime: float
    bunit: str
    kind: str
    chips: list[Chip]
    _primary_str: str = field(repr=False)
    _primary: fits.Header | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_primary"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    @property
    def primary(self) -> fits.Header:
        """The primary header (parsed on first use; treat as read-only)."""
        if self._primary is None:
            self._primary = _header_from_str(self._primary_str)
        return self._primary

    # "primary header" in the contract
    header = primary

    @property
    def is_flc(self) -> bool:
        """True for CTE-corrected products (``flc``/``drc``)."""
        return self.kind in ("flc", "drc")

    @property
    def is_rate(self) -> bool:
        """True if SCI is per second (all chips share the unit)."""
        return self.chips[0].is_rate

    @property
    def wcsname(self) -> str:
        """``WCSNAME`` of the first chip ("" if absent)."""
        return self.chips[0].wcsname

    @property
    def expstart(self) -> float | None:
        """``EXPSTART`` (MJD) of the primary header, or None if absent."""
        value = self.primary.get("EXPSTART")
        return None if value is None else float(value)

    @property
    def date_obs(self) -> str:
        """``DATE-OBS`` of the primary header ("" if absent)."""
        return str(self.primary.get("DATE-OBS", "")).strip()

    @property
    def proposal_id(self) -> int | None:
        """``PROPOSID`` of the primary header, or None if absent."""
        value = self.primary.get("PROPOSID")
        return None if value is None else int(value)

    @property
    def filename(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def footprints(self, step: float = 64.0) -> list[np.ndarray]:
        """Per chip, the densified sky outline ``(N, 2)`` RA/Dec in degrees.

        See :meth:`Chip.footprint` (0-based outer pixel edges ``-0.5 .. n-0.5``, full WCS).
        """
        return [chip.footprint(step) for chip in self.chips]


def _array_spec(
    path: str,
    idx: int | None,
    hdr: fits.Header | None,
    extname: str,
    extver: int,
    shape: tuple[int, int],
    stubs: dict[int, np.ndarray],
) -> _ArraySpec:
    """Describe how ERR/DQ of a chip are stored (image, constant or missing)."""
    if idx is None or hdr is None:
        return _ArraySpec("missing", None, 0.0, extname)
    naxis = int(hdr.get("NAXIS", 0))
    where = f"{path}: {extname},{extver} (HDU {idx})"
    if naxis == 0:
        if "PIXVALUE" in hdr:
            npix = (int(hdr.get("NPIX2", shape[0])), int(hdr.get("NPIX1", shape[1])))
            if npix != shape:
                raise ValueError(
                    f"{where}: constant array NPIX2xNPIX1={npix} differs from SCI shape {shape}"
                )
            return _ArraySpec("constant", idx, float(hdr["PIXVALUE"]), extname)
        return _ArraySpec("missing", idx, 0.0, extname)
    if naxis != 2:
        raise ValueError(f"{where}: expected a 2-D image, NAXIS={naxis}")
    ashape = (int(hdr["NAXIS2"]), int(hdr["NAXIS1"]))
    if ashape == shape:
        return _ArraySpec("image", idx, 0.0, extname)
    if ashape[0] * ashape[1] > _MAX_STUB_PIXELS:
        raise ValueError(f"{where}: shape {ashape} differs from SCI shape {shape}")
    stub = stubs[idx]
    if stub.size == 0 or not np.all(stub == stub.flat[0]):
        raise ValueError(
            f"{where}: {ashape} stub array is not constant and differs from SCI shape {shape}"
        )
    return _ArraySpec("constant", idx, float(stub.flat[0]), extname)


def _is_small_image(hdr: fits.Header) -> bool:
    if int(hdr.get("NAXIS", 0)) != 2:
        return False
    return int(hdr.get("NAXIS1", 0)) * int(hdr.get("NAXIS2", 0)) <= _MAX_STUB_PIXELS


def _read_small(hdu, path: str, what: str) -> np.ndarray:
    try:
        data = hdu.data
    except Exception as exc:
        raise OSError(f"{path}: {what} is unreadable: {exc}") from exc
    if data is None:
        raise ValueError(f"{path}: {what} has no data")
    return np.array(data)


def _sci_shape(
    path: str, idx: int, hdr: fits.Header, extver: int
) -> tuple[tuple[int, int], _ArraySpec]:
    where = f"{path}: SCI,{extver} (HDU {idx})"
    naxis = int(hdr.get("NAXIS", 0))
    if naxis == 2:
        return (int(hdr["NAXIS2"]), int(hdr["NAXIS1"])), _ArraySpec("image", idx, 0.0, "SCI")
    if naxis != 0:
        raise ValueError(f"{where}: expected a 2-D image, NAXIS={naxis}")
    if "NPIX1" in hdr and "NPIX2" in hdr:
        shape = (int(hdr["NPIX2"]), int(hdr["NPIX1"]))
        if "PIXVALUE" in hdr:
            return shape, _ArraySpec("constant", idx, float(hdr["PIXVALUE"]), "SCI")
        return shape, _ArraySpec("none", idx, 0.0, "SCI")
    if "WCSNAX1" in hdr and "WCSNAX2" in hdr:
        return (int(hdr["WCSNAX2"]), int(hdr["WCSNAX1"])), _ArraySpec("none", idx, 0.0, "SCI")
    if "SIZAXIS1" in hdr and "SIZAXIS2" in hdr:
        bx = int(hdr.get("BINAXIS1", 1)) or 1
        by = int(hdr.get("BINAXIS2", 1)) or 1
        shape = (int(hdr["SIZAXIS2"]) // by, int(hdr["SIZAXIS1"]) // bx)
        return shape, _ArraySpec("none", idx, 0.0, "SCI")
    raise ValueError(
        f"{where}: no pixel data and no size keywords (NPIX1/2, WCSNAX1/2, SIZAXIS1/2)"
    )


def _required_lookups(path: str, hdr: fits.Header, extver: int) -> list[tuple[str, int]]:
    """The (EXTNAME, EXTVER) lookup tables a SCI header refers to."""
    needed = []
    for axis in (1, 2):
        if str(hdr.get(f"CPDIS{axis}", "")).strip().upper() == "LOOKUP":
            key = f"DP{axis}.EXTVER"
            if key not in hdr:
                raise ValueError(f"{path}: SCI,{extver}: CPDIS{axis}=LOOKUP but {key} is missing")
            needed.append(("WCSDVARR", int(hdr[key])))
        if str(hdr.get(f"D2IMDIS{axis}", "")).strip().upper() == "LOOKUP":
            key = f"D2IM{axis}.EXTVER"
            if key not in hdr:
                raise ValueError(f"{path}: SCI,{extver}: D2IMDIS{axis}=LOOKUP but {key} is missing")
            needed.append(("D2IMARR", int(hdr[key])))
    return needed


def _kind(path: str, extnames: set[str], primary: fits.Header) -> str:
    m = _KIND_RE.search(path)
    if m:
        return m.group(1).lower()
    filetype = str(primary.get("FILETYPE", "")).strip().upper()
    cte = "FLC" in str(primary.get("FILENAME", "")).upper()
    if "WHT" in extnames or filetype in ("DRZ", "DRC"):
        return "drc" if cte or filetype == "DRC" else "drz"
    return "flc" if cte else "flt"


def _copy_exposure(exp: Exposure) -> Exposure:
    _ = exp.primary  # parse once, share the parsed header (read-only by contract)
    return dataclasses.replace(exp, chips=list(exp.chips))


def open_exposure(path_or_url: str | os.PathLike) -> Exposure:
    """Open an HST FLT/FLC/DRZ/DRC exposure lazily.

    Only headers (and the small ``WCSDVARR``/``D2IMARR`` lookup tables) are read; pixels are
    read on demand by :meth:`Chip.read`. Results are cached per process, keyed on the path and
    the file's size, modification time and inode (URLs: size and ETag/modification time), so
    opening the same unchanged file again costs no header parsing; each call returns its own
    :class:`Exposure` (sharing the immutable chips and parsed headers: treat them as
    read-only).

    Parameters
    ----------
    path_or_url : str or os.PathLike
        A local path (``.fits`` or ``.fits.gz``) or an fsspec URL. ``s3://`` URLs use
        anonymous access (e.g. ``s3://stpubdata/hst/public/j8bt/j8bt06nyq/j8bt06nyq_flt.fits``;
        needs ``s3fs``).

    Returns
    -------
    Exposure

    Raises
    ------
    OSError
        If the file cannot be opened or is truncated/corrupt.
    ValueError
        If a required HDU or keyword is missing or inconsistent (the message names the file,
        the HDU and what is wrong).
    """
    path = normalize_path(path_or_url)
    return cached_exposure(path, _read_exposure, _copy_exposure)


def _read_exposure(path: str) -> Exposure:
    """:func:`open_exposure` without the cache (``path`` normalised)."""
    sci: dict[int, tuple[int, fits.Header]] = {}
    aux: dict[tuple[str, int], tuple[int, fits.Header]] = {}
    lookup_hdus: dict[tuple[str, int], int] = {}
    extnames: set[str] = set()
    stubs: dict[int, np.ndarray] = {}
    with fits_handle(path, drop_on_error=True) as handle, handle.lock:  # serves Chip.read later
        hdul = handle.hdul
        primary = None
        for idx, hdu in iter_hdus(hdul, path):
            hdr = hdu.header
            if idx == 0:
                primary = hdr
                continue
            extname = str(hdr.get("EXTNAME", "")).strip().upper()
            extver = int(hdr.get("EXTVER", 1))
            extnames.add(extname)
            key = (extname, extver)
            if extname == "SCI":
                if extver in sci:
                    raise ValueError(
                        f"{path}: duplicate SCI,{extver} (HDU {sci[extver][0]} and {idx})"
                    )
                sci[extver] = (idx, hdr)
            elif extname in ("ERR", "DQ"):
                aux.setdefault(key, (idx, hdr))
                if _is_small_image(hdr):
                    # read stubs now, while the file is positioned on them (no gzip rewinds)
                    stubs[idx] = _read_small(hdu, path, f"{extname},{extver} (HDU {idx})")
            elif extname in _LOOKUP_EXTNAMES:
                lookup_hdus.setdefault(key, idx)
                stubs[idx] = _read_small(hdu, path, f"{extname},{extver} (HDU {idx})")
        if primary is None:
            raise OSError(f"{path}: empty FITS file (no primary HDU)")
        if not sci:
            raise ValueError(f"{path}: no SCI extension (not an HST FLT/FLC/DRZ/DRC file?)")

        where = f"{path}: primary header (HDU 0)"
        for key in ("INSTRUME", "EXPTIME"):
            if key not in primary:
                raise ValueError(f"{where}: keyword {key} is missing")
        instrument = str(primary["INSTRUME"]).strip().upper()
        if instrument == "WFPC2":
            detector = "PC"
        else:
            if "DETECTOR" not in primary:
                raise ValueError(f"{where}: keyword DETECTOR is missing")
            detector = str(primary["DETECTOR"]).strip().upper()
        try:
            exptime = float(primary["EXPTIME"])
        except (TypeError, ValueError):
            raise ValueError(f"{where}: EXPTIME={primary['EXPTIME']!r} is not a number") from None
        filters_raw = raw_filters(primary, instrument, where=where)
        rootname = str(primary.get("ROOTNAME", "")).strip().lower()
        if not rootname:
            rootname = os.path.basename(path).split("_")[0].split(".")[0].lower()

        # the distortion lookup tables (small: NPOL 65x33, D2IM 4096x1 ...)
        lookups: dict[tuple[str, int], tuple[str, int, str, np.ndarray]] = {}
        chips = []
        for extver in sorted(sci, key=lambda v: sci[v][0]):
            idx, hdr = sci[extver]
            shape, sci_spec = _sci_shape(path, idx, hdr, extver)
            chip_lookups = []
            for need in _required_lookups(path, hdr, extver):
                if need not in lookups:
                    if need not in lookup_hdus:
                        raise ValueError(
                            f"{path}: SCI,{extver} refers to {need[0]},{need[1]} which is not in "
                            "the file"
                        )
                    lidx = lookup_hdus[need]
                    ldata = np.array(stubs[lidx], dtype=np.float32)
                    lhdr = hdul[lidx].header
                    lookups[need] = (need[0], need[1], lhdr.tostring(), ldata)
                chip_lookups.append(lookups[need])
            err_idx, err_hdr = aux.get(("ERR", extver), (None, None))
            dq_idx, dq_hdr = aux.get(("DQ", extver), (None, None))
            err_spec = _array_spec(path, err_idx, err_hdr, "ERR", extver, shape, stubs)
            dq_spec = _array_spec(path, dq_idx, dq_hdr, "DQ", extver, shape, stubs)
            bunit = str(hdr.get("BUNIT", primary.get("BUNIT", ""))).strip().upper()
            if not bunit:
                raise ValueError(f"{path}: SCI,{extver} (HDU {idx}): keyword BUNIT is missing")
            try:
                chip_exptime = float(hdr.get("EXPTIME", exptime))
            except (TypeError, ValueError):
                raise ValueError(f"{path}: SCI,{extver} (HDU {idx}): bad EXPTIME") from None
            chips.append(
                Chip(
                    path=path,
                    extver=extver,
                    shape=shape,
                    header_str=hdr.tostring(),
                    bunit=bunit,
                    exptime=chip_exptime,
                    sci=sci_spec,
                    err=err_spec,
                    dq=dq_spec,
                    lookups=tuple(chip_lookups),
                )
            )
        kind = _kind(path, extnames, primary)
        primary_str = primary.tostring()

    return Exposure(
        path=path,
        rootname=rootname,
        instrument=instrument,
        detector=detector,
        filter=normalize_filter(filters_raw),
        filters_raw=filters_raw,
        exptime=exptime,
        bunit=chips[0].bunit,
        kind=kind,
        chips=chips,
        _primary_str=primary_str,
    )
