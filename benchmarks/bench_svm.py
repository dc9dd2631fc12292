"""Benchmark ``hapdask svm`` against DrizzlePac's ``runsinglehap`` on one visit, and compare them.

Both run as whole processes on the same poller and the same reference catalog:

* ``runsinglehap``: DrizzlePac 3.11 in the side environment of
  ``benchmarks/setup_drizzlepac_env.sh`` (photutils < 3), through
  ``benchmarks/_runsinglehap_offline.py`` (Gaia requests answered from ``--refcat``, network
  off), in its own work directory holding copies of the inputs (it renames and updates them)
  with ``MEANDARK`` added to ACS SCI headers (AstroDrizzle's ACS reader needs it; the simulator
  does not write it).
* ``hapdask svm POLLER --refcat CAT --output DIR`` with this tree (or ``--hapdask-tree``) first
  on ``PYTHONPATH``; the inputs are read where the poller points and never modified.

Measured per tool: wall time, peak RSS of the whole process tree (sum over the process and all its
children, sampled every 0.1 s with psutil: Dask worker processes count) and the largest single
process (``/usr/bin/time -v``). Printed: ``ratio = reference_time / our_time`` and the memory
ratio ``our_peak / reference_peak`` (issue 10: >= 10x and <= 1/3).

Then the outputs are compared (also available alone with ``--compare-only REF OURS``):

* product names: drizzles, catalogs, headerlets, trailers, manifest in one and not the other;
* grid of every common drizzle product: NAXIS, CRVAL (as output pixels), CD (relative);
* SCI on bright pixels (reference SCI above ``--bright-sigma`` robust sigmas, both WHT > 0): the
  fraction within 1 %, median and 90th percentile of |ours / reference - 1|, and the summed flux
  ratio; our SCI is sampled at the reference pixels' sky positions (bilinear) when the grids differ,
  and, when only their sky position differs (same shape), also pixel by pixel; then again after
  removing the constant sky offset (median of ours - reference on the reference's sky pixels):
  DrizzlePac subtracts the absolute sky when its ``skymethod='match'`` fails and it falls back to
  ``'localmin'`` (it does in the side environment unless repaired: ``--sky-repair``, the default),
  hapdask's 'match' leaves the sky level in;
* catalogs (point and segment, per filter and total): cross-match by position (0.1", after
  removing the median offset of a 1" match: the astrometric difference, reported), number of
  sources each, matched fraction, median separation (mas), median and robust (MAD) scatter of
  the ``Mag*`` column differences (``MagAp1``, ``MagAp2``, ``MagSegment``, the total catalogs'
  ``MagAP2_<filter>``) for matched sources with measured magnitudes (HAP writes -9999 otherwise),
  also for the brightest quarter;
* cosmic-ray flags per exposure chip: DrizzlePac's DQ 4096 in its renamed inputs against our
  ``<rootname>_crmask.fits`` (flagged pixels each, flagged by one tool only).

Run::

    python benchmarks/bench_svm.py                         # demo ACS/WFC visit (4 exposures)
    python benchmarks/bench_svm.py --reference-dir DIR     # reuse a finished runsinglehap run
    python benchmarks/bench_svm.py --compare-only REF OURS # only the comparison
    python benchmarks/bench_svm.py --poller P --refcat C   # another visit

``HAPDASK_DEMO_DIR`` chooses where the demo data are cached (default ~/.cache/hapdask/demo).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.stats import mad_std, sigma_clipped_stats
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning
from scipy.ndimage import map_coordinates

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
warnings.simplefilter("ignore", FITSFixedWarning)

from hapdask.mosaic.products import crmask_name, read_crmask  # noqa: E402  (ROOT on the path)

DEFAULT_DP_PYTHON = "/work/venvs/dp311/bin/python"
WRAPPER = Path(__file__).resolve().with_name("_runsinglehap_offline.py")

#: What counts as a product when the two output directories are compared.
PRODUCT_PATTERNS = ("hst_*_dr[cz].fits", "hst_*_point-cat.ecsv", "hst_*_segment-cat.ecsv",
                    "hst_*_hlet.fits", "hst_*_trl.txt", "*_manifest.txt", "hst_*_fl[ct].fits",
                    "hst_*.jpg")


# -- running ------------------------------------------------------------------------------------
@dataclass
class RunResult:
    """Outcome of one whole-process run."""

    wall: float
    rc: int
    peak_tree_mib: float
    peak_process_mib: float
    cpu: float = float("nan")
    sys_time: float = float("nan")  # of the CPU time: in the kernel (page faults, I/O)
    minor_faults: float = float("nan")
    log_tail: list[str] = field(default_factory=list)


def run_measured(cmd: list[str], cwd: Path, env: dict[str, str], log: Path,
                 timeout: float) -> RunResult:
    """Run ``cmd`` under ``/usr/bin/time -v``; sample the RSS of its whole process tree."""
    timefile = log.with_suffix(".time")
    full = ["/usr/bin/time", "-v", "-o", str(timefile), *cmd]
    # the files the step before wrote (the staged inputs, the previous run's products) reach
    # the disk before the clock starts: no run is timed while the kernel writes back another's
    os.sync()
    t0 = time.perf_counter()
    peak = 0
    with open(log, "w") as out:
        proc = subprocess.Popen(full, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                procs = [root, *root.children(recursive=True)]
                rss = 0
                for p in procs:
                    try:
                        rss += p.memory_info().rss
                    except psutil.Error:
                        pass
                peak = max(peak, rss)
            except psutil.Error:
                pass
            if time.perf_counter() - t0 > timeout:
                for p in [*root.children(recursive=True), root]:
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
                break
            time.sleep(0.1)
        rc = proc.wait()
    wall = time.perf_counter() - t0
    text = timefile.read_text() if timefile.exists() else ""
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    cpu = sum(float(v) for v in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text))
    st = re.search(r"System time \(seconds\): ([\d.]+)", text)
    mf = re.search(r"Minor \(reclaiming a frame\) page faults: (\d+)", text)
    return RunResult(wall=wall, rc=rc, peak_tree_mib=peak / 2**20,
                     peak_process_mib=int(m.group(1)) / 1024.0 if m else float("nan"),
                     cpu=cpu if text else float("nan"),
                     sys_time=float(st.group(1)) if st else float("nan"),
                     minor_faults=float(mf.group(1)) if mf else float("nan"),
                     log_tail=log.read_text(errors="replace").strip().splitlines()[-15:])


def stage_for_drizzlepac(poller: Path, work: Path) -> Path:
    """Copy a poller's inputs into ``work`` (DrizzlePac renames and updates them in place).

    The poller written into ``work`` points at the copies. ACS SCI headers without
    ``MEANDARK`` get ``MEANDARK = 0`` (AstroDrizzle's ACS reader requires it; the simulator does
    not write it). Returns the new poller's path.
    """
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n, line in enumerate(poller.read_text().splitlines(), 1):
        if not line.strip():
            continue
        cols = line.split(",")
        src = Path(cols[-1]) if len(cols) >= 8 else poller.parent / cols[0]
        if not src.is_file():
            raise FileNotFoundError(f"{poller} line {n}: input {src} not found")
        dst = work / src.name
        shutil.copy(src, dst)
        with fits.open(dst, mode="update") as h:
            if h[0].header.get("INSTRUME") == "ACS":
                for hdu in h:
                    if hdu.name == "SCI" and "MEANDARK" not in hdu.header:
                        hdu.header["MEANDARK"] = (0.0, "added by bench_svm for AstroDrizzle")
        cols[-1] = str(dst)
        rows.append(",".join(cols))
    out = work / poller.name
    out.write_text("\n".join(rows) + "\n")
    return out


def run_reference(poller: Path, refcat: Path, work: Path, dp_python: str,
                  timeout: float, sky_repair: bool = True) -> RunResult:
    staged = stage_for_drizzlepac(poller, work)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT)  # the wrapper imports hapdask.align.catalog.FileCatalog
    try:
        cmd = [dp_python, str(WRAPPER), staged.name, "--refcat", str(refcat)]
        if sky_repair:
            cmd.append("--sky-repair")
        return run_measured(cmd, work, env, work.parent / f"{work.name}.log", timeout)
    finally:
        # the staged copies are not products (runsinglehap works on its renamed hst_ copies);
        # a full-frame visit needs ~170 MB each
        for line in staged.read_text().splitlines():
            if line.strip():
                Path(line.split(",")[-1]).unlink(missing_ok=True)


def hapdask_svm_missing(tree: Path) -> str:
    """Why ``python -m hapdask svm --help`` fails with ``tree`` first on the path ('' if not)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    # cwd = tree: ``python -m`` puts the working directory before PYTHONPATH
    proc = subprocess.run([sys.executable, "-m", "hapdask", "svm", "--help"], env=env,
                          cwd=tree, capture_output=True, text=True)
    return "" if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]


