"""Benchmark ``hapdask drizzle`` against AstroDrizzle: 4 dithered full-frame ACS/WFC exposures.

Data: the simulator's full-frame visit 3 (``simulate_visits(..., visits=3)``), whose four
ACS/WFC exposures (two F775W, two F850LP, one dither pattern, 2 x 4096x2048 chips each) are
combined in one run by both tools with the same AstroDrizzle parameters (HAP's ACS/WFC filter
settings for 2-5 exposures: static mask, sky ``match`` with sky_bits 80, square separate drizzle,
minmed, driz_cr 3.5 3.0 / 1.5 1.2, final square pixfrac 1, bits 336) on the same explicit
north-up 0.05"/px grid.

Sky work: AstroDrizzle's ``skymethod="match"`` fails in this environment (stsci.skypac 1.0.12
calls ``SphericalPolygon.iter_polygons_flat``, which spherical_geometry 1.4 no longer has; the
AttributeError is caught by ``drizzlepac.sky.subtractSky``, which logs "Reverting sky computation
to localmin" and runs ``localmin`` instead). Unpatched, the reference would do less sky work than
hapdask (which matches skies over the pairwise overlaps). Its child therefore adds the missing
method as iteration over the polygon's parts (what skypac means; as
:func:`hapdask.testing.astrodrizzle_run` and the sky tests' oracle do), and the bench reads its
log: the output states which sky method each tool really ran (``--unpatched`` measures the
fallback instead, and then runs hapdask with ``localmin`` too, so both do the same work).

Each tool runs as a whole process (``python -c``), one after the other, niced; the child reports
its wall time, its peak RSS (``ru_maxrss``) and a per-step breakdown: AstroDrizzle's own step
table; for hapdask the summed task time per stage from Dask's profiler (threads overlap, so the
stage times add up to more than the wall time).

Run::

    python benchmarks/bench_drizzle.py [--workdir DIR] [--runs N] [--threads N] [--unpatched]

Prints both tools' figures and ``ratio = reference_time / our_time`` (medians of the runs) and
``memory ratio = our_peak / reference_peak``.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PARAMS = {
    "static": True, "static_sig": 4.0, "skysub": True, "skymethod": "match", "skystat": "median",
    "skylower": -100.0, "sky_bits": "80", "driz_separate": True, "driz_sep_kernel": "square",
    "driz_sep_bits": "336", "median": True, "combine_type": "minmed", "combine_nhigh": 1,
    "combine_nsigma": "4 3", "combine_maskpt": 0.3, "combine_grow": 1, "blot": True,
    "blot_interp": "poly5", "driz_cr": True, "driz_cr_snr": "3.5 3.0",
    "driz_cr_scale": "1.5 1.2", "driz_cr_grow": 1, "final_kernel": "square",
    "final_pixfrac": 1.0, "final_bits": "336", "final_wht_type": "EXP", "final_units": "cps",
    "context": True,
}

OURS = r"""
import json, re, resource, sys, time, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
import gc
from hapdask._memory import keep_freed_memory
from hapdask.cli import fewer_full_collections
from dask.diagnostics import Profiler
from hapdask.mosaic import drizzle
cfg = json.load(open({cfg!r}))
# as the ``hapdask drizzle`` command does before its threads start (hapdask.cli.drizzle)
keep_freed_memory()
with fewer_full_collections(), Profiler() as prof:
    gc.freeze()
    r = drizzle(cfg["inputs"], cfg["output"], params=cfg["params"], tile_size=cfg["tile"],
                region_size=cfg["tile"], threads_per_worker=cfg["threads"], log=lambda m: None)
wall = time.perf_counter() - t0
steps = {{}}
for res in prof.results:
    k = res.key
    name = k[0] if isinstance(k, tuple) else str(k)
    parts = name.split("-")
    # keys end in the stage ("drz-<fp>-sep") or hold it second ("drz-write-<fp>", "drz-header-<fp>")
    stage = parts[1] if re.fullmatch(r"[0-9a-f]{{16}}", parts[-1]) and len(parts) > 2 else parts[-1]
    if "static" in name:
        stage = "static"
    steps[stage] = steps.get(stage, 0.0) + (res.end_time - res.start_time)
