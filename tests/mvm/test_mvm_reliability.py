"""Reliability: bad inputs, interruption and resume, a 2-process cluster, a killed worker."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from hapdask import mvm
from hapdask.export import zarr as xzarr

SKYCELL = "p1889x07y19"
BASE_TILE = 512
SUBSET = ["wfc3_uvis_f475w", "wfc3_ir_f160w"]  # 3 layers, 19 tiles of 512
warnings.filterwarnings("ignore", category=fits.verify.VerifyWarning)


def _assert_same_products(out: Path, ref: Path, names) -> None:
    for name in names:
        with fits.open(out / f"{name}.fits") as a, fits.open(ref / f"{name}.fits") as b:
            for ext in ("SCI", "WHT", "CTX"):
                np.testing.assert_array_equal(a[ext].data, b[ext].data, err_msg=f"{name} {ext}")
            for key in ("MEANWHT", "MEDWHT", "MEANNEXP", "NPIXFRAC", "NDRIZIM"):
                assert a[0].header[key] == b[0].header[key]
    import xarray as xr

    for name in names:
        za = xr.open_zarr(out / f"hst_skycell-{SKYCELL}.zarr", group=name)
        zb = xr.open_zarr(ref / f"hst_skycell-{SKYCELL}.zarr", group=name)
        np.testing.assert_array_equal(za.sci.values, zb.sci.values)
        np.testing.assert_array_equal(za.wht.values, zb.wht.values)


def test_bad_inputs_are_reported_and_skipped(sim, true_wcs, verdicts, tmp_path, capsys):
    """A truncated file, a NaN-filled one and a non-FITS file never abort the cell."""
    from hapdask.cli import main

    src = {p.name: p for p in sim.exposures}
    data = tmp_path / "inputs"
    data.mkdir()
    for good in ("if3s01a3q_flt.fits", "if3s01a4q_flt.fits"):
        shutil.copy(src[good], data / good)
    raw = src["if3s04a5q_flt.fits"].read_bytes()
    (data / "if3s04a5q_flt.fits").write_bytes(raw[: len(raw) // 2])
    with fits.open(src["if3s04a6q_flt.fits"]) as h:
        h["SCI"].data = np.full_like(h["SCI"].data, np.nan)
        h.writeto(data / "if3s04a6q_flt.fits")
    (data / "junk_flt.fits").write_text("this is not a FITS file\n")

    result = mvm.run(SKYCELL, str(data), output=tmp_path / "out", tile_size=1024,
                     wcs_updates=true_wcs, log=lambda m: None, verdicts=verdicts)
    bad = {Path(r.path).name: r for r in result.plan.rejected}
    assert set(bad) == {"if3s04a5q_flt.fits", "if3s04a6q_flt.fits", "junk_flt.fits"}
    assert all(r.reason for r in bad.values())
    assert "nan" in bad["if3s04a6q_flt.fits"].reason.lower()
    assert sorted(i.rootname for i in result.plan.inputs) == ["if3s01a3q", "if3s01a4q"]
    assert len(result.plan.layers) == 2  # F160W fine + coarse
    text = result.summary()
    for name in bad:
        assert f"rejected: {name}" in text

    # the CLI says the same and exits 0
    assert main(["mvm", SKYCELL, "--input", str(data), "--output", str(tmp_path / "cli"),
                 "--tile-size", "1024", "--format", "fits"]) == 0
    out = capsys.readouterr().out
    assert "rejected: junk_flt.fits" in out and "wrote" in out


def test_no_input_at_all_fails_with_a_reason(tmp_path):
    from hapdask.cli import main

    (tmp_path / "junk_flt.fits").write_text("nope\n")
    assert main(["mvm", SKYCELL, "--input", str(tmp_path), "--output",
                 str(tmp_path / "out")]) == 1


class _Interrupt(Exception):
    pass


def test_interrupted_run_resumes_identically(baseline, sim, true_wcs, verdicts, tmp_path):
    """Stop after a few tiles: no FITS under its final name; a re-run reuses the zarr tiles
    already written (not recomputed) and produces exactly the baseline output."""
    from dask.callbacks import Callback

    result0, ref = baseline
    names = [n for n in result0.plan.layers if any(k in n for k in SUBSET)]
    total = sum(len(result0.plan.layers[n].tiles) for n in names)
    out = tmp_path / "out"
    written = []

    class StopAfter(Callback):
        def _posttask(self, key, result, dsk, state, id):
            if isinstance(key, tuple) and str(key[0]).startswith("mvm-write-"):
                written.append(key)
                if len(written) == 6:
                    raise _Interrupt("simulated interruption")

    kw = dict(output=out, tile_size=BASE_TILE, wcs_updates=true_wcs, threads_per_worker=1,
              log=lambda m: None, layers=SUBSET, verdicts=verdicts)
    with StopAfter(), pytest.raises(_Interrupt):
        mvm.run(SKYCELL, str(sim.mvm_poller), **kw)
    for name in names:
        assert not (out / f"{name}.fits").exists()
    assert not any(p.name.endswith(".part") for p in out.iterdir())  # cleaned on failure
    store = out / f"hst_skycell-{SKYCELL}.zarr"
    done = 0
    for name in names:
        lay = result0.plan.layers[name]
        layout = xzarr.ZarrLayout(str(store), name, lay.shape, BASE_TILE, lay.nplanes)
        done += int(xzarr.tiles_done(layout).sum())
    assert 6 <= done < total

    result = mvm.run(SKYCELL, str(sim.mvm_poller), **kw)
    assert result.tiles_reused == done
    assert result.tiles_computed == total - done
    assert not any(p.name.endswith(".part") for p in out.iterdir())
    _assert_same_products(out, ref, names)


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lc = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, silence_logs=50)
        client = Client(lc)
    yield lc, client
    client.close()
    lc.close()


def test_two_process_cluster_on_loopback_matches_one_thread(baseline, sim, true_wcs, verdicts,
                                                             tmp_path, cluster):
    result0, ref = baseline
    lc, client = cluster
    assert lc.scheduler_address.startswith("tcp://127.0.0.1:")
    assert len(client.scheduler_info()["workers"]) == 2
    result = mvm.run(SKYCELL, str(sim.mvm_poller), output=tmp_path, tile_size=BASE_TILE,
                     wcs_updates=true_wcs, scheduler=client, log=lambda m: None,
                     layers=SUBSET, verdicts=verdicts)
    assert len(result.plan.layers) == 3
    _assert_same_products(tmp_path, ref, list(result.plan.layers))


def test_killed_worker_mid_run_gives_identical_output(baseline, sim, true_wcs, verdicts,
                                                      tmp_path, cluster):
    """SIGKILL one of the two worker processes once a few tiles are written: the scheduler
    reruns its tasks elsewhere (tile writes are idempotent) and the output is identical."""
    result0, ref = baseline
    lc, client = cluster
    store = tmp_path / f"hst_skycell-{SKYCELL}.zarr"
    names = [n for n in result0.plan.layers if any(k in n for k in SUBSET)]
    total = sum(len(result0.plan.layers[n].tiles) for n in names)
    state = {"killed_at": None}
    finished = threading.Event()

    def killer():
        while not finished.is_set():
            done = 0
            if store.exists():
                for name in names:
                    lay = result0.plan.layers[name]
                    try:
                        layout = xzarr.ZarrLayout(str(store), name, lay.shape, BASE_TILE,
                                                  lay.nplanes)
                        done += int(xzarr.tiles_done(layout).sum())
                    except Exception:
                        pass
            if done >= 2:
                nanny = next(iter(lc.workers.values()))
                os.kill(nanny.process.process.pid, signal.SIGKILL)
                state["killed_at"] = done
                return
            time.sleep(0.02)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        result = mvm.run(SKYCELL, str(sim.mvm_poller), output=tmp_path, tile_size=BASE_TILE,
                         wcs_updates=true_wcs, scheduler=client, log=lambda m: None,
                         layers=SUBSET, verdicts=verdicts)
    finally:
        finished.set()
        t.join()
    assert state["killed_at"] is not None and state["killed_at"] < total
    assert result.tiles_computed == total
    _assert_same_products(tmp_path, ref, names)
