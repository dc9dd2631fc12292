"""Where the time of a run goes: a per-stage breakdown from Dask task timings.

One home for ``hapdask mvm --profile``, ``hapdask drizzle --profile`` and ``hapdask svm --profile``
(and for Python users)::

    from hapdask.profile import Profile

    with Profile(report="dask-report.html") as prof:   # report: distributed only
        hapdask.mvm.run(...)
    print(prof.report())

How it measures
---------------
* Every Dask compute of the run goes through the scheduler helper of
  :mod:`hapdask.mvm.runner`, which, while a :class:`Profile` is active, wraps each task of the
  graph in :func:`run_task`: the task's start and end (wall clock, in the thread that runs it)
  and its *stage* (from the key name: analyze, align, sky, static, median, driz_cr, drizzle,
  write; SVM's keywords, catalogs, preview) are recorded. This works the same on the local
  threaded scheduler and on ``distributed`` workers (their records are collected with
  ``Client.run`` after each compute).
* Inside tasks, :func:`timed` splits a stage into operations (``read``, ``pixmap``, ``kernel``,
  ``finalize`` of a drizzle tile; ``fits``, ``zarr``, ``stats`` of a write task). It costs one
  thread-local lookup when no profile is active.
* Scheduler overhead: thread-time during which a worker thread was free while a task whose
  inputs were all computed had not started yet, plus the hand-back after the last task (all
  threads). Idle thread-time for any other reason (waiting on dependencies, the critical path,
  imbalance) is reported separately. On ``distributed``, the task stream adds the time spent
  moving data between workers, and Dask's ``performance_report`` is saved to ``report``.
* Client: wall time outside the Dask computes (planning, headers, finalizing), split by
  :func:`step` where the caller marks its steps. A compute run *beside the client* (``hapdask
  drizzle`` computes the static masks and sky levels on the planning pool while the chips are
  placed) has its tasks in the stages, but neither its wall time in the computes' nor
  occupancy figures: its pool's threads were busy with the client's placements, not free.

Times of tasks are thread-seconds: with 2 threads, 10 s of wall time hold up to 20 s of task
time. ``total task time + scheduler overhead + idle = threads x wall of the computes``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["ComputeRecord", "Profile", "StageRow", "TaskSpan", "active", "classify", "run_task",
           "step", "timed"]

#: Stages in report order, with the key-name tokens that mark them (first match wins).
STAGE_TOKENS: tuple[tuple[str, frozenset[str]], ...] = (
    ("write", frozenset({"write", "header", "done"})),
    ("analyze", frozenset({"analyze"})),
    ("align", frozenset({"align"})),
    ("static", frozenset({"static"})),
    ("sky", frozenset({"sky"})),
    ("median", frozenset({"median", "wsum", "wmean", "noise", "sep"})),
    ("driz_cr", frozenset({"cr", "crmask", "dq"})),
    ("drizzle", frozenset({"tile"})),
    ("keywords", frozenset({"keywords", "headerlets"})),
    ("catalogs", frozenset({"catalogs"})),
    ("preview", frozenset({"preview", "color"})),
)
STAGES = tuple(name for name, _ in STAGE_TOKENS) + ("other",)

_LOCAL = threading.local()
_LOCK = threading.Lock()
_SPANS: list[TaskSpan] = []          # this process's finished task spans (drained per compute)
_OPS: dict[tuple[str, str], list] = {}  # (stage, operation) -> [thread-s, calls, CPU s]
_ACTIVE: Profile | None = None


@dataclass(frozen=True)
class TaskSpan:
    """One task's run: key (as text), stage, start and end (``time.time()``), thread, and the
    CPU time of its thread (``time.thread_time``: robust on a busy machine)."""

    key: str
    stage: str
    start: float
    end: float
    thread: tuple[int, int]  # (process id, thread id)
    cpu: float = 0.0


def classify(key) -> str:
    """Stage of a task from its key name (see :data:`STAGE_TOKENS`); ``other`` if none.

    >>> classify(("mvm-f160w-3fa2-tile", 0, 1)), classify(("drz-sky-3fa2-static-part", 2))
    ('drizzle', 'static')
    """
    name = key[0] if isinstance(key, tuple) and key else key
    tokens = set(str(name).split("-"))
    for stage, marks in STAGE_TOKENS:
        if tokens & marks:
            return stage
    return "other"


class _Tag:
    """What :func:`run_task` gets besides the task: its key and stage. A plain object (not a
    tuple, string or dataclass), so Dask passes it through untouched."""

    __slots__ = ("key", "stage")

    def __init__(self, key: str, stage: str) -> None:
        self.key = key
        self.stage = stage

    def __reduce__(self):
        return (_Tag, (self.key, self.stage))


def run_task(tag: _Tag, func: Callable, *args):
    """Run one task of a profiled graph: time it and make its stage current for :func:`timed`."""
    prev = getattr(_LOCAL, "stage", None)
    _LOCAL.stage = tag.stage
    start = time.time()
    p0 = time.perf_counter()
    c0 = time.thread_time()
    try:
        return func(*args)
    finally:
        cpu = time.thread_time() - c0
        end = start + (time.perf_counter() - p0)
        _LOCAL.stage = prev
        span = TaskSpan(tag.key, tag.stage, start, end, (os.getpid(), threading.get_ident()),
                        cpu)
        with _LOCK:
            _SPANS.append(span)


class _Timer:
    __slots__ = ("c0", "name", "stage", "t0")

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> _Timer:
        self.stage = getattr(_LOCAL, "stage", None)
        if self.stage is not None:
            self.t0 = time.perf_counter()
            self.c0 = time.thread_time()
        return self

    def __exit__(self, *exc) -> bool:
        if self.stage is not None:
            dt = time.perf_counter() - self.t0
            dc = time.thread_time() - self.c0
            with _LOCK:
                acc = _OPS.setdefault((self.stage, self.name), [0.0, 0, 0.0])
                acc[0] += dt
                acc[1] += 1
                acc[2] += dc
        return False


def timed(operation: str) -> _Timer:
    """Context manager timing one operation (``read``, ``pixmap``, ``kernel``, ...) of the task
    running in this thread; records only inside a profiled task, otherwise a no-op."""
    return _Timer(operation)


def drain(keys: Container[str] | None = None
          ) -> tuple[list[TaskSpan], dict[tuple[str, str], list]]:
    """Take (and clear) this process's task spans and operation times. Called in-process for
    local threads and through ``Client.run`` on distributed workers. ``keys`` (task keys as
    text): take only the spans of these tasks and leave the others (a compute running beside
    another one in the same process takes its own)."""
    with _LOCK:
        if keys is None:
            spans = list(_SPANS)
            _SPANS.clear()
        else:
            spans = [s for s in _SPANS if s.key in keys]
            _SPANS[:] = [s for s in _SPANS if s.key not in keys]
        ops = {k: list(v) for k, v in _OPS.items()}
        _OPS.clear()
    return spans, ops


def _merge_ops(into: dict, ops: Mapping) -> None:
    for k, (sec, n, cpu) in ops.items():
        acc = into.setdefault(tuple(k), [0.0, 0, 0.0])
        acc[0] += sec
        acc[1] += n
        acc[2] += cpu


def active() -> Profile | None:
    """The profile recording in this process, if any."""
    return _ACTIVE


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Time a client-side step (planning, headers, ...) of the active profile (else no-op)."""
    prof = _ACTIVE
    t0 = time.perf_counter()
    try:
        yield
    finally:
        if prof is not None:
            prof.steps[name] = prof.steps.get(name, 0.0) + time.perf_counter() - t0