def run_ours(poller: Path, refcat: Path, out: Path, tree: Path, extra: list[str],
             timeout: float) -> RunResult:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "hapdask", "svm", str(poller), "--refcat", str(refcat),
           "--output", str(out), *extra]
    return run_measured(cmd, out.parent, env, out.parent / f"{out.name}.log", timeout)


# -- comparison ---------------------------------------------------------------------------------
def products(folder: Path) -> set[str]:
    names: set[str] = set()
    for pat in PRODUCT_PATTERNS:
        names.update(p.name for p in folder.glob(pat))
    return names


def _sci_wcs(path: Path) -> tuple[np.ndarray, np.ndarray, fits.Header]:
    with fits.open(path, memmap=False) as h:
        return (h["SCI"].data.astype(np.float64), h["WHT"].data.astype(np.float64),
                h["SCI"].header.copy())


def compare_grid(ref: fits.Header, ours: fits.Header) -> dict:
    """Differences of the two grids: shape, centre (output pixels) and CD (relative)."""
    wr, wo = WCS(ref), WCS(ours)
    shape_r = (ref["NAXIS2"], ref["NAXIS1"])
    shape_o = (ours["NAXIS2"], ours["NAXIS1"])
    # where our CRVAL falls on the reference grid, against where our CRPIX says it is
    x, y = wr.all_world2pix([[ours["CRVAL1"], ours["CRVAL2"]]], 1)[0]
    cd_r, cd_o = wr.pixel_scale_matrix, wo.pixel_scale_matrix
    return {"shape_ref": shape_r, "shape_ours": shape_o,
            "crval_ref": (ref["CRVAL1"], ref["CRVAL2"]),
            "crval_ours": (ours["CRVAL1"], ours["CRVAL2"]),
            "origin_offset_pix": (float(x - ours["CRPIX1"]), float(y - ours["CRPIX2"])),
            "cd_rel_diff": float(np.max(np.abs(cd_o - cd_r)) / np.max(np.abs(cd_r))),
            "same_grid": shape_r == shape_o
            and max(abs(x - ours["CRPIX1"]), abs(y - ours["CRPIX2"])) < 1e-3
            and float(np.max(np.abs(cd_o - cd_r)) / np.max(np.abs(cd_r))) < 1e-9}


