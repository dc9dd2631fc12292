"""``hapdask.scheduling.local_compute(priority=)``: among ready tasks, higher priorities start
first; a priority never changes results or delays a task while a thread is free."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from hapdask.scheduling import local_compute


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
