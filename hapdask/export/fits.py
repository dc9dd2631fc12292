"""Tile-by-tile FITS writer for MVM layers (HAP layout: PRIMARY, SCI, WHT, [CTX], HDRTAB).

The file is laid out once, up front, with every header written and every data area
preallocated (the file is extended with ``truncate``, so the data areas are sparse zeros until
written). Each tile task then writes its rows at their byte offsets with ``os.pwrite`` (a tile
spanning the layer's width with one call per extension: its rows are contiguous in the file):
tiles can be written in any order, from any thread or process on the same file system, and
writing a tile twice (a retried task) writes the same bytes again. The header cards whose values
need whole-layer statistics (MEANWHT, MEDWHT, ...) are written with placeholder values and
patched in place at the end: every card is 80 characters, so the header keeps its exact size.

A layout created with ``bands=True`` (one process writes every tile of the file: the local
threaded scheduler) assembles full-width bands of rows instead: each tile is converted into the
band of the tile rows it belongs to, and once the band's columns are all there the band is
written from a background thread with ``O_DIRECT`` — the band's 4 KiB-aligned bulk straight from
its buffer to the disk, its head and tail (< 4 KiB each) through the page cache. A tile's rows
are otherwise short runs scattered over the file, which the kernel copies into page-cache pages
it first zero-fills, then writes back page by page: ~30 % of the acs4 benchmark's process CPU
time was spent there. The bytes of the file are the same either way (see :func:`create_fits`).
A caller holding whole rows of every plane writes them the same way with :class:`FitsRows`
(``hapdask drizzle`` on local threads: its tiles are kept in its scratch and written a row of
tiles at a time, so the memory is one band per thread, whatever the order the tiles come in).

Everything happens under a temporary name (``<final>.part``) that is renamed to the final name
only when the file is complete, so a partial FITS file never appears under a final name.
"""

from __future__ import annotations

import ctypes
import io
import mmap
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

from hapdask.export.paths import commit, create_temporary, output_path, temporary_name

BLOCK = 2880
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECT = getattr(os, "O_DIRECT", 0)
#: memory (bytes) that the incomplete bands of all files of this process may hold; a tile of a
#: band that would go beyond it is written at once through the page cache, and so are the
#: later tiles of that band
BAND_MEMORY = 256 << 20
#: alignment (bytes) of the file offsets, lengths and memory of the bands' direct writes: the
#: page size, a multiple of every block device's logical block size
DIRECT_ALIGN = 4096

__all__ = ["FitsLayout", "FitsRows", "create_fits", "discard_fits", "finalize_fits",
           "write_fits_tile", "temporary_name"]


