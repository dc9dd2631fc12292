"""Many SkyCells on one Dask cluster: ``hapdask mvm --plan PLAN [SKYCELL ... | --all]``.

Each SkyCell is one call of :func:`hapdask.mvm.run` on a shared scheduler (a
``distributed.Client`` when ``scheduler``/``workers`` is given, else local threads), with its
products in ``OUTPUT/<skycell>/``. The batch adds, around those calls:

* **bounded concurrency** — at most ``concurrency`` SkyCell graphs in flight (driver threads;
  each submits its own graph), largest estimated cost first (``PLAN/skycells.parquet``);
* **isolation and retries** — an exception in one SkyCell is recorded and the batch goes on;
  a failed SkyCell is retried ``retries`` times (a retry resumes its finished zarr tiles); tasks
  lost with a dead worker are recomputed by the Dask scheduler itself;
* **resume** — a SkyCell whose manifest exists, lists only existing files and whose
  ``hapdask_batch.json`` records the same inputs is skipped; anything else is (re)done;
* **reporting** — a live line per finished SkyCell and ``OUTPUT/batch_summary.csv`` (skycell,
  status, inputs, layers, pixels, wall_s, attempts, error) rewritten as SkyCells finish;
  ``OUTPUT/batch_failures.csv`` lists the failed ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from hapdask.archive import ArchivePlan, read_plan
from hapdask.export import manifest as xmanifest
from hapdask.mvm.runner import run

__all__ = ["BatchResult", "SkyCellOutcome", "is_finished", "run_batch"]

RECORD = "hapdask_batch.json"
SUMMARY = "batch_summary.csv"
FAILURES = "batch_failures.csv"


@dataclass
class SkyCellOutcome:
    """What happened to one SkyCell of a batch."""

    skycell: str
    status: str  # "done", "skipped" (finished earlier), "failed"
    inputs: int = 0
    layers: int = 0
    pixels: int = 0
    wall_s: float = 0.0
    attempts: int = 0
    error: str = ""


@dataclass
class BatchResult:
    """All outcomes of a batch, in the order the SkyCells were scheduled."""

    output: Path
    outcomes: list[SkyCellOutcome] = field(default_factory=list)
    wall_s: float = 0.0

    def table(self) -> pd.DataFrame:
        """One row per SkyCell (the columns of :class:`SkyCellOutcome`)."""
        cols = list(SkyCellOutcome.__dataclass_fields__)
        return pd.DataFrame([asdict(o) for o in self.outcomes], columns=cols)

    def counts(self) -> dict[str, int]:
        """Number of SkyCells per status."""
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o.status] = out.get(o.status, 0) + 1
        return out

    def summary(self) -> str:
        """Final table as text."""
        t = self.table()
        c = self.counts()
        head = (f"hapdask mvm --plan: {len(t)} SkyCell(s): {c.get('done', 0)} done, "
                f"{c.get('skipped', 0)} already finished, {c.get('failed', 0)} failed; "
                f"wall time {self.wall_s:.1f} s; outputs in {self.output}")
        if t.empty:
            return head
        show = t.assign(error=t["error"].str.slice(0, 70))
        return head + "\n" + show.to_string(index=False)


def _cell_name(name: str) -> str:
    name = name.strip().lower()
    return name if name.startswith("skycell-") else f"skycell-{name}"


def is_finished(outdir: str | os.PathLike, skycell: str, inputs: Iterable[str]) -> bool:
    """True if ``outdir`` holds the finished products of ``skycell`` made from ``inputs``.

    Finished means: the manifest exists, every file it lists exists, and the batch record
    names the same inputs (a plan with new exposures makes the SkyCell unfinished).
    """
    outdir = Path(outdir)
    man = outdir / xmanifest.manifest_name(skycell)
    rec = outdir / RECORD
    if not man.is_file() or not rec.is_file():
        return False
    try:
        record = json.loads(rec.read_text())
    except ValueError:
        return False
    if record.get("status") != "done" or sorted(record.get("inputs", [])) != sorted(inputs):
        return False
    names = [n for n in man.read_text().splitlines() if n.strip()]
    return bool(names) and all((outdir / n).exists() for n in names)


@contextlib.contextmanager
def _client(scheduler, workers: int | None, threads_per_worker: int | None, log):
    """The shared scheduler: a distributed Client, or None for local threads."""
    if scheduler is None and not workers:
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler is not None and not isinstance(scheduler, str):
        yield scheduler  # a Client given by the caller: theirs to close
        return
    cluster = None
    if scheduler is not None:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=int(workers), threads_per_worker=threads_per_worker or 1,
                               processes=True, dashboard_address="127.0.0.1:0",
                               host="127.0.0.1")
        client = Client(cluster)
        log(f"started a local Dask cluster: {workers} worker(s); dashboard "
            f"{client.dashboard_link}")
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _write_tables(output: Path, outcomes: list[SkyCellOutcome]) -> None:
    res = BatchResult(output, list(outcomes))
    t = res.table()
    xmanifest.write_atomic(output / SUMMARY, t.to_csv(index=False))
    xmanifest.write_atomic(output / FAILURES, t[t["status"] == "failed"].to_csv(index=False))


def run_batch(
    plan: ArchivePlan | str | os.PathLike,
    skycells: Iterable[str] | None = None,
    *,
    output: str | os.PathLike,
    scheduler=None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    concurrency: int = 2,
    retries: int = 1,
    run_options: Mapping | None = None,
    log: Callable[[str], None] = print,
) -> BatchResult:
    """Build the MVM products of many SkyCells of a plan on one cluster.

    Parameters
    ----------
    plan : ArchivePlan or path
        A plan written by ``hapdask plan``.
    skycells : iterable of str, optional
        SkyCells to build (``p1889x07y19`` or ``skycell-...``); None: every SkyCell of the plan.
    output : path
        Output root; SkyCell products go to ``output/<skycell>/``.
    scheduler : str or distributed.Client, optional
        A running cluster shared by all SkyCells.
    workers, threads_per_worker : int, optional
        Start a local cluster of ``workers`` processes instead. Neither: local threads.
    concurrency : int
        SkyCell graphs in flight at once (largest estimated cost first).
    retries : int
        Extra attempts for a failed SkyCell.
    run_options : mapping, optional
        More keyword arguments of :func:`hapdask.mvm.run` (``formats``, ``tile_size``,
        ``layers``, ``wcs_updates``, ``context``...).
    log : callable
        Live progress lines.

    Returns
    -------
    BatchResult

    Raises
    ------
    KeyError
        If a requested SkyCell is not in the plan.
    ValueError
        If ``concurrency`` or ``retries`` is out of range.
    """
    import dask

    t0 = time.perf_counter()
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if not isinstance(plan, ArchivePlan):
        plan = read_plan(plan)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    order = plan.skycells["skycell"].tolist()  # largest estimated cost first
    if skycells is None:
        todo = order
    else:
        want = [_cell_name(s) for s in skycells]
        missing = [s for s in want if s not in set(order)]
        if missing:
            raise KeyError(f"SkyCell(s) {', '.join(missing[:5])} not in the plan {plan.path}")
        wanted = set(want)
        todo = [s for s in order if s in wanted]
    opts = dict(run_options or {})
    outcomes: dict[str, SkyCellOutcome] = {}
    old_sched = dask.config.get("scheduler", None)

    def one(name: str, client) -> SkyCellOutcome:
        outdir = output / name
        try:
            inputs = plan.inputs(name)
        except (KeyError, ValueError) as exc:
            return SkyCellOutcome(name, "failed", error=str(exc))
        if is_finished(outdir, name, inputs):
            return SkyCellOutcome(name, "skipped", inputs=len(inputs))
        err = ""
        for attempt in range(1, retries + 2):
            t1 = time.perf_counter()
            try:
                res = run(name, inputs, output=outdir, scheduler=client,
                          log=lambda m, n=name: log(f"  {n}: {m}"), **opts)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # isolate: record, retry, go on
                err = f"{type(exc).__name__}: {exc}".splitlines()[0]
                if attempt <= retries:
                    log(f"  {name}: attempt {attempt} failed ({err}); retrying")
                continue
            wall = time.perf_counter() - t1
            pixels = sum(int(lay.shape[0]) * int(lay.shape[1]) for lay in res.plan.layers.values())
            out = SkyCellOutcome(name, "done", inputs=len(inputs),
                                 layers=len(res.plan.layers), pixels=pixels, wall_s=round(wall, 2),
                                 attempts=attempt)
            xmanifest.write_atomic(outdir / RECORD, json.dumps(
                {**asdict(out), "inputs": list(inputs)}, indent=1) + "\n")
            return out
        return SkyCellOutcome(name, "failed", inputs=len(inputs), attempts=retries + 1,
                              error=err)

    result = BatchResult(output)
    with _client(scheduler, workers, threads_per_worker, log) as client:
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="hapdask-batch")
        try:
            futures = {pool.submit(one, name, client): name for name in todo}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    o = fut.result()
                    outcomes[o.skycell] = o  # only this thread touches the tables
                    done = [outcomes[n] for n in todo if n in outcomes]
                    _write_tables(output, done)
                    c = BatchResult(output, done).counts()
                    log(f"[{len(done)}/{len(todo)}: {c.get('done', 0)} done, "
                        f"{c.get('skipped', 0)} skipped, {c.get('failed', 0)} failed] "
                        f"{o.skycell} {o.status}"
                        + (f" in {o.wall_s:.1f} s" if o.status == "done" else "")
                        + (f": {o.error}" if o.error else ""))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True)
            # concurrent run() calls each set and restore dask's scheduler option; put it back
            if old_sched is None:
                dask.config.config.pop("scheduler", None)
            else:
                dask.config.set(scheduler=old_sched)
    result.outcomes = [outcomes[n] for n in todo if n in outcomes]
    result.wall_s = time.perf_counter() - t0
    _write_tables(output, result.outcomes)
    return result
