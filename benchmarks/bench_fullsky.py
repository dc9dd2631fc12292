"""Full-sky projection: cost model measured here, applied to an archive-like plan.

1. **Cost model.** Small simulated visits are moved onto the corner of four SkyCells and planned
   with ``hapdask plan`` (all layers, and the F160W layer alone); every SkyCell is then built
   with ``hapdask.mvm.run`` on one thread. CPU time (robust against other load; wall time and
   peak traced memory are printed too) is fitted against
   the plan's estimated output and input pixels: ``t = a + b * out_Mpix + c * in_Mpix``
   (non-negative least squares) -> :class:`hapdask.archive.CostModel`.
2. **Planning an archive.** A synthetic archive-like inventory of ``--n`` exposures
   (default 1,000,000; :func:`hapdask.archive.synthetic.synthetic_inventory`) is written to
   Parquet and planned by ``hapdask plan INVENTORY --output PLAN --workers 2`` in a subprocess:
   wall time, CPU time and peak memory (sums over the process tree, sampled every 0.2 s).
3. **Projection.** The fitted model applied to that plan: CPU-hours, and the cores needed for a
   chosen wall time.
4. **Reference.** DrizzlePac's per-exposure SkyCell search,
   ``drizzlepac.haputils.cell_utils.get_sky_cells([file])``, timed in this process on ``--nref``
   exposures of each of ACS/WFC and WFC3/IR size (real distorted headers, see
   bench_skycells.py); ``ratio = reference_time / our_time`` per exposure.

Run: ``nice python benchmarks/bench_fullsky.py [--n 1000000] [--nref 2] [--wall-hours 24]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import math
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
from scipy.optimize import nnls

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_skycells  # noqa: E402
from bench_skycells import chip_headers, write_exposure  # noqa: E402

from hapdask.archive import (  # noqa: E402
    CostModel,
    inventory_from_exposures,
    plan_archive,
    read_plan,
    write_inventory,
)
from hapdask.archive.synthetic import synthetic_inventory  # noqa: E402
from skycells import ProjectionCell  # noqa: E402

STEP = 21442

# the shared real headers: beside the checkout (/work/main) or two levels up (/work/wt/<name>)
for _cand in (ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data"):
    if _cand.is_dir():
        bench_skycells.DATA = _cand
        break


def measure_cost(tmp: Path) -> tuple[CostModel, pd.DataFrame]:
    """Run simulated SkyCells on one thread; fit the cost model."""
    from hapdask.mvm import run
    from hapdask.simulate import simulate_visits
    from hapdask.simulate.relocate import relocate_set

    sim = simulate_visits("p1889x10y10", tmp / "sim", small=True, visits=2)
    corner = 10 * STEP + 256
    ra, dec = ProjectionCell(1889).wcs.wcs_pix2world([[corner, corner]], 0)[0]
    _, true = relocate_set(sim, float(ra), float(dec), tmp / "moved")
    inv, _ = inventory_from_exposures(tmp / "moved")
    rows = []
    for tag, sel, only in (("all", np.ones(len(inv), bool), None),
                           ("f160w", (inv["filters"] == "F160W").to_numpy(), ["f160w_all"])):
        plan = plan_archive(inv[sel].reset_index(drop=True), tmp / f"plan-{tag}",
                            num_workers=1, log=lambda m: None)
        for r in plan.skycells.itertuples():
            paths = plan.inputs(r.skycell)
            # warm-up run (numba cache, imports), then the timed one
            if not rows:
                run(r.skycell, paths, output=tmp / "warm", tile_size=512, threads_per_worker=1,
                    wcs_updates=true, log=lambda m: None, layers=only)
            tracemalloc.start()
            t0, c0 = time.perf_counter(), time.process_time()
            run(r.skycell, paths, output=tmp / f"out-{tag}-{r.skycell}", tile_size=512,
                threads_per_worker=1, wcs_updates=true, log=lambda m: None, layers=only)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            rows.append({"run": tag, "skycell": r.skycell, "exposures": r.exposures,
                         "layers": r.layers, "out_Mpix": r.output_pixels / 1e6,
                         "in_Mpix": r.input_pixels / 1e6, "wall_s": wall, "cpu_s": cpu,
                         "peak_MiB": peak / 2**20})
    df = pd.DataFrame(rows)
    # fit CPU seconds (one compute thread): robust against other load on the machine
    a = np.column_stack([np.ones(len(df)), df["out_Mpix"], df["in_Mpix"]])
    coef, _ = nnls(a, df["cpu_s"].to_numpy())
    df["model_s"] = a @ coef
    return CostModel(*(float(c) for c in coef)), df


def plan_big(tmp: Path, n: int, workers: int) -> dict:
    """Generate and plan an n-row synthetic inventory in a subprocess; time and memory."""
    t0 = time.perf_counter()
    inv = synthetic_inventory(n, seed=1)
    gen = time.perf_counter() - t0
    path = write_inventory(inv, tmp / "inventory.parquet")
    del inv
    cmd = [sys.executable, "-m", "hapdask", "plan", str(path), "--output", str(tmp / "PLAN"),
           "--workers", str(workers)]
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    peak = 0
    cpu: dict[int, float] = {}
    while proc.poll() is None:
        try:
            tree = [proc, *proc.children(recursive=True)]
            rss = 0
            for p in tree:
                with contextlib.suppress(psutil.Error):
                    rss += p.memory_info().rss
                    t = p.cpu_times()
                    cpu[p.pid] = t.user + t.system
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"hapdask plan failed: {err.decode()[-2000:]}")
    return {"n": n, "generate_s": gen, "plan_s": wall, "peak_GiB": peak / 2**30,
            "cpu_s": sum(cpu.values()),
            "stdout": out.decode(), "stderr": err.decode(), "plan": tmp / "PLAN"}


def drizzlepac_search(tmp: Path, nref: int, seed: int) -> dict[str, float]:
    """Median seconds of get_sky_cells([file]) per exposure, per detector kind."""
    from drizzlepac.haputils import cell_utils

    rng = np.random.default_rng(seed)
    out = {}
    for kind, root in (("ACS/WFC", "j94f05bgq"), ("WFC3/IR", "ib4606cpq")):
        prim, chips = chip_headers(kind)
        times = []
        for k in range(nref):
            ra, dec = rng.uniform(0, 360), math.degrees(math.asin(rng.uniform(-1, 1)))
            path = tmp / f"{root[:3]}{k:03d}{root[6:]}_flt.fits"
            write_exposure(path, prim, chips, ra, dec)
            with contextlib.redirect_stdout(io.StringIO()):
                t0 = time.perf_counter()
                cell_utils.get_sky_cells([str(path)])
                times.append(time.perf_counter() - t0)
        out[kind] = statistics.median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="synthetic inventory rows")
    ap.add_argument("--workers", type=int, default=2, help="hapdask plan worker processes")
    ap.add_argument("--nref", type=int, default=2, help="exposures per kind for DrizzlePac")
    ap.add_argument("--wall-hours", type=float, default=24.0, help="target wall time")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reference-only", type=float, metavar="PLAN_SECONDS",
                    help="only part 4, with the plan wall time of an earlier run")
    args = ap.parse_args()
    if args.reference_only:
        warnings.simplefilter("ignore")
        logging.disable(logging.INFO)
        with tempfile.TemporaryDirectory(prefix="bench_fullsky_") as t:
            _report_reference(drizzlepac_search(Path(t), args.nref, args.seed),
                              args.reference_only, args.n, args.workers)
        return
    warnings.simplefilter("ignore")
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="bench_fullsky_") as t:
        tmp = Path(t)
        model, runs = measure_cost(tmp)
        print("## 1. per-SkyCell cost, measured (one thread, tiles of 512)")
        print(runs.round(3).to_string(index=False))
        print(f"fitted (CPU seconds): seconds = {model.per_skycell:.2f} + "
              f"{model.per_output_mpix:.3f} * out_Mpix + {model.per_input_mpix:.3f} * in_Mpix; "
              f"peak traced memory {runs['peak_MiB'].max():.0f} MiB")
        big = plan_big(tmp, args.n, args.workers)
        print(f"\n## 2. hapdask plan on a synthetic {big['n']:,}-exposure inventory "
              f"({args.workers} workers)")
        print(big["stdout"].strip())
        print(f"generate {big['generate_s']:.1f} s (not part of the plan); plan wall "
              f"{big['plan_s']:.1f} s, CPU {big['cpu_s']:.1f} s (process tree, sampled: a "
              f"lower bound), i.e. {big['cpu_s'] / args.workers:.1f} s on {args.workers} idle "
              f"cores; peak memory (process tree) {big['peak_GiB']:.2f} GiB")
        plan = read_plan(big["plan"])
        sc = plan.skycells
        cost = model.seconds(sc["output_pixels"], sc["input_pixels"])
        cpu_h = float(cost.sum()) / 3600.0
        print(f"\n## 3. projection with the measured model: {len(sc):,} SkyCells, "
              f"{int(sc['exposures'].sum()):,} exposure-SkyCell pairs, "
              f"{sc['output_pixels'].sum() / 1e9:.1f} Gpix of layers")
        print(f"CPU-hours {cpu_h:,.0f}; largest SkyCell {cost.max() / 3600:.2f} CPU-h; "
              f"cores for {args.wall_hours:g} h wall: {math.ceil(cpu_h / args.wall_hours):,}"
              f" (e.g. {math.ceil(cpu_h / args.wall_hours / 8):,} 8-core nodes)")
        _report_reference(drizzlepac_search(tmp, args.nref, args.seed), big["plan_s"],
                          big["n"], args.workers)


def _report_reference(ref: dict[str, float], plan_s: float, n: int, workers: int) -> None:
    ours = plan_s / n
    print("\n## 4. SkyCell search per exposure")
    for kind, tr in ref.items():
        print(f"{kind}: drizzlepac get_sky_cells {tr:.2f} s; hapdask plan "
              f"{ours * 1e3:.3f} ms (whole plan wall / exposures); "
              f"ratio = reference_time / our_time = {tr / ours:,.0f}")
    mean_ref = statistics.mean(ref.values())
    print(f"for {n:,} exposures: drizzlepac ~{mean_ref * n / 86400:.1f} CPU-days of search; "
          f"hapdask plan {plan_s / 60:.1f} min wall on {workers} cores")


if __name__ == "__main__":
    main()