steps.update({{"client " + k: v for k, v in r.timings.items()}})
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"wall": wall, "rss": ru.ru_maxrss / 1024, "cpu": ru.ru_utime + ru.ru_stime,
                  "steps": steps, "sky": cfg["params"]["skymethod"]}}))
"""

THEIRS = r"""
import json, os, re, resource, sys, time, warnings
warnings.filterwarnings("ignore")
t0 = time.perf_counter()
from drizzlepac import astrodrizzle
cfg = json.load(open({cfg!r}))
if cfg["patch"]:
    from spherical_geometry.polygon import SphericalPolygon
    if not hasattr(SphericalPolygon, "iter_polygons_flat"):  # what stsci.skypac 1.0.12 calls
        SphericalPolygon.iter_polygons_flat = lambda self: iter(self)
os.chdir(cfg["workdir"])
astrodrizzle.AstroDrizzle(cfg["inputs"], output="ad", build=True, in_memory=False, num_cores=1,
                          clean=True, preserve=False, resetbits=0, **cfg["params"])
wall = time.perf_counter() - t0
steps = {{}}
log = open("astrodrizzle.log").read()
sky = cfg["params"]["skymethod"]
if "Reverting sky computation" in log:
    sky = "localmin (fallback from " + sky + ")"
for line in log.splitlines():
    m = re.search(r"\]\s+(Initialization|Static Mask|Subtract Sky|Separate Drizzle|"
                  r"Create Median|Blot|Driz_CR|Final Drizzle)\s+([0-9.]+) sec", line)
    if m:
        steps[m.group(1)] = float(m.group(2))
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"wall": wall, "rss": ru.ru_maxrss / 1024, "cpu": ru.ru_utime + ru.ru_stime,
                  "steps": steps, "sky": sky}}))
