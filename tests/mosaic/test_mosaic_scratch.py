"""Run-scoped scratch files: separate-drizzle stacks and sums."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from hapdask.mosaic.scratch import (
    OWNER_FILE,
    Scratch,
    aligned_empty,
    aligned_zeros,
    load_array,
    load_array_async,
    remove_stale,
)


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
