"""Scratch files deleted as soon as nothing reads them (``drizzle_graph(discard=True)``, what
``hapdask drizzle`` does on local threads): every read of a file comes before its deletion (the
file system is the oracle: the opens and unlinks it sees), every file is gone before the run
ends, the products are those of the plain graph bit for bit, and Dask orders the graph as it
orders the plain one (the readers are wrapped, no task is added)."""

from __future__ import annotations

import os
import threading
import time
import warnings

import numpy as np
from astropy.io import fits
from dask.order import order

import hapdask.mosaic.scratch as scratch_module
from hapdask.mosaic.job import drizzle_graph
from hapdask.mosaic.scratch import OWNER_FILE, Scratch
from hapdask.scheduling import local_compute

PARAMS = {"static": True, "skysub": True, "skymethod": "match", "combine_type": "minmed",
          "combine_nhigh": 1, "final_bits": "336", "driz_sep_bits": "336", "context": True,
          "driz_sep_kernel": "square", "final_wht_type": "EXP"}  # the separate sums are reused


def _pending(scratch: Scratch) -> None:
    """Wait for the deletions handed to the deleting thread."""
    for future in list(scratch_module._DISCARDING.get(scratch.directory, [])):
        future.result()


def test_discard_deletes_in_its_own_thread_and_remove_waits(tmp_path, monkeypatch):
    s = Scratch.create(tmp_path, "d")
    a, b = s.save("a", np.zeros(3)), s.save("b", np.ones(3))
    gate = threading.Event()
    seen = []
    real = scratch_module._unlink_all

    def slow(paths):
        gate.wait(10)
        seen.append((threading.current_thread() is not threading.main_thread(), tuple(paths)))
        real(paths)

    monkeypatch.setattr(scratch_module, "_unlink_all", slow)
    t0 = time.perf_counter()
    s.discard(a, str(tmp_path / "missing.npy"))  # a missing file is no error
    assert time.perf_counter() - t0 < 5  # the caller does not wait for the deletion
    assert os.path.exists(a) and os.path.exists(b)
    threading.Timer(0.2, gate.set).start()
    s.remove()  # waits for the pending deletion, then removes the rest
    assert seen == [(True, (a, str(tmp_path / "missing.npy")))]
    assert not os.path.exists(s.directory)


def test_scratch_files_deleted_after_their_last_read(trio, tmp_path, monkeypatch,
                                                      file_events):
    plain = drizzle_graph(trio, tmp_path / "plain" / "m", params=PARAMS, tile_size=128,
                          region_size=128)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = local_compute(plain.graph, plain.keys, nthreads=2)[0]
    left = sorted(f for f in os.listdir(plain.scratch.directory) if f != OWNER_FILE)
    plain.scratch.remove()
    # without discard the files stay until the scratch is removed: stacks, sums
    assert any(f.startswith("sep-") for f in left) and any(f.startswith("sum-") for f in left)

    job = drizzle_graph(trio, tmp_path / "disc" / "m", params=PARAMS, tile_size=128,
                        region_size=128, discard=True)
    directory = job.scratch.directory
    # (time, "open" / "unlink" / "made", path) of the files of the scratch directory
    events = file_events(lambda path: path.startswith(directory) and path.endswith(".npy"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = local_compute(job.graph, job.keys, nthreads=2)[0]
        _pending(job.scratch)
        # every scratch file is gone before the run's end removes the directory
        assert sorted(os.listdir(directory)) == [OWNER_FILE]
    finally:
        monkeypatch.undo()
        job.scratch.remove()
    opened = {p for _, k, p in events if k == "open"}
    unlinked = {p: t for t, k, p in events if k == "unlink"}
    assert any("/sep-" in p for p in opened)
    assert any("/sum-" in p for p in opened)
    # each file of the run was deleted once, after every read of it
    names = [os.path.basename(p) for p in unlinked]
    assert len(names) == len(left)
    assert set(names) == set(left)
    assert len([e for e in events if e[1] == "unlink"]) == len(unlinked)
    assert opened <= set(unlinked)
    for t, kind, path in events:
        if kind == "open":
            assert t < unlinked[path], f"{path} read after its deletion"
    with fits.open(ref.output) as a, fits.open(out.output) as b:
        for ext in ("SCI", "WHT", "CTX"):
            np.testing.assert_array_equal(a[ext].data, b[ext].data, err_msg=ext)
    for p, q in zip(ref.crmasks, out.crmasks, strict=True):
        with fits.open(p) as a, fits.open(q) as b:
            for ha, hb in zip(a[1:], b[1:], strict=True):
                np.testing.assert_array_equal(ha.data, hb.data)


def test_discard_keeps_the_graph_and_its_order(trio, tmp_path):
    jobs = []
    for discard in (False, True):
        jobs.append(drizzle_graph(trio, tmp_path / "o" / "m", params=PARAMS, tile_size=128,
                                  region_size=128, discard=discard))
        jobs[-1].scratch.remove()
    plain, disc = jobs
    assert set(plain.graph) == set(disc.graph) and plain.keys == disc.keys
    assert disc.graph != plain.graph  # the readers are wrapped
    rank = [sorted(order(j.graph), key=order(j.graph).get) for j in jobs]
    assert rank[0] == rank[1]
