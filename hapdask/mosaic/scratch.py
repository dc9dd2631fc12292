"""Scratch files of one mosaic run: separate-drizzle stacks and sums.

AstroDrizzle keeps its singly-drizzled images and masks as intermediate files; the engine does
the same with two kinds of arrays that would otherwise be recomputed or held in memory:

* the **separate-drizzle stack** of every median tile — written by the one separate-drizzle
  pass (which also yields the weight statistics of ``combine_maskpt``) and read back by the
  median task once the whole grid's mean weights are known;
* the **separate-drizzle sums** of every tile (all exposures' float64 num/den and context),
  when the final drizzle is the separate one but for the cosmic rays: the final tile task
  subtracts the cosmic-ray pixels from them instead of drizzling every pixel again.

Pixel maps are not kept: each task computes the map of the pixels it uses (the numba
``calc_pixmap``, ~8 ns per pixel then, ~4 since session 33, instead of the direct reads'
waits of a kept map; 3 interleaved pairs of the drizzle bench: wall medians 10.86 -> 10.38 s,
products identical).
It costs CPU: the drizzle bench's process +0.3-0.8 CPU-s of ~19 (the tasks' maps +1.2, the
plan's saves and page faults -0.4), ``hapdask svm``'s demo +2.2-3.2 task CPU-s in its
drizzle stages (its 7 products read each stored map several times).

Files are ``.npy``, written under a temporary name and renamed when complete (a retried task
rewrites the same bytes).

Everything is moved with direct I/O (``O_DIRECT``), past the page cache. On this project's
virtual machines a page the kernel has not used for a few seconds is handed back to the host,
and using it again costs the guest ~2 CPU-s per GB and more in wall time (measured: 1 GB
written into new files 2.2 CPU-s, 1 GB written with O_DIRECT 0.03 CPU-s and 0.7 s); a
page-cache copy of scratch data is that cost for nothing. The data go through a
small aligned buffer per thread, except the whole blocks of an array that starts on a block
boundary (:func:`aligned_zeros`, :func:`aligned_empty`: the separate-drizzle stacks, the staged
final tiles), written straight from its memory, and of a whole direct load, read straight into
the new block-aligned array (a 38.7 MB stack: save 5.2-7.9 -> 1.0 CPU-ms, load ~3x less CPU and
~2x less wall); the ``.npy`` header is padded to one block, so the files stay ordinary ``.npy``
files. Where the file system refuses ``O_DIRECT`` (e.g. tmpfs) the ordinary
path is taken.

Stacks and sums are written once and read once, whole (:meth:`Scratch.save` and
:func:`load_array` with ``direct=True``). On local threads the separate-drizzle task hands
them to this process's saving thread and returns (:meth:`Scratch.save_behind`: the task's
core does not wait for the disk, ~1 thread-s over the bench's 27 tiles); a reader calls
:func:`wait_saved` first, a deletion or the directory's removal waits for them.

The directory lives beside the output (workers of a cluster must see it, as they see the
output file) and is removed when the run ends. A file no task will read again may be deleted
before that (:meth:`Scratch.discard`, called when the last task reading it is done:
:func:`hapdask.mosaic.graph.release_scratch`, used by ``hapdask drizzle``): on
this project's file system (ext4 mounted with ``discard``) an unlink waits for the device to
trim the freed blocks, ~0.23 s per GB of wall time and almost no CPU (2.4 GB: 0.55 s, 0.01
CPU-s), so the deletions are made by a thread of their own while the run goes on instead of
all at its end.

A run that is killed cannot remove its directory. Each directory therefore records its owner
(:data:`OWNER_FILE`: host, process id and the process's start time); :func:`remove_stale`,
called when a new run creates its scratch, deletes the directories of owners that are dead on
this host, and only those: a directory of a live process, of another host, without a
readable owner record, or holding anything but scratch files is left alone.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["OWNER_FILE", "Scratch", "aligned_empty", "aligned_zeros", "load_array",
           "load_array_async", "remove_stale", "wait_saved"]

Box = tuple[int, int, int, int]

#: Direct I/O: offsets, sizes and buffer addresses are multiples of this (the largest logical
#: block size in use), and the ``.npy`` header of a direct file is padded to it.
_BLOCK = 4096
#: Size of the per-thread aligned buffer the data of direct I/O go through.
_CHUNK = 2 << 20
#: Largest single transfer of an array's bulk straight between its memory and the file
#: (:meth:`_Writer.put`, :func:`_load_direct`).
_DIRECT_RUN = 64 << 20
_LOCAL = threading.local()
#: errnos meaning "this file system or file does not do O_DIRECT" (then: the ordinary path)
_NO_DIRECT = {errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}

#: Owner record of a scratch directory (JSON: tool, host, pid, start).
OWNER_FILE = "owner.json"
_TOOL = "hapdask.mosaic.scratch"
#: Directory names :meth:`Scratch.create` makes (``.<stem>-scratch-<mkdtemp suffix>``).
_DIR_NAME = re.compile(r"^\..+-scratch-[A-Za-z0-9_]+$")
#: What a scratch directory may hold: arrays, their temporary parts, the owner record and a
#: local Dask cluster's work directory (:func:`hapdask.scheduling.compute_context`).
_CONTENT = re.compile(r"^([^/]+\.npy|\.part-.*|owner\.json|\.hapdask-dask-.*)$")


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, field 22 of
    ``/proc/<pid>/stat``), or None where /proc cannot tell (not Linux, no such process)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    return stat.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int, start: str | None) -> bool:
    """Whether process ``pid`` (started at ``start``, if known) still runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    if start is None:
        return True
    now = _start_time(pid)
    return now is None or now == start  # another start time: the pid was reused


