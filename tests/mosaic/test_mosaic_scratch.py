"""Run-scoped scratch files: cached chip pixel maps and separate-drizzle stacks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from hapdask.drizzle import calc_pixmap
from hapdask.io import open_exposure
from hapdask.mosaic import chip_refs, north_up_grid
from hapdask.mosaic.scratch import (
    OWNER_FILE,
    Scratch,
    aligned_empty,
    aligned_zeros,
    load_array,
    load_array_async,
    remove_stale,
)
from hapdask.mosaic.stages import chip_pixmap
from hapdask.mosaic.tiles import place_chips


def test_save_and_load_regions(tmp_path):
    s = Scratch.create(tmp_path, "out")
    a = np.arange(5 * 7 * 2, dtype=np.float64).reshape(5, 7, 2)
    path = s.save("a", a)
    assert path == s.path("a")
    assert np.array_equal(load_array(path), a)
    assert np.array_equal(load_array(path, (1, 4, 2, 6)), a[1:4, 2:6])
    assert sorted(p.name for p in (tmp_path / s.directory).iterdir()) == ["a.npy", OWNER_FILE]
    with pytest.raises(ValueError, match="outside"):
        load_array(path, (0, 6, 0, 7))
    # into a reused buffer: filled and returned; a buffer of another shape or dtype is refused
    buf = np.full((3, 4, 2), np.nan)
    assert load_array(path, (1, 4, 2, 6), buf) is buf
    assert np.array_equal(buf, a[1:4, 2:6])
    assert np.array_equal(load_array(path, (0, 5, 0, 7), np.empty((5, 7, 2))), a)
    for bad in (np.empty((3, 5, 2)), np.empty((3, 4, 2), np.float32)):
        with pytest.raises(ValueError, match="out must be"):
            load_array(path, (1, 4, 2, 6), bad)
    s.remove()
    assert not (tmp_path / s.directory).exists()


def test_cached_pixmap_equals_computed(tmp_path):
    """The plan's cached whole-chip map gives, per region, exactly what calc_pixmap gives."""
    from hapdask.simulate import simulate_visits

    sim = simulate_visits("p1889x07y19", tmp_path / "sim", small=True, visits=3)
    path = next(p for p in sim.exposures if p.name.startswith("jf3t03a1q"))
    chips = chip_refs(open_exposure(str(path)), 0)
    grid = north_up_grid([c.wcs() for c in chips], scale=0.04)
    scratch = Scratch.create(tmp_path, "m")
    placed = place_chips(chips, grid, 128, scratch=scratch, tag="t")
    plain = place_chips(chips, grid, 128)
    for chip, pl, ref in zip(chips, placed, plain, strict=True):
        assert pl.pixmap is not None and ref.pixmap is None
        assert pl.boxes == ref.boxes
        for region in [(0, chip.shape[0], 0, chip.shape[1]), (3, 70, 100, 301)]:
            want = calc_pixmap(chip.wcs(), grid.wcs(), chip.shape, region=region)
            got = chip_pixmap(chip, grid.thread_wcs(), region, pl.pixmap)
            assert np.array_equal(got, want, equal_nan=True)
            assert np.array_equal(chip_pixmap(chip, grid.thread_wcs(), region), want,
                                  equal_nan=True)
    scratch.remove()


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_killed_run_scratch_removed_by_next_run(tmp_path):
    """A process killed with its scratch directory in place: the next run's clean-up removes
    it; the live run's own directory stays."""
    code = ("import sys; from hapdask.mosaic.scratch import Scratch; "
            f"s = Scratch.create({str(tmp_path)!r}, 'out'); s.save('x', __import__('numpy')"
            ".zeros((4, 4))); print(s.directory, flush=True); sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": ROOT})
    stale = child.stdout.readline().strip()
    assert os.path.isdir(stale)
    assert remove_stale(tmp_path) == []  # its owner still runs
    mine = Scratch.create(tmp_path, "out")
    child.kill()
    child.wait()
    child.stdout.close()
    child.stdin.close()
    assert remove_stale(tmp_path) == [stale]
    assert not os.path.exists(stale)
    assert os.path.isdir(mine.directory)  # a live owner's directory is kept
    mine.remove()


