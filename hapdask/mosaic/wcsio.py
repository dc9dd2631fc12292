"""WCS transport between the client and the tasks: bytes in, a fresh private astropy WCS out.

astropy WCS objects are not thread-safe, so tasks never share one: they rebuild a WCS from
serialised bytes (chips, with SIP and lookup tables) or a header string (pure celestial output
grids), cached per thread.
"""

from __future__ import annotations

import hashlib
import io
import threading
import warnings
from collections import OrderedDict

from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

__all__ = ["header_wcs", "serialize_wcs", "thread_header_wcs", "thread_wcs", "updated_wcs_bytes",
           "wcs_from_bytes"]

def serialize_wcs(w: WCS | fits.Header) -> bytes:
    """Serialise a WCS (SIP + lookup tables included) or a header to FITS bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        if isinstance(w, fits.Header):
            w = WCS(w)
        hdul = w.to_fits(relax=True)
    if w.pixel_shape is not None:
        hdul[0].header["HDKNAXS1"] = w.pixel_shape[0]
        hdul[0].header["HDKNAXS2"] = w.pixel_shape[1]
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


_SIP_PREFIXES = ("A_", "B_", "AP_", "BP_")


def updated_wcs_bytes(chip, update: WCS | fits.Header) -> bytes:
    """Serialised WCS of a chip after an update (:func:`serialize_wcs` bytes).

    A WCS replaces the chip's WCS outright. A header is applied like a headerlet: its
    keywords replace the chip header's (all SIP terms go when it carries any), and the chip's
    own NPOL/D2IM lookup tables are kept.
    """
    if isinstance(update, WCS):
        return serialize_wcs(update)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        hdul = chip.wcs().to_fits(relax=True)
    hdr = hdul[0].header
    if any(k.startswith(_SIP_PREFIXES[:2]) for k in update):
        for k in [k for k in hdr if k.startswith(_SIP_PREFIXES)]:
            hdr.remove(k, ignore_missing=True, remove_all=True)
    if any(k[:2] in ("CD", "PC") and "_" in k for k in update):
        # a new linear transform: drop the old one in either convention (PC wins over CD)
        for k in [k for k in hdr if (k[:2] in ("CD", "PC") and "_" in k) or k.startswith("CDELT")]:
            hdr.remove(k, ignore_missing=True, remove_all=True)
    skip = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "XTENSION", "PCOUNT",
            "GCOUNT", "EXTNAME", "EXTVER", "COMMENT", "HISTORY", ""}
    for card in update.cards:
        if card.keyword not in skip:
            hdr[card.keyword] = (card.value, card.comment)
    hdr["HDKNAXS1"] = chip.shape[1]
    hdr["HDKNAXS2"] = chip.shape[0]
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


def wcs_from_bytes(data: bytes) -> WCS:
    """A new astropy WCS from :func:`serialize_wcs` bytes (one private object per call)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        with fits.open(io.BytesIO(data)) as hdul:
            hdr = hdul[0].header
            w = WCS(hdr, fobj=hdul)
            if "HDKNAXS1" in hdr:
                w.pixel_shape = (int(hdr["HDKNAXS1"]), int(hdr["HDKNAXS2"]))
    return w


_TLS = threading.local()
_TLS_SIZE = 64


def _thread_cached(kind: str, data: bytes | str, build):
    """Per-thread cache of WCS objects built from bytes/strings.

    Each thread builds and keeps its own objects, so no astropy WCS is ever shared between
    threads; a thread reuses its objects across the tasks it runs one after another.
    """
    cache = getattr(_TLS, "cache", None)
    if cache is None:
        cache = _TLS.cache = OrderedDict()
    raw = data.encode() if isinstance(data, str) else data
    key = (kind, hashlib.sha1(raw).digest())
    w = cache.get(key)
    if w is None:
        w = build(data)
        cache[key] = w
        while len(cache) > _TLS_SIZE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return w


def thread_wcs(data: bytes) -> WCS:
    """:func:`wcs_from_bytes`, cached per thread (the object is private to this thread)."""
    return _thread_cached("bytes", data, wcs_from_bytes)


def thread_header_wcs(header_str: str) -> WCS:
    """:func:`header_wcs`, cached per thread (the object is private to this thread)."""
    return _thread_cached("header", header_str, header_wcs)


def header_wcs(header_str: str) -> WCS:
    """A new pure-TAN WCS from a header string (the layer grids)."""
    hdr = fits.Header.fromstring(header_str)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        w = WCS(hdr)
    w.pixel_shape = (int(hdr["NAXIS1"]), int(hdr["NAXIS2"]))
    return w
