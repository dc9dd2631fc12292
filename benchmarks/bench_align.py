"""Alignment of a 4-exposure ACS/WFC visit: hapdask.align vs DrizzlePac's SVM alignment step.

Both sides get the same four full-size simulated ACS/WFC FLC files (visit 3 of the demo set:
``hapdask.simulate.demo_dataset()``, or ``--set DIR`` holding a set with an ACS visit) and the
same reference catalog (the set's Gaia-like ``gaia_refcat.ecsv``).

* hapdask: ``hapdask.align.align(files, refcat)``: source tasks per chip, relative + absolute
  fit (threaded Dask scheduler).
* DrizzlePac 3.11 (what ``HAPProduct.align_to_gaia`` runs for an SVM product, minus the network
  catalog query): ``align_utils.AlignmentTable(files, process_type='SVM', **pars)`` with
  ``align.get_default_pars('ACS', 'WFC')``, ``find_alignment_sources``, ``configure_fit``,
  ``perform_fit('relative', ..., 'rscale')`` on a copy of the files (the fit-quality step, a
  few ms, is left out: its interface differs between DrizzlePac versions). The reference
  catalog that ``amutils.create_astrometric_catalog`` would fetch from the
  Gaia web service is replaced by the same local catalog (RA/DEC propagated to the first
  exposure's epoch, RA_error/DEC_error, mag, objID, and DrizzlePac's 1/(err^2) weight).
  Compatibility shims (DrizzlePac 3.11 predates photutils 3.0): ``SourceCatalog.to_table()``
  gets its ``local_background`` column back, and the source tables' ``x_centroid``/``y_centroid``
  columns are renamed to the ``xcentroid``/``ycentroid`` that ``build_wcscat`` expects. Nothing
  else is changed.

Runs both ``--repeat`` times, interleaved, and prints ``ratio = median drizzlepac / median
hapdask``; with ``--mvm``, the share of alignment in an MVM run (``hapdask.mvm.run``) on the
same four exposures: the run aligning inside its graph against the same run given the same
WCS updates (what alignment adds), and the standalone alignment time.

Usage: ``nice python benchmarks/bench_align.py [--set DIR] [--repeat N] [--mvm]``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.table import Table


def _drizzlepac_shim() -> None:
    import drizzlepac.haputils.astrometric_utils as amu

    base = amu.SourceCatalog

    class SourceCatalogCompat(base):  # photutils 3.0 dropped local_background from to_table
        def to_table(self, columns=None):
            t = super().to_table(columns)
            if columns is None and "local_background" not in t.colnames:
                t["local_background"] = self.local_background
            return t

    amu.SourceCatalog = SourceCatalogCompat


def run_drizzlepac(files: list[str], refcat_path: Path, workdir: Path) -> tuple[float, str]:
    """DrizzlePac's SVM alignment step on copies of ``files``; (seconds, outcome)."""
    from drizzlepac import align as dpalign
    from drizzlepac.haputils import align_utils

    from hapdask.align import FileCatalog
    from hapdask.io import open_exposure

    _drizzlepac_shim()
    copies = []
    for f in files:
        dst = workdir / Path(f).name
        shutil.copy(f, dst)
        copies.append(str(dst))
    exps = [open_exposure(c) for c in copies]
    fp = np.vstack([np.vstack([ch.footprint(), np.full((1, 2), np.nan)])
                    for e in exps for ch in e.chips])
    epoch = 2000.0 + (exps[0].expstart - 51544.5) / 365.25
    cat = FileCatalog(refcat_path)
    q = cat.query(fp, epoch)
    ref = Table({"RA": q["RA"], "DEC": q["DEC"],
                 "RA_error": np.full(len(q), np.nan), "DEC_error": np.full(len(q), np.nan),
                 "mag": q["mag"], "objID": q["objID"], "epoch": np.full(len(q), epoch)})
    ref["weight"] = q["weight"]
    ref.meta["catalog"] = cat.name
    t0 = time.perf_counter()
    pars = dpalign.get_default_pars("ACS", "WFC")
    table = align_utils.AlignmentTable(copies, process_type="SVM", log_level=logging.WARNING,
                                       **pars)
    table.find_alignment_sources(output=False)
    for chips in table.extracted_sources.values():  # photutils 3.0 names -> DrizzlePac's
        for t in chips.values():
            for old, new in (("x_centroid", "xcentroid"), ("y_centroid", "ycentroid")):
                if t is not None and old in t.colnames and new not in t.colnames:
                    t.rename_column(old, new)
    t_src = time.perf_counter() - t0
    try:
        table.configure_fit()
        imglist = table.perform_fit("relative", cat.name, ref, fitgeom="rscale")
        stats = [im.meta.get("fit_info", {}) for im in imglist]
        nm = [int(s.get("nmatches", 0)) for s in stats if s.get("status") == "SUCCESS"]
        outcome = f"relative fit done, tweakwcs matches per chip {nm}"
    except Exception as exc:  # report, and time what ran
        outcome = f"fit step failed: {type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - t0
    return elapsed, f"source finding {t_src:.1f} s; {outcome}"