def compare_sci(ref_path: Path, our_path: Path, bright_sigma: float) -> dict:
    """Agreement of SCI on the reference's bright pixels (ours sampled at the same sky spots)."""
    sr, wr, hr = _sci_wcs(ref_path)
    so, wo, ho = _sci_wcs(our_path)
    grid = compare_grid(hr, ho)
    _, med, std = sigma_clipped_stats(sr[(wr > 0) & np.isfinite(sr)], sigma=3.0, maxiters=5)
    bright = (wr > 0) & np.isfinite(sr) & (sr > med + bright_sigma * std)
    yy, xx = np.nonzero(bright)

    def ours_at(ys, xs):  # our SCI and WHT at reference pixels (interpolated off-grid)
        if grid["same_grid"]:
            return so[ys, xs], wo[ys, xs]
        ra, dec = WCS(hr).all_pix2world(xs, ys, 0)
        xo, yo = WCS(ho).all_world2pix(ra, dec, 0)
        return (map_coordinates(np.nan_to_num(so), [yo, xo], order=1, cval=np.nan),
                map_coordinates(wo, [yo, xo], order=1, cval=0.0))

    vo, wov = ours_at(yy, xx)
    vr = sr[yy, xx]
    out = {"grid": grid, "bright_pixels": int(bright.sum()), "sky_sigma": float(std),
           **_agreement(vr, vo, wov)}
    # a constant sky difference (one tool subtracted the sky, the other only matched it:
    # DrizzlePac falls back from skymethod 'match' to 'localmin' when skymatch raises, as it
    # does in the side environment): measured on the reference's sky pixels, then removed
    sky = (wr > 0) & np.isfinite(sr) & (np.abs(sr - med) < 3.0 * std)
    sky[::7] = False  # a sparse, regular subset is enough
    ys, xs = np.nonzero(sky)
    pick = slice(None, None, max(1, ys.size // 200000))
    ys, xs = ys[pick], xs[pick]
    so_sky, wo_sky = ours_at(ys, xs)
    ok = (wo_sky > 0) & np.isfinite(so_sky)
    if ok.sum() > 100:
        offset = float(np.median(so_sky[ok] - sr[ys, xs][ok]))
        out["sky_offset"] = offset
        out["sky_removed"] = _agreement(vr, vo - offset, wov)
    if not grid["same_grid"] and grid["shape_ref"] == grid["shape_ours"]:
        # same array shape: the grids differ only in where they sit on the sky (e.g. one tool
        # aligned the visit and the other kept the pipeline WCS, moving the whole visit grid);
        # compare pixel by pixel as well: the drizzling itself, whatever the astrometry
        out["pixel_registered"] = _agreement(vr, so[yy, xx], wo[yy, xx])
    return out


def _agreement(vr: np.ndarray, vo: np.ndarray, wo: np.ndarray) -> dict:
    ok = (wo > 0) & np.isfinite(vo)
    rel = np.abs(vo[ok] / vr[ok] - 1.0)
    if not rel.size:
        return {"compared": 0, "within_1pct": float("nan"), "median_rel": float("nan"),
                "p90_rel": float("nan"), "flux_ratio": float("nan")}
    return {"compared": int(ok.sum()), "within_1pct": float(np.mean(rel <= 0.01)),
            "median_rel": float(np.median(rel)), "p90_rel": float(np.percentile(rel, 90)),
            "flux_ratio": float(vo[ok].sum() / vr[ok].sum())}


def compare_crmasks(ref: Path, ours: Path) -> dict:
    """Cosmic-ray flags per exposure chip: DrizzlePac's DQ bit 4096 in its renamed inputs
    (``hst_..._fl[ct].fits``, written by its filter products' driz_cr) against our
    ``<rootname>_crmask.fits``: flagged pixels each, and flagged in one only."""
    out: dict = {}
    for path in sorted(ref.glob("hst_*_fl[ct].fits")):
        with fits.open(path) as h:
            root = str(h[0].header.get("ROOTNAME", "")).lower()
            mine = ours / crmask_name(root)
            if not root or not mine.is_file():
                continue
            masks = read_crmask(mine)
            for hdu in h:
                ev = hdu.header.get("EXTVER", 1)
                if hdu.name != "DQ" or ev not in masks:
                    continue
                dp = (np.asarray(hdu.data).astype(np.int64) & 4096) != 0
                m = masks[ev]
                out[f"{root}[{ev}]"] = {"ref": int(dp.sum()), "ours": int(m.sum()),
                                        "only_ref": int((dp & ~m).sum()),
                                        "only_ours": int((m & ~dp).sum())}
    return out


def _radec(t: Table) -> SkyCoord:
    ra = next(c for c in t.colnames if c.upper() in ("RA", "RA_ICRS"))
    dec = next(c for c in t.colnames if c.upper() in ("DEC", "DE_ICRS"))
    return SkyCoord(np.asarray(t[ra], float), np.asarray(t[dec], float), unit="deg")


def _finite_mag(v: np.ndarray) -> np.ndarray:
    """HAP writes -9999 (and sometimes NaN/masked) for magnitudes it could not measure."""
    v = np.ma.filled(np.ma.asarray(v, dtype=float), np.nan)
    return np.isfinite(v) & (v > -900) & (v < 90)


def compare_catalog(ref_path: Path, our_path: Path, radius_arcsec: float = 0.1) -> dict:
    """Cross-match two HAP catalogs (ECSV) by position; magnitude differences of the matches."""
    tr = Table.read(ref_path, format="ascii.ecsv")
    to = Table.read(our_path, format="ascii.ecsv")
    res: dict = {"n_ref": len(tr), "n_ours": len(to),
                 "missing_columns": sorted(set(tr.colnames) - set(to.colnames)),
                 "extra_columns": sorted(set(to.colnames) - set(tr.colnames))}
    if not len(tr) or not len(to):
        return res
    cr, co = _radec(tr), _radec(to)
    # the two tools may have aligned the visit differently: take out the median offset of a
    # loose match first (and report it), then match tightly
    idx, sep, _ = cr.match_to_catalog_sky(co)
    loose = sep.arcsec <= 1.0
    dra = dde = 0.0
    if loose.sum() >= 5:
        dra, dde = (float(np.median(v.deg))
                    for v in cr[loose].spherical_offsets_to(co[idx[loose]]))
        res["offset_mas"] = (dra * 3.6e6, dde * 3.6e6)
    shifted = cr.spherical_offsets_by(dra * u.deg, dde * u.deg)
    idx, sep, _ = shifted.match_to_catalog_sky(co)
    m = sep.arcsec <= radius_arcsec
    res["matched"] = int(m.sum())
    res["matched_frac_of_ref"] = float(m.mean())
    res["matched_frac_of_ours"] = float(len(np.unique(idx[m])) / len(to))
    res["median_sep_mas"] = float(np.median(sep.arcsec[m]) * 1e3) if m.any() else float("nan")
    # MagAp1/MagAp2/MagSegment (filter catalogs), MagAP2_<filter> (total catalogs)
    for col in [c for c in tr.colnames if c.startswith("Mag") and not c.startswith("MagErr")]:
        if col in to.colnames and m.any():
            a = np.ma.filled(np.ma.asarray(tr[col][m], dtype=float), np.nan)
            b = np.ma.filled(np.ma.asarray(to[col][idx[m]], dtype=float), np.nan)
            ok = _finite_mag(a) & _finite_mag(b)
            if ok.sum() >= 3:
                d = b[ok] - a[ok]
                res[f"d{col}"] = {"n": int(ok.sum()), "median": float(np.median(d)),
                                  "mad_std": float(mad_std(d))}
                bright = ok.copy()
                bright[ok] = a[ok] <= np.percentile(a[ok], 25)
                if bright.sum() >= 3:
                    db = b[bright] - a[bright]
                    res[f"d{col}_bright25"] = {"n": int(bright.sum()),
                                               "median": float(np.median(db)),
                                               "mad_std": float(mad_std(db))}
    return res


def compare(ref: Path, ours: Path, bright_sigma: float = 20.0) -> dict:
    """Everything the comparison step reports, as a JSON-able dict."""
    pr, po = products(ref), products(ours)
    out: dict = {"ref_products": sorted(pr), "ours_products": sorted(po),
                 "missing_in_ours": sorted(pr - po), "extra_in_ours": sorted(po - pr),
                 "images": {}, "catalogs": {}}
    for name in sorted(pr & po):
        if name.endswith(("_drz.fits", "_drc.fits")):
            out["images"][name] = compare_sci(ref / name, ours / name, bright_sigma)
        elif name.endswith("-cat.ecsv"):
            out["catalogs"][name] = compare_catalog(ref / name, ours / name)
    out["crmasks"] = compare_crmasks(ref, ours)
    return out


def print_comparison(c: dict) -> None:
    print(f"\nproducts: reference {len(c['ref_products'])}, ours {len(c['ours_products'])}")
    for key, label in (("missing_in_ours", "only in runsinglehap"),
                       ("extra_in_ours", "only in hapdask")):
        if c[key]:
            print(f"  {label}: " + ", ".join(c[key]))
    for name, r in c["images"].items():
        g = r["grid"]
        print(f"  {name}: grid {'same' if g['same_grid'] else 'DIFFERENT'} "
              f"(shape {g['shape_ref']} vs {g['shape_ours']}, origin offset "
              f"({g['origin_offset_pix'][0]:+.3f}, {g['origin_offset_pix'][1]:+.3f}) px, "
              f"CD rel diff {g['cd_rel_diff']:.1e}); bright pixels {r['compared']}: "
              f"{100 * r['within_1pct']:.1f} % within 1 %, median |d| "
              f"{100 * r['median_rel']:.2f} %, p90 {100 * r['p90_rel']:.2f} %, "
              f"flux ratio {r['flux_ratio']:.4f}")
        q = r.get("sky_removed")
        if q:
            print(f"    after removing the sky offset ours - reference {r['sky_offset']:+.5f} "
                  f"(= {r['sky_offset'] / r['sky_sigma']:+.1f} sky sigma): "
                  f"{100 * q['within_1pct']:.1f} % within 1 %, median |d| "
                  f"{100 * q['median_rel']:.2f} %, p90 {100 * q['p90_rel']:.2f} %, flux ratio "
                  f"{q['flux_ratio']:.4f}")
        q = r.get("pixel_registered")
        if q:
            print(f"    same pixels (ignoring the grids' sky offset): {100 * q['within_1pct']:.1f} "
                  f"% within 1 %, median |d| {100 * q['median_rel']:.2f} %, p90 "
                  f"{100 * q['p90_rel']:.2f} %, flux ratio {q['flux_ratio']:.4f}")
    for chip, r in c.get("crmasks", {}).items():
        print(f"  cosmic rays {chip}: DrizzlePac (DQ 4096) {r['ref']}, ours {r['ours']}, only "
              f"DrizzlePac {r['only_ref']}, only ours {r['only_ours']}")
    for name, r in c["catalogs"].items():
        line = f"  {name}: {r['n_ref']} vs {r['n_ours']} sources"
        if "matched" in r:
            if "offset_mas" in r:
                line += (f", offset ours - reference ({r['offset_mas'][0]:+.1f}, "
                         f"{r['offset_mas'][1]:+.1f}) mas (removed before matching)")
            line += (f", matched {r['matched']} ({100 * r['matched_frac_of_ref']:.0f} % of "
                     f"reference, {100 * r['matched_frac_of_ours']:.0f} % of ours), median sep "
                     f"{r['median_sep_mas']:.1f} mas")
        for col in [k[1:] for k in r if k.startswith("dMag") and not k.endswith("_bright25")]:
            d = r.get(f"d{col}")
            if d:
                line += f"; d{col} {d['median']:+.3f} +- {d['mad_std']:.3f} (n={d['n']})"
            d = r.get(f"d{col}_bright25")
            if d:
                line += f" [brightest 25 %: {d['median']:+.3f} +- {d['mad_std']:.3f}]"
        if r["missing_columns"]:
            line += f"; columns missing in ours: {', '.join(r['missing_columns'])}"
        print(line)


# -- driver -------------------------------------------------------------------------------------
def _demo_visit() -> tuple[Path, Path, Path]:
    from hapdask.simulate import demo_dataset

    demo = demo_dataset("p1889x07y19")
    acs = [p for p in demo.svm_pollers if Path(p).name.startswith("acs_")]
    if not acs:
        raise SystemExit("the demo set has no ACS/WFC visit")
    return Path(acs[0]), Path(demo.refcat), Path(demo.truth_catalog)


def deeper_refcat(truth_catalog: Path, g_limit: float, out: Path, seed: int = 0) -> Path:
    """A Gaia-like catalog of the simulated sky down to ``g_limit`` (the demo's stops at 21).

    With G < 21 the demo's ACS/WFC field holds ~20 reference stars, fewer than DrizzlePac's
    ACS/WFC SVM ``rscale`` fit needs (12 matches) after matching, so runsinglehap keeps the
    pipeline WCS; a deeper catalog lets both tools align.
    """
    from hapdask.simulate.sky import gaia_like_catalog

    cat = gaia_like_catalog(Table.read(truth_catalog, format="ascii.ecsv"),
                            np.random.default_rng([seed, 5]), g_limit=g_limit)
    out.parent.mkdir(parents=True, exist_ok=True)
    cat.write(out, format="ascii.ecsv", overwrite=True)
    return out


def _fmt(r: RunResult) -> str:
    return (f"{r.wall:.1f} s wall, {r.cpu:.0f} s CPU ({r.sys_time:.0f} s system, "
            f"{r.minor_faults / 1e3:.0f}k minor page faults), exit {r.rc}, peak RSS "
            f"{r.peak_tree_mib:.0f} MiB (process tree), {r.peak_process_mib:.0f} MiB (largest "
            f"process)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--poller", type=Path, help="SVM poller (default: the demo's ACS/WFC visit)")
    ap.add_argument("--refcat", type=Path, help="reference catalog (default: the demo's)")
    ap.add_argument("--refcat-g-limit", type=float,
                    help="demo only: use a Gaia-like catalog of the truth down to this G "
                         "(e.g. 23) instead of the demo's G < 21 one")
    ap.add_argument("--workdir", type=Path, help="where runs write (default: a new temp dir)")
    ap.add_argument("--dp-python", default=DEFAULT_DP_PYTHON,
                    help=f"python of the drizzlepac 3.11 side environment ({DEFAULT_DP_PYTHON})")
    ap.add_argument("--sky-repair", action=argparse.BooleanOptionalAction, default=True,
                    help="runsinglehap with skymatch 'match' repaired (default; with "
                         "--no-sky-repair AstroDrizzle falls back to 'localmin' in this "
                         "environment: sky subtracted from the filter and total products, fewer "
                         "cosmic rays flagged; see _runsinglehap_offline.py)")
    ap.add_argument("--reference-dir", type=Path,
                    help="a finished runsinglehap work directory to reuse instead of running it")
    ap.add_argument("--reference-figures",
                    help="wall_s,peak_MiB[,cpu_s] of that reused run (e.g. from its .time file)")
    ap.add_argument("--hapdask-tree", type=Path, default=ROOT,
                    help="source tree whose hapdask is measured (default: this one)")
    ap.add_argument("--svm-arg", action="append", default=[],
                    help="extra argument for hapdask svm (repeatable), e.g. --svm-arg=--workers=2")
    ap.add_argument("--repeat", type=int, default=1, help="hapdask runs (median wall)")
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--bright-sigma", type=float, default=20.0)
    ap.add_argument("--compare-only", nargs=2, type=Path, metavar=("REF", "OURS"))
    ap.add_argument("--json", type=Path, help="also write all figures to this JSON file")
    a = ap.parse_args()

    if a.compare_only:
        c = compare(*a.compare_only, bright_sigma=a.bright_sigma)
        print_comparison(c)
        if a.json:
            a.json.write_text(json.dumps(c, indent=1, default=str))
        return 0

    work = (a.workdir or Path(tempfile.mkdtemp(prefix="bench_svm_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if a.poller:
        if a.refcat is None:
            raise SystemExit("--refcat is required with --poller")
        poller, refcat = a.poller, a.refcat
    else:
        poller, refcat, truth = _demo_visit()
        if a.refcat:
            refcat = a.refcat
        elif a.refcat_g_limit:
            refcat = deeper_refcat(truth, a.refcat_g_limit,
                                   work / f"gaia_refcat_G{a.refcat_g_limit:g}.ecsv")
    poller, refcat = poller.resolve(), refcat.resolve()
    print(f"visit {poller}\nreference catalog {refcat}\nwork directory {work}", flush=True)
    figures: dict = {"poller": str(poller), "refcat": str(refcat)}

    if a.reference_dir:
        ref_dir = a.reference_dir.resolve()
        ref = None
        if a.reference_figures:
            v = [float(x) for x in a.reference_figures.split(",")]
            ref = RunResult(wall=v[0], rc=0, peak_tree_mib=v[1], peak_process_mib=float("nan"),
                            cpu=v[2] if len(v) > 2 else float("nan"))
        print(f"runsinglehap: reusing {ref_dir}", flush=True)
    else:
        if not Path(a.dp_python).exists():
            raise SystemExit(f"{a.dp_python}: no drizzlepac side environment; run "
                             f"benchmarks/setup_drizzlepac_env.sh first")
        ref_dir = work / "runsinglehap"
        ref = run_reference(poller, refcat, ref_dir, a.dp_python, a.timeout, a.sky_repair)
        print(f"runsinglehap: {_fmt(ref)}", flush=True)
        if ref.rc != 0:
            print("runsinglehap log tail:\n  " + "\n  ".join(ref.log_tail))
    if ref is not None:
        figures["runsinglehap"] = ref.__dict__

    why = hapdask_svm_missing(a.hapdask_tree)
    if why:
        print(f"\nhapdask svm is missing in {a.hapdask_tree} (`python -m hapdask svm --help` "
              f"fails: {why}): no timing, no comparison. Reference products in {ref_dir}:")
        for name in sorted(products(ref_dir)):
            print(f"  {name}")
        return 1
    # as an installed package is (pip compiles its bytecode, as it did drizzlepac's): the
    # runs must not pay for compiling the distribution's sources (PYTHONDONTWRITEBYTECODE may
    # be set): hapdask and skycells (imported from the tree too, e.g. by hapdask.io.filters)
    for package in ("hapdask", "skycells"):
        compileall.compile_dir(str(a.hapdask_tree / package), quiet=1)
    ours = []
    for k in range(a.repeat):
        r = run_ours(poller, refcat, work / f"hapdask{k}", a.hapdask_tree, a.svm_arg, a.timeout)
        print(f"hapdask svm run {k}: {_fmt(r)}", flush=True)
        if r.rc != 0:
            print("hapdask svm log tail:\n  " + "\n  ".join(r.log_tail))
            return 1
        ours.append(r)
    t_ours = statistics.median(r.wall for r in ours)
    m_ours = max(r.peak_tree_mib for r in ours)
    figures["hapdask"] = [r.__dict__ for r in ours]
    if ref is not None and ref.rc == 0:
        print(f"\nruntime: runsinglehap {ref.wall:.1f} s, hapdask svm {t_ours:.1f} s (median of "
              f"{len(ours)})")
        print(f"peak memory (process tree): runsinglehap {ref.peak_tree_mib:.0f} MiB, hapdask "
              f"svm {m_ours:.0f} MiB")
        print(f"ratio = reference_time / our_time = {ref.wall / t_ours:.2f}")
        c_ours = statistics.median(r.cpu for r in ours)
        print(f"CPU time (user + sys, all processes): runsinglehap {ref.cpu:.0f} s, hapdask svm "
              f"{c_ours:.0f} s, ratio {ref.cpu / c_ours:.2f} (less sensitive to machine load)")
        print(f"memory ratio = our_peak / reference_peak = {m_ours / ref.peak_tree_mib:.3f}")
    c = compare(ref_dir, work / f"hapdask{len(ours) - 1}", a.bright_sigma)
    print_comparison(c)
    figures["comparison"] = c
    if a.json:
        a.json.write_text(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
