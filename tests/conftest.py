"""Shared fixtures: where the real HST material of ``../shared/data`` lives; a recorder of
file reads and deletions (the scratch-release tests' oracle)."""

from __future__ import annotations

import builtins
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """Return ``../shared/data`` beside the repository (or ``$HAPDASK_SHARED_DATA``)."""
    env = os.environ.get("HAPDASK_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Directory of the real HST files used as test data; skips if it is not there."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared test data not found at {path}")
    return path


@pytest.fixture
def file_events(monkeypatch) -> Callable[[Callable[[str], bool]], list]:
    """Start recording, through ``monkeypatch``, the reads (``"open"``), deletions
    (``"unlink"``) and completions (``"made"``: ``os.replace`` targets) of the files whose path
    ``selected(path)`` accepts: call the fixture's value with ``selected``; it returns the list
    of ``(time, kind, path)`` it fills (from any thread). ``monkeypatch.undo()`` stops it."""
    events: list = []
    lock = threading.Lock()
    real_open, real_builtin_open = os.open, builtins.open
    real_unlink, real_replace = os.unlink, os.replace

    def start(selected: Callable[[str], bool]) -> list:
        def note(kind, path):
            path = os.fspath(path) if isinstance(path, str | os.PathLike) else ""
            if selected(path):
                with lock:
                    events.append((time.perf_counter(), kind, path))

        def os_open(path, flags, *a, **k):
            if not flags & (os.O_WRONLY | os.O_RDWR):
                note("open", path)
            return real_open(path, flags, *a, **k)

        def builtin_open(path, mode="r", *a, **k):
            if "r" in mode and "+" not in mode:
                note("open", path)
            return real_builtin_open(path, mode, *a, **k)

        def unlink(path, *a, **k):
            note("unlink", path)
            return real_unlink(path, *a, **k)

        def replace(src, dst, *a, **k):
            note("made", dst)
            return real_replace(src, dst, *a, **k)

        monkeypatch.setattr(os, "open", os_open)
        monkeypatch.setattr(builtins, "open", builtin_open)
        monkeypatch.setattr(os, "unlink", unlink)
        monkeypatch.setattr(os, "replace", replace)
        return events

    return start
