"""Benchmark ``hapdask mvm`` end to end on the demo SkyCell against the reference way.

Engines (each runs in its own subprocess, so peak RSS is measured per engine):

* ``hapdask``     — :func:`hapdask.mvm.run` on a ``LocalCluster`` of 2 worker processes x 1
  thread (FITS + zarr), with the simulator's true WCS as WCS updates (as the CLI does for the
  demo). Peak RSS is reported for the client and for each worker.
* ``reference``   — the same layers on the same grids, the way DrizzlePac's MVM final drizzle
  does it: one process, astropy pixel maps (``drizzle.utils.calc_pixmap``) and the ``drizzle``
  C square kernel (``drizzle.resample.Drizzle``), whole layers in memory, same per-chip sky,
  same weights (EXPTIME x DQ good), written with astropy (SCI, WHT, CTX). Its flux scale is
  DrizzlePac's (:func:`drizzlepac_iscale`, from stwcs), not taken from hapdask's plan.
* ``runmultihap`` — DrizzlePac's own ``runmultihap`` on the demo's MVM poller, if it runs on the
  simulated files (its outcome is printed either way).
* ``full``        — peak RSS per worker for one full 21954 x 21954 fine layer: 49 synthetic
  WFC3/IR-like exposures (1014x1014, 0.128"/px) tiling the whole SkyCell edge to edge.

Run::

    python benchmarks/bench_mvm.py                      # hapdask vs reference, 3 runs each
    python benchmarks/bench_mvm.py --runmultihap        # also DrizzlePac runmultihap (slow)
    python benchmarks/bench_mvm.py --full               # also the full-cell memory test
    python benchmarks/bench_mvm.py --profile --no-warmup  # the 108-tile demo on 2 workers,
        # per-stage breakdown and scheduler overhead (distributed)
    python benchmarks/bench_mvm.py --case acs4 --runmultihap --repeat 3 --runmultihap-runs 2
        # 4 full-frame ACS/WFC exposures: the hapdask mvm CLI vs runmultihap, interleaved,
        # and the --profile breakdown of the last hapdask run

``HAPDASK_DEMO_DIR`` chooses where the demo data are cached (default ~/.cache/hapdask/demo).
Prints medians and ``ratio = reference_time / our_time``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _worker_rss() -> float:
    import resource as r

    return r.getrusage(r.RUSAGE_SELF).ru_maxrss / 1024.0


def _demo(skycell: str):
    from hapdask.simulate import demo_dataset, read_true_wcs

    demo = demo_dataset(skycell)
    return demo, read_true_wcs(demo.true_wcs)


# -- engines (run inside a subprocess) --------------------------------------------------------
def engine_hapdask(skycell: str, out: Path, tile: int, inputs=None, updates=None,
                   formats=("fits", "zarr"), context: bool = True, profile: bool = False
                   ) -> dict:
    from distributed import Client, LocalCluster

    from hapdask import mvm
    from hapdask.profile import Profile

    if inputs is None:
        demo, updates = _demo(skycell)
        inputs = str(demo.mvm_poller)
    t0 = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=50)
    client = Client(cluster)
    t_cluster = time.perf_counter() - t0
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        prof = stack.enter_context(Profile(report_path=out / "dask-report.html")) \
            if profile else None
        result = mvm.run(skycell, inputs, output=out, tile_size=tile, wcs_updates=updates,
                         scheduler=client, formats=formats, context=context, log=lambda m: None)
    wall = time.perf_counter() - t0
    workers = sorted(client.run(_worker_rss).values())
    client.close()
    cluster.close()
    return {"wall": wall, "cluster_start": t_cluster, "rss_client": _rss_mib(),
            "rss_workers": workers, "layers": len(result.plan.layers),
            "tiles": result.tiles_computed,
            "out_pixels": sum(lay.shape[0] * lay.shape[1] for lay in result.plan.layers.values()),
            "profile": prof.report() if prof is not None else ""}


def drizzlepac_iscale(path: str, extver: int, out_wcs) -> float:
    """AstroDrizzle's flux scale for one chip, computed with DrizzlePac's own pieces.

    ``adrizzle`` passes ``pix_ratio = output pscale / wcslin_pscale`` to drizzle, which scales
    the data by ``pix_ratio ** 2``. ``wcslin_pscale`` is what ``imageObject.compute_wcslin``
    gets from ``stwcs.distortion.utils.output_wcs`` for the chip's ``HSTWCS`` (undistorted only
    when the chip has SIP); the output ``pscale`` is ``HSTWCS.pscale`` of the output grid,
    ``sqrt(CD1_1**2 + CD2_1**2)``. Nothing of hapdask's plan enters.
    """
    from stwcs.distortion import utils as stwcs_utils
    from stwcs.wcsutil import HSTWCS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = HSTWCS(path, ext=("SCI", extver))
        wcslin = stwcs_utils.output_wcs([w], undistort=w.sip is not None)
    cd = out_wcs.pixel_scale_matrix
    out_pscale = float(np.hypot(cd[0, 0], cd[1, 0])) * 3600.0
    return (out_pscale / float(wcslin.pscale)) ** 2


def engine_reference(skycell: str, out: Path, hapdask_out: Path | None) -> dict:
    """DrizzlePac's MVM final drizzle, done directly with astropy + the drizzle C kernel."""
    from astropy.io import fits
    from drizzle.resample import Drizzle
    from drizzle.utils import calc_pixmap

    from hapdask import mvm
    from hapdask.dqflags import good_pixel_mask
    from hapdask.mvm.sky import clipped_median

    demo, updates = _demo(skycell)
    # the grids and layer membership (not timed: the same plan hapdask uses)
    p = mvm.plan(skycell, str(demo.mvm_poller), tile_size=2048, wcs_updates=updates)
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    for lay in p.layers.values():
        out_wcs = lay.wcs()
        d = Drizzle(kernel="square", out_shape=lay.shape, fillval=np.nan)
        for chip in lay.chips:
            with fits.open(chip.chip.path, memmap=False) as h:
                sci = h["SCI", chip.key[1]].data.astype(np.float32)
                # native unsigned: dqflags.good_pixel_mask misreads big-endian signed arrays
                dq = h["DQ", chip.key[1]].data.astype(np.uint16)
            good = good_pixel_mask(dq, chip.bits) & np.isfinite(sci)
            sky = clipped_median(sci[good])
            data = (sci - sky) if chip.is_rate else (sci - sky) / chip.exptime
            data[~good] = 0
            w_in = chip.wcs()  # astropy WCS with SIP + lookup tables
            pixmap = calc_pixmap(w_in, out_wcs)
            iscale = drizzlepac_iscale(chip.chip.path, chip.key[1], out_wcs)
            d.add_image(data.astype(np.float32), exptime=chip.exptime, pixmap=pixmap,
                        weight_map=good.astype(np.float32) * np.float32(chip.exptime),
                        iscale=iscale, pixfrac=1.0)
        hdr = lay.wcs_header.copy()
        for key in ("NAXIS1", "NAXIS2"):
            hdr.remove(key, ignore_missing=True)
        fits.HDUList([fits.PrimaryHDU(),
                      fits.ImageHDU(d.out_img, hdr, name="SCI"),
                      fits.ImageHDU(d.out_wht, hdr, name="WHT"),
                      fits.ImageHDU(d.out_ctx, hdr, name="CTX")]).writeto(
            out / lay.filename, overwrite=True)
    wall = time.perf_counter() - t0
    agree = {}
    if hapdask_out is not None:
        for name, lay in p.layers.items():
            ours = hapdask_out / lay.filename
            if not ours.exists():
                continue
            with fits.open(ours) as a, fits.open(out / lay.filename) as b:
                wb = b["WHT"].data
                m = wb > 0.01 * wb.max()
                sa, sb = a["SCI"].data[m], b["SCI"].data[m]
                agree[name] = float(np.nanmax(np.abs(sa - sb)) / np.nanmax(np.abs(sb)))
    return {"wall": wall, "rss": _rss_mib(), "max_rel_diff": agree}