def _writeback_function():
    """libc's ``sync_file_range`` (Linux; None elsewhere), from the symbols already loaded."""
    try:
        func = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (AttributeError, OSError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


_SYNC_FILE_RANGE = _writeback_function()
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(path: str, ranges: list[tuple[int, int]]) -> None:
    """Have the dirty pages of ``ranges`` (``(offset, nbytes)``) of the file ``path`` written
    to disk soon, without waiting for it: a background thread of this process calls Linux's
    ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` on them (elsewhere nothing happens).

    With the kernel's default thresholds (background write-back from 10 % of memory dirty,
    pages older than 30 s) nothing of a run's layer files reaches the disk before the final
    ``fsync`` of :func:`finalize_fits`, which then waits for all of it (~0.8 s for the acs4
    benchmark's 1.24 GB after the last tile); started tile by tile, the writing overlaps the
    drizzling. The call may wait for the disk's queue, hence the thread (a tile task never
    waits for it). Only a hint: the bytes, the ``fsync`` and the atomic rename are unchanged."""
    if _SYNC_FILE_RANGE is None:
        return
    with _WRITEBACK_LOCK:
        global _WRITEBACK_THREAD
        if _WRITEBACK_THREAD is None or not _WRITEBACK_THREAD.is_alive():
            _WRITEBACK_THREAD = threading.Thread(target=_writeback_loop, daemon=True,
                                                 name="hapdask-fits-writeback")
            _WRITEBACK_THREAD.start()
    _WRITEBACK.put((path, ranges))


def _writeback_loop() -> None:
    while True:
        path, ranges = _WRITEBACK.get()
        try:
            fd = os.open(path, os.O_WRONLY | _NOFOLLOW)
        except OSError:  # renamed or removed meanwhile: nothing to hint
            continue
        try:
            for off, n in ranges:
                if n > 0:
                    _SYNC_FILE_RANGE(fd, off, n, _SYNC_FILE_RANGE_WRITE)
        finally:
            os.close(fd)


_WRITEBACK: queue.SimpleQueue = queue.SimpleQueue()
_WRITEBACK_LOCK = threading.Lock()
_WRITEBACK_THREAD: threading.Thread | None = None


def _padded(nbytes: int) -> int:
    return -(-nbytes // BLOCK) * BLOCK


@dataclass(frozen=True)
class FitsLayout:
    """Byte layout of a preallocated layer file (picklable; shipped to every tile task).

    Attributes
    ----------
    final : str
        Final path of the file.
    tmp : str
        Temporary path it is written under.
    shape : tuple of int
        ``(ny, nx)`` of SCI/WHT.
    nplanes : int
        Number of CTX planes (0: no CTX extension).
    sci_offset, wht_offset, ctx_offset : int
        Byte offsets of the first data byte of each extension (``ctx_offset`` is -1 without CTX).
    primary_size : int
        Size in bytes of the primary header (patched in place by :func:`finalize_fits`).
    bands : bool
        Tiles are assembled into full-width bands of rows in this process and written with
        direct I/O (:func:`create_fits`).
    inode : tuple of int
        ``(st_dev, st_ino)`` of the temporary file: a band is never written into another file
        made under the same name.
    """

    final: str
    tmp: str
    shape: tuple[int, int]
    nplanes: int
    sci_offset: int
    wht_offset: int
    ctx_offset: int
    primary_size: int
    bands: bool = False
    inode: tuple[int, int] = (0, 0)


def _image_header(base: fits.Header, extname: str, bitpix: int,
                  shape: tuple[int, ...]) -> fits.Header:
    """An IMAGE extension header: mandatory cards first, then the cards of ``base``."""
    hdr = fits.Header()
    hdr["XTENSION"] = ("IMAGE", "Image extension")
    hdr["BITPIX"] = bitpix
    hdr["NAXIS"] = len(shape)
    for i, n in enumerate(reversed(shape), start=1):
        hdr[f"NAXIS{i}"] = n
    hdr["PCOUNT"] = 0
    hdr["GCOUNT"] = 1
    hdr["EXTNAME"] = extname
    hdr["EXTVER"] = 1
    skip = {"SIMPLE", "XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "EXTEND", "EXTNAME",
            "EXTVER", "BSCALE", "BZERO"}
    for card in base.cards:
        key = card.keyword
        if key in skip or (key.startswith("NAXIS") and key[5:].isdigit()):
            continue
        hdr.append(card, end=True)
    return hdr


def _primary_header(base: fits.Header) -> fits.Header:
    hdr = fits.Header()
    hdr["SIMPLE"] = True
    hdr["BITPIX"] = 8
    hdr["NAXIS"] = 0
    hdr["EXTEND"] = True
    skip = {"SIMPLE", "BITPIX", "NAXIS", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT"}
    for card in base.cards:
        key = card.keyword
        if key in skip or (key.startswith("NAXIS") and key[5:].isdigit()):
            continue
        hdr.append(card, end=True)
    return hdr


def create_fits(
    final: str | os.PathLike,
    shape: tuple[int, int],
    *,
    primary: fits.Header,
    sci: fits.Header,
    wht: fits.Header | None = None,
    ctx: fits.Header | None = None,
    nplanes: int = 0,
    hdrtab: bytes | fits.BinTableHDU | None = None,
    bands: bool = False,
) -> FitsLayout:
    """Create the temporary file of a layer: all headers written, data areas preallocated.

    Parameters
    ----------
    final : path
        Final file name, directly inside its (output) directory. The file is created as
        ``<final>.part`` exclusively (:func:`hapdask.export.paths.create_temporary`: a leftover
        ``.part`` file or link is removed, never followed); an existing final file is left
        alone until :func:`finalize_fits` atomically replaces it.
    shape : (ny, nx)
        Shape of the SCI and WHT arrays.
    primary, sci, wht, ctx : astropy.io.fits.Header
        Cards of each HDU (structural cards are generated here). ``wht``/``ctx`` default to
        ``sci``'s WCS cards when None; ``ctx`` is only written when ``nplanes > 0``.
    nplanes : int
        Number of 32-bit CTX planes; 0 writes no CTX extension. One plane is written as a
        2-D image (as AstroDrizzle does), more as a 3-D cube (plane, y, x).
    hdrtab : bytes or BinTableHDU, optional
        The HDRTAB extension (small; written whole): complete extension bytes (see
        :func:`hapdask.export.headers.hdrtab`) or a table HDU.
    bands : bool
        Every tile of the file is written by this process (threads of the local scheduler),
        and :func:`finalize_fits` is called here too: tiles are then gathered into full-width
        bands of rows (the rows of the tiles sharing a window's ``y0, y1``), each written once
        complete, by a background thread, with direct I/O (module docstring). A band holds
        its tile rows' SCI, WHT and CTX until its last tile arrives. False (processes of a
        cluster): each tile's rows are written at once through the page cache.

    Returns
    -------
    FitsLayout
        What :func:`write_fits_tile` and :func:`finalize_fits` need.
    """
    ny, nx = (int(shape[0]), int(shape[1]))
    if ny <= 0 or nx <= 0:
        raise ValueError(f"{final}: cannot write an empty {ny}x{nx} layer")
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    final = output_path(final.parent, final.name)
    tmp = temporary_name(final)
    wht = sci if wht is None else wht
    ctx = sci if ctx is None else ctx
    phdr = _primary_header(primary)
    shdr = _image_header(sci, "SCI", -32, (ny, nx))
    whdr = _image_header(wht, "WHT", -32, (ny, nx))
    blocks: list[bytes] = []
    pbytes = phdr.tostring().encode("ascii")
    blocks.append(pbytes)
    offset = len(pbytes)
    sbytes = shdr.tostring().encode("ascii")
    sci_offset = offset + len(sbytes)
    data_size = _padded(ny * nx * 4)
    offset = sci_offset + data_size
    wbytes = whdr.tostring().encode("ascii")
    wht_offset = offset + len(wbytes)
    offset = wht_offset + data_size
    ctx_offset = -1
    cbytes = b""
    if nplanes > 0:
        cshape = (ny, nx) if nplanes == 1 else (nplanes, ny, nx)
        chdr = _image_header(ctx, "CTX", 32, cshape)
        cbytes = chdr.tostring().encode("ascii")
        ctx_offset = offset + len(cbytes)
        offset = ctx_offset + _padded(nplanes * ny * nx * 4)
    tbytes = b""
    if isinstance(hdrtab, bytes):
        tbytes = hdrtab
    elif hdrtab is not None:
        hdrtab.header["EXTNAME"] = "HDRTAB"
        buf = io.BytesIO()
        dummy = fits.PrimaryHDU()
        fits.HDUList([dummy, hdrtab]).writeto(buf)
        skip = len(dummy.header.tostring())
        tbytes = buf.getvalue()[skip:]
    total = offset + len(tbytes)
    _forget(str(tmp))  # bands of an earlier file of that name (a failed attempt)
    with os.fdopen(create_temporary(final), "wb") as fh:
        fh.write(pbytes)
        fh.write(sbytes)
        fh.seek(wht_offset - len(wbytes))
        fh.write(wbytes)
        if nplanes > 0:
            fh.seek(ctx_offset - len(cbytes))
            fh.write(cbytes)
        if tbytes:
            fh.seek(offset)
            fh.write(tbytes)
        fh.truncate(total)
        st = os.fstat(fh.fileno())
    return FitsLayout(str(final), str(tmp), (ny, nx), int(nplanes), sci_offset, wht_offset,
                      ctx_offset, len(pbytes), bands=bool(bands),
                      inode=(st.st_dev, st.st_ino))


def _pwrite_all(fd: int, buf: memoryview, offset: int) -> None:
    """``os.pwrite`` until every byte of ``buf`` is written (a call may write fewer bytes)."""
    while len(buf):
        n = os.pwrite(fd, buf, offset)
        buf = buf[n:]
        offset += n


def _row_runs(data: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` runs of the rows of a 2-D array holding at least one non-zero byte
    (``-0.0`` counts as non-zero: only bytes that are all 0 are left out)."""
    keep = np.any(data.view(np.uint8 if data.dtype.itemsize == 1 else f"u{data.dtype.itemsize}")
                  != 0, axis=1)
    edges = np.flatnonzero(np.diff(np.concatenate(([False], keep, [False])).astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _row_extents(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a 2-D array, ``[first, last + 1)`` of its elements holding a non-zero byte
    (``first == last + 1 == 0`` for a row of zero bytes only)."""
    nz = data.view(np.uint8 if data.dtype.itemsize == 1 else f"u{data.dtype.itemsize}") != 0
    n = nz.shape[1]
    first = nz.argmax(axis=1)  # first True (0 when none)
    stop = n - nz[:, ::-1].argmax(axis=1)
    empty = ~nz[np.arange(nz.shape[0]), first]
    first[empty] = 0
    stop[empty] = 0
    return first, stop


def _write_rows(fd: int, offset: int, rowlen: int, window: tuple[int, int, int, int],
                array: np.ndarray, dtype: str, plane_stride: int = 0,
                skip_zero_rows: bool = False) -> None:
    """Write a (planes of a) tile at its place in a data area whose rows are ``rowlen`` long.

    The tile is converted to the file's big-endian type once; rows are then written straight
    from that buffer (no per-row copy). A tile spanning the whole row length is one contiguous
    block of the file and is written with one call per plane (per run of rows with
    ``skip_zero_rows``); otherwise one call per row. ``skip_zero_rows``: rows whose bytes are
    all 0 are not written at all, and of a partial-width tile's rows only the part from the
    first to the last element with a non-zero byte (the data areas are created as zeros, see
    :func:`create_fits`: the file's bytes are the same; WHT and CTX are 0 outside the inputs'
    footprints, about half of an MVM layer's rows).
    """
    y0, y1, x0, x1 = window
    data = np.ascontiguousarray(array, dtype=dtype)
    if data.ndim == 2:
        data = data[None]
    itemsize = data.dtype.itemsize
    nbytes = (x1 - x0) * itemsize
    step = rowlen * itemsize
    for p in range(data.shape[0]):
        base = offset + p * plane_stride + (y0 * rowlen + x0) * itemsize
        buf = memoryview(data[p]).cast("B")
        if x0 == 0 and x1 == rowlen:
            for a, b in _row_runs(data[p]) if skip_zero_rows else [(0, y1 - y0)]:
                _pwrite_all(fd, buf[a * nbytes:b * nbytes], base + a * step)
        elif skip_zero_rows:
            first, stop = _row_extents(data[p])
            for j in np.flatnonzero(stop).tolist():
                a, b = int(first[j]) * itemsize, int(stop[j]) * itemsize
                _pwrite_all(fd, buf[j * nbytes + a:j * nbytes + b], base + j * step + a)
        else:
            for j in range(y1 - y0):
                _pwrite_all(fd, buf[j * nbytes:(j + 1) * nbytes], base + j * step)


def write_fits_tile(
    layout: FitsLayout,
    window: tuple[int, int, int, int],
    sci: np.ndarray,
    wht: np.ndarray,
    ctx: np.ndarray | None = None,
) -> None:
    """Write one tile's SCI, WHT (and CTX) rows into the preallocated temporary file.

    Parameters
    ----------
    layout : FitsLayout
        From :func:`create_fits`.
    window : (y0, y1, x0, x1)
        0-based, half-open pixel window of the tile in the layer array.
    sci, wht : (y1-y0, x1-x0) arrays
        Tile data (written as big-endian float32).
    ctx : (nplanes, y1-y0, x1-x0) or (y1-y0, x1-x0) array, optional
        Context bits (written as big-endian int32); required when the layout has CTX.
    """
    y0, y1, x0, x1 = (int(v) for v in window)
    ny, nx = layout.shape
    if not (0 <= y0 < y1 <= ny and 0 <= x0 < x1 <= nx):
        raise ValueError(f"{layout.final}: tile window {window} outside the {ny}x{nx} layer")
    if sci.shape != (y1 - y0, x1 - x0) or wht.shape != sci.shape:
        raise ValueError(f"{layout.final}: tile arrays {sci.shape}/{wht.shape} do not match "
                         f"window {window}")
    c = None
    if layout.nplanes > 0:
        if ctx is None:
            raise ValueError(f"{layout.final}: the layer has a CTX extension but the tile "
                             "has no context array")
        c = ctx if ctx.ndim == 3 else ctx[None]
        if c.shape[0] != layout.nplanes:
            raise ValueError(f"{layout.final}: tile has {c.shape[0]} CTX planes, layer "
                             f"has {layout.nplanes}")
        if c.dtype == np.uint32:
            c = c.view(np.int32)
    if layout.bands:
        _add_to_band(layout, (y0, y1, x0, x1), sci, wht, c)
        return
    _write_tile_rows(layout, (y0, y1, x0, x1), sci, wht, c)


def _write_tile_rows(layout: FitsLayout, window: tuple[int, int, int, int], sci: np.ndarray,
                     wht: np.ndarray, ctx: np.ndarray | None) -> None:
    """A tile's rows written at once through the page cache (``ctx``: (planes, y, x) int32)."""
    y0, y1, x0, x1 = window
    ny, nx = layout.shape
    fd = os.open(layout.tmp, os.O_WRONLY | _NOFOLLOW)
    try:
        _write_rows(fd, layout.sci_offset, nx, window, sci, ">f4")
        _write_rows(fd, layout.wht_offset, nx, window, wht, ">f4", skip_zero_rows=True)
        if ctx is not None:
            _write_rows(fd, layout.ctx_offset, nx, window, ctx, ">i4",
                        plane_stride=ny * nx * 4, skip_zero_rows=True)
        band = (y1 - y0) * nx * 4  # the tile's rows in each extension (other tiles' too)
        start_writeback(layout.tmp, [(s + y0 * nx * 4, band) for s in _plane_offsets(layout)])
    finally:
        os.close(fd)


def _plane_offsets(layout: FitsLayout) -> list[int]:
    """File offsets of the data planes: SCI, WHT, then each CTX plane."""
    ny, nx = layout.shape
    return [layout.sci_offset, layout.wht_offset] + [
        layout.ctx_offset + p * ny * nx * 4 for p in range(layout.nplanes)]


class _Band:
    """The rows ``y0:y1`` of every data plane of a file, filled tile by tile."""

    def __init__(self, layout: FitsLayout, y0: int, y1: int) -> None:
        ny, nx = layout.shape
        self.y0, self.y1 = y0, y1
        self.covered = np.zeros(nx, dtype=bool)
        self.planes: list[np.ndarray] = []
        nbytes = (y1 - y0) * nx * 4
        self.nbytes = nbytes * (2 + layout.nplanes)
        offsets = _plane_offsets(layout)
        self.memory = _take_memory(len(offsets) * (nbytes + DIRECT_ALIGN))
        raw = np.frombuffer(self.memory, dtype=np.uint8)
        pos = 0
        for off in offsets:
            # placed so that the file's 4 KiB boundaries fall on 4 KiB boundaries in memory
            # (the mapping starts on a page)
            pos += (off + y0 * nx * 4 - pos) % DIRECT_ALIGN
            self.planes.append(raw[pos:pos + nbytes])
            pos += nbytes

    def release(self) -> None:
        """Drop the band's memory (once written or forgotten)."""
        self.planes = []
        self.memory = None


def _take_memory(size: int) -> mmap.mmap:
    """A band's memory: an anonymous mapping, unmapped once the band is written (its last
    view gone). Kept out of the allocator's heap: there, hapdask's commands keep freed blocks
    for reuse (:mod:`hapdask._memory`), and a written band's 60-200 MB were split by the
    tiles' arrays and the next band grew the heap: the acs4 run's peak RSS was 0.89-1.0 GiB
    with heap bands, 0.86 GiB with mappings (and 0.93-1.02 GiB with written bands' mappings
    kept for the next bands)."""
    m = mmap.mmap(-1, size)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        m.madvise(mmap.MADV_HUGEPAGE)
    return m


class _FileBands:
    """The incomplete bands of one file, and its band writes under way."""

    def __init__(self, layout: FitsLayout) -> None:
        self.inode = layout.inode
        self.lock = threading.Lock()
        self.io = threading.Lock()  # a band's writes, or a tile's written on its own
        self.bands: dict[tuple[int, int], _Band] = {}
        self.spilled: set[tuple[int, int]] = set()  # bands written tile by tile
        self.pending = 0  # complete bands queued or being written
        self.done = threading.Condition(self.lock)
        self.error: BaseException | None = None


_FILES: dict[str, _FileBands] = {}
_FILES_LOCK = threading.Lock()
_HELD = [0]  # bytes of the bands made and not yet written (under _FILES_LOCK)
_BAND_QUEUE: queue.SimpleQueue = queue.SimpleQueue()
_BAND_THREAD: threading.Thread | None = None


def _file_bands(layout: FitsLayout) -> _FileBands:
    with _FILES_LOCK:
        fb = _FILES.get(layout.tmp)
        if fb is None or fb.inode != layout.inode:
            fb = _FILES[layout.tmp] = _FileBands(layout)
        return fb


def _forget(tmp: str) -> None:
    with _FILES_LOCK:
        fb = _FILES.pop(tmp, None)
    if fb is not None:
        with fb.lock:
            bands, fb.bands = list(fb.bands.values()), {}
        _release(bands)


def _add_to_band(layout: FitsLayout, window: tuple[int, int, int, int], sci: np.ndarray,
                 wht: np.ndarray, ctx: np.ndarray | None) -> None:
    """Copy a tile into its band (made at its first tile); queue the band once complete."""
    global _BAND_THREAD
    y0, y1, x0, x1 = window
    fb = _file_bands(layout)
    ny, nx = layout.shape
    with fb.lock:
        band = fb.bands.get((y0, y1))
        if band is None and (y0, y1) not in fb.spilled and not any(
                a < y1 and y0 < b for a, b in [*fb.bands, *fb.spilled]):  # a grid's row
            nbytes = (y1 - y0) * nx * 4 * (2 + layout.nplanes)
            with _FILES_LOCK:
                fits_in = _HELD[0] + nbytes <= BAND_MEMORY
                _HELD[0] += nbytes if fits_in else 0
            if fits_in:
                band = fb.bands[(y0, y1)] = _Band(layout, y0, y1)
            else:
                fb.spilled.add((y0, y1))
    if band is None:  # over the memory bound, or not a grid's row
        with fb.io:
            _write_tile_rows(layout, window, sci, wht, ctx)
        return
    planes = [sci, wht] + ([] if ctx is None else list(ctx))
    for buf, tile, dtype in zip(band.planes, planes, [">f4", ">f4"] + [">i4"] * layout.nplanes,
                                strict=True):
        buf.view(dtype).reshape(y1 - y0, nx)[:, x0:x1] = tile  # converts to big-endian
    with fb.lock:
        band.covered[x0:x1] = True
        if not band.covered.all() or fb.bands.get((y0, y1)) is not band:
            return
        del fb.bands[(y0, y1)]
        fb.pending += 1
    with _FILES_LOCK:
        if _BAND_THREAD is None or not _BAND_THREAD.is_alive():
            _BAND_THREAD = threading.Thread(target=_band_writer, daemon=True,
                                            name="hapdask-fits-bands")
            _BAND_THREAD.start()
    _BAND_QUEUE.put((layout, fb, band))


def _band_writer() -> None:
    while True:
        layout, fb, band = _BAND_QUEUE.get()
        try:
            with fb.io:
                _write_band(layout, band)
        except BaseException as exc:  # reported by finalize_fits
            with fb.lock:
                fb.error = fb.error or exc
        finally:
            with _FILES_LOCK:
                _HELD[0] -= band.nbytes
            band.release()
            del band
            with fb.lock:
                fb.pending -= 1
                fb.done.notify_all()


def _open_checked(layout: FitsLayout, flags: int) -> int:
    fd = os.open(layout.tmp, flags | _NOFOLLOW)
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != tuple(layout.inode):
        os.close(fd)
        raise OSError(f"{layout.tmp}: replaced while its tiles were written")
    return fd


def _write_band(layout: FitsLayout, band: _Band | FitsRows) -> None:
    """Write a complete band: per plane, the 4 KiB-aligned bulk with ``O_DIRECT`` (when the
    file system takes it), head and tail through the page cache. The two never share a page,
    so no cached page goes stale under a direct write (the page cache's head/tail pages are
    the neighbouring bands' and the headers' too: written through the cache by every side)."""
    nx = layout.shape[1]
    fd = _open_checked(layout, os.O_WRONLY)
    dfd = -1
    if _DIRECT:
        try:
            dfd = _open_checked(layout, os.O_WRONLY | _DIRECT)
        except OSError:  # no direct I/O on this file system
            dfd = -1
    try:
        raw = band._raw if isinstance(band, FitsRows) else band.planes
        for off, buf in zip(_plane_offsets(layout), raw, strict=True):
            start = off + band.y0 * nx * 4
            stop = start + buf.nbytes
            a = -(-start // DIRECT_ALIGN) * DIRECT_ALIGN
            b = stop // DIRECT_ALIGN * DIRECT_ALIGN
            mem = memoryview(buf)
            if dfd >= 0 and b > a:
                try:
                    _pwrite_all(dfd, mem[a - start:b - start], a)
                except OSError:  # e.g. EINVAL: alignment this file system refuses
                    os.close(dfd)
                    dfd = -1
                    _pwrite_all(fd, mem[a - start:b - start], a)
                _pwrite_all(fd, mem[:a - start], start)
                _pwrite_all(fd, mem[b - start:], b)
            else:
                _pwrite_all(fd, mem, start)
    finally:
        os.close(fd)
        if dfd >= 0:
            os.close(dfd)


class FitsRows:
    """Full-width rows ``y0:y1`` of every data plane of a layer file, filled by the caller and
    written at once (:meth:`write`) as a band is (:func:`create_fits` with ``bands=True``):
    the 4 KiB-aligned bulk of each plane's rows with direct I/O, their head and tail through
    the page cache. Any layout (``bands`` or not) and any process that may write the file;
    the rows must not be written by a tile at the same time.

    The memory is this thread's buffer, reused by its next :class:`FitsRows` (kept between
    them, grown when too small): a thread fills and writes one at a time, and the pages are
    not faulted in afresh for every band (on this project's virtual machines a fresh page
    costs more system time than the direct write of its bytes).

    Attributes
    ----------
    planes : list of numpy.ndarray
        ``(y1 - y0, nx)`` big-endian views, SCI (``>f4``), WHT (``>f4``), then each CTX plane
        (``>i4``), as in the file; their initial values are undefined: every element is to be
        set before :meth:`write`.
    """

    def __init__(self, layout: FitsLayout, y0: int, y1: int) -> None:
        ny, nx = layout.shape
        if not 0 <= y0 < y1 <= ny:
            raise ValueError(f"{layout.final}: rows {y0}:{y1} outside the {ny}x{nx} layer")
        self.layout = layout
        self.y0 = int(y0)
        nbytes = (y1 - y0) * nx * 4
        offsets = _plane_offsets(layout)
        size = len(offsets) * (nbytes + DIRECT_ALIGN)
        memory = getattr(_ROWS_LOCAL, "memory", None)
        if memory is None or len(memory) < size:
            memory = _ROWS_LOCAL.memory = _take_memory(size)
        raw = np.frombuffer(memory, dtype=np.uint8, count=size)
        self._raw: list[np.ndarray] = []  # the planes' bytes, placed as _Band places them
        pos = 0
        for off in offsets:
            pos += (off + y0 * nx * 4 - pos) % DIRECT_ALIGN
            self._raw.append(raw[pos:pos + nbytes])
            pos += nbytes
        self.planes = [b.view(">f4" if k < 2 else ">i4").reshape(y1 - y0, nx)
                       for k, b in enumerate(self._raw)]

    def write(self) -> None:
        """Write the rows into the layout's temporary file."""
        _write_band(self.layout, self)


_ROWS_LOCAL = threading.local()


def _flush_bands(layout: FitsLayout) -> None:
    """Wait for the file's band writes; write the tiles of bands left incomplete (a tile that
    was never written leaves its area as created: zeros) through the page cache."""
    with _FILES_LOCK:
        fb = _FILES.pop(layout.tmp, None)
    if fb is None or fb.inode != layout.inode:
        return
    with fb.lock:
        while fb.pending:
            fb.done.wait()
        bands, fb.bands = list(fb.bands.values()), {}
        error = fb.error
    try:
        if error is not None:
            raise OSError(f"{layout.final}: writing its data failed: {error}") from error
        nx = layout.shape[1]
        for band in bands:
            edges = np.flatnonzero(np.diff(np.concatenate(([False], band.covered, [False]))
                                           .astype(np.int8)))
            rows = band.y1 - band.y0
            views = [buf.view(">f4" if k < 2 else ">i4").reshape(rows, nx)
                     for k, buf in enumerate(band.planes)]
            for x0, x1 in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
                ctx = np.stack([v[:, x0:x1] for v in views[2:]]) if layout.nplanes else None
                _write_tile_rows(layout, (band.y0, band.y1, x0, x1), views[0][:, x0:x1],
                                 views[1][:, x0:x1], ctx)
            del views
    finally:
        _release(bands)


def discard_fits(layout: FitsLayout) -> None:
    """Forget the bands of a file that will not be finalised (a failed run), waiting for the
    band writes under way; the caller removes the file."""
    with _FILES_LOCK:
        fb = _FILES.pop(layout.tmp, None)
    if fb is not None:
        with fb.lock:
            while fb.pending:
                fb.done.wait()
            bands, fb.bands = list(fb.bands.values()), {}
        _release(bands)


def _release(bands: list[_Band]) -> None:
    with _FILES_LOCK:
        _HELD[0] -= sum(b.nbytes for b in bands)
    for b in bands:
        b.release()


def finalize_fits(layout: FitsLayout, updates: dict[str, object] | None = None, *,
                  hdrtab: bytes | None = None) -> Path:
    """Patch whole-layer header values into the primary header, then rename to the final name.

    Parameters
    ----------
    layout : FitsLayout
        From :func:`create_fits`.
    updates : dict, optional
        Primary keyword -> new value. Every keyword must already be in the primary header
        (written with a placeholder value), so the header keeps its size.
    hdrtab : bytes, optional
        The HDRTAB extension (:func:`hapdask.export.headers.hdrtab`), appended as the last
        extension when the file was created without one (its rows may depend on results,
        e.g. the WCS names of an alignment computed with the tiles).

    Returns
    -------
    Path
        The final path.
    """
    if layout.bands:
        _flush_bands(layout)
    with os.fdopen(os.open(layout.tmp, os.O_RDWR | _NOFOLLOW), "r+b") as fh:
        if updates:  # (none: the header is not parsed again, ~20-50 ms at a run's end)
            raw = fh.read(layout.primary_size).decode("ascii")
            hdr = fits.Header.fromstring(raw)
            for key, value in updates.items():
                if key not in hdr:
                    raise ValueError(f"{layout.final}: keyword {key} was not reserved in the "
                                     "primary header")
                hdr[key] = value
            new = hdr.tostring().encode("ascii")
            if len(new) != layout.primary_size:
                raise ValueError(f"{layout.final}: patched primary header changed size "
                                 f"({len(new)} != {layout.primary_size} bytes)")
            fh.seek(0)
            fh.write(new)
        if hdrtab is not None:
            fh.seek(0, os.SEEK_END)
            fh.write(hdrtab)
        fh.flush()
        os.fsync(fh.fileno())
    return commit(layout.final)