def _fake(tmp_path, name: str, owner: dict | None, files=("a.npy",)) -> str:
    d = tmp_path / name
    d.mkdir()
    for f in files:
        (d / f).write_bytes(b"x")
    if owner is not None:
        (d / OWNER_FILE).write_text(json.dumps(owner))
    return str(d)


def test_remove_stale_only_dead_owners_on_this_host(tmp_path):
    host = socket.gethostname()
    tool = "hapdask.mosaic.scratch"
    dead = _dead_pid()
    gone = _fake(tmp_path, ".m-scratch-aa1", {"tool": tool, "host": host, "pid": dead,
                                              "start": None})
    keep = [
        # a live owner (this process)
        _fake(tmp_path, ".m-scratch-aa2", {"tool": tool, "host": host, "pid": os.getpid(),
                                           "start": None}),
        # another host: its processes cannot be checked from here
        _fake(tmp_path, ".m-scratch-aa3", {"tool": tool, "host": host + "-other", "pid": dead,
                                           "start": None}),
        # no owner record (e.g. a run that is creating its directory right now)
        _fake(tmp_path, ".m-scratch-aa4", None),
        # not this tool's record
        _fake(tmp_path, ".m-scratch-aa5", {"tool": "other", "host": host, "pid": dead}),
        # holds something that is not a scratch file
        _fake(tmp_path, ".m-scratch-aa6", {"tool": tool, "host": host, "pid": dead},
              files=("a.npy", "notes.txt")),
        # not a scratch directory's name
        _fake(tmp_path, "m-scratch-aa7", {"tool": tool, "host": host, "pid": dead}),
    ]
    (tmp_path / ".m-scratch-file").write_text("a file, not a directory")
    assert remove_stale(tmp_path) == [gone]
    assert all(os.path.isdir(d) for d in keep)
    assert (tmp_path / ".m-scratch-file").exists()


def test_remove_stale_pid_reused(tmp_path):
    """The owner's pid now names another process (other start time): the owner is dead."""
    host = socket.gethostname()
    start = json.loads(open(os.path.join(Scratch.create(tmp_path, "x").directory,
                                         OWNER_FILE)).read())["start"]
    if start is None:
        pytest.skip("no /proc start times on this system")
    d = _fake(tmp_path, ".m-scratch-bb1", {"tool": "hapdask.mosaic.scratch", "host": host,
                                           "pid": os.getpid(), "start": str(int(start) + 1)})
    assert d in remove_stale(tmp_path)


def test_drizzle_removes_stale_scratch_of_dead_run(tmp_path):
    """``drizzle()`` clears a dead run's scratch beside its output (with a note), keeps a live
    one's, and leaves none of its own."""
    from hapdask.mosaic import drizzle
    from hapdask.simulate import simulate_visits

    sim = simulate_visits("p1889x07y19", tmp_path / "sim", small=True, visits=3)
    inputs = sorted(str(p) for p in sim.exposures if p.name.startswith("jf3t03"))[:2]
    out = tmp_path / "out"
    out.mkdir()
    host = socket.gethostname()
    stale = _fake(out, ".m-scratch-dead1", {"tool": "hapdask.mosaic.scratch", "host": host,
                                            "pid": _dead_pid(), "start": None})
    live = Scratch.create(out, "other")
    res = drizzle(inputs, out / "m", params={"driz_cr": False, "median": False, "blot": False,
                                            "driz_separate": False, "skysub": False,
                                            "static": False},
                  tile_size=256, log=lambda m: None)
    assert not os.path.exists(stale)
    assert any(stale in n for n in res.notes)
    assert os.path.isdir(live.directory)
    assert sorted(p.name for p in out.glob(".*-scratch-*")) == [os.path.basename(live.directory)]
    live.remove()


def _file_bytes(path: str) -> bytes:
    """The bytes of the file ``path``."""
    with open(path, "rb") as fh:
        return fh.read()


