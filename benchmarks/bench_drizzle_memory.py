"""Peak memory per worker of ``hapdask drizzle`` on a full SkyCell-sized output (21954 x 21954)
for 5, 10 and 20 inputs: it must stay under 2 GiB and not grow with the number of inputs.

Inputs: synthetic WFC3/IR-like FLT files (one chip each, pure TAN WCS, flat sky plus noise,
EXPTIME 500 s), in one of two layouts:

* ``strips`` (default): N chips of 0.128"/px side by side, each a strip 1/N of the grid wide
  (+6 % overlap) and the grid's full height: together they span the output (depth ~1), so the
  work is the same for any N and the figure isolates what N itself costs;
* ``span``: N 512 x 512 chips with large pixels, each spanning the *whole* grid (a few arcsec
  dither and a small roll apart): every output tile receives every input, the worst case for a
  tile task (work grows with N; affordable on smaller grids, ``--size``).

Output: an AstroDrizzle ``final_*`` grid of 21954 x 21954 pixels at
the fine SkyCell scale (0.04"/px) centred on SkyCell p1889x07y19, north up. Steps: sky
(``localmin``) and the final drizzle (square kernel, pixfrac 1, EXP weights); one exposure per
input visit, so no cosmic-ray steps. Context is off (the CTX layer would add 1.9 GB on disk).

Each run uses its own 2-process local Dask cluster (1 thread per worker); the peak RSS of every
worker process (``VmHWM``) and of the client are printed per input count. The product
(about 3.9 GB) is deleted after each run.

Run::

    nice python benchmarks/bench_drizzle_memory.py [--inputs 5 10 20] [--size 21954]
                                                   [--tile 2048] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hapdask.mosaic import drizzle  # noqa: E402
from skycells import SkyCell  # noqa: E402

SCALE = 0.04  # arcsec, the fine SkyCell scale
CHIP = 512  # input chip edge, pixels


def _rss_mib() -> float:
    """Peak RSS (MiB) of this process: ``VmHWM`` of /proc/self/status.

    Not ``ru_maxrss``: Linux keeps it across ``execve``, so a worker process spawned by the
    client would report the client's peak at spawn time if that is higher than its own.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_inputs(outdir: Path, n: int, size: int, ra: float, dec: float,
                layout: str = "strips") -> list[str]:
    """``n`` synthetic one-chip FLT files spanning the ``size``-pixel output grid (see the
    module docstring for the layouts)."""
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    grid = WCS(naxis=2)
    grid.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    grid.wcs.crval = [ra, dec]
    grid.wcs.crpix = [(size + 1) / 2, (size + 1) / 2]
    grid.wcs.cd = np.diag([-SCALE / 3600.0, SCALE / 3600.0])
    paths = []
    for k in range(n):
        if layout == "span":
            pscale = 1.03 * size * SCALE * np.sqrt(2) / CHIP  # covers the grid at any small roll
            shape = (CHIP, CHIP)
            dx, dy = rng.uniform(-3.0, 3.0, 2) / 3600.0
            cra, cdec = ra + dx / np.cos(np.radians(dec)), dec + dy
            roll = np.radians(rng.uniform(-1.0, 1.0))
        else:
            pscale = 0.128
            f = SCALE / pscale
            shape = (int(np.ceil(1.02 * size * f)), int(np.ceil(1.06 * size / n * f)))
            cra, cdec = grid.wcs_pix2world([[(k + 0.5) * size / n - 0.5, (size - 1) / 2]], 0)[0]
            roll = np.radians(rng.uniform(-0.05, 0.05))
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [cra, cdec]
        w.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
        c, s = np.cos(roll), np.sin(roll)
        w.wcs.cd = pscale / 3600.0 * np.array([[-c, s], [s, c]])
        root = f"imem{k:03d}q"
        prim = fits.Header({
            "TELESCOP": "HST", "INSTRUME": "WFC3", "DETECTOR": "IR", "FILTER": "F160W",
            "EXPTIME": 500.0, "EXPSTART": 57000.0 + 0.01 * k, "EXPEND": 57000.0 + 0.01 * k + 0.006,
            "OBSTYPE": "IMAGING", "ROOTNAME": root, "PROPOSID": 99999, "TARGNAME": "MEMORY",
            "MTFLAG": "F", "SCAN_TYP": "N", "FGSLOCK": "FINE", "DRIZCORR": "COMPLETE",
            "SUBARRAY": False, "DATE-OBS": "2014-12-09", "BUNIT": "ELECTRONS/S"})
        h = w.to_header()
        h["BUNIT"] = "ELECTRONS/S"
        h["EXPTIME"] = 500.0
        h["WCSNAME"] = "SYNTHETIC"
        sci = rng.normal(1.0, 0.05, shape).astype(np.float32)
        hdul = fits.HDUList([
            fits.PrimaryHDU(header=prim),
            fits.ImageHDU(sci, h, name="SCI", ver=1),
            fits.ImageHDU(np.full(shape, 0.05, np.float32), h, name="ERR", ver=1),
            fits.ImageHDU(np.zeros(shape, np.int16), h, name="DQ", ver=1)])
        path = outdir / f"{root}_flt.fits"
        hdul.writeto(path, overwrite=True)
        paths.append(str(path))
    return paths