@dataclass
class ComputeRecord:
    """One Dask compute of a profiled run."""

    start: float
    end: float
    slots: int                      # worker threads available
    spans: list[TaskSpan]
    ready: dict[str, float]         # key -> when its inputs were all computed
    transfer: float = 0.0           # distributed: seconds moving data between workers
    beside_client: bool = False     # ran on a pool shared with the client's own work

    @property
    def wall(self) -> float:
        return self.end - self.start

    def occupancy(self) -> tuple[float, float]:
        """``(scheduler overhead, other idle)`` thread-seconds (see the module docstring);
        ``(0, 0)`` for a compute beside the client (its threads' other work is not seen)."""
        if self.beside_client:
            return 0.0, 0.0
        events: list[tuple[float, int, int]] = []  # (time, d_ready, d_running)
        last_end = self.start
        for s in self.spans:
            r = min(max(self.ready.get(s.key, self.start), self.start), s.start)
            events += [(r, 1, 0), (s.start, -1, 1), (s.end, 0, -1)]
            last_end = max(last_end, s.end)
        events.sort()
        overhead = 0.0
        ready = running = 0
        t_prev = self.start
        for t, d_ready, d_running in events:
            if t > t_prev:
                overhead += min(max(self.slots - running, 0), ready) * (t - t_prev)
                t_prev = t
            ready += d_ready
            running += d_running
        overhead += self.slots * max(self.end - last_end, 0.0)
        busy = sum(s.end - s.start for s in self.spans)
        idle = max(self.slots * self.wall - busy - overhead, 0.0)
        return overhead, idle