def _owner() -> dict:
    pid = os.getpid()
    return {"tool": _TOOL, "host": socket.gethostname(), "pid": pid, "start": _start_time(pid)}


def remove_stale(parent: str | os.PathLike) -> list[str]:
    """Delete the scratch directories under ``parent`` whose owner died on this host.

    A directory is removed only when its name is a scratch directory's, its
    :data:`OWNER_FILE` says this tool made it on this host, the owner process is gone (or its
    pid now belongs to a process started at another time), and everything in it is a scratch
    file. Anything else is left alone.

    Returns
    -------
    list of str
        The directories removed.
    """
    removed = []
    host = socket.gethostname()
    try:
        entries = list(os.scandir(parent))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not (_DIR_NAME.match(entry.name) and entry.is_dir(follow_symlinks=False)):
            continue
        try:
            with open(os.path.join(entry.path, OWNER_FILE)) as fh:
                owner = json.load(fh)
            pid = int(owner["pid"])
            if owner.get("tool") != _TOOL or owner.get("host") != host:
                continue
        except (OSError, ValueError, KeyError, TypeError):
            continue  # no readable record (e.g. being created, or not ours): leave it
        if _alive(pid, owner.get("start")):
            continue
        try:
            names = os.listdir(entry.path)
        except OSError:
            continue
        if not all(_CONTENT.match(n) for n in names):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    return removed


