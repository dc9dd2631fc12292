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
WCS updates (what alignment adds), and the standalone alignment time, in wall and CPU seconds
(user + system of the process: the runs use the local threaded scheduler), medians of
``--repeat`` interleaved runs.

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


def run_hapdask(files: list[str], refcat_path: Path) -> tuple[float, float, str]:
    """hapdask.align on ``files``; (wall seconds, CPU seconds of this process, outcome)."""
    from hapdask.align import align

    t0, c0 = time.perf_counter(), time.process_time()
    res = align(files, refcat_path)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return elapsed, cpu, " | ".join(res.summary())


def run_mvm(skycell: str, files: list[str], refcat_path: Path,
            updates=None) -> tuple[float, float, float]:
    """``hapdask.mvm.run`` on ``files`` (FITS only, the local threaded scheduler, so all its
    work is in this process): aligning to ``refcat_path`` inside its graph, or applying
    precomputed ``updates`` (no alignment). Returns (wall seconds, CPU seconds: user + system
    of all threads of this process, CPU seconds of its alignment tasks: the ``align`` stage
    of :class:`hapdask.profile.Profile`)."""
    from hapdask import mvm
    from hapdask.profile import Profile

    with tempfile.TemporaryDirectory(prefix="bench_align_mvm_") as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        with Profile() as prof:
            mvm.run(skycell, files, output=tmp, formats=["fits"], log=lambda m: None,
                    refcat=None if updates is not None else refcat_path, wcs_updates=updates)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    align_cpu = sum(r.cpu for r in prof.stages() if r.depth == 0 and r.name == "align")
    return wall, cpu, align_cpu


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
    ours, ours_cpu, refs = [], [], []
    for i in range(max(1, args.repeat)):
        t, c, what = run_hapdask(files, refcat)
        ours.append(t)
        ours_cpu.append(c)
        print(f"run {i + 1}: hapdask.align {t:.1f} s (CPU {c:.1f} s)  ({what})")
        with tempfile.TemporaryDirectory(prefix="bench_align_") as tmp:
            t, what = run_drizzlepac(files, refcat, Path(tmp))
        refs.append(t)
        print(f"run {i + 1}: drizzlepac SVM alignment step {t:.1f} s  ({what})")
    o, r = float(np.median(ours)), float(np.median(refs))
    print(f"hapdask.align median {o:.1f} s, drizzlepac median {r:.1f} s")
    print(f"ratio = {r / o:.2f}")
    if args.mvm:
        # alignment's share of an MVM run. Wall-time differences of two runs are noise on a
        # loaded machine (negative "alignment adds" was seen), so CPU seconds are compared
        # too, every figure the median of --repeat interleaved runs
        updates = align(files, refcat, label="MVM", max_correction=3.0).wcs_updates()
        runs: dict[str, list[tuple[float, float, float]]] = {"with": [], "without": []}
        for i in range(max(1, args.repeat)):
            runs["with"].append(run_mvm(sset.skycell, files, refcat))
            runs["without"].append(run_mvm(sset.skycell, files, refcat, updates=updates))
            print(f"MVM run {i + 1}: aligning inside the graph {runs['with'][-1][0]:.1f} s "
                  f"(CPU {runs['with'][-1][1]:.1f} s, of which alignment tasks "
                  f"{runs['with'][-1][2]:.1f} s); updates given "
                  f"{runs['without'][-1][0]:.1f} s (CPU {runs['without'][-1][1]:.1f} s)")
        (w_wall, w_cpu, w_align), (n_wall, n_cpu, _) = (
            tuple(float(np.median([r[k] for r in runs[m]])) for k in (0, 1, 2))
            for m in ("with", "without"))
        oc = float(np.median(ours_cpu))
        print(f"MVM medians: aligning inside the graph {w_wall:.1f} s wall, {w_cpu:.1f} s CPU; "
              f"updates given {n_wall:.1f} s wall, {n_cpu:.1f} s CPU")
        print(f"alignment share of the MVM run: CPU of its alignment tasks "
              f"{100 * w_align / w_cpu:.0f} % ({w_align:.1f} s); "
              f"CPU {100 * (w_cpu - n_cpu) / w_cpu:.0f} % "
              f"(difference), {100 * oc / w_cpu:.0f} % (standalone alignment CPU {oc:.1f} s); "
              f"wall {100 * (w_wall - n_wall) / w_wall:.0f} % (difference), "
              f"{100 * o / w_wall:.0f} % (standalone alignment wall {o:.1f} s)")


if __name__ == "__main__":
    main()