def direct_io(directory: str) -> bool:
    """Whether files in ``directory`` can be opened with O_DIRECT."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return False
    try:
        fd = os.open(os.path.join(directory, OWNER_FILE), os.O_RDONLY | flag)
    except OSError:
        return False
    os.close(fd)
    return True


@pytest.mark.parametrize("chunk", [8192, 3 * 4096])
def test_direct_save_and_load(tmp_path, monkeypatch, chunk):
    """Stacks and sums go past the page cache (O_DIRECT) through a small aligned buffer: any
    array size against the buffer size gives back the same array, and the file is an ordinary
    .npy file whose data start on a block boundary."""
    import hapdask.mosaic.scratch as scratch_mod

    monkeypatch.setattr(scratch_mod, "_CHUNK", chunk)
    s = Scratch.create(tmp_path, "out")
    rng = np.random.default_rng(1)
    for shape, dtype in (((2, 3, 40, 41), np.float32), ((2, 7, 9), np.float64),
                         ((1, 33, 64), np.int32), ((chunk // 4 - 1024, 1), np.float32),
                         ((chunk // 4, 1), np.float32), ((3 * chunk // 8 + 5, 2), np.float64)):
        a = (rng.random(shape) * 1000).astype(dtype)
        path = s.save("a", a, direct=True)
        for got in (load_array(path, direct=True), load_array(path), np.load(path),
                    load_array_async(path, direct=True).result()):
            assert got.dtype == a.dtype and got.shape == a.shape
            assert np.array_equal(got, a)
        # a block-aligned array (written from its own memory) and a stack of it: same files
        for make in (aligned_empty, aligned_zeros):
            b = make(shape, dtype)
            assert b.ctypes.data % 4096 == 0 and b.flags.c_contiguous
            b[...] = a
            assert _file_bytes(s.save("c", b, direct=True)) == _file_bytes(path)
            assert (_file_bytes(s.save("c", [b, b], direct=True))
                    == _file_bytes(s.save("d", [a, a], direct=True)))
            assert np.array_equal(load_array(s.path("c"), direct=True), np.stack([a, a]))
        with open(path, "rb") as fh:
            np.lib.format.read_magic(fh)
            np.lib.format.read_array_header_1_0(fh)
            assert fh.tell() == 4096
        # an ordinary file is read by the direct path too
        assert np.array_equal(load_array(s.save("b", a), direct=True), a)
        if direct_io(s.directory):
            # the whole blocks land in the new array itself (block-aligned), not via the buffer
            assert load_array(path, direct=True).ctypes.data % 4096 == 0
    assert np.array_equal(load_array(path, (1, 3, 0, 2), direct=True), a[1:3, 0:2])
    s.remove()


def test_direct_io_refused_falls_back(tmp_path, monkeypatch):
    """Where the file system refuses O_DIRECT (tmpfs, some network file systems), the
    ordinary path writes and reads the same file."""
    import errno

    import hapdask.mosaic.scratch as scratch_mod

    real_open = os.open
    refused = []

    def no_direct(path, flags, *args):
        if flags & getattr(os, "O_DIRECT", 0):
            refused.append(path)
            raise OSError(errno.EINVAL, "Invalid argument", path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(scratch_mod.os, "open", no_direct)
    s = Scratch.create(tmp_path, "out")
    a = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6)
    path = s.save("a", a, direct=True)
    assert np.array_equal(load_array(path, direct=True), a)
    assert np.array_equal(np.load(path), a)
    if getattr(os, "O_DIRECT", 0):
        assert len(refused) == 2
    assert sorted(os.listdir(s.directory)) == ["a.npy", OWNER_FILE]
    s.remove()


@pytest.mark.parametrize("chunk", [3 * 4096, 2 << 20])
@pytest.mark.parametrize("direct", [True, False])
def test_banded_save_and_load_regions(tmp_path, monkeypatch, chunk, direct):
    """Pixel maps are kept in column bands (direct I/O) and read by region: every region,
    within one band or across several, at any buffer size, gives back numpy's slice; the
    file is an ordinary .npy of the bands. Without O_DIRECT the same file is written and read
    through the ordinary path."""
    import errno

    import hapdask.mosaic.scratch as scratch_mod

    monkeypatch.setattr(scratch_mod, "_CHUNK", chunk)
    if not direct:
        real_open = os.open

        def no_direct(path, flags, *args):
            if flags & getattr(os, "O_DIRECT", 0):
                raise OSError(errno.EINVAL, "Invalid argument", path)
            return real_open(path, flags, *args)

        monkeypatch.setattr(scratch_mod.os, "open", no_direct)
    band = scratch_mod.BAND
    s = Scratch.create(tmp_path, "out")
    rng = np.random.default_rng(2)
    for ny, nx in ((37, 2 * band + 5), (64, band), (5, 3), (301, 3 * band)):
        a = rng.random((ny, nx, 2))
        path = s.save("m", a, banded=True)
        nb = -(-nx // band)
        raw = np.load(path)
        assert raw.shape == (nb, ny, band, 2)
        for b in range(nb):
            w = min(band, nx - b * band)
            assert np.array_equal(raw[b, :, :w], a[:, b * band:b * band + w])
            assert not raw[b, :, w:].any()  # the last band's padding
        regions = [(0, ny, 0, nx), (1, ny - 1, 1, nx - 1), (ny // 2, ny // 2 + 1, 0, 1),
                   (0, ny, nx - 1, nx)]
        if nx > band:
            regions += [(2, ny - 3, band - 2, band + 2), (0, ny, band, nx)]
        for region in regions:
            y0, y1, x0, x1 = region
            assert np.array_equal(scratch_mod.load_banded(path, region), a[y0:y1, x0:x1])
            buf = np.full((y1 - y0, x1 - x0, 2), np.nan)
            got = scratch_mod.load_banded_async(path, region, buf).result()
            assert got is buf and np.array_equal(buf, a[y0:y1, x0:x1])
            # with row spans: every needed pixel (inside its row's span) is the whole read's;
            # each band is read from the first to the last row its spans meet, NaN elsewhere
            lo = rng.integers(x0, x1 + 1, y1 - y0)
            hi = np.minimum(lo + rng.integers(0, 2 * band, y1 - y0), x1)
            if y1 - y0 > 2:
                lo[1], hi[1] = x1, x0  # a row without pixels
            part = scratch_mod.load_banded_async(path, region, None, (lo, hi)).result()
            cols = np.arange(x0, x1)
            need = (cols >= lo[:, None]) & (cols < hi[:, None])
            assert np.array_equal(part[need], a[y0:y1, x0:x1][need])
            for b in range(x0 // band, (x1 - 1) // band + 1):
                c0, c1 = max(x0, b * band), min(x1, (b + 1) * band)
                rows = np.flatnonzero(need[:, c0 - x0:c1 - x0].any(1))
                first, last = (rows[0], rows[-1] + 1) if rows.size else (0, 0)
                got = part[:, c0 - x0:c1 - x0]
                assert np.isnan(got[:first]).all() and np.isnan(got[last:]).all()
                assert np.array_equal(got[first:last], a[y0 + first:y0 + last, c0:c1])
        with pytest.raises(ValueError, match="outside"):
            scratch_mod.load_banded(path, (0, ny + 1, 0, nx))
        with pytest.raises(ValueError, match="one entry per region row"):
            scratch_mod.load_banded(path, (0, ny, 0, nx), spans=(np.zeros(1), np.zeros(1)))
        # written by the scratch I/O threads: the same file
        later = s.save_async("m2", a, banded=True).result()
        assert later == s.path("m2") and np.array_equal(np.load(later), raw)
    with pytest.raises(ValueError, match="banded"):
        scratch_mod.load_banded(s.save("p", np.zeros((4, 5, 2))), (0, 1, 0, 1))
    s.remove()


def test_direct_save_of_a_stack(tmp_path):
    """A sequence of arrays (views, not contiguous) is saved as their stack, as numpy.stack."""
    s = Scratch.create(tmp_path, "out")
    base = np.arange(2 * 40 * 50, dtype=np.float64).reshape(2, 40, 50)
    parts = [base[0, 3:30, 5:45], base[1, 3:30, 5:45]]
    path = s.save("st", parts, direct=True)
    assert np.array_equal(load_array(path, direct=True), np.stack(parts))
    view = np.arange(3 * 20 * 30, dtype=np.int32).reshape(3, 20, 30)[:, 2:18, 1:29]
    assert np.array_equal(load_array(s.save("v", view, direct=True), direct=True), view)
    with pytest.raises(ValueError, match="one shape"):
        s.save("bad", [base[0], base[1, :3]], direct=True)
    s.remove()


def test_map_reader_reads_ahead_without_clobbering(tmp_path):
    """The maps a task asks for, in its order and with chips skipped, are each the region of
    its cached map (the buffer a map lives in is reused only two chips later)."""
    from hapdask.mosaic.stages import MapReader

    s = Scratch.create(tmp_path, "out")
    rng = np.random.default_rng(3)
    shapes = [(60, 300), (45, 200), (60, 300), (70, 150), (50, 260)]
    maps = [rng.random((*sh, 2)) for sh in shapes]
    paths = [s.save(f"m{k}", m, banded=True) for k, m in enumerate(maps)]
    paths[3] = None  # not cached: the reader hands back None (the map is computed)
    boxes = [(3, 40, 10, 250), (0, 45, 0, 200), (10, 60, 100, 300), (0, 10, 0, 10),
             (5, 50, 0, 129)]
    for first in (False, True):  # with the first chip's read started at once, or not
        reader = MapReader(paths, boxes, shapes, [4, 0, 1, 2, 3])
        if first:
            assert reader.start() is reader
        _check_reads(reader, paths, boxes, shapes, maps)
    assert MapReader([None], [(0, 1, 0, 1)], [(5, 5)], [0]).start().get(0) is None
    s.remove()


def _check_reads(reader, paths, boxes, shapes, maps):
    held = {}
    for k in (4, 1, 2, 3):  # chip 0 skipped after its read was started
        got = reader.get(k)
        if paths[k] is None:
            assert got is None
            continue
        y0, y1, x0, x1 = (max(boxes[k][0] - 1, 0), min(boxes[k][1] + 1, shapes[k][0]),
                          max(boxes[k][2] - 1, 0), min(boxes[k][3] + 1, shapes[k][1]))
        pm = chip_pixmap(None, None, (y0, y1, x0, x1), got)
        assert np.array_equal(pm, maps[k][y0:y1, x0:x1])
        held[k] = (pm, maps[k][y0:y1, x0:x1])
        # the map asked for just before this one is still intact
        for prev in list(held)[-2:]:
            assert np.array_equal(*held[prev])


@pytest.mark.parametrize("chunk", [8192, 3 * 4096, 2 << 20])
def test_direct_region_reads(tmp_path, monkeypatch, chunk):
    """A region read with direct I/O (``load_array(region=..., direct=True)``: per row of the
    region its enclosing blocks, in pieces of the aligned buffer) is the array's region, for
    rows of any offset and length against the blocks and the buffer, and into ``out``."""
    import hapdask.mosaic.scratch as scratch_mod

    monkeypatch.setattr(scratch_mod, "_CHUNK", chunk)
    s = Scratch.create(tmp_path, "out")
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2**32, size=(3, 1031, 517), dtype=np.uint32)
    path = s.save("a", list(a), direct=True)
    for region in ((0, 3, 0, 1031), (1, 2, 5, 6), (0, 3, 17, 700), (2, 3, 1000, 1031),
                   (0, 2, 0, 1)):
        y0, y1, x0, x1 = region
        got = load_array(path, region, direct=True)
        assert got.dtype == a.dtype and np.array_equal(got, a[y0:y1, x0:x1])
    out = np.empty((3, 40, 517), np.uint32)
    assert load_array(path, (0, 3, 90, 130), out=out, direct=True) is out
    assert np.array_equal(out, a[:, 90:130])
    with pytest.raises(ValueError, match="outside"):
        load_array(path, (0, 4, 0, 1), direct=True)
    s.remove()