def run_hapdask(files: list[str], refcat_path: Path) -> tuple[float, str]:
    """hapdask.align on ``files``; (seconds, outcome)."""
    from hapdask.align import align

    t0 = time.perf_counter()
    res = align(files, refcat_path)
    elapsed = time.perf_counter() - t0
    return elapsed, " | ".join(res.summary())


def run_mvm(skycell: str, files: list[str], refcat_path: Path, updates=None) -> float:
    """Wall time of ``hapdask.mvm.run`` on ``files`` (FITS only): aligning to ``refcat_path``
    inside the run, or applying precomputed ``updates`` (no alignment)."""
    from hapdask import mvm

    with tempfile.TemporaryDirectory(prefix="bench_align_mvm_") as tmp:
        t0 = time.perf_counter()
        mvm.run(skycell, files, output=tmp, formats=["fits"], log=lambda m: None,
                refcat=None if updates is not None else refcat_path, wcs_updates=updates)
        return time.perf_counter() - t0


def main() -> None:
    """Run both (interleaved, ``--repeat`` times) and print the ratio of the medians."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", help="simulated set directory (default: the demo set)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side (default 3)")
    ap.add_argument("--mvm", action="store_true",
                    help="also time MVM runs on the same exposures (alignment share)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from hapdask.align import align
    from hapdask.simulate import demo_dataset, load_set

    sset = load_set(args.set) if args.set else demo_dataset()
    files = sorted(str(p) for p in sset.exposures if p.name.startswith("j"))[:4]
    if len(files) < 4:
        raise SystemExit(f"{sset.outdir}: needs a visit with 4 ACS/WFC exposures")
    refcat = sset.refcat
    print(f"inputs: {', '.join(Path(f).name for f in files)}; catalog {refcat}")
    align(files[:1], refcat)  # numba kernels loaded (compiled once, cached on disk)
    ours, refs = [], []
    for i in range(max(1, args.repeat)):
        t, what = run_hapdask(files, refcat)
        ours.append(t)
        print(f"run {i + 1}: hapdask.align {t:.1f} s  ({what})")
        with tempfile.TemporaryDirectory(prefix="bench_align_") as tmp:
            t, what = run_drizzlepac(files, refcat, Path(tmp))
        refs.append(t)
        print(f"run {i + 1}: drizzlepac SVM alignment step {t:.1f} s  ({what})")
    o, r = float(np.median(ours)), float(np.median(refs))
    print(f"hapdask.align median {o:.1f} s, drizzlepac median {r:.1f} s")
    print(f"ratio = {r / o:.2f}")
    if args.mvm:
        updates = align(files, refcat, label="MVM", max_correction=3.0).wcs_updates()
        with_align = run_mvm(sset.skycell, files, refcat)
        without = run_mvm(sset.skycell, files, refcat, updates=updates)
        print(f"MVM run aligning inside the run: {with_align:.1f} s; with the same updates "
              f"given: {without:.1f} s; alignment adds {with_align - without:.1f} s = "
              f"{100 * (with_align - without) / with_align:.0f} % of the run (standalone "
              f"alignment {o:.1f} s = {100 * o / with_align:.0f} %)")


if __name__ == "__main__":
    main()
