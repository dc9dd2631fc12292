"""Scratch files of one mosaic run: cached pixel maps, separate-drizzle stacks and sums.

AstroDrizzle keeps its singly-drizzled images and masks as intermediate files; the engine does
the same with three kinds of arrays that would otherwise be recomputed or held in memory:

* the **pixel map** of every chip on an output grid (computed once while planning, where the
  per-tile input boxes need it anyway) — the separate drizzle, blot and final drizzle tasks
  read the region they need instead of recomputing it;
* the **separate-drizzle stack** of every median tile — written by the one separate-drizzle
  pass (which also yields the weight statistics of ``combine_maskpt``) and read back by the
  median task once the whole grid's mean weights are known;
* the **separate-drizzle sums** of every tile (all exposures' float64 num/den and context),
  when the final drizzle is the separate one but for the cosmic rays: the final tile task
  subtracts the cosmic-ray pixels from them instead of drizzling every pixel again.

Files are ``.npy`` (read with a memory map, so a task touches only the rows of its region),
written under a temporary name and renamed when complete (a retried task rewrites the same
bytes). The directory lives beside the output (workers of a cluster must see it, as they see
the output file) and is removed when the run ends.

A run that is killed cannot remove its directory. Each directory therefore records its owner
(:data:`OWNER_FILE`: host, process id and the process's start time); :func:`remove_stale`,
called when a new run creates its scratch, deletes the directories of owners that are dead on
this host, and only those: a directory of a live process, of another host, without a
readable owner record, or holding anything but scratch files is left alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["OWNER_FILE", "Scratch", "load_array", "remove_stale"]

Box = tuple[int, int, int, int]

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

    def save(self, name: str, array: np.ndarray) -> str:
        """Write ``array`` as ``name`` (temporary name, then renamed); returns its path."""
        final = self.path(name)
        fd, tmp = tempfile.mkstemp(prefix=".part-", suffix=".npy", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
            os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return final

    def remove(self) -> None:
        """Delete the directory and everything in it."""
        shutil.rmtree(self.directory, ignore_errors=True)


def load_array(path: str, region: Box | None = None, out: np.ndarray | None = None
               ) -> np.ndarray:
    """Read a scratch array, or the ``(y0, y1, x0, x1)`` region (0-based, half-open) of its
    first two axes, into a new array (or into ``out``, a C-contiguous array of the region's
    shape and the file's dtype, e.g. a buffer a task reuses; returned).

    A region is read row by row (positional reads of just its bytes), so the task's memory is
    the region, not the whole rows of a memory map.
    """
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(fh)
        if fortran:
            raise ValueError(f"{path}: Fortran-ordered scratch arrays are not supported")
        offset = fh.tell()
        if region is None:
            y0, y1, x0, x1 = 0, shape[0], 0, shape[1] if len(shape) > 1 else 0
        else:
            y0, y1, x0, x1 = region
        if len(shape) < 2 or not (0 <= y0 < y1 <= shape[0] and 0 <= x0 < x1 <= shape[1]):
            raise ValueError(f"{path}: region {region} is outside the array of shape "
                             f"{shape[:2]}")
        inner = int(np.prod(shape[2:], dtype=np.int64)) * dtype.itemsize
        row = shape[1] * inner
        want = (y1 - y0, x1 - x0, *shape[2:])
        if out is None:
            out = np.empty(want, dtype)
        elif out.shape != want or out.dtype != dtype or not out.flags.c_contiguous:
            raise ValueError(f"{path}: out must be a C-contiguous {dtype} array of shape "
                             f"{want}, got {out.dtype} {out.shape}")
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