@dataclass
class StageRow:
    """One line of the breakdown: a stage (``depth`` 0) or an operation inside it (1);
    ``seconds`` of thread (wall) time, ``cpu`` seconds of thread CPU time."""

    name: str
    seconds: float
    cpu: float
    tasks: int
    depth: int = 0


@dataclass
class Profile:
    """Records every Dask compute run while it is active (``with Profile(): ...``).

    Parameters
    ----------
    report : path, optional
        Where a distributed run saves Dask's ``performance_report`` (HTML).
    """

    report_path: str | os.PathLike | None = None
    computes: list[ComputeRecord] = field(default_factory=list)
    ops: dict[tuple[str, str], list] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)
    scheduler: str = "local threads"
    start: float = 0.0
    end: float = 0.0
    report_saved: str | None = None

    def __enter__(self) -> Profile:
        global _ACTIVE
        if _ACTIVE is not None:
            raise RuntimeError("a hapdask profile is already recording in this process")
        drain()  # forget spans of earlier, unprofiled work
        self.start = time.time()
        _ACTIVE = self
        return self

    def __exit__(self, *exc) -> bool:
        global _ACTIVE
        self.end = time.time()
        _ACTIVE = None
        return False

    # -- recording (called by the scheduler helper) -------------------------------------------
    @staticmethod
    def wrap(graph: Mapping) -> dict:
        """``graph`` with every task run through :func:`run_task` (values that are not tasks,
        e.g. chips or results put into the graph, are kept as they are)."""
        from dask.core import istask

        out = {}
        for key, value in graph.items():
            if istask(value):
                out[key] = (run_task, _Tag(str(key), classify(key)), *value)
            else:
                out[key] = value
        return out

    def record(self, graph: Mapping, start: float, end: float, slots: int,
               spans: Sequence[TaskSpan], ops: Mapping, transfer: float = 0.0,
               beside_client: bool = False) -> None:
        """Add one compute: its graph (for dependencies), wall clock, threads, spans, ops
        (``beside_client``: it shared its threads with the client's work)."""
        from dask.core import get_deps

        deps, _ = get_deps(dict(graph))
        end_of = {s.key: s.end for s in spans}
        ready = {}
        for key, ds in deps.items():
            k = str(key)
            ready[k] = max((end_of.get(str(d), start) for d in ds), default=start)
        self.computes.append(ComputeRecord(start, end, int(slots), list(spans), ready,
                                           float(transfer), bool(beside_client)))
        _merge_ops(self.ops, ops)

    # -- results --------------------------------------------------------------------------------
    def stages(self) -> list[StageRow]:
        """Per stage (task thread-seconds, CPU seconds, task count), each followed by its
        operations and the rest of the stage; stages without tasks are left out."""
        sec: dict[str, list] = {}
        for c in self.computes:
            for s in c.spans:
                acc = sec.setdefault(s.stage, [0.0, 0.0, 0])
                acc[0] += s.end - s.start
                acc[1] += s.cpu
                acc[2] += 1
        rows = []
        for stage in STAGES:
            if stage not in sec:
                continue
            wall, cpu, n = sec[stage]
            rows.append(StageRow(stage, wall, cpu, n))
            ops = sorted((k[1], v) for k, v in self.ops.items() if k[0] == stage)
            if ops:
                for name, (t, calls, c) in ops:
                    rows.append(StageRow(name, t, c, calls, 1))
                rows.append(StageRow("(rest)", max(wall - sum(v[0] for _, v in ops), 0.0),
                                     max(cpu - sum(v[2] for _, v in ops), 0.0), 0, 1))
        return rows

    def totals(self) -> dict[str, float]:
        """Headline figures (seconds): ``wall``, ``compute_wall``, ``client``, ``task``
        (thread time in tasks), ``cpu`` (their CPU time), ``overhead``, ``idle``,
        ``transfer``, ``slots`` (largest thread count), ``beside`` (thread time of the tasks
        computed beside the client, part of ``task``)."""
        task = sum(s.end - s.start for c in self.computes for s in c.spans)
        cpu = sum(s.cpu for c in self.computes for s in c.spans)
        over = idle = 0.0
        for c in self.computes:
            o, i = c.occupancy()
            over += o
            idle += i
        compute_wall = sum(c.wall for c in self.computes if not c.beside_client)
        beside = sum(s.end - s.start for c in self.computes if c.beside_client
                     for s in c.spans)
        wall = (self.end or time.time()) - self.start
        return {"wall": wall, "compute_wall": compute_wall,
                "client": max(wall - compute_wall, 0.0), "task": task, "cpu": cpu,
                "overhead": over,
                "idle": idle, "transfer": sum(c.transfer for c in self.computes),
                "beside": beside,
                "slots": max((c.slots for c in self.computes), default=0)}

    def report(self) -> str:
        """The breakdown as text (what ``--profile`` prints)."""
        t = self.totals()
        task = t["task"] or 1e-12
        ntasks = sum(len(c.spans) for c in self.computes)
        ncomp = sum(not c.beside_client for c in self.computes)
        lines = [f"profile: wall {t['wall']:.2f} s = Dask computes {t['compute_wall']:.2f} s "
                 f"({ncomp} compute(s), {ntasks} tasks, {self.scheduler}, "
                 f"{t['slots']} thread(s)) + client {t['client']:.2f} s",
                 f"  {'stage':<22}{'thread-s':>10}{'% tasks':>9}{'CPU s':>9}{'tasks':>7}"]
        for r in self.stages():
            name = ("  " * r.depth + r.name)[:22]
            n = f"{r.tasks:>7d}" if r.tasks else ""
            lines.append(f"  {name:<22}{r.seconds:>10.2f}{100 * r.seconds / task:>8.1f}%"
                         f"{r.cpu:>9.2f}{n}")
        lines.append(f"  {'total task time':<22}{t['task']:>10.2f}{100.0:>8.1f}%"
                     f"{t['cpu']:>9.2f}{ntasks:>7d}")
        lines.append(f"  {'scheduler overhead':<22}{t['overhead']:>10.2f}"
                     f"{100 * t['overhead'] / task:>8.1f}%   (free thread + ready task; "
                     "hand-back)")
        lines.append(f"  {'idle (dependencies)':<22}{t['idle']:>10.2f}"
                     f"{100 * t['idle'] / task:>8.1f}%   (critical path, imbalance)")
        if t["beside"]:
            lines.append(f"  {'beside the client':<22}{t['beside']:>10.2f}"
                         f"{100 * t['beside'] / task:>8.1f}%   (tasks above computed beside the "
                         "client's work: drizzle's static/sky, mvm's analyze)")
        if t["transfer"]:
            lines.append(f"  {'transfer (workers)':<22}{t['transfer']:>10.2f}"
                         f"{100 * t['transfer'] / task:>8.1f}%   (task stream; not in tasks)")
        client = t["client"]
        if self.steps or client:
            parts = [f"{k} {v:.2f} s" for k, v in self.steps.items()]
            rest = client - sum(self.steps.values())
            parts.append(f"other {max(rest, 0.0):.2f} s")
            lines.append(f"  client (outside computes, wall): {', '.join(parts)}")
        if self.report_saved:
            lines.append(f"  Dask performance report: {self.report_saved}")
        return "\n".join(lines)