def engine_runmultihap(skycell: str, work: Path, timeout: float, prefix: str = "") -> dict:
    """DrizzlePac's ``runmultihap`` on copies of the demo's MVM poller rows whose file name
    starts with ``prefix`` (all rows: ``""``)."""
    demo, _ = _demo(skycell)
    work.mkdir(parents=True, exist_ok=True)
    poller = work / Path(demo.mvm_poller).name
    rows = []
    for line in Path(demo.mvm_poller).read_text().splitlines():
        cols = line.split(",")
        if not cols[0].startswith(prefix):
            continue
        shutil.copy(cols[-1], work / cols[0])
        cols[-1] = str(work / cols[0])
        rows.append(",".join(cols))
    poller.write_text("\n".join(rows) + "\n")
    # AstroDrizzle's ACS reader needs MEANDARK (dark rate for its noise model) in every SCI
    # header; the simulator does not write it, so the copies get MEANDARK = 0.
    from astropy.io import fits

    for path in work.glob("j*_fl?.fits"):
        with fits.open(path, mode="update") as h:
            for hdu in h:
                if hdu.name == "SCI" and "MEANDARK" not in hdu.header:
                    hdu.header["MEANDARK"] = (0.0, "added by bench_mvm for runmultihap")
    code = ("import sys; from drizzlepac import runmultihap; "
            f"rv = runmultihap.perform({str(poller)!r}); sys.exit(int(rv or 0))")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True,
                              text=True, timeout=timeout)
        rc, log = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, log = "timeout", (exc.stdout or b"").decode() + (exc.stderr or b"").decode()
    wall = time.perf_counter() - t0
    products = sorted(p.name for p in work.glob("hst_skycell*_dr?.fits"))
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": wall, "rc": rc, "products": products, "cpu": ru.ru_utime + ru.ru_stime,
            "rss": ru.ru_maxrss / 1024.0,
            "log_tail": log.strip().splitlines()[-15:]}


