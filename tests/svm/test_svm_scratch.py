"""``hapdask svm`` on local threads deletes each scratch file of its products (separate-drizzle
stacks and sums) once its last reader is done, as ``hapdask drizzle``
does (``runner._released``): the file system is the oracle (every file the run creates is
deleted, after every read of it, before the run removes its scratch directories), the products
are those of the run without the deletions bit for bit, and every task naming a scratch file
is one of its readers."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from astropy.io import fits

import hapdask.mosaic.scratch as scratch_module
from hapdask.mosaic.graph import scratch_readers
from hapdask.mosaic.scratch import Scratch
from hapdask.svm import runner


def _paths_in(value, depth: int = 0):
    """Strings held by a task argument: through tuples, lists, dicts and dataclass fields."""
    if isinstance(value, str):
        yield value
    elif depth > 4:
        return
    elif isinstance(value, tuple | list):
        for v in value:
            yield from _paths_in(v, depth + 1)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _paths_in(v, depth + 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _paths_in(getattr(value, f.name), depth + 1)


def test_every_task_naming_a_scratch_file_is_its_reader(tmp_path, aligned_acs_visit):
    p, states = aligned_acs_visit()
    staging = tmp_path / "staging"
    staging.mkdir()
    graph, _, jobs = runner.products_graph(p, states, str(staging))
    try:
        dirs = {j.scratch.directory for j in jobs}
        readers = scratch_readers(graph)
        assert readers and {os.path.dirname(q) for q in readers} <= dirs
        # the planning makes no scratch file (pixel maps are computed where they are used)
        assert not [n for d in dirs for n in os.listdir(d) if n.endswith(".npy")]
        for key, task in graph.items():
            if not (isinstance(task, tuple) and task and callable(task[0])):
                continue
            for q in _paths_in(list(task[1:])):
                if os.path.dirname(q) in dirs:
                    assert key in readers.get(q, []), (key, q)
    finally:
        for j in jobs:
            j.scratch.remove()


def test_scratch_files_deleted_after_their_last_read(sim, run_svm, tmp_path, monkeypatch,
                                                      file_events):
    poller = next(q for q in sim.svm_pollers if q.name == "acs_f3t_03_input.out")
    # the reference: the same run keeping every scratch file until its end
    with monkeypatch.context() as m:
        m.setattr(runner, "_released", lambda graph, jobs: graph)
        ref = run_svm(poller, tmp_path / "kept", refcat=sim.refcat)

    # (time, "made" / "open" / "unlink", path) of the scratch files
    events = file_events(lambda path: (path.endswith(".npy") and "/.part-" not in path
                                       and "/.hapdask-svm-" in path))
    left = []  # scratch files still there when the run removes its directories
    real_remove = Scratch.remove

    def remove(self):
        for pending in list(scratch_module._DISCARDING.get(self.directory, [])):
            pending.result()  # the deletions handed to the deleting thread
        left.extend(n for n in os.listdir(self.directory) if n.endswith(".npy"))
        real_remove(self)

    monkeypatch.setattr(Scratch, "remove", remove)
    try:
        out = run_svm(poller, tmp_path / "released", refcat=sim.refcat)
    finally:
        monkeypatch.undo()
    made = {q for _, k, q in events if k == "made"}
    opened = {q for _, k, q in events if k == "open"}
    unlinked = {q: t for t, k, q in events if k == "unlink"}
    assert any("/sep-" in q for q in opened)
    # every file the run made was deleted once, after every read of it, before the end
    assert left == []
    assert made and set(unlinked) == made
    assert len([e for e in events if e[1] == "unlink"]) == len(unlinked)
    assert opened <= made
    for t, kind, q in events:
        if kind == "open":
            assert t < unlinked[q], f"{q} read after its deletion"
    # the same products and cosmic-ray masks, bit for bit
    names = sorted(q.name for q in ref.files if q.name.endswith((".fits",)))
    assert names == sorted(q.name for q in out.files if q.name.endswith((".fits",)))
    assert any(n.endswith("_drc.fits") for n in names)
    for n in names:
        if n.endswith("_hlet.fits") or n == "wcs_updates.fits":
            continue
        with fits.open(ref.outdir / n) as a, fits.open(out.outdir / n) as b:
            for ha, hb in zip(a, b, strict=True):
                if ha.is_image and ha.data is not None:
                    np.testing.assert_array_equal(ha.data, hb.data, err_msg=f"{n} {ha.name}")
