"""Input chips as the mosaic graph sees them.

A :class:`ChipRef` is small and picklable: the lazy :class:`hapdask.io.Chip` (pixels are read on
demand, region by region), the numbers the stages need (exposure time, units, DQ bits, nominal
pixel scale, gain and read noise) and, optionally, a replacement WCS (alignment result). The
graph builders put every chip into the graph once, under its own key; tasks refer to that key.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from astropy.io import fits
from astropy.wcs import WCS

from hapdask.mosaic.wcsio import thread_wcs, updated_wcs_bytes, wcs_from_bytes

__all__ = ["ChipKey", "ChipRef", "chip_refs", "detector_noise", "reference_file"]

ChipKey = tuple[str, int]


@dataclass
class ChipRef:
    """One input chip (picklable; it enters a graph once, as the value of its own key).

    Attributes
    ----------
    key : (rootname, extver)
    chip : hapdask.io.Chip
        Lazy chip (reads pixels on demand).
    exptime : float
        Exposure time (s): the EXP drizzle weight per good pixel.
    is_rate : bool
        SCI already per second (else divided by ``exptime``).
    bits : int or None
        DQ bits treated as good (None: every pixel good).
    pscale : float
        Nominal input pixel scale (arcsec), :attr:`hapdask.io.Chip.pixel_scale` (``IDCSCALE``).
    wcs_bytes : bytes or None
        Replacement WCS (alignment result) serialised with
        :func:`hapdask.mosaic.wcsio.serialize_wcs`.
    gain : float
        Effective gain (e-/count) of the SCI units: 1 for data already in electrons.
    readnoise : float
        Read noise (electrons).
    signature : tuple
        ``(instrument, detector, shape, chip id)``: what kind of chip this is (e.g. the
        read-out direction of ``driz_cr_ctegrow``).
    content : str
        Content identity of the chip's file (:func:`hapdask.io.content_identity`): resumed
        MVM runs recompute every tile of a chip whose file changed.
    meandark : float
        ``MEANDARK`` of the SCI header (electrons; 0 when absent): the dark term of the IVM
        weight, as AstroDrizzle's ``getdarkcurrent``.
    flatfile : str or None
        The flat-field reference file (``PFLTFILE``, ``jref$`` style prefixes resolved through
        the environment) when it exists on this machine, else None (AstroDrizzle then uses a
        flat of 1).
    """

    key: ChipKey
    chip: object
    exptime: float
    is_rate: bool
    bits: int | None
    pscale: float
    wcs_bytes: bytes | None = None
    gain: float = 1.0
    readnoise: float = 0.0
    signature: tuple = ()
    content: str = ""
    meandark: float = 0.0
    flatfile: str | None = None

    def wcs(self) -> WCS:
        """A new astropy WCS of this chip (the replacement one when given)."""
        if self.wcs_bytes is not None:
            w = wcs_from_bytes(self.wcs_bytes)
            ny, nx = self.shape
            w.pixel_shape = (nx, ny)
            return w
        return self.chip.wcs()

    def thread_wcs(self) -> WCS:
        """The chip's WCS, private to the calling thread (cached per thread: do not modify)."""
        if self.wcs_bytes is not None:
            return thread_wcs(self.wcs_bytes)
        return self.chip.wcs()

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.chip.shape)

    @property
    def label(self) -> str:
        return f"{os.path.basename(self.chip.path)}[sci,{self.key[1]}]"

    @property
    def rootname(self) -> str:
        return self.key[0]


def _amp_mean(primary: fits.Header, stem: str) -> float | None:
    """Mean of the non-zero ``<stem>A..D`` values of a primary header (None if none)."""
    vals = []
    for amp in "ABCD":
        try:
            v = float(primary.get(f"{stem}{amp}", 0.0))
        except (TypeError, ValueError):
            continue
        if math.isfinite(v) and v != 0.0:
            vals.append(v)
    return sum(vals) / len(vals) if vals else None


def detector_noise(primary: fits.Header, bunit: str) -> tuple[float, float]:
    """Effective gain and read noise of an exposure, as DrizzlePac takes them.

    Gain and read noise are the means of the non-zero amplifier values ``ATODGN[A-D]`` and
    ``READNSE[A-D]`` of the primary header (``CCDGAIN`` and 0 when absent). Data already in
    electrons (``BUNIT`` ``ELECTRONS`` or ``ELECTRONS/S``) have an effective gain of 1.

    Returns
    -------
    (gain, readnoise)
        e-/count and electrons.
    """
    rn = _amp_mean(primary, "READNSE") or 0.0
    if bunit.upper().replace(" ", "").startswith("ELECTRON"):
        return 1.0, rn
    gain = _amp_mean(primary, "ATODGN")
    if gain is None:
        try:
            gain = float(primary.get("CCDGAIN", 1.0)) or 1.0
        except (TypeError, ValueError):
            gain = 1.0
    return gain, rn


def reference_file(value: str | None) -> str | None:
    """Local path of a reference-file keyword value (``jref$x_pfl.fits``, ``iref$...`` or a
    plain path), resolving the ``<var>$`` prefix through the environment as DrizzlePac's
    ``fileutil.osfn``; None when the value is empty/``N/A`` or the file does not exist."""
    if not value or str(value).strip().upper() in ("N/A", "NONE"):
        return None
    name = str(value).strip()
    if "$" in name:
        var, rest = name.split("$", 1)
        base = os.environ.get(var) or os.environ.get(var.lower()) or os.environ.get(var.upper())
        if not base:
            return None
        name = os.path.join(base, rest)
    return name if os.path.isfile(name) else None


def _float(header: fits.Header, key: str) -> float:
    try:
        v = float(header.get(key, 0.0))
    except (TypeError, ValueError):
        return 0.0
    return v if math.isfinite(v) else 0.0


def chip_refs(exposure, bits: int | None,
              updates: Mapping[ChipKey, WCS | fits.Header] | None = None) -> list[ChipRef]:
    """The :class:`ChipRef` of every chip of an opened exposure.

    Parameters
    ----------
    exposure : hapdask.io.Exposure
    bits : int or None
        DQ bits treated as good.
    updates : mapping, optional
        ``(rootname, extver) -> WCS or Header`` replacing chip WCSs (rootname lower case).
    """
    updates = updates or {}
    primary = exposure.primary
    flat = reference_file(primary.get("PFLTFILE"))
    out = []
    for chip in exposure.chips:
        upd = updates.get((exposure.rootname, chip.extver))
        gain, rn = detector_noise(primary, chip.bunit)
        out.append(ChipRef(
            key=(exposure.rootname, chip.extver), chip=chip, exptime=float(exposure.exptime),
            is_rate=bool(chip.is_rate), bits=bits, pscale=chip.pixel_scale,
            wcs_bytes=None if upd is None else updated_wcs_bytes(chip, upd),
            gain=gain, readnoise=rn,
            signature=(exposure.instrument, exposure.detector, tuple(chip.shape),
                       chip.ccdchip if chip.ccdchip is not None else chip.extver),
            meandark=_float(chip.header, "MEANDARK"), flatfile=flat))
    return out
