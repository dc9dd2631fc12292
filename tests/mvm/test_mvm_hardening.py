"""Hardening (issue 13): hostile headers, planted links, shared output directories, stale tiles,
bad science inputs, hangs and late argument errors. Every crafted file is made here from the
small simulated set; each test asserts the observable guarantee."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

import hapdask.mvm.runner
from hapdask import mvm
from hapdask.analyze import analyze_exposure
from hapdask.cli import main
from hapdask.export import zarr as xzarr
from hapdask.export.lock import OutputLock, OutputLocked, lock_name

SKYCELL = "p1889x07y19"
FINE = f"hst_skycell-{SKYCELL}_wfc3_ir_f160w_all_drz"
COARSE = f"hst_skycell-{SKYCELL}_wfc3_ir_f160w_coarse-all_drz"
STORE = f"hst_skycell-{SKYCELL}.zarr"
LOCK = lock_name(f"skycell-{SKYCELL}")
REPO = Path(__file__).resolve().parents[2]
warnings.filterwarnings("ignore", category=fits.verify.VerifyWarning)


# -- helpers --------------------------------------------------------------------------------
def _src(sim, name: str) -> Path:
    return next(p for p in sim.exposures if p.name == name)


def _copy(sim, name: str, dest: Path, primary=None, sci=None) -> Path:
    """Copy a simulated exposure, optionally editing primary/SCI,1 keywords."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not primary and not sci:
        shutil.copy(_src(sim, name), dest)
        return dest
    with fits.open(_src(sim, name)) as h:
        h[0].header.update(primary or {})
        h["SCI", 1].header.update(sci or {})
        h.writeto(dest)
    return dest


def _poke(path: Path, keyword: str, raw: bytes, occurrence: int = 0) -> None:
    """Overwrite the value field of a header card in place with raw bytes (what astropy would
    refuse to write: NaN, control characters, newlines); ``occurrence`` counts the cards of
    that keyword from the start of the file."""
    data = bytearray(path.read_bytes())
    key = keyword.encode().ljust(8) + b"= "
    starts = [i for i in range(0, len(data), 80) if data[i:i + 10] == key]
    start = starts[occurrence]
    data[start + 10:start + 80] = raw.ljust(70)
    path.write_bytes(bytes(data))


def _verdicts(paths) -> dict:
    """Verdicts without the pixel tests (the sanity rules still apply): keeps tests fast."""
    return {str(p): analyze_exposure(str(p), "mvm", check_data=False) for p in paths}


def _run(inputs, out, *, layers=("ir_f160w_all",), formats=("fits",), tile=1024,
         skycell=SKYCELL, **kw):
    inputs = [str(p) for p in inputs]
    kw.setdefault("verdicts", _verdicts(inputs))
    kw.setdefault("log", lambda m: None)
    return mvm.run(skycell, inputs, output=out, tile_size=tile, formats=formats,
                   layers=list(layers), threads_per_worker=1, **kw)


def _files_outside(root: Path, skip: set[Path]) -> dict[str, tuple]:
    out = {}
    for p in root.rglob("*"):
        if any(p == s or s in p.parents for s in skip):
            continue
        st = p.lstat()
        out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


