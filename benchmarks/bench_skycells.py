"""Benchmark: footprint -> SkyCells, hapdask ``skycells`` vs DrizzlePac ``cell_utils``.

Footprints are the real distorted chip headers of ../shared/data moved to random sky positions
(uniform on the sphere, seeded): ACS/WFC size (j94f05bgq, 2 chips 4096x2048, 0.05"/pix, SIP)
and WFC3/IR size (sample_svm_flt.fits = ib4606cpq, 1014x1014, 0.128"/pix, SIP).

Timed per footprint (medians):
- ``ours (WCS)``: ``cells_for_footprint([chip WCSs])`` with the WCS objects already built;
- ``ours (file)``: ``hapdask cells --footprint`` work: open the FITS file, build every SCI WCS
  (with lookup tables) and find the cells, i.e. the same work as the reference;
- ``drizzlepac``: ``cell_utils.get_sky_cells([file])`` on the same files (temp files with WCSNAME).

Run: ``python benchmarks/bench_skycells.py [--n 100] [--nref 3]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
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

from hapdask.cli.cells import footprint_cells  # noqa: E402
from skycells import cells_for_footprint  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def chip_headers(kind: str) -> tuple[fits.Header, list[fits.Header]]:
    if kind == "ACS/WFC":
        path, size = DATA / "real" / "j94f05bgq_flt.fits.gz", None
    else:
        path, size = DATA / "headers" / "sample_svm_flt.fits", (1014, 1014)
    with fits.open(path) as hdul:
        prim = hdul[0].header.copy()
        chips = []
        for h in hdul:
            if h.name != "SCI":
                continue
            hdr = h.header.copy()
            if size:
                hdr["NAXIS1"], hdr["NAXIS2"] = size
            chips.append(hdr)
    return prim, chips


def write_exposure(path: Path, prim: fits.Header, chips: list[fits.Header], ra: float,
                   dec: float) -> list[WCS]:
    """Write a FITS exposure with the chips moved to (ra, dec); return the chip WCSs."""
    hdus = [fits.PrimaryHDU(header=prim)]
    root = path.name[:9]
    ra0, dec0 = chips[0]["CRVAL1"], chips[0]["CRVAL2"]
    wcss = []
    for n, hdr in enumerate(chips, 1):
        h = hdr.copy()
        # keep the chips' relative layout: shift each CRVAL by the same offset as chip 1
        h["CRVAL1"] = (ra + (hdr["CRVAL1"] - ra0) / max(np.cos(np.radians(dec)), 1e-3)
                       * np.cos(np.radians(dec0))) % 360.0
        h["CRVAL2"] = float(np.clip(dec + (hdr["CRVAL2"] - dec0), -89.9999, 89.9999))
        h["WCSNAME"] = "BENCH"
        h["EXTVER"] = n
        h.setdefault("EXPNAME", root)
        h.setdefault("EXPTIME", prim.get("EXPTIME", 100.0))
        for key in ("NAXIS", "NAXIS1", "NAXIS2", "BITPIX", "XTENSION", "PCOUNT", "GCOUNT"):
            h.pop(key, None)
        shape = (hdr["NAXIS2"], hdr["NAXIS1"])
        hdus.append(fits.ImageHDU(np.zeros(shape, np.int16), header=h, name="SCI"))
        w = WCS(h)
        w.pixel_shape = (hdr["NAXIS1"], hdr["NAXIS2"])
        wcss.append(w)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return wcss


def median_time(func, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="footprints per kind for our code")
    ap.add_argument("--nref", type=int, default=3, help="footprints per kind for drizzlepac")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.INFO)
    try:
        from drizzlepac.haputils import cell_utils
    except Exception as exc:  # pragma: no cover
        cell_utils = None
        print(f"drizzlepac not importable ({exc}); reference timings skipped")

    rng = np.random.default_rng(args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_skycells_") as tmp:
        for kind, root in (("ACS/WFC", "j94f05bgq"), ("WFC3/IR", "ib4606cpq")):
            prim, chips = chip_headers(kind)
            n = max(args.n, args.nref)
            ras = rng.uniform(0, 360, n)
            decs = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
            t_wcs, t_file, t_ref, agree = [], [], [], 0
            for k in range(n):
                path = Path(tmp) / f"{root[:3]}{k:03d}{root[6:]}_flt.fits"
                wcss = write_exposure(path, prim, chips, ras[k], decs[k])
                cells_for_footprint(wcss)  # warm-up
                t_wcs.append(median_time(lambda w=wcss: cells_for_footprint(w), 5))
                t_file.append(median_time(lambda p=path: footprint_cells(p), 3))
                if cell_utils is not None and k < args.nref:
                    with contextlib.redirect_stdout(io.StringIO()):
                        t0 = time.perf_counter()
                        ref = cell_utils.get_sky_cells([str(path)])
                        t_ref.append(time.perf_counter() - t0)
                    agree += set(ref) == set(cells_for_footprint(wcss))
                path.unlink()
            rows.append((kind, n, statistics.median(t_wcs), statistics.median(t_file),
                         len(t_ref), statistics.median(t_ref) if t_ref else float("nan"), agree))

    print()
    print("| footprint | n | ours WCS (ms) | ours file (ms) | n ref | drizzlepac (s) | "
          "ratio ref/ours-file | ratio ref/ours-WCS | same cells |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, n, tw, tf, nr, tr, ag in rows:
        print(f"| {kind} | {n} | {tw * 1e3:.3f} | {tf * 1e3:.2f} | {nr} | {tr:.2f} | "
              f"{tr / tf:.0f} | {tr / tw:.0f} | {ag}/{nr} |")
    for kind, _, tw, tf, _, tr, _ in rows:
        print(f"{kind}: ratio = reference_time / our_time = {tr / tf:.0f} (file to cells), "
              f"{tr / tw:.0f} (WCS to cells)")


if __name__ == "__main__":
    main()