def run_one(paths: list[str], out: Path, size: int, ra: float, dec: float, tile: int) -> dict:
    """One drizzle on a fresh 2-worker cluster: wall time and peak RSS per worker (MiB)."""
    from distributed import Client, LocalCluster

    params = {"skysub": True, "skymethod": "localmin", "driz_separate": False,
              "median": False, "blot": False, "driz_cr": False, "static": False,
              "context": False, "final_wcs": True, "final_scale": SCALE, "final_rot": 0.0,
              "final_ra": ra, "final_dec": dec, "final_outnx": size, "final_outny": size}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, local_directory=str(out.parent)) as cluster, \
            Client(cluster) as client:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = drizzle(paths, out, params=params, tile_size=tile, region_size=tile,
                          scheduler=client, log=lambda m: None)
        wall = time.perf_counter() - t0
        workers = sorted(client.run(_rss_mib).values())
    with fits.open(res.output) as h:
        shape = h["SCI"].shape
        # a strip of the middle: covered by every input, sky removed -> ~0
        mid = np.asarray(h["SCI"].section[shape[0] // 2, :])
    res.output.unlink()
    return {"wall": wall, "workers": workers, "shape": shape,
            "finite": float(np.isfinite(mid).mean())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, nargs="+", default=[5, 10, 20])
    ap.add_argument("--size", type=int, default=21954)
    ap.add_argument("--tile", type=int, default=2048)
    ap.add_argument("--layout", choices=["strips", "span"], default="strips")
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench_drizzle_memory_"))
    cell = SkyCell.from_name("p1889x07y19", scale="fine")
    ny, nx = cell.wcs.pixel_shape[::-1]
    ra, dec = cell.wcs.all_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
    rows = []
    for n in a.inputs:
        paths = make_inputs(work / f"in{n}", n, a.size, float(ra), float(dec), a.layout)
        r = run_one(paths, work / f"out{n}" / "mem", a.size, float(ra), float(dec), a.tile)
        shutil.rmtree(work / f"in{n}", ignore_errors=True)
        rows.append((n, r))
        print(f"{n:3d} inputs ({a.layout}): {r['shape'][1]} x {r['shape'][0]} output, "
              f"{r['wall']:.1f} s, "
              f"peak RSS per worker {', '.join(f'{v:.0f}' for v in r['workers'])} MiB "
              f"(middle row finite: {100 * r['finite']:.0f} %)", flush=True)
    peak = max(max(r["workers"]) for _, r in rows)
    print(f"client peak RSS {_rss_mib():.0f} MiB; largest worker peak {peak:.0f} MiB "
          f"({'under' if peak < 2048 else 'OVER'} 2 GiB); growth from {rows[0][0]} to "
          f"{rows[-1][0]} inputs: {max(rows[-1][1]['workers']) - max(rows[0][1]['workers']):+.0f} "
          "MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
