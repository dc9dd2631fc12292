"""One run at a time per output directory and SkyCell: a lock file holding the run's identity.

``<output>/.hapdask-<key>.lock`` (``key``: the SkyCell, whose products are the only files a run
writes; ``.hapdask.lock`` without a key) holds ``host pid start-time command`` of the run that
owns them, so runs of different SkyCells may share a directory, two runs of one never do.

It is taken with an exclusive, non-blocking ``flock`` on the open file, so the kernel
releases it when the owning process ends in any way (even ``SIGKILL``); a lock file left behind
by a dead run is therefore *stale* and taken over (the old identity is reported). Where
``flock`` is not available the lock falls back to the recorded pid: on the same host a lock
whose pid no longer exists is stale.

A second run into a locked directory fails at once with :class:`OutputLocked`, naming the
owner; two runs never write the same products.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

__all__ = ["LOCK_NAME", "OutputLock", "OutputLocked", "lock_name", "lock_owner"]

LOCK_NAME = ".hapdask.lock"
_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class OutputLocked(OSError):
    """Another live run holds the output directory."""


def _identity() -> dict[str, object]:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "start": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": " ".join(sys.argv)[:300]}


def _describe(owner: dict) -> str:
    return (f"host {owner.get('host', '?')}, pid {owner.get('pid', '?')}, started "
            f"{owner.get('start', '?')} ({owner.get('command', '')})")


def lock_name(key: str | None = None) -> str:
    """File name of the lock of ``key`` (a plain name such as a SkyCell)."""
    if key is None:
        return LOCK_NAME
    if not key or not all(ch.isalnum() or ch in "-_" for ch in key):
        raise ValueError(f"lock key {ascii(key)}: only letters, digits, '-' and '_'")
    return f".hapdask-{key}.lock"


def lock_owner(outdir: str | os.PathLike, key: str | None = None) -> dict | None:
    """The identity recorded in the lock file of ``outdir`` (None when there is none)."""
    try:
        with open(Path(outdir) / lock_name(key), encoding="utf-8") as fh:
            return json.loads(fh.read() or "{}")
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    """Context manager holding the lock of an output directory (created if missing).

    Parameters
    ----------
    outdir : path
        The output directory.
    key : str, optional
        What in the directory is locked (the SkyCell name); None locks the whole directory.
    log : callable, optional
        Receives a note when a stale lock is taken over.

    Raises
    ------
    OutputLocked
        When another live run holds the directory (the message names it).
    """

    def __init__(self, outdir: str | os.PathLike, key: str | None = None, log=None) -> None:
        self.outdir = Path(outdir)
        self.key = key
        self.path = self.outdir / lock_name(key)
        self.log = log
        self._fd: int | None = None
        self._created = False

    def acquire(self) -> OutputLock:
        """Take the lock (see the class docstring)."""
        self._created = not self.outdir.exists()
        self.outdir.mkdir(parents=True, exist_ok=True)
        for _ in range(10):
            fd = os.open(self.path, _FLAGS, 0o644)
            try:
                owner = self._try_lock(fd)
            except BaseException:
                os.close(fd)
                raise
            if owner is not None:
                os.close(fd)
                what = f" for {self.key}" if self.key else ""
                raise OutputLocked(f"{self.outdir}: output directory is in use{what} by another "
                                   f"hapdask run ({_describe(owner)}); wait for it to finish or "
                                   "choose another --output")
            # the file may have been unlinked by its previous owner between open and lock
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path, follow_symlinks=False).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            old = lock_owner(self.outdir, self.key)
            if old and self.log is not None:
                self.log(f"taking over a stale lock of {self.outdir} ({_describe(old)}: no "
                         "longer running)")
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(_identity()).encode(), 0)
            self._fd = fd
            return self
        raise OutputLocked(f"{self.outdir}: could not take the output directory lock")

    def _try_lock(self, fd: int) -> dict | None:
        """Lock ``fd``; None on success, else the owner's identity."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return None
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return lock_owner(self.outdir, self.key) or {}
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
        # no flock on this file system: the recorded pid decides
        owner = lock_owner(self.outdir, self.key)
        if owner and owner.get("pid") != os.getpid():
            local = owner.get("host") == socket.gethostname()
            if not local or _pid_alive(int(owner.get("pid", 0))):
                return owner
        return None

    def release(self) -> None:
        """Remove the lock file and release the lock."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None
        if self._created:  # a directory made for a run that wrote nothing goes again
            with contextlib.suppress(OSError):
                self.outdir.rmdir()

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