def acs_inputs(skycell: str) -> list[str]:
    """The demo's 4 full-frame ACS/WFC exposures (visit 3: F775W x 2, F850LP x 2; 4096 x 2048
    chips) — the ``--case acs4`` inputs."""
    demo, _ = _demo(skycell)
    return [str(p) for p in demo.exposures if Path(p).name.startswith("j")]


def engine_cli(skycell: str, out: Path, listfile: Path, profile: bool) -> dict:
    """``hapdask mvm SKYCELL --input LIST --output OUT`` as a user runs it (fresh interpreter,
    imports, analyze, plan, sky, drizzle, FITS + zarr; local threads, one per core): wall time
    and the process's peak RSS (it is the only worker)."""
    import os

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = [sys.executable, "-m", "hapdask", "mvm", skycell, "--input", str(listfile),
            "--output", str(out)] + (["--profile"] if profile else [])
    t0 = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"hapdask mvm failed:\n{proc.stderr[-3000:]}")
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    text = proc.stdout
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rss": ru.ru_maxrss / 1024.0,
            "products": sorted(p.name for p in out.glob("hst_skycell*")),
            "profile": text[text.index("profile:"):] if profile and "profile:" in text else ""}


def run_acs4(a, work: Path) -> None:
    """``--case acs4``: 4 full-frame ACS/WFC exposures, ``hapdask mvm`` (CLI) against
    ``runmultihap`` on the same poller rows, runs interleaved so both see the same load."""
    paths = acs_inputs(a.skycell)
    listfile = work / "acs4.txt"
    listfile.write_text("\n".join(paths) + "\n")
    if not a.no_warmup:  # numba caches, page cache
        _sub(["--engine", "cli", "--out", str(work / "warm"), "--skycell", a.skycell,
              "--inputs", str(listfile)])
    ours, theirs = [], []
    for k in range(a.repeat):
        o = _sub(["--engine", "cli", "--out", str(work / f"cli{k}"), "--skycell", a.skycell,
                  "--inputs", str(listfile)] + (["--profile"] if k == a.repeat - 1 else []))
        ours.append(o)
        msg = f"run {k}: hapdask mvm {o['wall']:.1f} s (CPU {o['cpu']:.1f} s, peak RSS " \
              f"{o['rss']:.0f} MiB)"
        if a.runmultihap and k < a.runmultihap_runs:
            m = _sub(["--engine", "runmultihap", "--out", str(work / f"runmultihap{k}"),
                      "--skycell", a.skycell, "--runmultihap-timeout",
                      str(a.runmultihap_timeout), "--prefix", "j"])
            theirs.append(m)
            msg += f", runmultihap {m['wall']:.1f} s (CPU {m['cpu']:.1f} s, exit {m['rc']}, " \
                   f"peak RSS {m['rss']:.0f} MiB, {len(m['products'])} products)"
        print(msg, flush=True)
        if k < a.repeat - 1:  # ~1.5 GB (ours) + ~3 GB (runmultihap) a run: keep the last only
            for name in (f"cli{k}", f"runmultihap{k}", "warm"):
                shutil.rmtree(work / name, ignore_errors=True)
    t_ours = statistics.median(o["wall"] for o in ours)
    print(f"\n4 ACS/WFC exposures ({', '.join(Path(p).name for p in paths)}), SkyCell "
          f"{a.skycell}: hapdask mvm (CLI, local threads, FITS + zarr) median {t_ours:.1f} s "
          f"wall, CPU median {statistics.median(o['cpu'] for o in ours):.1f} s, peak RSS "
          f"max {max(o['rss'] for o in ours):.0f} MiB; products {ours[-1]['products']}")
    if theirs:
        ok = [m for m in theirs if m["rc"] == 0 and m["products"]]
        if ok:
            t_ref = statistics.median(m["wall"] for m in ok)
            print(f"runmultihap: median {t_ref:.1f} s over {len(ok)} run(s); products "
                  f"{ok[-1]['products']}")
            c_ref = statistics.median(m["cpu"] for m in ok)
            c_ours = statistics.median(o["cpu"] for o in ours)
            print(f"ratio = runmultihap_time / our_time = {t_ref / t_ours:.2f} (wall); CPU "
                  f"{c_ref / c_ours:.2f} (runmultihap CPU / ours: robust on a shared machine)")
        else:
            print("runmultihap failed:\n  " + "\n  ".join(theirs[-1]["log_tail"]))
    if ours[-1]["profile"]:
        print("\nper-stage breakdown of the last hapdask run (--profile):\n"
              + ours[-1]["profile"])


