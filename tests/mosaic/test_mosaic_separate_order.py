"""The separate-drizzle tasks start largest first on local threads (``DrizzleGraph.priority``,
:func:`hapdask.mosaic.graph.separate_priority`): every median task waits for all of them, so
the last ones should be small. The oracle is the scheduler's own state (its callbacks: which
tasks were ready when each started) and the tiles' input boxes. The mask files and the
final tiles of the band with the fewest rows go last."""

from __future__ import annotations

import warnings

from dask.callbacks import Callback

import hapdask.scheduling as scheduling
from hapdask.mosaic.job import drizzle, drizzle_graph
from hapdask.mosaic.stages import separate_tile
from hapdask.scheduling import local_compute

PARAMS = {"static": True, "skysub": True, "skymethod": "match", "combine_type": "minmed",
          "combine_nhigh": 1, "final_bits": "336", "driz_sep_bits": "336", "context": True}


def _input_pixels(job) -> int:
    return sum((b1 - b0) * (a1 - a0) for b0, b1, a0, a1 in job.boxes)


def test_separate_tasks_start_largest_first(trio, tmp_path):
    job = drizzle_graph(trio, tmp_path / "o" / "m", params=PARAMS, tile_size=128,
                        region_size=128)
    seps = {k: t[1] for k, t in job.graph.items()
            if isinstance(t, tuple) and t and t[0] is separate_tile}
    first = {k: v for k, v in job.priority.items() if v > 0}
    assert len(seps) > 3 and set(first) == set(seps)
    assert sorted(first.values()) == list(range(1, len(seps) + 1))
    pixels = {k: _input_pixels(j) for k, j in seps.items()}
    assert len(set(pixels.values())) > 2  # tiles of several sizes
    started: list = []

    def pretask(key, dsk, state) -> None:  # the ready tasks left when ``key`` starts
        started.append((key, [k for k in state["ready"] if k in seps]))

    with warnings.catch_warnings(), Callback(pretask=pretask):
        warnings.simplefilter("ignore")
        local_compute(job.graph, job.keys, nthreads=1, priority=job.priority)
    job.scratch.remove()
    order = [(k, ready) for k, ready in started if k in seps]
    assert len(order) == len(seps)
    # each starts before any ready separate drizzle with more input pixels, and before any
    # ready task without a priority
    for key, ready in order:
        assert all(pixels[key] >= pixels[k] for k in ready), key
    assert any(ready for _, ready in order)  # there were choices to make
    keys = [k for k, _ in started]
    assert max(keys.index(k) for k in seps) < min(
        i for i, k in enumerate(keys) if "-median" in str(k[0]))


def test_drizzle_computes_with_the_priority(trio, tmp_path, monkeypatch):
    seen: list = []
    real = scheduling.local_compute

    def recording(graph, keys, progress=False, **kw):
        seen.append(kw.get("priority"))
        return real(graph, keys, progress, **kw)

    monkeypatch.setattr(scheduling, "local_compute", recording)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        drizzle(trio, tmp_path / "d" / "m", params=PARAMS, tile_size=128, region_size=128,
                threads_per_worker=2, log=lambda m: None)
    main = [p for p in seen if p]
    assert len(main) == 1 and all("-sep" in str(k[0]) for k, v in main[0].items() if v > 0)
    assert all(("-crmask" in str(k[0])) == (v == -2) for k, v in main[0].items())


def test_mask_files_and_smallest_band_last(trio, tmp_path):
    """The crmask tasks at -2 and the final tiles of the band with the fewest rows at -1
    (banded products): the last rows written after the last tile are the fewest, and the
    mask files are made meanwhile. Oracle: the tiles' windows."""
    job = drizzle_graph(trio, tmp_path / "b" / "m", params=PARAMS, tile_size=128,
                        region_size=128, banded_product=True)
    windows = {key: task[1].window for key, task in job.graph.items()
               if key in set(job.tiles.values())}
    bands = {w[:2] for w in windows.values()}
    assert len(bands) > 1
    fewest = min(b1 - b0 for b0, b1 in bands)
    last = max(b for b in bands if b[1] - b[0] == fewest)
    assert {k for k, v in job.priority.items() if v == -1} == {
        k for k, w in windows.items() if w[:2] == last}
    masks = {k for k in job.graph if "-crmask" in str(k[0])}
    assert masks and {k for k, v in job.priority.items() if v == -2} == masks
    job.scratch.remove()
