"""Benchmark MVM planning: the guiding check against drizzlepac, and planning vs the whole run.

Case: the full-frame ACS/WFC exposures of one simulated visit (``simulate_visits(skycell,
visits=3)``: visit 3 is ACS/WFC F775W + F850LP, two exposures each, 4096 x 2048 chips).

1. Guiding check (rule G), per exposure, same file: drizzlepac's
   ``drizzlepac.haputils.analyze.verify_guiding`` (reference; reads all of SCI,1) against
   ``hapdask.analyze.verify_guiding`` (sampled windows). Both verdicts are printed;
   ``ratio = drizzlepac_time / hapdask_time`` (medians over ``--runs``).
2. Planning inside a process: analyze every input + :func:`hapdask.mvm.plan` (what
   ``hapdask mvm`` does before building the graph), median seconds.
3. ``Chip.read`` of 256 x 256 regions with the per-process handle cache against reopening the
   file for each read (the behaviour before the cache), median milliseconds.
4. The CLI end to end, each in a fresh process: ``hapdask mvm SKYCELL --input LIST --dry-run``
   and the full ``hapdask mvm SKYCELL --input LIST --output DIR`` (wall and CPU seconds, peak
   RSS of the largest child process so far). Planning fraction = in-process planning (2.) /
   ``mvm.run``'s own wall time (from the trailer); also dry-run / full at process level.

Run::

    python benchmarks/bench_plan.py                       # simulates into /tmp if needed
    python benchmarks/bench_plan.py --inputs LIST --skycell p1889x07y19 --runs 3
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")


def _acs_inputs(skycell: str, workdir: Path) -> Path:
    from hapdask.simulate import simulate_visits

    sim = simulate_visits(skycell, workdir / "sim", visits=3)
    paths = [str(p) for p in sim.exposures if Path(p).name.startswith("j")]
    listfile = workdir / "acs_wfc.txt"
    listfile.write_text("\n".join(paths) + "\n")
    return listfile


def _median_time(fn, runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench_guiding(paths: list[str], runs: int) -> None:
    from drizzlepac.haputils import analyze as dzp

    from hapdask.analyze import verify_guiding
    from hapdask.io import open_exposure

    print("guiding check (rule G) per exposure: drizzlepac verify_guiding vs hapdask")
    ratios = []
    for p in paths:
        t_ref, ref = _median_time(lambda p=p: dzp.verify_guiding(p), runs)
        # a fresh open each run: the header parse is part of our cost
        t_our, our = _median_time(lambda p=p: verify_guiding(open_exposure(p)), runs)
        ratios.append(t_ref / t_our)
        print(f"  {Path(p).name}: drizzlepac {t_ref:.2f} s bad={bool(ref)} | hapdask "
              f"{t_our:.3f} s bad={our[0]} | ratio = {t_ref / t_our:.1f}")
    print(f"  ratio = drizzlepac_time / hapdask_time: median {statistics.median(ratios):.1f}")


def bench_chip_read(path: str, n: int = 50) -> None:
    """``Chip.read`` of 256 x 256 regions: cached handle vs reopening the file each time."""
    from hapdask.io import open_exposure
    from hapdask.io._cache import clear_caches

    chip = open_exposure(path).chips[0]
    ny, nx = chip.shape
    boxes = [((k * 389) % (ny - 256), (k * 389) % (ny - 256) + 256,
              (k * 733) % (nx - 256), (k * 733) % (nx - 256) + 256) for k in range(n)]

    def reads(reopen: bool) -> float:
        times = []
        for b in boxes:
            if reopen:
                clear_caches()  # what every read cost before the cache: open + parse headers
            t0 = time.perf_counter()
            chip.read(b)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    t_old, t_new = reads(True), reads(False)
    print(f"Chip.read 256x256 ({Path(path).name} SCI,1): reopen each time {t_old * 1e3:.2f} ms, "
          f"cached handle {t_new * 1e3:.2f} ms (x{t_old / t_new:.0f})")


def bench_plan_inprocess(skycell: str, listfile: Path, runs: int) -> float:
    from hapdask import mvm
    from hapdask.io._cache import clear_caches
    from hapdask.mvm.planning import analyze_one

    paths = [p for p in listfile.read_text().split() if p]

    def once():
        clear_caches()  # as a fresh process: nothing opened yet
        verdicts = {p: analyze_one(p) for p in paths}
        return mvm.plan(skycell, str(listfile), verdicts=verdicts)

    t, p = _median_time(once, runs)
    print(f"planning in process (analyze + plan, {len(paths)} inputs, {len(p.layers)} layers): "
          f"median {t:.2f} s")
    return t


def _run_cli(args: list[str]) -> tuple[float, float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-m", "hapdask", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss / 1024.0


def _trailer_wall(out: Path) -> float:
    """``wall time of the run`` that :func:`hapdask.mvm.run` wrote into a trailer."""
    for trl in sorted(out.glob("*_trl.txt")):
        for line in trl.read_text().splitlines():
            if line.startswith("wall time of the run"):
                return float(line.split()[-2])
    raise RuntimeError(f"{out}: no trailer with the run's wall time")


def bench_cli(skycell: str, listfile: Path, workdir: Path, runs: int, t_plan: float) -> None:
    import shutil

    dry, full, inner = [], [], []
    for k in range(runs):
        dry.append(_run_cli(["mvm", skycell, "--input", str(listfile), "--dry-run"]))
        out = workdir / f"out{k}"
        shutil.rmtree(out, ignore_errors=True)
        full.append(_run_cli(["mvm", skycell, "--input", str(listfile), "--output", str(out)]))
        inner.append(_trailer_wall(out))
    d = [statistics.median(v) for v in zip(*dry, strict=True)]
    f = [statistics.median(v) for v in zip(*full, strict=True)]
    run_wall = statistics.median(inner)
    print(f"hapdask mvm --dry-run : wall {d[0]:.1f} s, CPU {d[1]:.1f} s")
    print(f"hapdask mvm (full)    : wall {f[0]:.1f} s, CPU {f[1]:.1f} s, mvm.run's own wall "
          f"{run_wall:.1f} s (peak RSS of the largest child so far {f[2]:.0f} MiB)")
    print(f"planning fraction = in-process planning / mvm.run wall = {t_plan / run_wall:.1%}")
    print(f"process level: dry-run / full = wall {d[0] / f[0]:.1%}, CPU {d[1] / f[1]:.1%} "
          "(both include interpreter start and imports)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skycell", default="p1889x07y19")
    ap.add_argument("--inputs", type=Path, help="list file of the exposures (default: simulate)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bench_plan")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-cli", action="store_true", help="skip the end-to-end CLI runs")
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    listfile = a.inputs or _acs_inputs(a.skycell, a.workdir)
    paths = [p for p in listfile.read_text().split() if p]
    bench_chip_read(paths[0])
    bench_guiding(paths, a.runs)
    t_plan = bench_plan_inprocess(a.skycell, listfile, a.runs)
    if not a.no_cli:
        bench_cli(a.skycell, listfile, a.workdir, a.runs, t_plan)


if __name__ == "__main__":
    main()