def make_full_cell(skycell: str, outdir: Path, n: int = 7) -> list[str]:
    """n x n synthetic WFC3/IR-like FLT files (pure TAN, 0.128"/px) tiling the whole cell."""
    from astropy.io import fits
    from astropy.wcs import WCS

    from skycells import SkyCell

    cell = SkyCell.from_name(skycell, scale="fine")
    ny, nx = cell.shape
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    size = 1014
    for j in range(n):
        for i in range(n):
            x = (i + 0.5) * nx / n - 0.5
            y = (j + 0.5) * ny / n - 0.5
            ra, dec = cell.wcs.wcs_pix2world([[x, y]], 0)[0]
            w = WCS(naxis=2)
            w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
            w.wcs.crval = [ra, dec]
            w.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
            w.wcs.cd = cell.wcs.wcs.cd / cell.wcs.wcs.cd[1, 1] * (0.128 / 3600.0) \
                if cell.wcs.wcs.has_cd() else np.diag([-0.128 / 3600.0, 0.128 / 3600.0])
            root = f"ifull{j}{i}q"
            prim = fits.Header({
                "TELESCOP": "HST", "INSTRUME": "WFC3", "DETECTOR": "IR", "FILTER": "F160W",
                "EXPTIME": 500.0, "EXPSTART": 57000.0 + 0.01 * (j * n + i),
                "EXPEND": 57000.0 + 0.01 * (j * n + i) + 0.006, "OBSTYPE": "IMAGING",
                "ROOTNAME": root, "PROPOSID": 99999, "TARGNAME": "FULLCELL", "MTFLAG": "F",
                "SCAN_TYP": "N", "FGSLOCK": "FINE", "DRIZCORR": "COMPLETE", "SUBARRAY": False,
                "DATE-OBS": "2014-12-09", "BUNIT": "ELECTRONS/S"})
            sci_h = w.to_header()
            sci_h["BUNIT"] = "ELECTRONS/S"
            sci_h["EXPTIME"] = 500.0
            sci_h["WCSNAME"] = "SYNTHETIC"
            sky = rng.normal(1.0, 0.05, size=(size, size)).astype(np.float32)
            hdul = fits.HDUList([
                fits.PrimaryHDU(header=prim),
                fits.ImageHDU(sky, sci_h, name="SCI", ver=1),
                fits.ImageHDU(np.full((size, size), 0.05, np.float32), sci_h, name="ERR", ver=1),
                fits.ImageHDU(np.zeros((size, size), np.int16), sci_h, name="DQ", ver=1)])
            for h in hdul[1:]:
                h.header["EXTVER"] = 1
            path = outdir / f"{root}_flt.fits"
            hdul.writeto(path, overwrite=True)
            paths.append(str(path))
    return paths


