"""Full sky: hapdask plan --exposures, hapdask mvm --plan on a LocalCluster (isolation, resume),
the deploy paths (same --scheduler address), and the ProjectionCell array.

Data: one small simulated visit moved onto the corner where SkyCells p1889x10y10, x11y10,
x10y11 and x11y11 meet, so every exposure lands in four SkyCells and the products meet across
SkyCell boundaries; plus one inventory row whose file is missing (its SkyCell must fail alone).
"""

from __future__ import annotations

import importlib.util
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from distributed import get_task_stream

from hapdask.archive import inventory_from_exposures, plan_archive, read_plan, write_pollers
from hapdask.archive.inventory import normalise
from hapdask.cli import main as cli_main
from hapdask.io import open_exposure
from hapdask.mvm.batch import FAILURES, run_batch
from hapdask.mvm.projection import _read_window, cutout, owner_edges, projection_cell
from skycells import ProjectionCell, SkyCell, cells_for_footprint

REPO = Path(__file__).resolve().parents[2]
STEP = 21442
CORNER = 10 * STEP + 256  # pcell pixel of the owner boundary between SkyCells x10/x11 (and y)
CELLS = [f"skycell-p1889x{x:02d}y{y:02d}" for x in (10, 11) for y in (10, 11)]
BAD = "skycell-p1889x13y11"
LAYER = "wfc3_ir_f160w_all_drz"


@pytest.fixture(scope="module")
def corner(tmp_path_factory):
    """(plan, true WCS updates, exposures) of the moved set plus one missing-file row."""
    from hapdask.simulate import simulate_visits
    from hapdask.simulate.relocate import relocate_set

    root = tmp_path_factory.mktemp("fullsky")
    sim = simulate_visits("p1889x10y10", root / "sim", small=True, visits=1)
    pc = ProjectionCell(1889)
    ra, dec = pc.wcs.wcs_pix2world([[CORNER, CORNER]], 0)[0]
    exposures, true = relocate_set(sim, float(ra), float(dec), root / "moved")
    inv, bad = inventory_from_exposures(root / "moved")
    assert not bad and len(inv) == len(exposures)
    # the inventory's outlines come from the headers (full distortion): same SkyCells as
    # cells_for_footprint on the exposure's chip WCSs
    for p in exposures:
        e = open_exposure(p)
        got = set(cells_for_footprint([c.wcs() for c in e.chips]))
        assert got == set(cells_for_footprint(e.footprints())), p
    ra2, dec2 = pc.wcs.wcs_pix2world([[12 * STEP + 5000, 10 * STEP + 5000]], 0)[0]
    d = 0.002
    missing = inv.iloc[0].copy()
    missing["obs_id"] = "if3s99zzq"
    missing["path"] = str(root / "missing_flc.fits")
    missing["s_region"] = (f"POLYGON ICRS {ra2 + d} {dec2 - d} {ra2 - d} {dec2 - d} "
                           f"{ra2 - d} {dec2 + d} {ra2 + d} {dec2 + d}")
    inv = normalise(pd.concat([inv, missing.to_frame().T], ignore_index=True))
    plan = plan_archive(inv, root / "plan", num_workers=1, log=lambda m: None)
    assert sorted(plan.skycells["skycell"]) == sorted([*CELLS, BAD])
    return plan, true, exposures


@pytest.fixture(scope="module")
def client():
    """A 2-process LocalCluster standing in for a batch system / compose / Kubernetes."""
    from distributed import Client, LocalCluster

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        c = Client(cluster)
    yield c
    c.close()
    cluster.close()


def _opts(true):
    return {"layers": ["f160w_all"], "tile_size": 512, "formats": ["zarr"],
            "wcs_updates": true}


@pytest.fixture(scope="module")
def batch(corner, client, tmp_path_factory):
    plan, true, _ = corner
    out = tmp_path_factory.mktemp("batch")
    with warnings.catch_warnings(), get_task_stream(client) as ts:
        warnings.simplefilter("ignore")
        res = run_batch(plan, None, output=out, scheduler=client, concurrency=2, retries=1,
                        run_options=_opts(true), log=lambda m: None)
    return res, out, ts.data