@dataclass(frozen=True)
class Scratch:
    """A run's scratch directory (picklable; tasks receive it).

    Attributes
    ----------
    directory : str
    """

    directory: str

    @classmethod
    def create(cls, parent: str | os.PathLike, stem: str) -> Scratch:
        """Make a new scratch directory ``<parent>/.<stem>-scratch-XXXX`` holding only its
        owner record (:data:`OWNER_FILE`; see :func:`remove_stale`)."""
        Path(parent).mkdir(parents=True, exist_ok=True)
        directory = tempfile.mkdtemp(prefix=f".{stem}-scratch-", dir=str(parent))
        scratch = cls(directory)
        fd, tmp = tempfile.mkstemp(prefix=".part-", suffix=".json", dir=directory)
        with os.fdopen(fd, "w") as fh:
            json.dump(_owner(), fh)
        os.replace(tmp, os.path.join(directory, OWNER_FILE))
        return scratch

    def path(self, name: str) -> str:
        """Path of the scratch file ``name`` (``.npy`` appended)."""
        return os.path.join(self.directory, f"{name}.npy")

    def save(self, name: str, array: np.ndarray | Sequence[np.ndarray], direct: bool = False
             ) -> str:
        """Write ``array`` as ``name`` (temporary name, then renamed); returns its path.

        ``direct``: with direct I/O, past the page cache (module docstring), for an array that
        will be read once, whole (:func:`load_array` with ``direct=True``); ``array`` may then
        be a sequence of arrays of one shape and dtype, saved as their stack (as
        ``numpy.stack``, without making it)."""
        final = self.path(name)
        fd, tmp = tempfile.mkstemp(prefix=".part-", suffix=".npy", dir=self.directory)
        os.close(fd)
        try:
            parts = [array] if isinstance(array, np.ndarray) else list(array)
            if not (direct and _save_direct(tmp, parts)):
                with open(tmp, "wb") as fh:
                    np.save(fh, parts[0] if isinstance(array, np.ndarray)
                            else np.stack(parts), allow_pickle=False)
            os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return final

    def save_async(self, name: str, array: np.ndarray, **kwargs) -> Future:
        """:meth:`save` in the scratch I/O threads (the future of the path): the direct
        writes' waits overlap the caller's work. ``array`` must not change until it is done."""
        return _io_pool().submit(self.save, name, array, **kwargs)

    def save_behind(self, items: Sequence[tuple[str, np.ndarray | Sequence[np.ndarray]]],
                    direct: bool = True) -> Future:
        """Save ``items`` (``(name, array)`` pairs, as :meth:`save` takes them) one after the
        other in this process's saving thread, and return at once: the future of their paths.

        Each file is known as pending until its save is done: a reader of this process calls
        :func:`wait_saved` before it opens one (it then waits, and gets the save's error if
        it failed), :meth:`discard` deletes one only after its save, and :meth:`remove` waits
        for them all. So only for files read in this process (a graph computed on local
        threads): a reader in another process would not know the file is still being written.
        The arrays must not change until the future is done (they are kept until then).
        """
        paths = [self.path(name) for name, _ in items]
        pool = _save_pool()
        with _BEHIND_LOCK:  # known as pending before a reader can look
            future = pool.submit(self._save_items, list(items), direct)
            for path in paths:
                _BEHIND[path] = future
        return future

    def _save_items(self, items: list, direct: bool) -> list[str]:
        paths = []
        while items:  # each array let go once saved: its memory is free for reuse at once
            name, array = items.pop(0)
            paths.append(self.save(name, array, direct=direct))
            del array
        return paths

    def discard(self, *paths: str) -> None:
        """Delete scratch files that nothing will read again, in this process's deleting
        thread (module docstring): the caller does not wait for the file system. Missing files
        are no error; a file still being saved (:meth:`save_behind`) is deleted after its
        save. :meth:`remove` waits for the deletions handed over here."""
        with _BEHIND_LOCK:
            saves = [f for f in (_BEHIND.pop(p, None) for p in paths) if f is not None]
        future = (_discard_pool().submit(_unlink_after, saves, paths) if saves else
                  _discard_pool().submit(_unlink_all, paths))
        with _DISCARD_LOCK:
            _DISCARDING.setdefault(self.directory, []).append(future)

    def remove(self) -> None:
        """Delete the directory and everything in it (after the pending :meth:`save_behind`
        saves and :meth:`discard` deletions of this process)."""
        inside = self.directory + os.sep
        with _BEHIND_LOCK:
            saves = [_BEHIND.pop(p) for p in [p for p in _BEHIND if p.startswith(inside)]]
        for future in saves:
            future.exception()  # wait: nothing is written into the directory after rmtree
        with _DISCARD_LOCK:
            pending = _DISCARDING.pop(self.directory, [])
        for future in pending:
            future.exception()  # wait; a failed deletion is left to rmtree
        shutil.rmtree(self.directory, ignore_errors=True)


def wait_saved(path: str) -> None:
    """Wait until the save of scratch file ``path`` handed to :meth:`Scratch.save_behind` in
    this process is done (at once if there is none): a reader calls it before it opens the
    file. Raises the save's error if it failed (again for every later reader)."""
    with _BEHIND_LOCK:
        future = _BEHIND.get(path)
    if future is None:
        return
    future.result()
    with _BEHIND_LOCK:
        if _BEHIND.get(path) is future:
            del _BEHIND[path]


