"""Process-wide allocator setting of hapdask's command-line runs: keep freed memory for reuse.

Why: the pipeline's tasks make and drop many large numpy arrays (tiles, stacks, masks, product
bands of 10-300 MB). glibc's malloc serves every block above its mmap threshold (at most 32 MiB)
with a fresh ``mmap`` and gives it back with ``munmap`` when it is freed; threads other than the
main one get arenas whose heaps are at most 64 MiB, so their larger blocks are mmapped whatever
the threshold. Each new array therefore page-faults fresh pages that the kernel must zero
(``clear_page``): in a ``hapdask svm`` run of the demo's 4-exposure ACS/WFC visit that was
0.8-1.3 million page faults and 26-30 s of system time, a fifth of the run's CPU time.

What: one arena for all threads (``M_ARENA_MAX`` 1), no mmapped blocks (``M_MMAP_MAX`` 0: every
block comes from the main heap, grown with ``brk``), and the heap's free top returned to the OS
only beyond :data:`TRIM_THRESHOLD` (``M_TRIM_THRESHOLD``). Freed arrays are then reused by the
next ones without new page faults. A fixed 32 MiB mmap threshold alone does not help (the
blocks that churn are larger). The cost is the heap's fragmentation and the kept top: the peak
RSS grows, and memory freed inside the heap stays resident until the process ends. Measured on
the demo visit (session 20, load 2-14; whole process, medians of 5 and 4 runs): system time
29.8 s -> 13.3 s, minor page faults 1.26 M -> 0.37 M, CPU (user + sys) 132 s -> 105 s, peak RSS
1.82 -> 2.18 GiB (+20 %); a 512 MiB threshold gave 16.4 s and 2.11 GiB, 128 MiB 20.6 s and
1.78 GiB (one run each, load 12-15). The one arena is shared by the threads under a lock;
numpy allocates large blocks rarely, so the contention is negligible (Python's small objects
come from its own pools).

Where the kept memory is handed back: with one arena and no mmapped blocks, the whole-image
arrays of the catalog task (0.14-0.28 GiB each for the demo's 6000^2 products) are freed inside a
heap that the drizzle, keyword and preview tasks running beside them keep using, so their pages
stayed resident (session 21: up to 1 GiB of free heap memory in the run's 1.9 GiB peak, which
was the catalog task beside a preview). :func:`give_back_free_memory` (``malloc_trim(0)``: free
pages inside the heap too) is called at the start of the catalog task (session 23, demo visit:
the earlier stages' kept free memory, ~0.45 GiB, handed back before the catalog's arrays are
made; the run's system time did not grow), at the catalog stages and at the end of the task;
:func:`drop_file_pages` lets the tasks that read memory-mapped products band by band release the
pages they have read. Handing back after each preview and keyword task as well was measured and
not kept (one run each, side by side, load 12-17; that tree's first run: peak 1.90 GiB vs
1.54 GiB without, 1.01 M vs 0.55 M page faults).

Where: :func:`keep_freed_memory` is called by the ``hapdask svm``, ``mvm`` and ``drizzle``
commands (``hapdask.cli.svm``, ``.mvm``, ``.drizzle``) before they start their threads (mvm,
108-tile demo, one run each, load 11-18: system time 16.9 -> 8.8 s, minor faults 1.11 M ->
0.23 M, peak RSS 1157 -> 1096 MB); a local Dask cluster that the command starts gets the same
setting through :func:`worker_environ` (glibc reads these variables when a process starts, so
the workers are spawned with them; ``hapdask.scheduling``; MALLOC_* variables already set in the
environment win, as Dask's own rule for them). Importing hapdask changes nothing: a
library user's process keeps its allocator unless it calls :func:`keep_freed_memory` itself.
glibc only: elsewhere (musl, macOS) nothing changes and :func:`keep_freed_memory` returns False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import sys

import numpy as np

__all__ = ["TRIM_THRESHOLD", "drop_file_pages", "drop_map_pages", "give_back_free_memory",
           "keep_freed_memory", "is_active", "release_free_memory", "worker_environ"]

#: free memory (bytes) at the top of the heap that is kept before it is given back to the OS
TRIM_THRESHOLD = 1 << 30

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

_active = False


def _settings() -> dict[int, int]:
    return {_M_ARENA_MAX: 1, _M_MMAP_MAX: 0, _M_TRIM_THRESHOLD: TRIM_THRESHOLD}


def keep_freed_memory() -> bool:
    """Make this process's glibc malloc keep and reuse freed memory (module docstring).

    Call it early, before the threads that allocate start: a thread that has already allocated
    keeps its arena. Returns True when the setting is in force (glibc, every ``mallopt`` call
    accepted), False otherwise (nothing changed where ``mallopt`` is missing).
    """
    global _active
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = all(mallopt(param, value) == 1 for param, value in _settings().items())
    _active = _active or ok
    return ok


def _libc_trim():
    """glibc's ``malloc_trim`` (None elsewhere)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_MALLOC_TRIM = _libc_trim()


