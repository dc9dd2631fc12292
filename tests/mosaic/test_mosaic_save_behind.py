"""Separate-drizzle stacks, sums and counts saved behind their task
(``drizzle_graph(save_behind=True)``, what ``hapdask drizzle`` does on local threads): the task
returns while the scratch's saving thread writes them; every read of such a file (also the
median stacks' reads started ahead of their tasks, ``DrizzleGraph.prefetch``) comes after
the file is complete (the file
system is the oracle: the renames and opens it sees), the products are those of the plain graph
bit for bit, a failed save is raised by the run, and deletions and the scratch's removal wait
for the saves."""

from __future__ import annotations

import os
import threading
import time
import warnings

import numpy as np
import pytest
from astropy.io import fits

import hapdask.mosaic.scratch as scratch_module
import hapdask.mosaic.stages as stages
from hapdask.mosaic.job import drizzle_graph
from hapdask.mosaic.scratch import OWNER_FILE, Scratch, load_array, wait_saved
from hapdask.scheduling import local_compute

PARAMS = {"static": True, "skysub": True, "skymethod": "match", "combine_type": "minmed",
          "combine_nhigh": 1, "final_bits": "336", "driz_sep_bits": "336", "context": True,
          "driz_sep_kernel": "square", "final_wht_type": "EXP"}  # the separate sums are reused


def _slow_saves(monkeypatch, delay: float, fail: str | None = None) -> list:
    """Make every save of the scratch's saving thread wait ``delay`` s first (and raise
    OSError for names starting with ``fail``); returns the list of ``(name, thread name)``
    it fills."""
    real = Scratch.save
    seen: list = []

    def save(self, name, array, *a, **k):
        seen.append((name, threading.current_thread().name))
        if threading.current_thread().name.startswith("hapdask-scratch-save"):
            time.sleep(delay)
            if fail is not None and name.startswith(fail):
                raise OSError(f"disk full saving {name}")
        return real(self, name, array, *a, **k)

    monkeypatch.setattr(Scratch, "save", save)
    return seen


def _gate_saves(monkeypatch) -> threading.Event:
    """Make every Scratch.save wait until the returned event is set (at most 10 s)."""
    gate = threading.Event()
    real = Scratch.save

    def gated(self, name, array, *a, **k):
        gate.wait(10)
        return real(self, name, array, *a, **k)

    monkeypatch.setattr(Scratch, "save", gated)
    return gate


def test_save_behind_wait_discard_and_remove(tmp_path, monkeypatch):
    s = Scratch.create(tmp_path, "b")
    gate = _gate_saves(monkeypatch)
    a = scratch_module.aligned_zeros((2, 3, 40, 50), np.float32)
    a[...] = np.arange(a.size, dtype=np.float32).reshape(a.shape)
    parts = [np.arange(12.0).reshape(3, 4), -np.arange(12.0).reshape(3, 4)]
    t0 = time.perf_counter()
    future = s.save_behind([("st", a), ("sums", parts)])
    assert time.perf_counter() - t0 < 5  # the caller does not wait for the disk
    assert not os.path.exists(s.path("st"))  # not there until its save is done
    threading.Timer(0.2, gate.set).start()
    wait_saved(s.path("st"))  # waits for the save
    assert future.done() and future.result() == [s.path("st"), s.path("sums")]
    assert np.array_equal(load_array(s.path("st"), direct=True), a)
    assert np.array_equal(load_array(s.path("sums"), direct=True), np.stack(parts))
    wait_saved(s.path("st"))  # no pending save: at once
    wait_saved(s.path("never-saved"))

    # a deletion handed over while the file is being saved comes after the save
    gate.clear()
    s.save_behind([("late", np.ones(5))])
    s.discard(s.path("late"))
    threading.Timer(0.2, gate.set).start()
    for f in list(scratch_module._DISCARDING[s.directory]):
        f.result()
    assert not os.path.exists(s.path("late"))

    # remove() waits for the saves under way, so nothing is written after the directory is gone
    gate.clear()
    s.save_behind([("last", np.ones(5))])
    threading.Timer(0.2, gate.set).start()
    s.remove()
    assert not os.path.exists(s.directory)


def test_failed_save_behind_raised_to_every_reader(tmp_path, monkeypatch):
    s = Scratch.create(tmp_path, "f")
    _slow_saves(monkeypatch, 0.0, fail="bad")
    s.save_behind([("bad", np.zeros(3))])
    for _ in range(2):
        with pytest.raises(OSError, match="disk full saving bad"):
            wait_saved(s.path("bad"))
    s.remove()


