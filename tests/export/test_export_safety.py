"""Safe output paths (hapdask.export.paths) and the output-directory lock (hapdask.export.lock)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hapdask.export.lock import LOCK_NAME, OutputLock, OutputLocked, lock_owner
from hapdask.export.paths import (
    check_no_links,
    commit,
    create_temporary,
    output_path,
    temporary_name,
)


@pytest.mark.parametrize("name", ["../x.fits", "a/b.fits", "..", ".", "", "x\n.fits",
                                  "x\x1b.fits", "/etc/passwd"])
def test_output_path_refuses_names_that_are_not_one_plain_component(tmp_path, name):
    with pytest.raises(ValueError, match="plain file name"):
        output_path(tmp_path, name)
    assert list(tmp_path.iterdir()) == []


def test_temporary_is_created_exclusively_without_following_a_planted_link(tmp_path):
    target = tmp_path / "target"
    target.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    final = output_path(out, "p.fits")
    temporary_name(final).symlink_to(target)
    with os.fdopen(create_temporary(final), "w") as fh:
        fh.write("new")
    assert commit(final).read_text() == "new" and target.read_text() == "keep"
    (out / "link.fits").symlink_to(target)
    with pytest.raises(ValueError, match="symbolic link"):
        output_path(out, "link.fits")
    (out / "sub").symlink_to(tmp_path)  # a link to a directory outside
    with pytest.raises(ValueError, match="symbolic link"):
        output_path(out, "sub")


def test_lock_refuses_a_second_holder_and_is_released(tmp_path):
    with OutputLock(tmp_path / "out") as lock:
        owner = lock_owner(tmp_path / "out")
        assert owner["pid"] == os.getpid() and owner["host"] and owner["start"]
        with pytest.raises(OutputLocked, match=f"pid {os.getpid()}"):
            OutputLock(tmp_path / "out").acquire()
        assert lock.path.exists()
    assert not (tmp_path / "out" / LOCK_NAME).exists()
    with pytest.raises(RuntimeError), OutputLock(tmp_path / "out"):
        raise RuntimeError("boom")
    assert not (tmp_path / "out" / LOCK_NAME).exists()  # released on failure too


def test_lock_held_by_another_live_process_is_refused_dead_one_taken_over(tmp_path):
    out = tmp_path / "out"
    code = ("import sys, time; from hapdask.export.lock import OutputLock; "
            f"l = OutputLock({str(out)!r}).acquire(); print('locked', flush=True); "
            "sys.stdin.readline()")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLocked, match=f"pid {proc.pid}"):
            OutputLock(out).acquire()
    finally:
        proc.kill()  # dies holding the lock: the file stays, the kernel lock goes
        proc.wait()
    assert (out / LOCK_NAME).exists()
    notes: list[str] = []
    with OutputLock(out, log=notes.append):
        assert lock_owner(out)["pid"] == os.getpid()
    assert notes and f"pid {proc.pid}" in notes[0] and "stale" in notes[0]


def test_a_link_inside_a_directory_product_is_refused(tmp_path):
    store = tmp_path / "s.zarr"
    (store / "layer" / "sci").mkdir(parents=True)
    (store / "layer" / "sci" / "zarr.json").write_text("{}")
    check_no_links(store)
    (store / "layer" / "sci" / "c").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="symbolic link inside"):
        check_no_links(store)
