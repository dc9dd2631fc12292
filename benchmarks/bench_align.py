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

Prints both wall times, ``ratio = drizzlepac / hapdask`` and, with ``--mvm``, the alignment time
as a fraction of an MVM run (``hapdask.mvm.run``) on the same four exposures.

Usage: ``nice python benchmarks/bench_align.py [--set DIR] [--mvm]``.
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


def main() -> None:
    """Run both and print the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", help="simulated set directory (default: the demo set)")
    ap.add_argument("--mvm", action="store_true",
                    help="also time an MVM run on the same exposures")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from hapdask.simulate import demo_dataset, load_set

    sset = load_set(args.set) if args.set else demo_dataset()
    files = sorted(str(p) for p in sset.exposures if p.name.startswith("j"))[:4]
    if len(files) < 4:
        raise SystemExit(f"{sset.outdir}: needs a visit with 4 ACS/WFC exposures")
    refcat = sset.refcat
    print(f"inputs: {', '.join(Path(f).name for f in files)}; catalog {refcat}")
    ours, what = run_hapdask(files, refcat)
    print(f"hapdask.align: {ours:.1f} s  ({what})")
    with tempfile.TemporaryDirectory(prefix="bench_align_") as tmp:
        ref, what = run_drizzlepac(files, refcat, Path(tmp))
    print(f"drizzlepac SVM alignment step: {ref:.1f} s  ({what})")
    print(f"ratio = {ref / ours:.2f}")
    if args.mvm:
        from hapdask import mvm

        with tempfile.TemporaryDirectory(prefix="bench_align_mvm_") as tmp:
            t0 = time.perf_counter()
            mvm.run(sset.skycell, files, output=tmp, formats=["fits"], log=lambda m: None,
                    refcat=refcat)
            wall = time.perf_counter() - t0
        print(f"MVM run with alignment on the same exposures: {wall:.1f} s; alignment "
              f"{ours:.1f} s = {100 * ours / wall:.0f} % of it")


if __name__ == "__main__":
    main()