"""


def _child(code: str) -> dict:
    # the files the step before wrote (the inputs' fresh copies, the previous run's products
    # and intermediates) reach the disk before the clock starts: no process is timed while
    # the kernel writes back the one before it
    os.sync()
    proc = subprocess.run(["nice", sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _data(workdir: Path) -> list[Path]:
    sys.path.insert(0, str(ROOT))
    from hapdask.simulate import simulate_visits

    s = simulate_visits("p1889x07y19", workdir / "sim", visits=3)
    acs = sorted(p for p in s.exposures if p.name.startswith("jf3t03"))
    if len(acs) != 4:
        raise RuntimeError(f"expected 4 ACS/WFC exposures in visit 3, got {acs}")
    return acs


def _grid(inputs: list[Path]) -> dict:
    from hapdask.io import open_exposure
    from hapdask.mosaic import north_up_grid

    chips = [c for p in inputs for c in open_exposure(str(p)).chips]
    g = north_up_grid([c.wcs() for c in chips], scale=0.05)
    w = g.wcs()
    ny, nx = g.shape
    ra, dec = w.wcs_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
    grid = {"rot": 0.0, "scale": 0.05, "ra": float(ra), "dec": float(dec), "outnx": nx,
            "outny": ny, "crpix1": (nx + 1) / 2, "crpix2": (ny + 1) / 2}
    out = {"final_wcs": True, "driz_sep_wcs": True}
    for k, v in grid.items():
        out[f"final_{k}"] = v
        out[f"driz_sep_{k}"] = v
    return out


def _cr_figures(inputs: list[Path], ad_dir: Path, our_dir: Path) -> None:
    """Cosmic-ray pixels found / falsely flagged against the simulator's truth."""
    from astropy.io import fits

    from hapdask.mosaic.products import read_crmask

    tot = {"AstroDrizzle": [0, 0], "hapdask": [0, 0]}
    ntruth = 0
    for p in inputs:
        root = p.name.split("_")[0]
        truth = read_crmask(p.parent / f"{root}_crtruth.fits")
        ours = read_crmask(our_dir / f"{root}_crmask.fits")
        with fits.open(ad_dir / p.name) as h:
            theirs = {e: (h["DQ", e].data & 4096) != 0 for e in truth}
        for e, t in truth.items():
            ntruth += int(t.sum())
            for label, m in (("AstroDrizzle", theirs[e]), ("hapdask", ours[e])):
                tot[label][0] += int((m & t).sum())
                tot[label][1] += int((m & ~t).sum())
    for label, (found, false) in tot.items():
        print(f"{label}: cosmic-ray pixels found {found} / {ntruth} "
              f"({100 * found / max(ntruth, 1):.2f} %), false flags {false} "
              f"({100 * false / max(ntruth, 1):.2f} % of the CR pixel count)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="hapdask threads (default: cores)")
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--unpatched", action="store_true",
                    help="leave AstroDrizzle's sky match broken (it falls back to localmin) and "
                         "run hapdask with localmin too")
    a = ap.parse_args()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench_drizzle_"))
    work.mkdir(parents=True, exist_ok=True)
    inputs = _data(work)
    params = {**PARAMS, **_grid(inputs)}
    ours_params = {**params, "skymethod": "localmin"} if a.unpatched else params
    # as an installed package is (pip compiles its bytecode, as it did drizzlepac's): the
    # runs must not pay for compiling the distribution's sources (PYTHONDONTWRITEBYTECODE may
    # be set): hapdask and skycells (imported from the tree too, e.g. by hapdask.io.filters)
    for package in ("hapdask", "skycells"):
        compileall.compile_dir(str(ROOT / package), quiet=1)
    ours, theirs = [], []
    for run in range(a.runs):
        # AstroDrizzle on fresh copies (it writes into its inputs)
        ad = work / f"ad{run}"
        shutil.rmtree(ad, ignore_errors=True)
        ad.mkdir()
        from astropy.io import fits

        for p in inputs:
            shutil.copy(p, ad / p.name)
            with fits.open(ad / p.name, mode="update") as h:  # its ACS noise model needs it
                for hdu in h:
                    if hdu.name == "SCI" and "MEANDARK" not in hdu.header:
                        hdu.header["MEANDARK"] = 0.0
        cfg = work / "ad.json"
        cfg.write_text(json.dumps({"workdir": str(ad), "inputs": [p.name for p in inputs],
                                   "params": params, "patch": not a.unpatched}))
        theirs.append(_child(THEIRS.format(cfg=str(cfg))))
        out = work / f"ours{run}"
        shutil.rmtree(out, ignore_errors=True)
        cfg = work / "ours.json"
        cfg.write_text(json.dumps({"inputs": [str(p) for p in inputs],
                                   "output": str(out / "bench"), "params": ours_params,
                                   "tile": a.tile, "threads": a.threads}))
        ours.append(_child(OURS.format(root=str(ROOT), cfg=str(cfg))))
    for label, res in (("AstroDrizzle", theirs), ("hapdask", ours)):
        walls = ", ".join(f"{r['wall']:.1f}" for r in res)
        cpus = ", ".join(f"{r['cpu']:.1f}" for r in res)
        peaks = ", ".join(f"{r['rss']:.0f}" for r in res)
        print(f"{label}: wall {statistics.median(r['wall'] for r in res):.1f} s (runs {walls}), "
              f"CPU {statistics.median(r['cpu'] for r in res):.1f} s (runs {cpus}), "
              f"peak RSS {max(r['rss'] for r in res):.0f} MiB (runs {peaks}); sky method run: "
              f"{', '.join(sorted({r['sky'] for r in res}))}")
        for k, v in res[-1]["steps"].items():
            print(f"    {k:24s} {v:8.2f} s")
    _cr_figures(inputs, work / f"ad{a.runs - 1}", work / f"ours{a.runs - 1}")
    t_ref = statistics.median(r["wall"] for r in theirs)
    t_our = statistics.median(r["wall"] for r in ours)
    print(f"ratio = reference_time / our_time = {t_ref / t_our:.2f}")
    c_ref = statistics.median(r["cpu"] for r in theirs)
    c_our = statistics.median(r["cpu"] for r in ours)
    print(f"CPU ratio = reference_cpu / our_cpu = {c_ref / c_our:.2f} (user + sys of each process)")
    print(f"memory ratio = our_peak / reference_peak = "
          f"{max(r['rss'] for r in ours) / max(r['rss'] for r in theirs):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
