"""Fixtures shared by the drizzle tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest


def _longest_python_stall(fn: Callable[[], object]) -> tuple[float, float]:
    """Run ``fn`` while another Python thread ticks; return (longest tick gap, call duration).

    A call that holds the GIL stalls the ticking thread for its whole duration; one that releases
    it lets the thread tick every few microseconds (or at worst every OS time slice).
    """
    ticks: list[float] = []
    running = threading.Event()
    stop = threading.Event()

    def counter() -> None:
        running.set()
        while not stop.is_set():
            ticks.append(time.perf_counter())

    thread = threading.Thread(target=counter)
    thread.start()
    running.wait()
    t0 = time.perf_counter()
    fn()
    t1 = time.perf_counter()
    stop.set()
    thread.join()
    during = np.array([t0] + [t for t in ticks if t0 < t < t1] + [t1])
    return float(np.diff(during).max()), t1 - t0


@pytest.fixture
def assert_releases_gil() -> Callable[[Callable[[], object]], None]:
    """Assert that a (warmed-up, numba-compiled) call lets other Python threads run."""

    def check(fn: Callable[[], object]) -> None:
        stall, duration = _longest_python_stall(fn)
        assert stall < 0.5 * duration, f"a Python thread stalled {stall:.3f} s of {duration:.3f} s"

    return check
