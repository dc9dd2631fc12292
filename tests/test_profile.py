"""hapdask.profile: stage classification, occupancy arithmetic, both schedulers."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from hapdask import profile
from hapdask.profile import ComputeRecord, Profile, TaskSpan, classify


def _busy(seconds: float) -> float:
    """Hold the thread for ``seconds`` (CPU work, so thread CPU time advances too)."""
    t0 = time.perf_counter()
    x = 0.0
    while time.perf_counter() - t0 < seconds:
        x += float(np.sum(np.arange(1000.0)))
    return x


def _work(seconds: float, *deps) -> float:
    with profile.timed("read"):
        _busy(seconds / 2)
    with profile.timed("kernel"):
        _busy(seconds / 2)
    return seconds


def test_classify_by_key_name():
    assert classify(("mvm-f160w-abc-tile", 0, 1)) == "drizzle"
    assert classify(("mvm-write-hst_skycell-p1_wfc3_ir_f160w_coarse-all_drz-abc", 1, 0)) \
        == "write"
    assert classify(("mvm-sky-chip-median-abc", 3)) == "sky"
    assert classify(("drz-sky-abc-static-part", 2)) == "static"
    assert classify(("drz-abc-median", 0, 0)) == "median"
    assert classify(("drz-abc-cr", 1, 2)) == "driz_cr"
    assert classify(("align-sources-abc", 4)) == "align"
    assert classify(("mvm-analyze-abc", 0)) == "analyze"
    assert classify("something-else") == "other"


def test_classify_svm_keys():
    """The keys of ``hapdask svm``'s graphs (hapdask.svm.runner) land in their stages."""
    assert classify(("svm-align-state", "acs_wfc-hst_16802_03_acs_wfc")) == "align"
    assert classify(("drz-0123abcd-sep", 0, 1)) == "median"
    assert classify(("drz-header-0123abcd",)) == "write"
    assert classify(("drz-done-0123abcd",)) == "write"
    assert classify(("svm-keywords", "hst_x_drc.fits")) == "keywords"
    assert classify(("svm-headerlets", "x_manifest.txt")) == "keywords"
    assert classify(("svm-catalogs", "hst_x_total_drc.fits")) == "catalogs"
    assert classify(("svm-preview", "hst_x_drc.fits")) == "preview"
    assert classify(("svm-color", "hst_x_total_drc.fits")) == "preview"


def test_occupancy_by_hand():
    # 2 threads. A [0, 1] and B [0, 2] start at once; C needs A but starts only at 1.5:
    # 0.5 s with a free thread and a ready task = overhead. After B ends at 2 nothing is
    # ready (C runs to 2.5): 0.5 s idle. The result reaches the caller at 2.7: 0.2 s x 2
    # threads of hand-back (overhead).
    spans = [TaskSpan("A", "x", 0.0, 1.0, (1, 1)), TaskSpan("B", "x", 0.0, 2.0, (1, 2)),
             TaskSpan("C", "x", 1.5, 2.5, (1, 1))]
    rec = ComputeRecord(0.0, 2.7, 2, spans, {"A": 0.0, "B": 0.0, "C": 1.0})
    over, idle = rec.occupancy()
    assert over == pytest.approx(0.5 + 0.4)
    assert idle == pytest.approx(2 * 2.7 - 4.0 - 0.9)


def test_compute_beside_the_client_is_not_scheduler_overhead():
    # ``hapdask drizzle`` computes sky/static tasks on the pool that places the chips: a ready
    # task waiting there waits for the client's placement, not for the scheduler. The same
    # spans as a plain compute give overhead; beside the client they give none, its wall is
    # not counted as a compute's, and its tasks stay in the stages and the report.
    spans = [TaskSpan("A", "sky", 0.0, 1.0, (1, 1)), TaskSpan("B", "sky", 2.0, 3.0, (1, 1))]
    plain = ComputeRecord(0.0, 3.0, 2, spans, {"A": 0.0, "B": 0.0})
    assert plain.occupancy()[0] == pytest.approx(1.0 + 1.0)  # B ready from 0, started at 2
    prof = Profile()
    prof.start, prof.end = 0.0, 10.0
    prof.computes.append(ComputeRecord(0.0, 3.0, 2, spans, {"A": 0.0, "B": 0.0},
                                       beside_client=True))
    prof.computes.append(ComputeRecord(4.0, 6.0, 2, [TaskSpan("C", "tile", 4.0, 6.0, (1, 1))],
                                       {"C": 4.0}))
    t = prof.totals()
    assert t["overhead"] == 0.0
    assert t["compute_wall"] == pytest.approx(2.0)
    assert t["client"] == pytest.approx(8.0)
    assert t["task"] == pytest.approx(4.0) and t["beside"] == pytest.approx(2.0)
    text = prof.report()
    assert "(1 compute(s)" in text
    assert re.search(r"^\s+beside the client\s+2\.00", text, re.M)