def _sci(out: Path, cell: str) -> np.ndarray:
    g = zarr.open_group(str(out / cell / f"hst_{cell}.zarr"), mode="r")
    return np.asarray(g[f"hst_{cell}_{LAYER}"]["sci"][...])


def test_batch_isolation_and_tables(batch):
    res, out, tasks = batch
    status = {o.skycell: o for o in res.outcomes}
    assert all(status[c].status == "done" for c in CELLS)
    assert status[BAD].status == "failed" and "missing_flc.fits" in status[BAD].error
    assert status[BAD].attempts == 2  # one retry
    # largest estimated cost first
    assert [o.skycell for o in res.outcomes][-1] == BAD
    fails = pd.read_csv(out / FAILURES)
    assert fails["skycell"].tolist() == [BAD]
    for c in CELLS:
        assert np.isfinite(_sci(out, c)).any()
    # the SkyCell graphs ran on the cluster's workers (both of them)
    keys = " ".join(str(t["key"]) for t in tasks)
    assert all(f"mvm-write-hst_{c}" in keys for c in CELLS)
    assert len({t["worker"] for t in tasks}) == 2


def test_batch_resume(batch, corner, client):
    res, out, _ = batch
    plan, true, _ = corner
    before = {c: _sci(out, c) for c in CELLS}
    stamps = {c: (out / c / f"{c}_manifest.txt").stat().st_mtime_ns for c in CELLS}
    # an interrupted SkyCell: its products exist but the run never wrote its manifest
    victim = CELLS[0]
    (out / victim / f"{victim}_manifest.txt").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = run_batch(plan, [c.removeprefix("skycell-") for c in CELLS], output=out,
                          scheduler=client, retries=0, run_options=_opts(true),
                          log=lambda m: None)
    st = {o.skycell: o.status for o in again.outcomes}
    assert st[victim] == "done"
    assert all(st[c] == "skipped" for c in CELLS[1:])
    for c in CELLS[1:]:  # finished SkyCells not recomputed
        assert (out / c / f"{c}_manifest.txt").stat().st_mtime_ns == stamps[c]
    for c in CELLS:
        np.testing.assert_array_equal(_sci(out, c), before[c])


def _load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _SharedCluster:
    """The test cluster seen through the script's make_cluster (closing it is a no-op)."""

    def __init__(self, client) -> None:
        self.scheduler_address = client.scheduler.address
        self.dashboard_link = ""

    def close(self) -> None:
        pass


def test_hpc_script_runs_on_its_cluster(corner, client, tmp_path, monkeypatch, batch):
    plan, _, _ = corner
    res, out, _ = batch
    mod = _load_script(REPO / "deploy" / "hpc" / "slurm_mvm.py")
    monkeypatch.setattr(mod, "make_cluster", lambda queue, jobs: _SharedCluster(client))
    target = tmp_path / "out"
    # one SkyCell copied as finished (skipped), one to build on the cluster
    shutil.copytree(out / CELLS[1], target / CELLS[1])
    with get_task_stream(client) as ts:
        code = mod.main([str(plan.path), CELLS[0], CELLS[1], "--output", str(target),
                         "--queue", "local", "--layer", "f160w_all", "--tile-size", "512",
                         "--format", "zarr"])
    assert code == 0
    assert any(f"mvm-write-hst_{CELLS[0]}" in str(t["key"]) for t in ts.data)
    summary = pd.read_csv(target / "batch_summary.csv").set_index("skycell")["status"]
    assert summary[CELLS[0]] == "done" and summary[CELLS[1]] == "skipped"
    assert (target / CELLS[0] / f"hst_{CELLS[0]}.zarr").is_dir()
    assert np.isfinite(_sci(target, CELLS[0])).any()


def test_url_poller_on_scheduler(corner, client, tmp_path):
    """Kubernetes/compose path: a poller given as a URL, the cluster given by address."""
    plan, _, _ = corner
    (poller,) = write_pollers(read_plan(plan.path), [CELLS[3]])
    code = cli_main(["mvm", CELLS[3].removeprefix("skycell-"), "--input", poller.as_uri(),
                     "--output", str(tmp_path / "k8s"), "--scheduler",
                     client.scheduler.address, "--layer", "f160w_all", "--tile-size", "512",
                     "--format", "zarr"])
    assert code == 0
    assert (tmp_path / "k8s" / f"{CELLS[3]}_manifest.txt").is_file()


