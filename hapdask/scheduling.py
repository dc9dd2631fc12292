"""Where a graph runs: local threads, a local cluster of processes or a remote scheduler.

:func:`compute_context` yields a ``compute(graph, keys, progress)`` function for each case; the
MVM runner and the mosaic engine (``hapdask drizzle``) both use it. Nothing heavy is imported
here (``distributed`` only when a cluster is asked for), so a threaded run does not pay for it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask
from dask.callbacks import Callback, normalize_callback
from dask.diagnostics import ProgressBar
from dask.threaded import get

from hapdask import _memory, profile

__all__ = ["SPARE_THREADS", "compute_context", "local_compute", "prefetch_callback",
           "priority_callback", "probe_scheduler", "waiting"]

#: threads of a local compute beyond its cores, for the tasks that wait without their core
#: (:func:`waiting`: direct reads of pixel maps and median stacks, a product's last row
#: writes): ``hapdask svm``'s product compute
SPARE_THREADS = 1


def probe_scheduler(address: str, timeout: float) -> None:
    """Ask a Dask scheduler for its identity within ``timeout`` seconds.

    ``distributed.Client`` waits forever for an endpoint that accepts connections but never
    answers; this bounded round trip (in its own thread and event loop, so it also works
    where a loop is already running, e.g. Jupyter) fails first.

    Raises
    ------
    TimeoutError, OSError
        No answer in time, or the connection failed.
    """
    # distributed and asyncio (~0.1 s of imports) are costly: only for clusters
    import asyncio

    from distributed.comm import connect

    async def probe():
        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            await comm.read()
        finally:
            comm.abort()

    async def bounded():
        await asyncio.wait_for(probe(), timeout)

    pool = ThreadPoolExecutor(1, thread_name_prefix="hapdask-probe")
    try:
        pool.submit(asyncio.run, bounded()).result(timeout + 5.0)
    except TimeoutError:  # asyncio's and concurrent.futures' (both the builtin since 3.11)
        raise TimeoutError(f"no answer from {address} in {timeout:g} s") from None
    finally:
        pool.shutdown(wait=False)


def priority_callback(priority: Mapping) -> Callback:
    """A Dask local-scheduler callback that starts the ready tasks of higher ``priority``
    (``key -> int``, default 0) first.

    Dask's threaded scheduler keeps its ready tasks in a list and starts the last one
    (:func:`dask.order.order`, newest first); after every finished task (and at the start)
    the list is sorted here by priority, stably, so tasks of one priority keep Dask's order.
    A priority only chooses among ready tasks: it never delays one whose inputs are done
    while a thread is free.
    """
    def order_ready(state: dict) -> None:
        ready = state["ready"]
        if len(ready) > 1:
            ready.sort(key=lambda k: priority.get(k, 0))  # the end is started first

    return Callback(start_state=lambda dsk, state: order_ready(state),
                    posttask=lambda key, result, dsk, state, worker: order_ready(state))


def prefetch_callback(prefetch: Mapping[object, Callable[[], object]]) -> Callback:
    """A Dask local-scheduler callback that starts a task's preparation before the task:
    ``prefetch`` maps keys to callables (no arguments, e.g. the start of a read the task will
    take over, in another thread; they must return at once). Whenever a task starts or
    finishes while at most one task with a prefetch is running, the ready task with a prefetch
    that the scheduler will start first (the last one in its ready list, which it starts from
    the end) gets it called, once. So at most one prefetch is ahead of the tasks started,
    whatever the order, and it is the next one's (the threaded scheduler only appends to the
    list and pops its end; a callback sorting it, as :func:`priority_callback`, must be before
    this one); and tasks with a prefetch running or prefetched are at most two (memory: e.g.
    the median tiles' stacks, two at once as with two threads without prefetches)."""
    started: set = set()

    def next_one(state: dict) -> None:
        if sum(key in prefetch for key in state["running"]) > 1:
            return
        for key in reversed(state["ready"]):
            call = prefetch.get(key)
            if call is not None:
                if key not in started:
                    started.add(key)
                    call()
                return

    return Callback(start_state=lambda dsk, state: next_one(state),
                    pretask=lambda key, dsk, state: next_one(state),
                    posttask=lambda key, result, dsk, state, worker: next_one(state))


class _Cores:
    """The cores of a compute with spare threads (``local_compute(spare=)``): a task runs
    holding one of ``n``; a task that waits (:func:`waiting`) hands it to another task
    meanwhile. A task taking its core back after a wait goes before tasks not started yet."""

    def __init__(self, n: int) -> None:
        self._cond = threading.Condition()
        self._free = n
        self._returning = 0  # tasks waiting to take their core back

    def acquire(self, returning: bool = False) -> None:
        with self._cond:
            self._returning += returning
            while self._free == 0 or (self._returning and not returning):
                self._cond.wait()
            self._returning -= returning
            self._free -= 1

    def release(self) -> None:
        with self._cond:
            self._free += 1
            self._cond.notify_all()


_HELD = threading.local()  # .cores: the _Cores one of whose cores this thread's task holds


def _on_core(cores: _Cores, func, *args):
    """Run a task of a compute with spare threads once it holds one of its cores."""
    cores.acquire()
    _HELD.cores = cores
    try:
        return func(*args)
    finally:
        held, _HELD.cores = getattr(_HELD, "cores", None), None
        if held is not None:
            held.release()


@contextlib.contextmanager
def waiting(resume: bool = True) -> Iterator[None]:
    """Inside a task: the block waits (for another thread's work, for I/O) without using its
    core, which another task of the compute gets meanwhile, if the compute has a spare thread
    for it (``local_compute(spare=)``; otherwise nothing changes). With ``resume`` the task
    takes a core back after the block (first among the tasks waiting for one); without it the
    rest of the task runs without one (only for a little work: it is then beside the
    compute's ``nthreads`` tasks)."""
    cores = getattr(_HELD, "cores", None)
    if cores is None:
        yield
        return
    _HELD.cores = None
    cores.release()
    try:
        yield
    finally:
        if resume:
            cores.acquire(returning=True)
            _HELD.cores = cores


def _get_with_cores(graph, keys, *, num_workers: int, spare: int, **kw):
    """Dask's threaded ``get`` with ``num_workers + spare`` threads of which at most
    ``num_workers`` run tasks at once, the others' tasks waiting for a core (:func:`waiting`
    hands a waiting task's core to them)."""
    from dask.core import istask

    cores = _Cores(num_workers)
    graph = {k: (_on_core, cores, *v) if istask(v) else v for k, v in graph.items()}
    return get(graph, keys, num_workers=num_workers + spare, **kw)


def local_compute(graph, keys, progress: bool = False, *, nthreads: int | None = None,
                  beside_client: bool = False, priority: Mapping | None = None,
                  spare: int = 0, prefetch: Mapping | None = None) -> list:
    """Compute ``keys`` of ``graph`` on Dask's local threaded scheduler (``nthreads``, default
    one per core), timed per task while a :class:`hapdask.profile.Profile` is active
    (``beside_client``: it runs beside the client's work and other computes, see
    :class:`hapdask.profile.ComputeRecord`); ``priority``: ``key -> int``, ready tasks of
    a higher priority start first (:func:`priority_callback`). ``spare``: threads beyond
    ``nthreads`` whose tasks run while others wait without their core (:func:`waiting`):
    still at most ``nthreads`` tasks computing at once. ``prefetch``: ``key -> callable``
    started ahead of its task (:func:`prefetch_callback`)."""
    nthreads = nthreads or os.cpu_count() or 1
    prof = profile.active()
    run = functools.partial(_get_with_cores, spare=spare) if spare > 0 else get
    with contextlib.ExitStack() as stack:
        if progress:
            stack.enter_context(ProgressBar(out=sys.stderr))
        # callbacks given to a compute replace the active ones (the progress bar): both; the
        # prefetch after the priority, which sorts the ready tasks
        mine = ([priority_callback(priority)] if priority else []) + (
            [prefetch_callback(prefetch)] if prefetch else [])
        kw = {"callbacks": [*Callback.active, *map(normalize_callback, mine)]} if mine else {}
        if prof is not None:
            return profile.profiled_local(prof, run, graph, keys, nthreads,
                                          beside_client=beside_client, **kw)
        return run(graph, keys, num_workers=nthreads, **kw)


@contextlib.contextmanager
def compute_context(scheduler, workers, threads_per_worker, log, *, timeout=30.0,
                    scratch=None):
    """Yield ``(compute, client)``: a compute function ``compute(graph, keys, progress,
    priority=None, spare=0, prefetch=None)`` (``priority``, ``spare``, ``prefetch``:
    :func:`local_compute`'s, for local threads; a distributed scheduler keeps its own order
    and threads) and the distributed client (or None).

    ``timeout`` (s) bounds the connection to a ``scheduler`` address; a local cluster keeps its
    scratch space in a new directory under ``scratch`` (removed on exit).
    """
    if scheduler is None and not workers:
        yield functools.partial(local_compute, nthreads=threads_per_worker), None
        return
    # distributed is costly to import (tornado, msgpack, ...): only when a cluster is used
    from distributed import Client, LocalCluster, futures_of, progress

    cluster = None
    if isinstance(scheduler, Client):
        client = scheduler
        own = False
    elif scheduler is not None:
        try:
            probe_scheduler(str(scheduler), timeout)
            client = Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise OSError(f"cannot connect to the Dask scheduler {scheduler} within "
                          f"{timeout:g} s ({type(exc).__name__}); check the address or raise "
                          "--scheduler-timeout") from None
        own = True
    else:
        Path(scratch).mkdir(parents=True, exist_ok=True)
        local_dir = tempfile.mkdtemp(prefix=".hapdask-dask-", dir=scratch)
        try:
            # the workers are spawned with this process's allocator setting (hapdask._memory)
            environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}),
                       **_memory.worker_environ()}
            with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
                cluster = LocalCluster(n_workers=int(workers),
                                       threads_per_worker=threads_per_worker or 1,
                                       processes=True, dashboard_address="127.0.0.1:0",
                                       host="127.0.0.1", local_directory=local_dir)
            client = Client(cluster)
        except BaseException:
            if cluster is not None:
                cluster.close()
            shutil.rmtree(local_dir, ignore_errors=True)
            raise
        own = True
        log(f"started a local Dask cluster: {workers} worker(s) x "
            f"{threads_per_worker or 1} thread(s); dashboard {client.dashboard_link}")

    def run_graph(graph, keys, show):
        futs = client.get(dict(graph), keys, sync=False)
        if show:
            progress(futures_of(futs), multi=False)
            print(file=sys.stderr)
        return client.gather(futs)

    def compute(graph, keys, show, priority=None, spare=0, prefetch=None):  # local only: all
        prof = profile.active()
        if prof is None:
            return run_graph(graph, keys, show)
        return profile.profiled_distributed(prof, client, graph, keys,
                                            lambda g, k: run_graph(g, k, show))

    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(dask.config.set(scheduler=client))
            prof = profile.active()
            if prof is not None and prof.report_path is not None:
                from distributed import performance_report

                stack.enter_context(performance_report(filename=str(prof.report_path)))
                prof.report_saved = str(prof.report_path)
            yield compute, client
    finally:
        if own:
            client.close()
        if cluster is not None:
            cluster.close()
            shutil.rmtree(local_dir, ignore_errors=True)