# -- used by the scheduler helper ------------------------------------------------------------
def profiled_local(prof: Profile, get: Callable, graph: Mapping, keys, nthreads: int, *,
                   beside_client: bool = False, **kw):
    """Run ``get(graph, keys, **kw)`` (Dask's threaded scheduler) with every task timed
    (``beside_client``: on threads the client's own work shares, :class:`ComputeRecord`)."""
    prof.scheduler = "local threads"
    wrapped = prof.wrap(graph)
    mine = {str(k) for k in wrapped}  # another compute may run beside this one
    drain(mine)
    start = time.time()
    try:
        return get(wrapped, keys, num_workers=nthreads, **kw)
    finally:
        end = time.time()
        spans, ops = drain(mine)
        prof.record(graph, start, end, nthreads, spans, ops, beside_client=beside_client)


def profiled_distributed(prof: Profile, client, graph: Mapping, keys, run: Callable):
    """Run ``run(wrapped graph, keys)`` on a distributed client with every task timed; the task
    spans come back from the workers with ``Client.run``, data transfers from the task stream."""
    from distributed import get_task_stream

    prof.scheduler = "distributed"
    wrapped = prof.wrap(graph)
    client.run(drain)
    start = time.time()
    try:
        with get_task_stream(client) as ts:
            return run(wrapped, keys)
    finally:
        end = time.time()
        spans: list[TaskSpan] = []
        ops: dict = {}
        for s, o in client.run(drain).values():
            spans += s
            _merge_ops(ops, o)
        transfer = sum(ss["stop"] - ss["start"] for t in ts.data
                       for ss in t.get("startstops", ()) if ss.get("action") == "transfer")
        slots = sum(client.nthreads().values())
        prof.record(graph, start, end, slots, spans, ops, transfer)