def test_projection_cell_equals_skycell_products(batch, monkeypatch):
    res, out, _ = batch
    arr = projection_cell("p1889", LAYER, out)
    assert arr.shape == ProjectionCell(1889).shape
    assert sorted(arr.attrs["skycells"]) == CELLS
    edges = owner_edges()
    for cell in CELLS:
        sc = SkyCell.from_name(cell)
        g = zarr.open_group(str(out / cell / f"hst_{cell}.zarr"), mode="r")[f"hst_{cell}_{LAYER}"]
        sci = np.asarray(g["sci"][...])
        crpix1, crpix2 = g.attrs["wcs"]["CRPIX1"], g.attrs["wcs"]["CRPIX2"]
        x0 = sc.pc_offset[0] + int(round(sc.crpix[0] - crpix1))
        y0 = sc.pc_offset[1] + int(round(sc.crpix[1] - crpix2))
        i, j = sc.x - 1, sc.y - 1
        # the part of the product this SkyCell owns
        ya, yb = max(y0, edges[j]), min(y0 + sci.shape[0], edges[j + 1])
        xa, xb = max(x0, edges[i]), min(x0 + sci.shape[1], edges[i + 1])
        assert yb > ya and xb > xa
        got = arr.isel(y=slice(ya, yb), x=slice(xa, xb)).values
        np.testing.assert_array_equal(got, sci[ya - y0:yb - y0, xa - x0:xb - x0])
    # a window across the x10/x11 boundary: left from x10's product, right from x11's
    win = arr.isel(y=slice(CORNER - 300, CORNER - 100), x=slice(CORNER - 150, CORNER + 150))
    vals = win.values
    assert np.isfinite(vals[:, :150]).any() and np.isfinite(vals[:, 150:]).any()
    # lazy RA/Dec agree with the projection cell's WCS
    ra, dec = ProjectionCell(1889).wcs.wcs_pix2world([[CORNER, CORNER - 300]], 0)[0]
    np.testing.assert_allclose(win.ra.values[0, 150], ra, rtol=0, atol=1e-10)
    np.testing.assert_allclose(win.dec.values[0, 150], dec, rtol=0, atol=1e-10)
    # a cutout reads only its chunks: one window from each of the 4 owners it spans
    calls = []

    def spy(ref, var, y0, y1, x0, x1):
        calls.append((ref.group, y0, y1, x0, x1))
        return _read_window(ref, var, y0, y1, x0, x1)

    monkeypatch.setattr("hapdask.mvm.projection._read_window", spy)
    cra, cdec = ProjectionCell(1889).wcs.wcs_pix2world([[CORNER, CORNER]], 0)[0]
    cut = cutout(arr, float(cra), float(cdec), 200).compute(scheduler="sync").values
    assert cut.shape == (200, 200)
    assert len(calls) == 4
    assert all(y1 - y0 <= 100 and x1 - x0 <= 100 for _, y0, y1, x0, x1 in calls)


class _KillOnce:
    """Worker plugin: the first worker to start a tile-write task dies (once per marker file)."""

    name = "hapdask-kill-once"

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def setup(self, worker) -> None:
        pass

    def teardown(self, worker) -> None:
        pass

    def transition(self, key, start, finish, **kwargs) -> None:
        import os

        if finish == "executing" and "mvm-write-" in str(key):
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.close(fd)
            os._exit(1)


def test_killed_worker_same_products(batch, corner, client, tmp_path):
    from distributed.diagnostics.plugin import WorkerPlugin

    res, out, _ = batch
    plan, true, _ = corner
    marker = tmp_path / "killed"
    plugin = type("KillOnce", (_KillOnce, WorkerPlugin), {})(str(marker))
    client.register_plugin(plugin)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            again = run_batch(plan, [CELLS[2]], output=tmp_path / "out", scheduler=client,
                              retries=0, run_options=_opts(true), log=lambda m: None)
    finally:
        client.unregister_worker_plugin(_KillOnce.name)
    assert marker.exists()  # a worker really died in the middle of the SkyCell
    assert again.outcomes[0].status == "done"
    np.testing.assert_array_equal(_sci(tmp_path / "out", CELLS[2]), _sci(out, CELLS[2]))