def engine_full(skycell: str, work: Path, tile: int) -> dict:
    paths = make_full_cell(skycell, work / "inputs")
    res = engine_hapdask(skycell, work / "out", tile, inputs=paths, updates=None,
                         formats=("fits",), context=False)
    res["inputs"] = len(paths)
    return res


# -- driver ---------------------------------------------------------------------------------
def _sub(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"engine {args[:2]} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skycell", default="p1889x07y19")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tile", type=int, default=2048)
    ap.add_argument("--runmultihap", action="store_true")
    ap.add_argument("--runmultihap-timeout", type=float, default=3600.0)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--only-full", action="store_true")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--no-warmup", action="store_true",
                    help="skip the warm-up run (demo data and numba caches already there)")
    ap.add_argument("--case", choices=("demo", "acs4"), default="demo",
                    help="demo: the demo SkyCell, all layers, vs the reference engine; acs4: "
                         "4 full-frame ACS/WFC exposures, hapdask mvm CLI vs runmultihap")
    ap.add_argument("--runmultihap-runs", type=int, default=2,
                    help="with --case acs4: runmultihap runs (it takes minutes)")
    ap.add_argument("--engine", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    ap.add_argument("--prefix", default="", help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true",
                    help="--case demo: one profiled run on the 2-worker cluster (per-stage "
                         "breakdown, scheduler overhead, Dask performance report) and stop")
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--compare", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.engine:
        out = Path(a.out)
        if a.engine == "hapdask":
            r = engine_hapdask(a.skycell, out, a.tile, profile=a.profile)
        elif a.engine == "reference":
            r = engine_reference(a.skycell, out, Path(a.compare) if a.compare else None)
        elif a.engine == "runmultihap":
            r = engine_runmultihap(a.skycell, out, a.runmultihap_timeout, a.prefix)
        elif a.engine == "cli":
            r = engine_cli(a.skycell, out, Path(a.inputs), a.profile)
        elif a.engine == "full":
            r = engine_full(a.skycell, out, a.tile)
        else:
            raise SystemExit(f"unknown engine {a.engine}")
        print(json.dumps(r))
        return 0

    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_mvm_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work directory {work}", flush=True)
    if a.case == "acs4":
        run_acs4(a, work)
        return 0
    if a.profile:  # the demo on the 2-worker cluster once, with the --profile breakdown
        o = _sub(["--engine", "hapdask", "--out", str(work / "profiled"), "--skycell",
                  a.skycell, "--tile", str(a.tile), "--profile"])
        print(f"hapdask (2 workers x 1 thread, FITS + zarr): {o['wall']:.1f} s, {o['tiles']} "
              f"tiles; peak RSS workers {', '.join(f'{v:.0f}' for v in o['rss_workers'])} "
              f"MiB\n{o['profile']}")
        return 0
    if not a.no_warmup:
        t0 = time.perf_counter()
        _sub(["--engine", "hapdask", "--out", str(work / "warm"), "--skycell", a.skycell,
              "--tile", str(a.tile)])  # simulates/caches the demo, fills numba caches
        print(f"warm-up (demo data + caches) {time.perf_counter() - t0:.1f} s", flush=True)
    if not a.only_full:
        ours, refs = [], []
        for k in range(a.repeat):
            o = _sub(["--engine", "hapdask", "--out", str(work / f"hapdask{k}"),
                      "--skycell", a.skycell, "--tile", str(a.tile)])
            r = _sub(["--engine", "reference", "--out", str(work / f"reference{k}"),
                      "--skycell", a.skycell, "--compare", str(work / f"hapdask{k}")])
            ours.append(o)
            refs.append(r)
            print(f"run {k}: hapdask {o['wall']:.1f} s, reference {r['wall']:.1f} s", flush=True)
        t_ours = statistics.median(o["wall"] for o in ours)
        t_ref = statistics.median(r["wall"] for r in refs)
        o, r = ours[-1], refs[-1]
        print(f"\nSkyCell {a.skycell}: {o['layers']} layers, {o['out_pixels'] / 1e6:.0f} Mpix "
              f"of output, {o['tiles']} tiles of {a.tile}")
        print(f"hapdask (2 workers x 1 thread, FITS + zarr): median {t_ours:.1f} s "
              f"(+{o['cluster_start']:.1f} s cluster start); peak RSS client "
              f"{o['rss_client']:.0f} MiB, workers "
              f"{', '.join(f'{v:.0f}' for v in o['rss_workers'])} MiB")
        print(f"reference (astropy pixmap + drizzle C, 1 process, FITS): median {t_ref:.1f} s; "
              f"peak RSS {r['rss']:.0f} MiB")
        print(f"max |ours - reference| / max|reference| per layer (WHT > 1% max): "
              f"{max(r['max_rel_diff'].values()) if r['max_rel_diff'] else float('nan'):.2e}")
        print(f"ratio = reference_time / our_time = {t_ref / t_ours:.2f}")
        if a.runmultihap:
            m = _sub(["--engine", "runmultihap", "--out", str(work / "runmultihap"),
                      "--skycell", a.skycell, "--runmultihap-timeout",
                      str(a.runmultihap_timeout)])
            print(f"\nrunmultihap: exit {m['rc']} after {m['wall']:.1f} s, peak RSS "
                  f"{m['rss']:.0f} MiB, products {m['products']}")
            if m["products"] and m["rc"] == 0:
                print(f"ratio = runmultihap_time / our_time = {m['wall'] / t_ours:.2f}")
            else:
                print("runmultihap log tail:\n  " + "\n  ".join(m["log_tail"]))
    if a.full or a.only_full:
        f = _sub(["--engine", "full", "--out", str(work / "full"), "--skycell", a.skycell,
                  "--tile", str(a.tile)])
        print(f"\nfull 21954x21954 fine layer (+ its coarse layer), {f['inputs']} synthetic "
              f"IR-like inputs, FITS only, no CTX: {f['wall']:.1f} s, {f['tiles']} tiles; "
              f"peak RSS per worker {', '.join(f'{v:.0f}' for v in f['rss_workers'])} MiB, "
              f"client {f['rss_client']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
