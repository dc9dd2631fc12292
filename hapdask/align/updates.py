"""WCS updates as data: one small picklable record per chip, and their file (``wcs_updates.fits``).

A :class:`WcsUpdate` holds the chip's updated linear WCS (CRPIX, CRVAL, CD), its SIP terms
(unchanged by a linear fit) and the fit keywords; the NPOL/D2IM lookup tables stay those of the
chip's file. :func:`read_wcs_updates` returns ``{(rootname, sci_extver): Header}``, the shape
``hapdask.mvm.plan(..., wcs_updates=...)`` accepts (like ``hapdask.simulate.read_true_wcs``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

#: Keywords a WCS update carries besides the SIP terms (FITS, 1-based CRPIX).
LINEAR_KEYS = ("WCSAXES", "CTYPE1", "CTYPE2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2",
               "CD1_1", "CD1_2", "CD2_1", "CD2_2")

#: Fit keywords written with an update (DrizzlePac ``update_image_wcs_info``).
FIT_KEYS = ("WCSNAME", "RMS_RA", "RMS_DEC", "CRDER1", "CRDER2", "NMATCHES", "FITGEOM",
            "RELGEOM", "RELMATCH", "RELRMS_R", "RELRMS_D", "RELREFIM", "CATALOG", "FITMETH",
            "FIT_RMS")

_SIP = ("A_", "B_", "AP_", "BP_")


@dataclass(frozen=True)
class WcsUpdate:
    """The updated WCS of one chip (picklable; a few kB).

    Attributes
    ----------
    rootname : str
        Exposure rootname (lower case).
    extver : int
        EXTVER of the SCI extension.
    header_text : str
        FITS card images: :data:`LINEAR_KEYS`, SIP terms, :data:`FIT_KEYS`.
    """

    rootname: str
    extver: int
    header_text: str

    @property
    def key(self) -> tuple[str, int]:
        """``(rootname, extver)``."""
        return (self.rootname, self.extver)

    def header(self) -> fits.Header:
        """The update as a FITS header."""
        return fits.Header.fromstring(self.header_text)

    @property
    def wcsname(self) -> str:
        """The WCSNAME the update applies."""
        return str(self.header().get("WCSNAME", ""))

    @classmethod
    def from_wcs(cls, rootname: str, extver: int, wcs: WCS, sip_header: fits.Header,
                 keywords: dict) -> WcsUpdate:
        """Build a record from a corrected WCS.

        Parameters
        ----------
        rootname, extver : str, int
            The chip.
        wcs : astropy.wcs.WCS
            Corrected WCS (its linear part is taken: CRPIX, CRVAL and the effective CD matrix).
        sip_header : astropy.io.fits.Header
            The chip's header; its SIP terms (``A_*``, ``B_*``, ``AP_*``, ``BP_*``) are copied
            unchanged, with CTYPE ``-SIP`` when present.
        keywords : dict
            Fit keywords (:data:`FIT_KEYS`) -> value or (value, comment).
        """
        h = fits.Header()
        has_sip = any(k.startswith(_SIP) for k in sip_header)
        suffix = "-SIP" if has_sip else ""
        h["WCSAXES"] = 2
        h["CTYPE1"] = "RA---TAN" + suffix
        h["CTYPE2"] = "DEC--TAN" + suffix
        h["CRPIX1"], h["CRPIX2"] = (float(v) for v in wcs.wcs.crpix)
        h["CRVAL1"], h["CRVAL2"] = (float(v) for v in wcs.wcs.crval)
        cd = np.asarray(wcs.pixel_scale_matrix, dtype=float)
        h["CD1_1"], h["CD1_2"] = float(cd[0, 0]), float(cd[0, 1])
        h["CD2_1"], h["CD2_2"] = float(cd[1, 0]), float(cd[1, 1])
        for card in sip_header.cards:
            if card.keyword.startswith(_SIP):
                h[card.keyword] = (card.value, card.comment)
        for k, v in keywords.items():
            h[k] = v
        return cls(str(rootname).lower(), int(extver), h.tostring())


def apply_update(header: fits.Header, update: fits.Header) -> None:
    """Install an update's cards in a chip's SCI header (in place).

    When the update carries SIP terms, the header's old ones are removed first (so no stale
    higher-order term survives); every card of the update then replaces or adds its keyword.
    """
    if any(k.startswith(_SIP) for k in update):
        for k in [k for k in header if k.startswith(_SIP)]:
            header.remove(k, ignore_missing=True, remove_all=True)
    for card in update.cards:
        header[card.keyword] = (card.value, card.comment)


def write_wcs_updates(path: str | os.PathLike[str], updates: list[WcsUpdate]) -> Path:
    """Write ``updates`` as ``wcs_updates.fits`` (one header-only ``WCSUPD`` HDU per chip).

    Each HDU carries ``ROOTNAME``, ``SCIEXT`` and the update's keywords. The file is written
    under a temporary name and renamed when complete.
    """
    path = Path(path)
    phdr = fits.Header()
    phdr["HAPWCSUP"] = (True, "hapdask WCS updates (alignment results)")
    phdr["NUPDATES"] = len(updates)
    hdus: list = [fits.PrimaryHDU(header=phdr)]
    for u in sorted(updates, key=lambda u: u.key):
        h = u.header()
        h["EXTNAME"] = "WCSUPD"
        h["ROOTNAME"] = u.rootname
        h["SCIEXT"] = (u.extver, "EXTVER of the SCI extension")
        hdus.append(fits.ImageHDU(header=h))
    part = path.with_name(path.name + ".part")
    fits.HDUList(hdus).writeto(part, overwrite=True)
    os.replace(part, path)
    return path


def read_wcs_updates(path: str | os.PathLike[str]) -> dict[tuple[str, int], fits.Header]:
    """Read a ``wcs_updates.fits`` file.

    Returns
    -------
    dict
        ``(rootname, sci_extver) -> Header`` with the linear WCS, SIP and fit keywords
        (``WCSNAME`` included), ready for ``hapdask.mvm.plan(..., wcs_updates=...)``.

    Raises
    ------
    OSError
        The file cannot be read.
    ValueError
        It is not a hapdask WCS-updates file, or an HDU lacks ROOTNAME/SCIEXT (named).
    """
    path = Path(path)
    out: dict[tuple[str, int], fits.Header] = {}
    try:
        with fits.open(path) as hdul:
            if hdul[0].header.get("HAPWCSUP") is not True:
                raise ValueError(f"{path}: not a hapdask WCS-updates file (PRIMARY lacks "
                                 "HAPWCSUP = T)")
            for i, hdu in enumerate(hdul[1:], start=1):
                h = hdu.header
                if h.get("EXTNAME") != "WCSUPD" or "ROOTNAME" not in h or "SCIEXT" not in h:
                    raise ValueError(f"{path}: HDU {i} is not a WCSUPD header with "
                                     "ROOTNAME/SCIEXT")
                keep = fits.Header()
                for card in h.cards:
                    k = card.keyword
                    if k in LINEAR_KEYS or k in FIT_KEYS or k.startswith(_SIP):
                        keep[k] = (card.value, card.comment)
                out[(str(h["ROOTNAME"]).strip().lower(), int(h["SCIEXT"]))] = keep
    except OSError as exc:
        raise OSError(f"{path}: cannot read the WCS-updates file: {exc}") from exc
    return out
