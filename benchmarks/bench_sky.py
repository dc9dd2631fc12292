"""Benchmark AstroDrizzle's ``skymethod='match'`` on 4 dithered full-frame ACS/WFC exposures.

Inputs: the real ACS/WFC headers of ``../shared/data/real/j94f05bgq_flt.fits.gz`` with their full
distortion (``hapdask.io.apply_reference_distortion``), four copies dithered by tens to hundreds
of pixels (CRVAL shifts), each chip 4096x2048 filled with a different sky level (80 e- plus
0, 12, -7, 25 e-), Poisson-like noise, cosmic-ray-like hot pixels and a few DQ-flagged pixels.

* ``hapdask``: :class:`hapdask.sky.AstroDrizzleSky` (``match``, ``skystat='median'``,
  ``skylower=-100``, ``sky_bits=80``, no static mask) from graph building to the levels, Dask
  threaded scheduler with 2 threads.
* ``skypac``: ``stsci.skypac.skymatch`` called as AstroDrizzle's sky step calls it (masks = DQ
  good per ``sky_bits``, prepared beforehand and not timed), same statistics, in this process.
  spherical_geometry 1.4 lacks ``SphericalPolygon.iter_polygons_flat`` that skypac's ``match``
  needs (installed AstroDrizzle silently falls back to ``localmin``); it is added here as
  iteration over the polygon's parts.

Run::

    nice python benchmarks/bench_sky.py [--runs 3] [--workdir /tmp/bench_sky]

Prints each engine's median time, the largest MDRIZSKY difference and
``ratio = reference_time / our_time``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

REAL = ROOT.parent.parent / "shared" / "data" / "real"
OFFSETS = (0.0, 12.0, -7.0, 25.0)
DITHERS = ((0.0, 0.0), (40.0, 25.0), (80.0, -30.0), (-60.0, 100.0))  # pixels
BITS = 80


def make_inputs(workdir: Path) -> list[str]:
    """The four exposures (written once; reused when present)."""
    from hapdask.io import apply_reference_distortion

    real = Path(os.environ.get("HAPDASK_SHARED_DATA", REAL))
    base = workdir / "base_flt.fits"
    if not base.exists():
        apply_reference_distortion(real / "j94f05bgq_flt.fits.gz", base, real)
    files = []
    rng = np.random.default_rng(1)
    for k, ((dx, dy), off) in enumerate(zip(DITHERS, OFFSETS, strict=True)):
        dest = workdir / f"j94f05b{k}q_flt.fits"
        files.append(str(dest))
        if dest.exists():
            continue
        with fits.open(base) as h:
            h = fits.HDUList([hdu.copy() for hdu in h])
        h[0].header["ROOTNAME"] = dest.name[:9]  # one exposure per file
        for hdu in h:
            if hdu.name == "SCI":
                ny, nx = hdu.data.shape
                sky = 80.0 + off
                data = rng.normal(sky, np.sqrt(sky + 25.0), (ny, nx)).astype(np.float32)
                hot = rng.random((ny, nx)) < 0.01
                data[hot] += rng.exponential(500.0, hot.sum()).astype(np.float32)
                hdu.data = data
                hdu.header["BUNIT"] = "ELECTRONS"
                scale = 0.05 / 3600.0
                hdu.header["CRVAL1"] += dx * scale / np.cos(np.radians(hdu.header["CRVAL2"]))
                hdu.header["CRVAL2"] += dy * scale
                ver = hdu.header["EXTVER"]
                dq = np.zeros((ny, nx), np.int16)
                dq[rng.random((ny, nx)) < 0.002] = 4
                h["DQ", ver].data = dq
                h["ERR", ver].data = np.full((ny, nx), np.sqrt(sky), np.float32)
        h.writeto(dest)
    return files


def chip_refs(files):
    from hapdask.io import open_exposure
    from hapdask.mosaic import chip_refs as mosaic_chip_refs

    return [ref for f in files for ref in mosaic_chip_refs(open_exposure(f), BITS)]


def run_hapdask(files) -> tuple[float, dict]:
    import dask

    from hapdask.sky import AstroDrizzleSky, SkyParams

    t0 = time.perf_counter()
    p = SkyParams(skymethod="match", skylower=-100.0, sky_bits=BITS, static=False,
                  use_static=False)
    chips = chip_refs(files)
    graph, keys = AstroDrizzleSky(p).tasks(chips, "sky")
    levels = dask.threaded.get(graph, keys, num_workers=2)
    dt = time.perf_counter() - t0
    return dt, {c.key: lv.value for c, lv in zip(chips, levels, strict=True)}


def prepare_skypac(files, workdir: Path) -> list[str]:
    """Copies and DQ masks for skypac (not timed)."""
    from stsci.tools.bitmask import bitfield_to_boolean_mask

    copies = []
    for f in files:
        d = workdir / ("sp_" + os.path.basename(f))
        shutil.copy(f, d)
        copies.append(str(d))
        with fits.open(d) as h:
            for hdu in h:
                if hdu.name == "DQ":
                    m = bitfield_to_boolean_mask(hdu.data, BITS, good_mask_value=1,
                                                 dtype=np.uint8)
                    fits.PrimaryHDU(m).writeto(f"{d}_{hdu.header['EXTVER']}_mask.fits",
                                               overwrite=True)
    return copies


def run_skypac(copies) -> tuple[float, dict]:
    from spherical_geometry.polygon import SphericalPolygon
    from stsci.skypac.parseat import FileExtMaskInfo
    from stsci.skypac.skymatch import skymatch
    from stsci.skypac.utils import MultiFileLog

    if not hasattr(SphericalPolygon, "iter_polygons_flat"):
        SphericalPolygon.iter_polygons_flat = lambda self: iter(self)
    t0 = time.perf_counter()
    infos = []
    for d in copies:
        fi = FileExtMaskInfo(default_ext=("SCI", "*"), default_mask_ext=0, clobber=False,
                             doNotOpenDQ=True, fnamesOnly=False, im_fmode="update",
                             dq_fmode="readonly", msk_fmode="readonly")
        fi.image = d
        fi.append_ext([("SCI", 1), ("SCI", 2)])
        fi.finalize()
        fi.clear_masks()
        for e in (1, 2):
            fi.append_mask(f"{d}_{e}_mask.fits", 0)
        fi.finalize()
        infos.append(fi)
    with contextlib.redirect_stdout(io.StringIO()):
        skymatch(infos, skymethod="match", skystat="median", lower=-100.0, upper=None,
                 nclip=5, lsigma=4.0, usigma=4.0, binwidth=0.1, skyuser_kwd="MDRIZSKY",
                 units_kwd="BUNIT", readonly=False, dq_bits=None, optimize="balanced",
                 clobber=True, clean=True, verbose=False, flog=MultiFileLog(console=False),
                 _taskname4history="AstroDrizzle")
    for fi in infos:
        fi.release_all_images()
    dt = time.perf_counter() - t0
    out = {}
    for d in copies:
        root = os.path.basename(d)[3:12]
        for e in (1, 2):
            out[(root, e)] = float(fits.getval(d, "MDRIZSKY", ("SCI", e)))
    return dt, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_sky_"))
    work.mkdir(parents=True, exist_ok=True)
    files = make_inputs(work)
    run_hapdask(files[:2])  # numba compilation / cache load outside the timing
    ours, theirs = [], []
    for _ in range(args.runs):
        dt, ov = run_hapdask(files)
        ours.append(dt)
        copies = prepare_skypac(files, work)
        dt, tv = run_skypac(copies)
        theirs.append(dt)
    diff = max(abs(ov[k] - tv[k]) for k in ov)
    to, tt = statistics.median(ours), statistics.median(theirs)
    print(f"inputs: {len(files)} ACS/WFC exposures x 2 chips 4096x2048, workdir {work}")
    for k in sorted(ov):
        print(f"  {k[0]}[SCI,{k[1]}]  MDRIZSKY hapdask {ov[k]:9.4f}  skypac {tv[k]:9.4f}")
    print(f"hapdask match: {to:.2f} s (runs {', '.join(f'{t:.2f}' for t in ours)})")
    print(f"skypac  match: {tt:.2f} s (runs {', '.join(f'{t:.2f}' for t in theirs)})")
    print(f"max |MDRIZSKY difference| = {diff:.4f} e-")
    print(f"ratio = reference_time / our_time = {tt / to:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