def _within(seconds: float, fn, *args, **kw):
    """Call ``fn`` in a daemon thread; fail (instead of hanging) if it takes too long."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args, **kw)
        except BaseException as exc:  # re-raised in the test thread
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"{fn.__name__} did not finish within {seconds} s (hang)"
    if "error" in box:
        raise box["error"]
    return box["value"]


# -- 1. header values become path components -------------------------------------------------
def test_hostile_name_headers_are_refused_and_nothing_is_written_outside(sim, tmp_path):
    inputs = tmp_path / "in"
    good = _copy(sim, "if3s01a3q_flt.fits", inputs / "if3s01a3q_flt.fits")
    victim = tmp_path / "victim" / "victim_all_drz.fits"
    victim.parent.mkdir()
    victim.write_text("precious")
    hostile = {
        "FILTER": _copy(sim, "if3s01a4q_flt.fits", inputs / "ixxx01a1q_flt.fits",
                        {"ROOTNAME": "ixxx01a1q", "FILTER": "F160W/../../victim/victim"}),
        "DETECTOR": _copy(sim, "if3s04a5q_flt.fits", inputs / "ixxx01a2q_flt.fits",
                          {"ROOTNAME": "ixxx01a2q", "DETECTOR": "a/b"}),
        "INSTRUME": _copy(sim, "if3s04a6q_flt.fits", inputs / "ixxx01a3q_flt.fits",
                          {"ROOTNAME": "ixxx01a3q", "INSTRUME": "WFC3/../../x"}),
        "ROOTNAME": _copy(sim, "if3s02a1q_flt.fits", inputs / "ixxx01a4q_flt.fits",
                          {"ROOTNAME": "../../ixxx01a4q"}),
    }
    out = tmp_path / "out"
    before = _files_outside(tmp_path, {out})
    # the analyze rules run here (no precomputed verdicts for the hostile files)
    result = _run([good, *hostile.values()], out, verdicts=_verdicts([good]))
    assert _files_outside(tmp_path, {out}) == before  # nothing outside out/ written
    assert victim.read_text() == "precious"
    rej = {Path(r.path).name: r for r in result.plan.rejected}
    for key, path in hostile.items():
        assert rej[path.name].rule == "N" and key in rej[path.name].reason
    assert [i.rootname for i in result.plan.inputs] == ["if3s01a3q"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{FINE}.fits", f"{FINE}_trl.txt", f"skycell-{SKYCELL}_manifest.txt"])

    # defence in depth: a forged "keep" verdict still cannot make a name leave out/
    forged = {str(hostile["FILTER"]): analyze_exposure(str(good), check_data=False)}
    with pytest.raises(ValueError, match="FILTER"):
        _run([hostile["FILTER"]], tmp_path / "out2", verdicts=forged, layers=["f160w"])
    assert _files_outside(tmp_path, {out, tmp_path / "out2"}) == before


# -- 2. temporary and final names never follow links ----------------------------------------
def test_planted_links_are_never_written_through(sim, tmp_path):
    good = _src(sim, "if3s01a3q_flt.fits")
    target = tmp_path / "target.txt"
    target.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    for name in (f"{FINE}.fits.part", f"{FINE}_trl.txt.part",
                 f"skycell-{SKYCELL}_manifest.txt.part"):
        (out / name).symlink_to(target)
    _run([good], out)
    assert target.read_text() == "keep me"
    with fits.open(out / f"{FINE}.fits") as h:
        assert h["SCI"].data.shape == h["WHT"].data.shape
    assert not (out / f"{FINE}.fits").is_symlink()
    assert not any(p.name.endswith(".part") for p in out.iterdir())

    # a link at a final product name, or at the zarr store, is refused (target untouched)
    other = tmp_path / "elsewhere"
    other.mkdir()
    for name, fmt in ((f"{FINE}.fits", "fits"), (STORE, "zarr")):
        out2 = tmp_path / f"out-{fmt}"
        out2.mkdir()
        (out2 / name).symlink_to(target if fmt == "fits" else other)
        with pytest.raises(ValueError, match="symbolic link"):
            _run([good], out2, formats=(fmt,))
        assert target.read_text() == "keep me" and not any(other.iterdir())
        assert not any(p.name.endswith(".part") for p in out2.iterdir())


# -- 3. one run at a time per output directory ----------------------------------------------
def test_second_run_into_a_locked_directory_is_refused(sim, tmp_path, capsys):
    good = _src(sim, "if3s01a3q_flt.fits")
    out = tmp_path / "out"
    with OutputLock(out, key=f"skycell-{SKYCELL}"):
        t0 = time.perf_counter()
        with pytest.raises(OutputLocked, match=f"pid {os.getpid()}"):
            _run([good], out)
        assert main(["mvm", SKYCELL, "--input", str(good), "--output", str(out),
                     "--format", "fits"]) == 1
        assert time.perf_counter() - t0 < 10  # refused at once, not after the analysis
        err = capsys.readouterr().err
        assert f"in use for skycell-{SKYCELL} by another hapdask run" in err
        assert "Traceback" not in err
        assert list(out.iterdir()) == [out / LOCK]  # the refused runs wrote nothing
        other = _run([good], out, skycell="p1970x15y02", layers=["f160w"])
        assert other.outputs  # another SkyCell (the exposure touches it too) may share it
    assert not (out / LOCK).exists()  # released on exit

    # a lock left by a run that no longer exists is stale: taken over, with a note
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (out / LOCK).write_text(json.dumps({"host": socket.gethostname(),
                                        "pid": int(dead.stdout), "start": "then"}))
    notes: list[str] = []
    result = _run([good], out, log=notes.append)
    assert result.outputs and any("stale lock" in n for n in notes)
    assert not (out / LOCK).exists()


# -- 4. resume never reuses stale tiles ----------------------------------------------------
def test_changed_input_recomputes_exactly_its_tiles(sim, tmp_path):
    inputs = tmp_path / "in"
    names = ["if3s01a3q_flt.fits", "if3s01a4q_flt.fits", "if3s02a3q_flt.fits",
             "if3s02a4q_flt.fits"]  # two F160W layers' inputs + two F125W ones bounding the grid
    paths = [_copy(sim, n, inputs / n) for n in names]
    out = tmp_path / "out"
    kw = dict(formats=("fits", "zarr"), tile=512, verdicts=_verdicts(paths))
    first = _run(paths, out, **kw)
    assert first.tiles_reused == 0
    # change the pixels of one input in place and put its mtime back
    changed = paths[1]
    st = os.stat(changed)
    with fits.open(changed, mode="update") as h:
        h["SCI", 1].data[100:200, 100:200] += 50.0
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = _run(paths, out, **kw)
    lay = again.plan.layers[FINE]
    k = next(i for i, c in enumerate(lay.chips) if c.key[0] == "if3s01a4q")
    touched = sum(1 for t in lay.tiles if any(i == k for i, _ in t.contribs))
    assert 0 < touched < len(lay.tiles)
    assert again.tiles_computed == touched
    assert again.tiles_reused == len(lay.tiles) - touched
    fresh = _run(paths, tmp_path / "fresh", **kw)
    assert fresh.tiles_reused == 0
    import xarray as xr

    with fits.open(out / f"{FINE}.fits") as a, fits.open(tmp_path / "fresh" / f"{FINE}.fits") \
            as b:
        for ext in ("SCI", "WHT", "CTX"):
            np.testing.assert_array_equal(a[ext].data, b[ext].data)
    za = xr.open_zarr(out / STORE, group=FINE)
    zb = xr.open_zarr(tmp_path / "fresh" / STORE, group=FINE)
    np.testing.assert_array_equal(za.sci.values, zb.sci.values)


# -- 5. wrong science is refused with a reason, the good inputs still drizzled -----------------
def _bad_science_set(sim, root: Path) -> tuple[list[Path], dict[str, tuple[str, str]]]:
    """Good A, B and crafted bad copies: path -> (rule, text the reason must hold)."""
    a = _copy(sim, "if3s01a3q_flt.fits", root / "in" / "if3s01a3q_flt.fits")
    b = _copy(sim, "if3s01a4q_flt.fits", root / "in" / "if3s01a4q_flt.fits")
    dup = _copy(sim, "if3s01a3q_flt.fits", root / "zcopy" / "if3s01a3q_flt.fits")
    gz = root / "in" / "zz_if3s01a4q_flt.fits.gz"
    gz.write_bytes(gzip.compress(b.read_bytes()))
    same_root = _copy(sim, "if3s04a5q_flt.fits", root / "in" / "zz_other_flt.fits",
                      {"ROOTNAME": "if3s01a3q"})
    neg = _copy(sim, "if3s04a6q_flt.fits", root / "in" / "if3s04a6q_flt.fits",
                {"EXPTIME": -100.0})
    sing = _copy(sim, "if3s02a1q_flt.fits", root / "in" / "if3s02a1q_flt.fits",
                 sci={"CD1_1": 0.0, "CD1_2": 0.0})
    nan = _copy(sim, "if3s02a2q_flt.fits", root / "in" / "if3s02a2q_flt.fits")
    _poke(nan, "CD1_1", b"NaN".rjust(20))
    with fits.open(_src(sim, "if3s02a3q_flt.fits")) as h:
        for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
            h["SCI", 1].header[key] *= 1000.0
        big = root / "in" / "if3s02a3q_flt.fits"
        h.writeto(big)
    bad = {dup: ("D", str(a)), gz: ("D", str(b)), same_root: ("D", str(a)),
           neg: ("T", "EXPTIME"), sing: ("W", "singular"), nan: ("W", "CD1_1"),
           big: ("W", "pixel scale")}
    return [a, b, *bad], {str(k): v for k, v in bad.items()}


def test_duplicates_and_bad_science_are_refused_good_inputs_drizzled(sim, tmp_path):
    paths, bad = _bad_science_set(sim, tmp_path)
    result = _run(paths, tmp_path / "out")
    rej = {r.path: r for r in result.plan.rejected}
    assert set(rej) == set(bad)
    for path, (rule, text) in bad.items():
        assert rej[path].rule == rule, rej[path]
        assert text in rej[path].reason, rej[path]
        if rule == "D":
            assert path in rej[path].reason  # names both paths
    assert sorted(i.rootname for i in result.plan.inputs) == ["if3s01a3q", "if3s01a4q"]
    # the insane WCSs (1000x CD ...) did not blow up the grid: same as without those files
    sane = [str(p) for p in paths if bad.get(str(p), ("",))[0] not in ("W", "T")]
    alone = mvm.plan(SKYCELL, sane, tile_size=1024, verdicts=_verdicts(sane),
                     only=["ir_f160w_all"])
    assert result.plan.layers[FINE].shape == alone.layers[FINE].shape
    with fits.open(tmp_path / "out" / f"{FINE}.fits") as h:
        assert h[0].header["NDRIZIM"] == 2 and np.isfinite(h["SCI"].data).any()


# -- 6. no hang, no traceback -------------------------------------------------------------
def test_info_reports_every_file_without_traceback_or_hang(sim, tmp_path):
    paths, bad = _bad_science_set(sim, tmp_path)
    nl = _copy(sim, "if3s04a3q_flt.fits", tmp_path / "in" / "if3s04a3q_flt.fits")
    _poke(nl, "FILTER", b"'F160W\nX'")
    ctrl = _copy(sim, "if3s04a4q_flt.fits", tmp_path / "in" / "if3s04a4q_flt.fits")
    _poke(ctrl, "INSTRUME", b"'WFC3\x1b[2J'")
    fifo = tmp_path / "in" / "fifo_flt.fits"
    os.mkfifo(fifo)
    junk = tmp_path / "in" / "junk_flt.fits"
    junk.write_text("not FITS\n")
    files = [str(p) for p in [*paths, nl, ctrl, fifo, junk]]
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.run([sys.executable, "-m", "hapdask", "info", "--no-data", *files],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 1  # four files could not be read
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [x for x in proc.stderr.splitlines() if x.startswith("hapdask info: error")]
    assert len(errors) == 4  # one line each, in order; astropy cannot parse the two cards
    assert str(nl) in errors[0] and "FILTER" in errors[0]
    assert str(ctrl) in errors[1] and "INSTRUME" in errors[1]
    assert "FIFO" in errors[2] and "junk_flt.fits" in errors[3]
    reports = proc.stdout.split("\n\n")
    assert len(reports) == len(files) - 4  # every readable file reported
    assert not any(ch in proc.stdout for ch in "\x1b\r")
    verdicts = {}
    for rep in reports:
        head = rep.splitlines()[0]
        line = next(x for x in rep.splitlines() if "analyze" in x)
        verdicts[head.split("(", 1)[1].rstrip(")")] = line
    for path, (rule, _) in bad.items():
        assert f"reject, rule {rule} " in verdicts[path], verdicts[path]
    assert all("keep" in verdicts[str(p)] for p in paths[:2])

    # hapdask mvm: the FIFO is refused as an input, without blocking
    p = _within(60, mvm.plan, SKYCELL, [str(fifo), str(paths[0])], tile_size=1024,
                verdicts=_verdicts(paths[:1]), only=["ir_f160w_all"])
    assert [r.rule for r in p.rejected] == ["UNREADABLE"] and "FIFO" in p.rejected[0].reason
    assert [i.rootname for i in p.inputs] == ["if3s01a3q"]


def test_silent_scheduler_times_out_with_a_clear_message(sim, tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)  # accepts connections (kernel backlog) but never answers
    try:
        addr = f"tcp://127.0.0.1:{srv.getsockname()[1]}"
        t0 = time.perf_counter()
        with pytest.raises(OSError, match="cannot connect to the Dask scheduler"):
            _within(60, _run, [_src(sim, "if3s01a3q_flt.fits")], tmp_path / "out",
                    scheduler=addr, scheduler_timeout=1.0)
        assert time.perf_counter() - t0 < 30
    finally:
        srv.close()
    assert not (tmp_path / "out" / LOCK).exists()


def test_workers_are_bounded_and_cluster_scratch_is_removed(sim, tmp_path, capsys):
    from hapdask.mvm.runner import _scheduler

    good = str(_src(sim, "if3s01a3q_flt.fits"))
    with pytest.raises(ValueError, match="exceeds the"):
        mvm.run(SKYCELL, good, output=tmp_path / "out", workers=1000)
    assert main(["mvm", SKYCELL, "--input", good, "--output", str(tmp_path / "o"),
                 "--workers", "1000"]) == 1
    assert "--oversubscribe" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists()
    scratch = tmp_path / "scratch"
    with _scheduler(None, 1, 1, lambda m: None, scratch=scratch) as (_, client):
        dirs = [p.name for p in scratch.iterdir()]
        assert len(dirs) == 1 and dirs[0].startswith(".hapdask-dask-")
        assert client.run(lambda dask_worker: dask_worker.local_directory)
    assert list(scratch.iterdir()) == []


# -- 7. arguments checked first; failures leave nothing half-made; manifest consistent --------
@pytest.mark.parametrize("kw, match", [
    ({"skycell": "p9999x99y99"}, "SkyCell"),
    ({"tile_size": 0}, "tile size"),
    ({"tile_size": 10**9}, "tile size"),
    ({"layers": ["../x"]}, "layer selection"),
    ({"formats": ["png"]}, "format"),
])
def test_bad_arguments_fail_before_any_input_is_read(tmp_path, kw, match):
    args = {"skycell": SKYCELL, "tile_size": 1024, "layers": None, "formats": ("fits",), **kw}
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=match):  # the input does not even exist
        mvm.run(args.pop("skycell"), str(tmp_path / "missing_flt.fits"),
                output=tmp_path / "out", **args)
    assert time.perf_counter() - t0 < 2 and not (tmp_path / "out").exists()


def test_cells_scale_and_unknown_layer_are_reported(sim, tmp_path, capsys):
    assert main(["cells", SKYCELL, "--scale", "1e300"]) == 1
    assert "use a scale between" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no layer of the usable inputs has a name"):
        _run([_src(sim, "if3s01a3q_flt.fits")], tmp_path / "out", layers=["nonexisting"])


def test_failed_run_leaves_no_part_files_and_manifest_stays_consistent(sim, tmp_path,
                                                                         monkeypatch):
    run_module = hapdask.mvm.runner
    good = _src(sim, "if3s01a3q_flt.fits")
    out = tmp_path / "out"
    _run([good], out, layers=["ir_f160w"], formats=("fits", "zarr"))
    listed = (out / f"skycell-{SKYCELL}_manifest.txt").read_text().split()
    assert f"{COARSE}.fits" in listed and STORE in listed
    # a later run of one layer, FITS only, keeps the earlier products listed
    _run([good], out, layers=["ir_f160w_all"], formats=("fits",))
    again = (out / f"skycell-{SKYCELL}_manifest.txt").read_text().split()
    assert again == listed
    assert all((out / n).exists() for n in again)

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(run_module, "write_tile", boom)
    out2 = tmp_path / "out2"
    with pytest.raises(RuntimeError, match="disk on fire"):
        _run([good], out2)
    assert not out2.exists()  # no .part, no lock, no product: the directory made goes again


def test_zarr_tile_written_from_other_inputs_is_not_reusable(tmp_path):
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    lay = xzarr.create_zarr_layer(tmp_path / "s.zarr", "a", (32, 32), 16,
                                  wcs_header=w.to_header(), fingerprint="grid")
    z = np.zeros((16, 16), np.float32)
    xzarr.write_zarr_tile(lay, (0, 0), (0, 16, 0, 16), z, z, fingerprint=7)
    fps = np.array([[7, 9], [9, 9]], dtype=np.uint64)
    np.testing.assert_array_equal(xzarr.reusable_tiles(lay, fps), [[True, False], [False, False]])
    fps[0, 0] = 8
    assert not xzarr.reusable_tiles(lay, fps).any()