def _unlink_after(saves: Sequence[Future], paths: Sequence[str]) -> None:
    for future in saves:
        future.exception()  # the file exists (or never will) once its save is over
    _unlink_all(paths)


def _unlink_all(paths: Sequence[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _bounce() -> np.ndarray:
    """This thread's aligned buffer of direct I/O (``_CHUNK`` bytes)."""
    buf = getattr(_LOCAL, "buffer", None)
    if buf is None or buf.size != _CHUNK:
        raw = np.empty(_CHUNK + _BLOCK, np.uint8)
        start = -raw.ctypes.data % _BLOCK
        buf = _LOCAL.buffer = raw[start:start + _CHUNK]
    return buf


def _direct_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The ``.npy`` (version 1.0) header of a C-ordered array of ``shape`` and ``dtype``, padded
    with spaces to ``_BLOCK`` bytes."""
    d = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
         "shape": tuple(int(n) for n in shape)}
    text = "{" + "".join(f"{k!r}: {d[k]!r}, " for k in sorted(d)) + "}"
    pad = _BLOCK - len(np.lib.format.MAGIC_PREFIX) - 2 - 2 - len(text) - 1
    if pad < 0:  # a shape too long for one block (not a scratch array of this package)
        raise ValueError(f"array shape {shape} does not fit a {_BLOCK}-byte header")
    body = (text + " " * pad + "\n").encode("latin1")
    return np.lib.format.magic(1, 0) + len(body).to_bytes(2, "little") + body


class _Writer:
    """Bytes streamed into a file through this thread's aligned buffer and written in whole
    blocks (the end padded with zeros to a block), with direct I/O or the ordinary path."""

    def __init__(self, fd: int, path: str) -> None:
        self.buf = _bounce()
        self.used = 0
        self.written = 0
        self.fd = fd
        self.path = path

    def put(self, part: np.ndarray) -> None:
        """Append the bytes of ``part`` in C order: a contiguous array as it is (its whole
        blocks written straight from its memory when it starts on a block boundary, e.g.
        :func:`aligned_zeros`, and the file is at one), else row by row along its first axis
        (in batches of rows that fit the buffer)."""
        if part.flags.c_contiguous:
            flat = part.reshape(-1).view(np.uint8)
            pos = 0
            if flat.size >= _CHUNK and flat.ctypes.data % _BLOCK == 0:
                self.flush()
                if self.used == 0:  # the file is at a block boundary: no copy of the bulk
                    bulk = flat.size - flat.size % _BLOCK
                    while pos < bulk:
                        done = os.write(self.fd, flat[pos:min(pos + _DIRECT_RUN, bulk)])
                        if done <= 0 or done % _BLOCK:
                            raise OSError(f"{self.path}: short write ({done} bytes)")
                        self.written += done
                        pos += done
            while pos < flat.size:
                if self.used == _CHUNK:
                    self.flush()
                take = min(_CHUNK - self.used, flat.size - pos)
                self.buf[self.used:self.used + take] = flat[pos:pos + take]
                self.used += take
                pos += take
            return
        row_bytes = part[0].nbytes if len(part) else 0
        if row_bytes > _CHUNK // 2:  # rows too large to batch: each row on its own
            for row in part:
                self.put(row)
            return
        r = 0
        while r < len(part):
            n = min((_CHUNK - self.used) // row_bytes, len(part) - r)
            if n == 0:
                self.flush()
                continue
            dest = self.buf[self.used:self.used + n * row_bytes]
            np.copyto(dest.view(part.dtype).reshape(part[r:r + n].shape), part[r:r + n])
            self.used += n * row_bytes
            r += n

    def flush(self, last: bool = False) -> None:
        """Write the whole blocks of the buffer (``last``: everything, padded to a block)."""
        if last:
            end = -self.used % _BLOCK
            self.buf[self.used:self.used + end] = 0
            self.used += end
        whole = self.used - self.used % _BLOCK
        if whole:
            done = os.write(self.fd, self.buf[:whole])
            if done != whole:
                raise OSError(f"{self.path}: short write ({done} of {whole} bytes)")
            self.written += done
            tail = self.used - whole
            self.buf[:tail] = self.buf[whole:self.used]
            self.used = tail


def _write(path: str, parts, direct: bool) -> bool:
    """Write the arrays of ``parts`` (an iterable, consumed once) to ``path`` (truncated)
    through a :class:`_Writer`. With ``direct``, False (nothing written) where the file system
    refuses direct I/O at the open or the first write."""
    flag = getattr(os, "O_DIRECT", 0) if direct else 0
    if direct and not flag:
        return False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | flag)
    except OSError as exc:
        if direct and exc.errno in _NO_DIRECT:
            return False
        raise
    w = _Writer(fd, path)
    try:
        for part in parts:
            w.put(part)
        w.flush(last=True)
        return True
    except OSError as exc:
        if direct and exc.errno in _NO_DIRECT and w.written == 0:
            return False  # refused at the first write: nothing written
        raise
    finally:
        os.close(fd)


def _save_direct(path: str, parts: list[np.ndarray]) -> bool:
    """Write an array (``parts`` of one element), or the stack of ``parts`` (a list of arrays
    of one shape and dtype), to ``path`` as a ``.npy`` file with direct I/O (the end is padded
    with zeros to a whole block). False, with nothing written, where the file system does not
    do direct I/O."""
    first = parts[0]
    if any(p.shape != first.shape or p.dtype != first.dtype for p in parts):
        raise ValueError("arrays saved as a stack must have one shape and dtype")
    shape = first.shape if len(parts) == 1 else (len(parts), *first.shape)
    head = np.frombuffer(_direct_header(shape, first.dtype), np.uint8)
    return _write(path, [head, *parts], True)


def _npy_header(fh, path: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of the ``.npy`` file open as ``fh`` (at its start)."""
    version = np.lib.format.read_magic(fh)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, fortran, dtype = read_header(fh)
    if fortran:
        raise ValueError(f"{path}: Fortran-ordered scratch arrays are not supported")
    return shape, dtype, fh.tell()


def _aligned(shape: tuple[int, ...], dtype: np.dtype | type, alloc) -> np.ndarray:
    """A new C-contiguous array from ``alloc`` (``np.zeros`` or ``np.empty``) whose data
    start on a block boundary."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    raw = alloc(nbytes + _BLOCK, np.uint8)
    start = -raw.ctypes.data % _BLOCK
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def aligned_zeros(shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """A new C-contiguous array of zeros whose data start on a block boundary: saved with
    direct I/O (:meth:`Scratch.save`), its whole blocks are written straight from its memory,
    not copied through the bounce buffer. Its pages are the calloc'ed zero pages of
    ``numpy.zeros`` (not touched until written)."""
    return _aligned(shape, dtype, np.zeros)


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """A new (uninitialised) C-contiguous array whose data start on a block boundary: direct
    reads land in it, and direct saves (:meth:`Scratch.save`) write its whole blocks straight
    from its memory, without the bounce buffer's copy."""
    return _aligned(shape, dtype, np.empty)


def _load_direct(path: str) -> np.ndarray | None:
    """The whole array of the ``.npy`` file ``path`` read with direct I/O, or None where the
    file system does not do direct I/O. The whole blocks of a file whose data start on a
    block (:func:`_direct_header`) are read straight into the (block-aligned) new array,
    the last partial block through this thread's aligned buffer: no copy of the bulk."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | flag)
    except OSError as exc:
        if exc.errno in _NO_DIRECT:
            return None
        raise
    try:
        buf = _bounce()
        try:
            got = os.preadv(fd, [buf[:_BLOCK]], 0)
        except OSError as exc:
            if exc.errno in _NO_DIRECT:
                return None
            raise
        fh = io.BytesIO(bytes(buf[:got]))
        shape, dtype, offset = _npy_header(fh, path)
        if offset % _BLOCK:  # not a direct-saved file: through the buffer
            return _load_buffered_direct(fd, path, shape, dtype, offset)
        out = aligned_empty(shape, dtype)
        dest = out.reshape(-1).view(np.uint8)
        bulk = dest.size - dest.size % _BLOCK
        pos = 0
        while pos < bulk:
            n = os.preadv(fd, [dest[pos:min(pos + _DIRECT_RUN, bulk)]], offset + pos)
            if n <= 0:
                raise OSError(f"{path}: truncated scratch file")
            pos += n
        if bulk < dest.size:
            tail = dest.size - bulk
            dest[bulk:] = _pread(fd, True, buf, offset + bulk, tail, path)
        return out
    finally:
        os.close(fd)


def _load_buffered_direct(fd: int, path: str, shape: tuple[int, ...], dtype: np.dtype,
                          offset: int) -> np.ndarray:
    """:func:`_load_direct` of a file whose data do not start on a block: every byte through
    this thread's aligned buffer."""
    buf = _bounce()
    out = np.empty(shape, dtype)
    dest = out.reshape(-1).view(np.uint8)
    piece = _CHUNK - _BLOCK
    for pos in range(0, dest.size, piece):
        n = min(piece, dest.size - pos)
        dest[pos:pos + n] = _pread(fd, True, buf, offset + pos, n, path)
    return out


def load_array(path: str, region: Box | None = None, out: np.ndarray | None = None,
               direct: bool = False) -> np.ndarray:
    """Read a scratch array, or the ``(y0, y1, x0, x1)`` region (0-based, half-open) of its
    first two axes, into a new array (or into ``out``, a C-contiguous array of the region's
    shape and the file's dtype, e.g. a buffer a task reuses; returned).

    A region is read row by row (positional reads of just its bytes), so the task's memory is
    the region, not the whole rows of a memory map. ``direct``: read with direct I/O, past the
    page cache (module docstring), where the file system does it: the whole array, or a
    region, one read of the enclosing whole blocks per row of it (per buffer's worth), or of
    all of it when its rows are whole (e.g. rows ``r0:r1`` of a ``(ny, planes, nx)`` array:
    ``region=(r0, r1, 0, planes)``).
    """
    if direct and region is None and out is None:
        got = _load_direct(path)
        if got is not None:
            return got
    if direct and region is not None:
        got = _load_region_direct(path, region, out)
        if got is not None:
            return got
    with open(path, "rb") as fh:
        shape, dtype, offset = _npy_header(fh, path)
        if region is None:
            y0, y1, x0, x1 = 0, shape[0], 0, shape[1] if len(shape) > 1 else 0
        else:
            y0, y1, x0, x1 = region
        out = _region_out(path, shape, dtype, (y0, y1, x0, x1), out)
        inner = int(np.prod(shape[2:], dtype=np.int64)) * dtype.itemsize
        row = shape[1] * inner
        if region is None or (x0 == 0 and x1 == shape[1]):
            fh.seek(offset + y0 * row)
            if fh.readinto(memoryview(out.reshape(-1).view(np.uint8))) != out.nbytes:
                raise OSError(f"{path}: truncated scratch file")
            return out
        fd = fh.fileno()
        width = (x1 - x0) * inner
        for k, y in enumerate(range(y0, y1)):
            buf = memoryview(out[k].reshape(-1).view(np.uint8))
            if os.preadv(fd, [buf], offset + y * row + x0 * inner) != width:
                raise OSError(f"{path}: truncated scratch file")
        return out


def _region_out(path: str, shape: tuple[int, ...], dtype: np.dtype, region: Box,
                out: np.ndarray | None) -> np.ndarray:
    """:func:`load_array`'s checks of ``region`` and ``out``; ``out`` or a new array."""
    y0, y1, x0, x1 = region
    if len(shape) < 2 or not (0 <= y0 < y1 <= shape[0] and 0 <= x0 < x1 <= shape[1]):
        raise ValueError(f"{path}: region {region} is outside the array of shape "
                         f"{shape[:2]}")
    want = (y1 - y0, x1 - x0, *shape[2:])
    if out is None:
        return np.empty(want, dtype)
    if out.shape != want or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"{path}: out must be a C-contiguous {dtype} array of shape "
                         f"{want}, got {out.dtype} {out.shape}")
    return out


def _load_region_direct(path: str, region: Box, out: np.ndarray | None) -> np.ndarray | None:
    """:func:`load_array` of a region with direct I/O: per row of the region, its bytes read
    in the enclosing whole blocks through this thread's aligned buffer. None where the file
    system does not do direct I/O."""
    fd, direct = _open_read(path)
    if not direct:
        os.close(fd)
        return None
    try:
        buf = _bounce()
        got = os.preadv(fd, [buf[:_BLOCK]], 0)  # the header (the whole file, if smaller)
        shape, dtype, offset = _npy_header(io.BytesIO(bytes(buf[:got])), path)
        out = _region_out(path, shape, dtype, region, out)
        y0, y1, x0, x1 = region
        inner = int(np.prod(shape[2:], dtype=np.int64)) * dtype.itemsize
        row = shape[1] * inner
        width = (x1 - x0) * inner
        piece = _CHUNK - _BLOCK  # bytes per read: with its enclosing blocks, in the buffer
        # whole rows are one run of bytes; else one run per row
        runs = ([(out.reshape(-1).view(np.uint8), offset + y0 * row)] if width == row else
                [(out[k].reshape(-1).view(np.uint8), offset + y * row + x0 * inner)
                 for k, y in enumerate(range(y0, y1))])
        for dest, start in runs:
            for pos in range(0, dest.size, piece):
                n = min(piece, dest.size - pos)
                dest[pos:pos + n] = _pread(fd, True, buf, start + pos, n, path)
        return out
    finally:
        os.close(fd)


def _open_read(path: str) -> tuple[int, bool]:
    """A read descriptor of ``path``: with direct I/O where the file system does it."""
    flag = getattr(os, "O_DIRECT", 0)
    if flag:
        try:
            return os.open(path, os.O_RDONLY | flag), True
        except OSError as exc:
            if exc.errno not in _NO_DIRECT:
                raise
    return os.open(path, os.O_RDONLY), False


def _pread(fd: int, direct: bool, buf: np.ndarray, start: int, nbytes: int, path: str
           ) -> np.ndarray:
    """Bytes ``[start, start + nbytes)`` of the file read into ``buf``: the view of them
    (direct I/O reads the enclosing whole blocks; ``nbytes`` must leave room for them)."""
    lead = start % _BLOCK if direct else 0
    size = lead + nbytes
    size += -size % _BLOCK if direct else 0
    got = os.preadv(fd, [buf[:size]], start - lead)
    if got < lead + nbytes:
        raise OSError(f"{path}: truncated scratch file")
    return buf[lead:lead + nbytes]


#: this process's scratch threads by role (started on first use, :func:`_pool`)
_POOLS: dict[str, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()
#: scratch file path -> future of its pending :meth:`Scratch.save_behind` save (this process)
_BEHIND: dict[str, Future] = {}
_BEHIND_LOCK = threading.Lock()
#: scratch directory -> futures of its pending :meth:`Scratch.discard` deletions
_DISCARDING: dict[str, list[Future]] = {}
_DISCARD_LOCK = threading.Lock()


def _pool(role: str, workers: int) -> ThreadPoolExecutor:
    """This process's ``hapdask-scratch-<role>`` threads, started on first use."""
    with _POOLS_LOCK:
        if role not in _POOLS:
            _POOLS[role] = ThreadPoolExecutor(workers, thread_name_prefix=f"hapdask-scratch-{role}")
        return _POOLS[role]


def _io_pool() -> ThreadPoolExecutor:
    """The scratch I/O threads (one per core)."""
    return _pool("io", os.cpu_count() or 1)


def _save_pool() -> ThreadPoolExecutor:
    """The saving thread of :meth:`Scratch.save_behind` (one: the saves wait on the device,
    not on a core, and do not queue ahead of the I/O threads' reads)."""
    return _pool("save", 1)


def _discard_pool() -> ThreadPoolExecutor:
    """The deleting thread of :meth:`Scratch.discard` (one: the deletions wait on the device,
    not on a core)."""
    return _pool("discard", 1)


def load_array_async(path: str, direct: bool = False) -> Future:
    """:func:`load_array` of a whole array in the scratch I/O threads: a task starts the read
    of an array it needs later (e.g. a final tile's separate-drizzle sums) before its other
    work, so that the direct read's wait overlaps it. Returns the future of the array. A save
    of the file handed to :meth:`Scratch.save_behind` is waited for first (:func:`wait_saved`,
    in the I/O thread)."""
    return _io_pool().submit(_load_saved, path, direct)


def _load_saved(path: str, direct: bool) -> np.ndarray:
    wait_saved(path)
    return load_array(path, None, None, direct)