def _graph():
    g = {("t-load", i): (_work, 0.06) for i in range(4)}
    g[("t-sum",)] = (_work, 0.04, *[("t-load", i) for i in range(4)])
    return g


def _check(prof: Profile, slots: int) -> None:
    (rec,) = prof.computes
    assert rec.slots == slots
    assert len(rec.spans) == 5
    for s in rec.spans:  # every task inside its compute, none shorter than its busy loop
        assert rec.start <= s.start <= s.end <= rec.end + 1e-3
        assert s.end - s.start >= 0.04 - 1e-3
    # the dependent task starts after all its inputs ended
    last = next(s for s in rec.spans if s.key == str(("t-sum",)))
    assert all(s.end <= last.start + 1e-6 for s in rec.spans if s is not last)
    t = prof.totals()
    # thread time cannot exceed threads x wall; the three parts fill it
    assert t["task"] <= slots * t["compute_wall"] + 1e-3
    assert t["task"] + t["overhead"] + t["idle"] == pytest.approx(
        slots * t["compute_wall"], rel=1e-6, abs=1e-3)
    rows = {r.name: r for r in prof.stages() if r.depth == 1}
    assert rows["read"].tasks == rows["kernel"].tasks == 5
    assert rows["read"].seconds + rows["kernel"].seconds + rows["(rest)"].seconds \
        == pytest.approx(t["task"], abs=1e-6)


def test_local_threads_breakdown():
    from dask.threaded import get

    g = _graph()
    with Profile() as prof:
        out = profile.profiled_local(prof, get, g, [("t-sum",)], 2)
    assert list(out) == [0.04]
    _check(prof, 2)
    text = prof.report()
    for word in ("other", "read", "kernel", "total task time", "scheduler overhead"):
        assert word in text


def test_computes_side_by_side_each_keep_their_own_tasks():
    # ``hapdask mvm`` analyses its inputs in a compute of their own beside the tiles' compute:
    # each record holds the spans of its own graph's tasks, none is lost or counted twice
    import threading

    from hapdask.scheduling import local_compute

    # two short side tasks end while the main compute runs, a long one outlasts it
    side = {("side-load", i): (_work, t) for i, t in enumerate((0.1, 0.1, 2.0))}
    main = {("main-load", i): (_work, 0.3) for i in range(4)}
    with Profile() as prof:
        th = threading.Thread(target=local_compute, args=(side, list(side)),
                              kwargs={"nthreads": 2, "beside_client": True})
        th.start()
        time.sleep(0.02)
        local_compute(main, list(main), nthreads=2)
        th.join()
    by_kind = {rec.beside_client: {s.key for s in rec.spans} for rec in prof.computes}
    assert by_kind[True] == {str(k) for k in side}
    assert by_kind[False] == {str(k) for k in main}
    assert prof.totals()["beside"] >= 2 * 0.1 - 1e-3


def test_distributed_breakdown_and_performance_report(tmp_path):
    distributed = pytest.importorskip("distributed")

    from hapdask.scheduling import compute_context as _scheduler

    report = tmp_path / "report.html"
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client, Profile(report_path=report) as prof:
        with _scheduler(client, None, None, lambda m: None) as (compute, _):
            assert list(compute(_graph(), [("t-sum",)], False)) == [0.04]
    assert prof.scheduler == "distributed"
    _check(prof, 2)
    assert report.stat().st_size > 0 and prof.report_saved == str(report)
    assert str(report) in prof.report()


def test_no_profile_no_records():
    from hapdask.scheduling import local_compute

    assert profile.active() is None
    assert list(local_compute(_graph(), [("t-sum",)], nthreads=2)) == [0.04]
    assert profile.drain() == ([], {})  # nothing recorded outside a profile
