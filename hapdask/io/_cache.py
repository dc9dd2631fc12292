"""Per-process caches of open FITS handles and opened exposures.

Reading a region of a chip must not reopen the file and re-parse its headers every time
(10-25 ms per call for an HST FLT/FLC). :func:`fits_handle` keeps the files it opened in a
small per-process LRU cache:

* the key is the path plus the file's identity: ``(path, st_size, st_mtime_ns, st_ino)`` for
  a local file (a file replaced or rewritten on disk gets a new key, and the stale handle of
  the same path is closed as soon as no thread uses it); a URL is keyed on itself (archive
  objects do not change; checking would cost a request per read);
* it is bounded (:data:`FITS_CACHE_SIZE` open files) and closes the handles it evicts — but
  only once no thread is still reading from them (reference counted);
* it is thread-safe: every handle carries a lock, held while astropy touches the file
  (lazy HDU loading, seeks and section reads). Pixels of local uncompressed files are copied
  from the handle's own read-only memory map outside the lock, so threads reading the same
  file do not serialise on it, and the pages read are released afterwards (``MADV_DONTNEED``)
  so cached handles do not keep files resident in the process's memory;
* it is per process: a forked child starts with an empty cache (handles are not shared with
  the parent).

Compressed local files (``.gz``, ``.bz2``, ``.zip``, ``.fz``) are not cached: a cache entry
would hold the whole decompressed file in memory. They are opened for each use, as before.

:func:`cached_exposure` is the same idea for :func:`hapdask.io.open_exposure`: planning reads
an exposure's headers once per process, however many steps (analysis, planning, graph
building) ask for it.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager

import numpy as np
from astropy.io import fits

from hapdask._memory import drop_map_pages
from hapdask.io._fits import is_url, open_fits

__all__ = ["FITS_CACHE_SIZE", "EXPOSURE_CACHE_SIZE", "cached_exposure", "clear_caches",
           "file_identity", "fits_handle"]

#: most open FITS handles kept per process (each costs a file descriptor and a memory map)
FITS_CACHE_SIZE = 32
#: most opened exposures (headers + distortion lookup tables, no pixels) kept per process
EXPOSURE_CACHE_SIZE = 256

_COMPRESSED = (".gz", ".bz2", ".zip", ".fz")


def file_identity(path: str) -> tuple:
    """``(path, size, mtime_ns, inode)`` of a local file; ``(url,)`` of a URL.

    Two calls on a local file give equal results only if the file was not replaced or
    rewritten in between (to the resolution of the file system's modification time). A URL
    is not checked (that would cost a request per read): remote HST archive objects do not
    change; :func:`clear_caches` forgets them.

    Raises
    ------
    FileNotFoundError
        If the local file does not exist (the message names it).
    """
    if is_url(path):
        return (path,)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    return (path, st.st_size, st.st_mtime_ns, st.st_ino)


_PAGE = mmap.PAGESIZE
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)
_RAW_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


class FitsHandle:
    """One cached open file: ``hdul`` (lazily loaded HDUList) and the ``lock`` guarding it.

    Hold ``lock`` while touching ``hdul`` (``hdul[i]``, ``.header``, ``.section``, ``.data``).
    For a local uncompressed file the handle also keeps its own read-only memory map, and
    unscaled 2-D images are read from it (:meth:`read_raw`): no lock, no file position shared
    between threads, and the pages read are released again, so they do not stay counted in the
    process's resident memory for as long as the handle is cached.
    """

    __slots__ = ("_cm", "_layouts", "_mm", "closed", "evicted", "fd", "hdul", "key", "lock",
                 "users")

    def __init__(self, key: tuple, path: str) -> None:
        self.key = key
        self._cm = open_fits(path)
        self.hdul: fits.HDUList = self._cm.__enter__()
        self.lock = threading.RLock()
        self.users = 0
        self.evicted = False
        self.closed = False
        self._layouts: dict[int, tuple[int, str, int, int] | None] = {}
        self.fd: int | None = None
        self._mm: mmap.mmap | None = None
        if not is_url(path) and len(key) > 2:
            try:
                self.fd = os.open(path, os.O_RDONLY)
            except OSError:
                self.fd = None

    def raw_layout(self, index: int, hdu) -> tuple[int, str, int, int] | None:
        """``(data offset, big-endian dtype, ny, nx)`` of an unscaled 2-D image HDU, or None.

        Call with ``lock`` held (reads the header and the HDU's file position).
        """
        if index in self._layouts:
            return self._layouts[index]
        layout = None
        hdr = hdu.header
        if self.fd is not None and int(hdr.get("NAXIS", 0)) == 2:
            dtype = _RAW_DTYPES.get(int(hdr.get("BITPIX", 0)))
            unscaled = (float(hdr.get("BSCALE", 1.0)) == 1.0
                        and float(hdr.get("BZERO", 0.0)) == 0.0)
            if dtype is not None and unscaled:
                offset = int(hdu.fileinfo()["datLoc"])
                layout = (offset, dtype, int(hdr["NAXIS2"]), int(hdr["NAXIS1"]))
        self._layouts[index] = layout
        return layout

    def read_raw(self, layout: tuple[int, str, int, int], region) -> np.ndarray:
        """Pixels ``[y0:y1, x0:x1]`` of an image with ``layout``, in native byte order (a
        fresh C-contiguous array; values unchanged).

        Thread-safe without ``lock``: the values are copied from a read-only memory map of the
        file, byte-swapped on the way (one pass: a big-endian copy then a swapped copy cost
        ~1.8x the CPU for a whole ACS/WFC chip), then the map's pages of those rows are
        released (``MADV_DONTNEED``; they stay in the page cache), so a long-lived handle does
        not keep the file resident in this process's memory.

        Raises
        ------
        OSError
            If the image extends beyond the end of the file (truncated).
        """
        offset, dtype, ny, nx = layout
        y0, y1, x0, x1 = region
        mm, row = self._image_map(layout)
        view = np.ndarray((ny, nx), dtype, buffer=mm, offset=offset)
        out = np.empty((y1 - y0, x1 - x0), np.dtype(dtype).newbyteorder("="))
        np.copyto(out, view[y0:y1, x0:x1])
        if _DONTNEED is not None:
            start = (offset + y0 * row) // _PAGE * _PAGE
            drop_map_pages(mm, view, offset, start, min(len(mm), offset + y1 * row) - start)
        del view
        return out

    def read_raw_at(self, layout: tuple[int, str, int, int], rows: np.ndarray,
                    cols: np.ndarray) -> np.ndarray:
        """Pixels ``[rows[k], cols[k]]`` of an image with ``layout``, in native byte order (a
        fresh 1-D array; values unchanged): as :meth:`read_raw`, but only the pages holding
        those pixels are touched, and no array of their bounding box is made (e.g. the
        cosmic-ray pixels of a region, ~1 % of it). ``rows``/``cols`` must lie inside the
        image (not checked here: :meth:`hapdask.io.Chip.read_at` does).

        Raises
        ------
        OSError
            If the image extends beyond the end of the file (truncated).
        """
        offset, dtype, ny, nx = layout
        mm, row = self._image_map(layout)
        out = np.empty(len(rows), np.dtype(dtype).newbyteorder("="))
        if len(rows) == 0:
            return out
        view = np.ndarray((ny, nx), dtype, buffer=mm, offset=offset)
        # one flat gather (take): ~3x faster than the 2-D fancy index, the same values
        np.copyto(out, view.reshape(-1).take(np.asarray(rows, np.intp) * nx + cols))
        if _DONTNEED is not None:
            lo, hi = int(np.min(rows)), int(np.max(rows)) + 1
            start = (offset + lo * row) // _PAGE * _PAGE
            drop_map_pages(mm, view, offset, start, min(len(mm), offset + hi * row) - start)
        del view
        return out

    def _image_map(self, layout: tuple[int, str, int, int]) -> tuple[mmap.mmap, int]:
        """The file's memory map and the byte length of a row of the image with ``layout``,
        after checking the file holds the whole image (OSError: truncated)."""
        offset, dtype, ny, nx = layout
        mm = self._map()
        row = nx * np.dtype(dtype).itemsize
        if offset + ny * row > len(mm):
            raise OSError(f"image data end at byte {offset + ny * row} beyond the end of the "
                          f"file ({len(mm)} bytes): file truncated?")
        return mm, row

    def _map(self) -> mmap.mmap:
        mm = self._mm
        if mm is None:
            with self.lock:
                if self._mm is None:
                    self._mm = mmap.mmap(self.fd, 0, access=mmap.ACCESS_READ)
                mm = self._mm
        return mm

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self._mm is not None:
                try:
                    self._mm.close()
                except BufferError:  # an array still views it: freed with that array
                    pass
                self._mm = None
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
            self._cm.__exit__(None, None, None)


_LOCK = threading.Lock()
_HANDLES: OrderedDict[tuple, FitsHandle] = OrderedDict()
_EXPOSURES: OrderedDict[tuple, object] = OrderedDict()


def _release(handle: FitsHandle) -> None:
    with _LOCK:
        handle.users -= 1
        close = handle.evicted and handle.users == 0
    if close:
        with handle.lock:
            handle.close()


def _evict(key: tuple) -> None:
    """Drop ``key`` from the cache; close it now if unused, else when its last user leaves.

    Called with ``_LOCK`` held.
    """
    handle = _HANDLES.pop(key)
    handle.evicted = True
    if handle.users == 0:
        with handle.lock:
            handle.close()


@contextmanager
def fits_handle(path: str, *, drop_on_error: bool = False) -> Iterator[FitsHandle]:
    """A cached open handle of ``path`` (local path or fsspec URL) for the ``with`` block.

    The handle stays open (and is reused by later calls) after the block; it is closed when the
    cache evicts it, when the file on disk changes, or by :func:`clear_caches`. With
    ``drop_on_error`` an exception leaving the block evicts the handle (a file found corrupt
    while parsing its headers is reopened from scratch next time).

    Raises
    ------
    OSError
        If the file cannot be opened (as :func:`hapdask.io._fits.open_fits`).
    """
    if not is_url(path) and path.lower().endswith(_COMPRESSED):
        handle = FitsHandle(("uncached", path), path)
        handle.users = 1
        try:
            yield handle
        finally:
            with handle.lock:
                handle.close()
        return
    key = file_identity(path)
    with _LOCK:
        handle = _HANDLES.get(key)
        if handle is not None:
            _HANDLES.move_to_end(key)
            handle.users += 1
    if handle is None:
        fresh = FitsHandle(key, path)  # opened outside the global lock (may be slow)
        with _LOCK:
            handle = _HANDLES.get(key)
            if handle is None:
                handle = fresh
                for stale in [k for k in _HANDLES if k[0] == path]:
                    _evict(stale)  # same path, different identity: replaced on disk
                _HANDLES[key] = handle
                while len(_HANDLES) > FITS_CACHE_SIZE:
                    _evict(next(iter(_HANDLES)))
            else:  # another thread opened it meanwhile
                _HANDLES.move_to_end(key)
            handle.users += 1
        if handle is not fresh:
            fresh.close()
    try:
        yield handle
    except BaseException:
        if drop_on_error:
            with _LOCK:
                if _HANDLES.get(handle.key) is handle:
                    _evict(handle.key)
        raise
    finally:
        _release(handle)


def cached_exposure(path: str, opener: Callable[[str], object], copy: Callable) -> object:
    """``copy(opener(path))``, with ``opener`` called once per file identity and process.

    ``copy`` makes the caller's private copy of the cached object (so no caller can change
    what another one gets). Errors are not cached.
    """
    key: Hashable = file_identity(path)
    with _LOCK:
        obj = _EXPOSURES.get(key)
        if obj is not None:
            _EXPOSURES.move_to_end(key)
    if obj is None:
        obj = opener(path)
        with _LOCK:
            for stale in [k for k in _EXPOSURES if k[0] == path and k != key]:
                del _EXPOSURES[stale]
            _EXPOSURES[key] = obj
            while len(_EXPOSURES) > EXPOSURE_CACHE_SIZE:
                _EXPOSURES.popitem(last=False)
    return copy(obj)


def clear_caches() -> None:
    """Close every cached handle (once unused) and forget every cached exposure."""
    with _LOCK:
        for key in list(_HANDLES):
            _evict(key)
        _EXPOSURES.clear()


def _after_fork() -> None:
    # the child must not share file offsets/locks with the parent: start empty, close nothing
    global _LOCK
    _LOCK = threading.Lock()
    for handle in _HANDLES.values():
        if handle.fd is not None:  # the child's duplicate of the descriptor
            os.close(handle.fd)
            handle.fd = None
    _HANDLES.clear()
    _EXPOSURES.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
