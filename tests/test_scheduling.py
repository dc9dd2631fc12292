"""``hapdask.scheduling.local_compute(priority=)``: among ready tasks, higher priorities start
first; a priority never changes results or delays a task while a thread is free.
``local_compute(spare=)``: a task waiting in :func:`~hapdask.scheduling.waiting` hands its core
to another task; never more than ``nthreads`` tasks compute at once.
``local_compute(prefetch=)``: the next ready task with a prefetch gets it called before it
starts, once, one ahead of the tasks started."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hapdask.scheduling import local_compute, waiting


def _graph(log: list) -> tuple[dict, list]:
    lock = threading.Lock()

    def run(label, *_deps):
        name = label.removeprefix("task ")  # a label, not a key of the graph
        with lock:
            log.append(name)
        return name

    graph = {"root": (run, "task root")}
    for i in range(6):  # released together when root finishes
        graph[f"w{i}"] = (run, f"task w{i}", "root")
    for i in range(4):  # ready from the start
        graph[f"s{i}"] = (run, f"task s{i}")
    graph["end"] = (run, "task end", *[k for k in graph if k != "root"])
    return graph, ["end"]


def test_priority_starts_ready_tasks_first():
    plain: list = []
    graph, keys = _graph(plain)
    assert local_compute(graph, keys, nthreads=1) == ("end",)
    # what Dask's own order starts last among the released tasks and the initial ones
    late_w = [n for n in plain if n.startswith("w")][-1]
    late_s = [n for n in plain if n.startswith("s")][-1]
    got: list = []
    graph, keys = _graph(got)
    assert local_compute(graph, keys, nthreads=1,
                         priority={late_w: 2, late_s: 1}) == ("end",)
    assert sorted(got) == sorted(plain)
    # the initial ready tasks: the prioritised one first (root has priority 0 like the rest)
    assert got.index(late_s) < min(got.index(n) for n in got if n.startswith("s")
                                   and n != late_s)
    # released by root: the prioritised one first, before any other ready task
    assert got.index(late_w) == got.index("root") + 1
    assert plain.index(late_w) != plain.index("root") + 1
    # tasks of equal priority keep Dask's order
    rest = [n for n in got if n not in (late_w, late_s)]
    assert [n for n in rest if n[0] == "w"] == [n for n in plain if n[0] == "w" and n != late_w]


@pytest.mark.parametrize("first", [None, "w2"])
def test_prefetch_called_for_the_next_task_once(first):
    plain: list = []
    graph, keys = _graph(plain)
    local_compute(graph, keys, nthreads=1)
    got: list = []
    graph, keys = _graph(got)
    lock = threading.Lock()

    def prefetch(name):
        def call():
            with lock:
                got.append("pf " + name)
        return call

    prefetch_of = {f"w{i}": prefetch(f"w{i}") for i in range(6)}
    priority = {first: 1} if first else None
    assert local_compute(graph, keys, nthreads=1, priority=priority,
                         prefetch=prefetch_of) == ("end",)
    runs = [n for n in got if not n.startswith("pf ")]
    if first is None:
        assert runs == plain  # a prefetch changes no order
    else:
        assert runs[runs.index("root") + 1] == first
    w_runs = [n for n in runs if n[0] == "w"]
    calls = [n.removeprefix("pf ") for n in got if n.startswith("pf ")]
    # each once, in the order the tasks start, each before its task
    assert calls == w_runs
    for name in w_runs:
        assert got.index("pf " + name) < got.index(name)
    # one ahead: when a prefetch is called, at most one earlier prefetched task has not run
    for k, name in enumerate(got):
        if name.startswith("pf "):
            started = sum(1 for n in got[:k] if n[0] == "w")
            assert k and sum(1 for n in got[:k] if n.startswith("pf ")) - started <= 1


class _Cores:
    """Counts the tasks computing at once (outside :func:`waiting`)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.most = 0

    @contextlib.contextmanager
    def computing(self):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            yield
        finally:
            with self.lock:
                self.now -= 1


def _waiting_graph(cores: _Cores, resume: bool, timeout: float = 10.0
                   ) -> tuple[dict, list, threading.Event]:
    """``waiter`` waits (in :func:`waiting`) for an event that only ``setter``, a task ready
    at the same time, sets; ``busy`` tasks compute meanwhile."""
    event = threading.Event()

    def waiter():
        with cores.computing():
            pass
        with waiting(resume=resume):
            got = event.wait(timeout)
        if resume:
            with cores.computing():
                time.sleep(0.01)
        return got

    def setter():
        with cores.computing():
            time.sleep(0.05)
        event.set()
        return True

    def busy(i):
        with cores.computing():
            time.sleep(0.02)
        return i

    graph = {"waiter": (waiter,), "setter": (setter,)}
    graph.update({f"busy{i}": (busy, i) for i in range(6)})
    return graph, ["waiter", "setter", *[f"busy{i}" for i in range(6)]], event


@pytest.mark.parametrize("resume", [True, False])
def test_spare_thread_runs_a_task_while_another_waits(resume):
    cores = _Cores()
    graph, keys, _ = _waiting_graph(cores, resume)
    # one core: without the spare thread, the waiter would wait for a task that cannot start
    # (event.wait times out); with it, the setter computes while the waiter waits
    got = local_compute(graph, keys, nthreads=1, spare=1,
                        priority={"waiter": 2, "setter": 0, **{f"busy{i}": 1 for i in range(6)}})
    assert got == (True, True, *range(6))
    assert cores.most == 1  # never two tasks computing at once on one core
    cores = _Cores()
    graph, keys, _ = _waiting_graph(cores, resume)
    assert local_compute(graph, keys, nthreads=2, spare=1)[:2] == (True, True)
    assert cores.most <= 2


def test_waiting_without_a_spare_thread_changes_nothing():
    with waiting():  # outside a compute: nothing held, nothing given back
        pass
    cores = _Cores()
    graph, keys, event = _waiting_graph(cores, True, timeout=0.3)
    # one core, no spare thread: the waiter keeps its thread, the setter starts after it
    got = local_compute(graph, keys, nthreads=1,
                        priority={"waiter": 2, "setter": 0, **{f"busy{i}": 1 for i in range(6)}})
    assert got == (False, True, *range(6))
    assert event.is_set() and cores.most == 1


def test_local_engine_imports_no_remote_machinery():
    """The drizzle engine and the input readers import fsspec (URLs) and asyncio (clusters)
    only when those are used: a local run does not pay for their imports."""
    code = ("import sys\n"
            "import hapdask.io, hapdask.scheduling, hapdask.mosaic.job\n"
            "print(sorted(m for m in ('fsspec', 'asyncio') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
