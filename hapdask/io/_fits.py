"""Opening FITS files from local paths (gzip included) or fsspec URLs, with clear errors."""

from __future__ import annotations

import gzip
import io
import os
import re
import stat
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

__all__ = ["check_regular_file", "is_url", "iter_hdus", "normalize_path", "open_fits"]

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_COMPRESSED = (".gz", ".bz2", ".zip", ".fz")


def is_url(path: str) -> bool:
    """True if ``path`` has a URL scheme (``s3://``, ``https://``, ``file://``, ``memory://``)."""
    return bool(_URL_RE.match(path))


def normalize_path(path_or_url: str | os.PathLike) -> str:
    """Return a URL unchanged, a local path made absolute."""
    text = os.fspath(path_or_url)
    if not isinstance(text, str):
        raise ValueError(f"path must be a str or os.PathLike, not {type(path_or_url).__name__}")
    if is_url(text):
        return text
    return os.path.abspath(os.path.expanduser(text))


def _fsspec_kwargs(url: str) -> dict:
    # Public HST data on AWS (s3://stpubdata/...) needs anonymous access.
    if url.startswith(("s3://", "s3a://")):
        return {"anon": True}
    return {}


def _gunzip(path: str) -> io.BytesIO:
    try:
        with gzip.open(path, "rb") as gz:
            return io.BytesIO(gz.read())
    except (EOFError, OSError, zlib.error) as exc:
        raise OSError(f"{path}: gzip file is truncated or corrupt: {exc}") from exc


def check_regular_file(path: str) -> None:
    """Refuse anything but a regular file (after links): FIFOs, devices and sockets would
    block or never end, directories are not FITS files.

    Raises
    ------
    OSError
        Naming the file and what it is.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path}: is a directory, not a FITS file")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file")
        raise OSError(f"{path}: is {kind}, not a regular file: refused as an input")


@contextmanager
def open_fits(path: str) -> Iterator[fits.HDUList]:
    """Open ``path`` lazily (``lazy_load_hdus=True``) and close it on exit.

    Local uncompressed files are memory-mapped so section reads touch only the needed bytes.
    Local gzip files are decompressed into memory first (a gzip stream cannot seek backwards
    cheaply, and astropy pads a truncated stream with zeros silently; decompressing up front
    turns truncation into an error): prefer uncompressed files for large runs. URLs go
    through fsspec (``use_fsspec=True``, anonymous for ``s3://``), where astropy fetches only
    the byte ranges it reads.

    Raises
    ------
    OSError
        If the file does not exist or is not a FITS file; the message names the file.
    """
    try:
        if is_url(path):
            hdul = fits.open(
                path,
                use_fsspec=True,
                fsspec_kwargs=_fsspec_kwargs(path),
                lazy_load_hdus=True,
            )
        else:
            check_regular_file(path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AstropyUserWarning)
                if path.lower().endswith(".gz"):
                    hdul = fits.open(_gunzip(path), lazy_load_hdus=True)
                else:
                    memmap = not path.lower().endswith(_COMPRESSED)
                    hdul = fits.open(path, memmap=memmap, lazy_load_hdus=True)
    except OSError as exc:
        if str(path) in str(exc):
            raise
        raise OSError(f"{path}: cannot open as FITS: {exc}") from exc
    except (ValueError, TypeError, EOFError, KeyError) as exc:
        raise OSError(f"{path}: cannot open as FITS: {exc}") from exc
    try:
        yield hdul
    finally:
        hdul.close()


def iter_hdus(hdul: fits.HDUList, path: str) -> Iterator[tuple[int, fits.hdu.base._BaseHDU]]:
    """Yield ``(index, hdu)`` for every HDU, turning truncation/corruption into ``OSError``."""
    index = 0
    while True:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AstropyUserWarning)
            try:
                hdu = hdul[index]
            except IndexError:
                hdu = None
            except (OSError, ValueError, TypeError, EOFError, KeyError) as exc:
                raise OSError(f"{path}: HDU {index} is unreadable: {exc}") from exc
        for w in caught:
            message = str(w.message)
            if "truncated" in message.lower() or "corrupt" in message.lower():
                raise OSError(f"{path}: file is truncated or corrupt near HDU {index}: {message}")
        if hdu is None:
            return
        yield index, hdu
        index += 1
