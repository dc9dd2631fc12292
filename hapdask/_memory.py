"""Process-wide allocator setting of hapdask's command-line runs: keep freed memory for reuse.

Why: the pipeline's tasks make and drop many large numpy arrays (tiles, stacks, masks, product
bands of 10-300 MB). glibc's malloc serves every block above its mmap threshold (at most 32 MiB)
with a fresh ``mmap`` and gives it back with ``munmap`` when it is freed; threads other than the
main one get arenas whose heaps are at most 64 MiB, so their larger blocks are mmapped whatever
the threshold. Each new array therefore page-faults fresh pages that the kernel must zero: in a
``hapdask svm`` run of the demo's 4-exposure ACS/WFC visit that was ~0.8 million page faults and
~30 s of system time (``perf``: mostly ``clear_page``), a fifth of the run's CPU time.

What: one arena for all threads (``M_ARENA_MAX`` 1), no mmapped blocks (``M_MMAP_MAX`` 0: every
block comes from the main heap, grown with ``brk``), and the heap's free top returned to the OS
only beyond :data:`TRIM_THRESHOLD` (``M_TRIM_THRESHOLD``). Freed arrays are then reused by the
next ones without new page faults. The cost is the heap's fragmentation: the peak RSS can exceed
the peak of live memory (measured for ``hapdask svm`` on the demo visit: +6 %), and memory freed
inside the heap stays resident until the process ends. The one arena is shared by the threads
under a lock; numpy allocates large blocks rarely, so the contention is negligible (Python's own
small objects come from its ``pymalloc`` pools).

Where: :func:`keep_freed_memory` is called by the ``hapdask svm`` command (``hapdask.cli.svm``)
before it starts its threads; a local Dask cluster that the command starts gets the same setting
through :func:`worker_environ` (glibc reads these variables when a process starts, so the
workers are spawned with them; ``hapdask.scheduling``). Importing hapdask changes nothing: a
library user's process keeps its allocator unless it calls :func:`keep_freed_memory` itself.
Other C libraries (glibc only; no effect and ``False`` elsewhere, e.g. musl or macOS).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["TRIM_THRESHOLD", "keep_freed_memory", "is_active", "worker_environ"]

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