def _libc_madvise():
    """libc's ``madvise`` (None where there is none, or no ``MADV_DONTNEED``)."""
    if not hasattr(mmap, "MADV_DONTNEED"):
        return None
    name = ctypes.util.find_library("c")
    try:
        fn = ctypes.CDLL(name, use_errno=True).madvise if name else None
    except (OSError, AttributeError):
        return None
    if fn is not None:
        fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        fn.restype = ctypes.c_int
    return fn


_MADVISE = _libc_madvise()


def drop_map_pages(mm: mmap.mmap, view: np.ndarray, offset: int, start: int, length: int
                   ) -> None:
    """Release the pages of the bytes ``start:start + length`` of the memory map ``mm``
    (``start`` page-aligned) from the process's resident memory (Linux ``MADV_DONTNEED``)
    without holding the GIL: libc's ``madvise`` through ctypes (a foreign call releases the
    GIL), where ``mmap.madvise`` holds it for the whole call. Dropping a chip region's pages
    costs ~2 ms per 32 MiB, more with the other core busy; the ``hapdask drizzle`` bench child
    makes ~630 such calls (:meth:`hapdask.io._cache.FitsHandle.read_raw`), 1.5 s in all at
    load 12 (~0.4 s quiet), during which the other task thread could run no Python.

    ``view`` is a live array on ``mm`` whose data start at byte ``offset`` of the map: it
    gives the map's address and keeps the map from being closed during the call. Elsewhere
    (no libc ``madvise``) ``mmap.madvise`` does it.

    Raises
    ------
    OSError
        If the kernel refuses (e.g. ``start`` not page-aligned).
    """
    if _MADVISE is None:
        mm.madvise(mmap.MADV_DONTNEED, start, length)
        return
    base = view.__array_interface__["data"][0] - offset
    if _MADVISE(base + start, length, mmap.MADV_DONTNEED) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"madvise: {os.strerror(err)}")


def release_free_memory() -> None:
    """Give the allocator's free heap memory back to the system (glibc ``malloc_trim(0)``),
    unless :func:`keep_freed_memory` is in force (elsewhere: nothing).

    The banded catalog steps allocate and free many arrays of a few 10 MB; with glibc's
    default settings the freed memory stays in its heaps (its mmap threshold rises to the
    largest freed block), ~0.1 GB of resident memory that later whole-image arrays cannot
    reuse, so they call this between stages. A process that chose to keep freed memory for
    reuse (``hapdask svm``) keeps it: trimming would make the next arrays page-fault fresh
    zero pages again. The values computed are not affected either way.
    """
    if _MALLOC_TRIM is not None and not _active:
        _MALLOC_TRIM(0)


def give_back_free_memory() -> None:
    """Give the allocator's free heap memory back to the system now (glibc ``malloc_trim(0)``),
    also when :func:`keep_freed_memory` is in force (elsewhere: nothing).

    For the ends of steps that made and dropped whole-image arrays (the catalog stages, the
    catalog task): with the setting in force their freed blocks otherwise stay resident inside
    the heap, fragmented between the blocks of the tasks running beside them, and add to the
    process's peak (session 21, demo visit: up to 1 GiB of the 1.9 GiB peak was free heap
    memory). ``malloc_trim`` releases the free pages inside the heap as well as its top; the
    next arrays that reuse them page-fault fresh zero pages, so it is called at a few chosen
    points, not in the tasks that churn. The values computed are not affected.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def drop_file_pages(array: np.ndarray) -> bool:
    """Release the pages of ``array``'s file mapping read so far from the process's resident
    memory (Linux ``MADV_DONTNEED``), when ``array`` is a view of an ``mmap`` (astropy's
    ``memmap=True`` data, :func:`numpy.memmap`); they are read again from the file (or the
    page cache) when used. Returns whether there was a mapping to release.

    Why: a task that reads a memory-mapped product band by band (previews, S_REGION, footprint
    keywords) otherwise keeps every page it read resident until the file is closed: up to the
    whole SCI and WHT, ~0.4 GiB for a 6000^2 product, counted in the process's peak beside the
    tasks running with it. Only for arrays the caller reads and never writes: astropy maps
    read-only files copy-on-write, and a page written in place would be lost.
    """
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if base is None or not hasattr(mmap, "MADV_DONTNEED"):
        return False
    try:
        whole = np.frombuffer(base, np.uint8)
    except ValueError:  # closed map
        return False
    drop_map_pages(base, whole, 0, 0, len(base))
    return True


def is_active() -> bool:
    """Whether :func:`keep_freed_memory` took effect in this process."""
    return _active


def worker_environ() -> dict[str, str]:
    """glibc's environment variables for the same setting in processes this one spawns (e.g.
    Dask workers), when it is active here; ``{}`` otherwise."""
    if not _active:
        return {}
    return {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0",
            "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}
