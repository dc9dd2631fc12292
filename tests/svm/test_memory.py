"""hapdask._memory: freed memory is reused without new page faults; workers get the setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hapdask import _memory

ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")

#: a thread (not the main one: its blocks would come from a per-thread arena) makes and drops a
#: 64 MiB array 8 times; numpy's hugepage advice is off so that a fault is one page
_PROBE = """
import json, resource, sys, threading
import numpy as np
from numpy._core.multiarray import _set_madvise_hugepage
from hapdask import _memory
_set_madvise_hugepage(False)
active = _memory.keep_freed_memory() if sys.argv[1].startswith("keep") else False
def work():
    for _ in range(8):
        a = np.ones(64 << 20, dtype=np.uint8)
        del a
        if sys.argv[1].endswith("trim"):
            _memory.release_free_memory()  # as the catalogs' banded steps call it
    if sys.argv[1].endswith("give-back"):
        _memory.give_back_free_memory()  # as the catalog stages and task call it
def anon():
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("RssAnon")) * 1024
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
t = threading.Thread(target=work); t.start(); t.join()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
print(json.dumps({"active": active, "faults": faults, "env": _memory.worker_environ(),
                  "anon": anon()}))
"""


def _probe(mode: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for k in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_"):
        env.pop(k, None)
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_arrays_are_reused_without_new_page_faults():
    pages = 64 * MIB // PAGE  # faults of one fresh 64 MiB array
    default = _probe("default")
    kept = _probe("keep")
    # glibc's default maps and unmaps every such array: every one faults all its pages again
    assert not default["active"] and default["env"] == {}
    assert default["faults"] >= 6 * pages
    # kept: only the first array faults its pages; the others reuse them
    assert kept["active"]
    assert kept["faults"] <= 2 * pages
    assert kept["env"] == {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0",
                           "MALLOC_TRIM_THRESHOLD_": str(_memory.TRIM_THRESHOLD)}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_free_memory_keeps_what_the_setting_keeps():
    """The catalogs' malloc_trim between stages must not hand back the memory a process chose
    to keep: with the setting on, arrays freed and trimmed are still reused without faults."""
    pages = 64 * MIB // PAGE
    kept = _probe("keep-trim")
    assert kept["active"]
    assert kept["faults"] <= 2 * pages


def test_plain_import_changes_nothing():
    code = ("import hapdask, hapdask._memory as m; from hapdask.cli import build_parser; "
            "build_parser(); print(m.is_active())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.stdout.strip() == "False"


def test_local_cluster_workers_are_spawned_with_the_setting(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    from hapdask.scheduling import compute_context

    monkeypatch.setattr(_memory, "_active", True)  # as after keep_freed_memory()
    want = _memory.worker_environ()
    # the nanny copies its pre-spawn variables into this process's environment, and values
    # already there win over the configuration (a user's own MALLOC_* settings are kept):
    # start without the ones an earlier cluster of this test session left
    saved = {k: os.environ.pop(k, None) for k in want}
    try:
        with compute_context(None, 1, 1, lambda m: None, scratch=str(tmp_path)) as (_, client):
            assert isinstance(client, distributed.Client)
            got = client.run(lambda: {k: os.environ.get(k) for k in want})
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert list(got.values()) == [want]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_give_back_free_memory_hands_back_what_the_setting_keeps():
    """At the chosen points (catalog stages and task) the freed arrays leave the resident
    memory even with the setting on: 64 MiB less than when they are kept."""
    kept = _probe("keep")
    given = _probe("keep-give-back")
    assert kept["active"] and given["active"]
    assert kept["anon"] - given["anon"] >= 48 * MIB


def _rss_file() -> int:
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("RssFile")) * 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux madvise, /proc")
def test_drop_file_pages_releases_read_pages_and_keeps_the_values(tmp_path):
    from astropy.io import fits

    rng = np.random.default_rng(5)
    data = rng.normal(size=(2048, 4096)).astype(np.float32)  # 32 MiB
    path = tmp_path / "img.fits"
    fits.PrimaryHDU(data).writeto(path)
    with fits.open(path, memmap=True) as hdul:
        mapped = hdul[0].data
        before = _rss_file()
        total = float(np.sum(mapped, dtype=np.float64))  # reads every page
        assert _rss_file() - before >= 24 * MIB
        assert _memory.drop_file_pages(mapped[100:200])  # a view of the map: the whole map
        assert _rss_file() - before <= 4 * MIB
        # the pages are read again where used: the same values
        assert float(np.sum(mapped, dtype=np.float64)) == total
        np.testing.assert_array_equal(mapped, data)
    assert not _memory.drop_file_pages(data)  # no mapping: nothing done


@pytest.mark.parametrize("band", [1, 2, 7, 64, 10_000])
@pytest.mark.parametrize("seed", [0, 1])
def test_banded_contours_equal_find_contours(band, seed):
    """``_contours`` of a whole array (segments collected band by band of rows) gives skimage's
    ``find_contours(mask, 0.5)`` exactly: the same contours, points and order, for masks with
    holes, regions meeting at a corner, regions touching the array's edges and one-pixel
    regions, whatever the band."""
    from scipy import ndimage
    from skimage.measure import find_contours

    from hapdask.svm.keywords import _contours

    rng = np.random.default_rng(seed)
    mask = ndimage.gaussian_filter(rng.normal(size=(157, 131)), 3.0) > 0.05
    mask[40:60, 30:50] = True
    mask[45:50, 35:40] = False  # a hole
    mask[100, 100] = mask[101, 101] = True  # meeting at a corner
    mask[0, :20] = True  # at the edge
    mask[-1, -1] = True
    want = find_contours(mask, 0.5)
    got = _contours(mask, None, band=band)
    assert len(want) > 10
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype and np.array_equal(g, w)