def test_separate_saves_behind_read_when_complete(trio, tmp_path, monkeypatch, file_events):
    plain = drizzle_graph(trio, tmp_path / "plain" / "m", params=PARAMS, tile_size=128,
                          region_size=128)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = local_compute(plain.graph, plain.keys, nthreads=2)[0]
    plain.scratch.remove()

    job = drizzle_graph(trio, tmp_path / "behind" / "m", params=PARAMS, tile_size=128,
                        region_size=128, discard=True, save_behind=True)
    directory = job.scratch.directory
    medians = [k for k in job.graph if "-median" in str(k[0])]
    assert medians and sorted(job.prefetch, key=str) == sorted(medians, key=str)
    # slow saves: without the readers' waits the median and final tiles would read first
    seen = _slow_saves(monkeypatch, 0.05)
    taken = []
    real_take = stages.StackRead.take
    monkeypatch.setattr(stages.StackRead, "take",
                        lambda self: taken.append(real_take(self)) or taken[-1])
    events = file_events(lambda path: path.startswith(directory)
                         and os.path.basename(path).startswith(("sep-", "sum-")))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # as drizzle does: the medians' stacks read ahead (job.prefetch)
            out = local_compute(job.graph, job.keys, nthreads=2, priority=job.priority,
                                prefetch=job.prefetch)[0]
        for f in list(scratch_module._DISCARDING.get(directory, [])):
            f.result()
        assert sorted(os.listdir(directory)) == [OWNER_FILE]
    finally:
        monkeypatch.undo()
        job.scratch.remove()
    # stacks, sums and counts by the saving thread, none by the task
    saved = [(n, t) for n, t in seen if n.startswith(("sep-", "sum-"))]
    assert saved and all(t.startswith("hapdask-scratch-save") for _, t in saved)
    assert any(n.endswith("-count") for n, _ in saved)
    # every median took its stack's read, the ones after the first started ahead of them
    assert len(taken) == len(medians) and sum(f is not None for f in taken) >= len(medians) - 2
    made = {p: t for t, k, p in events if k == "made"}
    opened = [(t, p) for t, k, p in events if k == "open"]
    assert any("/sep-" in p for _, p in opened) and any("/sum-" in p for _, p in opened)
    for t, path in opened:
        assert path in made and made[path] < t, f"{path} read before it was complete"
    with fits.open(ref.output) as a, fits.open(out.output) as b:
        for ext in ("SCI", "WHT", "CTX"):
            np.testing.assert_array_equal(a[ext].data, b[ext].data, err_msg=ext)
    for p, q in zip(ref.crmasks, out.crmasks, strict=True):
        with fits.open(p) as a, fits.open(q) as b:
            for ha, hb in zip(a[1:], b[1:], strict=True):
                np.testing.assert_array_equal(ha.data, hb.data)


def test_separate_saves_behind_bounded(tmp_path, monkeypatch):
    """Beyond SAVES_BEHIND tiles' saves under way, a separate task's hand-over waits for the
    oldest."""
    monkeypatch.setattr(stages, "SAVES_BEHIND", 1)
    s = Scratch.create(tmp_path, "n")
    gate = _gate_saves(monkeypatch)
    t0 = time.perf_counter()
    stages._save_behind(s, [("a", np.zeros(3))])
    assert time.perf_counter() - t0 < 5  # the first one is handed over at once
    handed = threading.Event()
    t = threading.Thread(target=lambda: (stages._save_behind(s, [("b", np.ones(3))]),
                                         handed.set()))
    t.start()
    assert not handed.wait(0.3)  # the second waits for the first's save
    gate.set()
    assert handed.wait(10)
    t.join()
    for name, value in (("a", 0.0), ("b", 1.0)):
        wait_saved(s.path(name))
        assert np.array_equal(load_array(s.path(name), direct=True), np.full(3, value))
    s.remove()


def test_failed_separate_save_fails_the_run(trio, tmp_path, monkeypatch):
    job = drizzle_graph(trio, tmp_path / "fail" / "m", params=PARAMS, tile_size=128,
                        region_size=128, discard=True, save_behind=True)
    _slow_saves(monkeypatch, 0.0, fail="sep-")
    try:
        with warnings.catch_warnings(), pytest.raises(OSError, match="disk full saving sep-"):
            warnings.simplefilter("ignore")
            local_compute(job.graph, job.keys, nthreads=2)
    finally:
        monkeypatch.undo()
        job.scratch.remove()
    assert not os.path.exists(job.scratch.directory)
