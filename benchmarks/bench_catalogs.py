"""Benchmark the SVM catalog step alone, on finished ``hapdask svm`` products, base tree vs this.

The catalog step (:func:`hapdask.catalogs.make_catalogs` on a detector's total product and its
filter products, then the six ECSV files) is run as a whole process, as the SVM catalog task
calls it: the total read with :func:`~hapdask.catalogs.read_product` and passed without a kept
reference, the filter products read one at a time on lookup with ``weights=False``, the
segmentation's detection images spilled to a scratch directory. Saturation maps (HAP's flag 4,
made from the visit's inputs by the SVM runner) are left out: they do not depend on the catalog
code.

Each run is measured with ``/usr/bin/time -v`` (CPU = user + sys, peak RSS) and wall time; runs of
the reference tree (``--base``, e.g. an unchanged worktree of main) and of this tree are
interleaved (A B A B ...). The ECSV files of every run are compared byte for byte with the
first base run's (they hold no timestamps). DrizzlePac's catalog step is not callable here (it
needs photutils < 3): ``ratio = base_time / our_time`` is against the base tree.

Run::

    python benchmarks/bench_catalogs.py PRODUCT_DIR --base /path/to/main/tree [--pairs 3]
    python benchmarks/bench_catalogs.py PRODUCT_DIR --run OUTDIR   # one run, this process
"""

from __future__ import annotations

import argparse
import filecmp
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def find_products(folder: Path) -> tuple[Path, list[Path]]:
    """The total product (``*_total_*_dr[cz].fits``) and its filter products (one per filter)."""
    totals = sorted(folder.glob("hst_*_total_*_dr[cz].fits"))
    if len(totals) != 1:
        raise SystemExit(f"{folder}: expected one total product, found {len(totals)}")
    stem = totals[0].name.split("_total_")
    visit = stem[1].rsplit("_", 1)[0]  # e.g. jf3t03
    filters = sorted(p for p in folder.glob(f"{stem[0]}_*_{visit}_dr[cz].fits")
                     if "_total_" not in p.name)
    if not filters:
        raise SystemExit(f"{folder}: no filter products of {totals[0].name}")
    return totals[0], filters


def run_once(folder: Path, outdir: Path) -> None:
    """The catalog step on the products in ``folder``; ECSV files into ``outdir``."""
    # imported here: the tree on PYTHONPATH (base or this one) decides which hapdask runs
    from hapdask import catalogs
    from hapdask.catalogs import CatalogParams, make_catalogs, read_product

    total, filters = find_products(folder)
    det = "_".join(total.name.split("_")[3:5])  # acs_wfc
    params = CatalogParams.for_detector(det)
    paths = {}
    for p in filters:
        head = read_product(p, memmap=True)
        paths[str(head.keyword("FILTER", default=p.name)).lower()] = p
        del head

    class OnLookup(Mapping):
        def __getitem__(self, key):
            return read_product(paths[key], weights=False)

        def __iter__(self):
            return iter(paths)

        def __len__(self):
            return len(paths)

    outdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=outdir) as scratch:
        if hasattr(catalogs, "filter_backgrounds"):  # before the total is read, as SVM's
            fbkgs = catalogs.filter_backgrounds(OnLookup(), params)
            cats = make_catalogs(read_product(total, weights=False), OnLookup(), params,
                                 scratch=scratch, backgrounds=fbkgs)
        else:  # an older tree (e.g. --base), as its SVM runner called it
            cats = make_catalogs(read_product(total), OnLookup(), params, scratch=scratch)
    written = cats.write(outdir, overwrite=True)
    print(f"{len(cats.point_total)} point, {len(cats.segment_total)} segment sources; "
          f"{len(written)} files; {time.perf_counter() - t0:.1f} s")


def measured(tree: Path, folder: Path, outdir: Path) -> dict:
    """One whole-process run with ``tree`` first on the path: wall, CPU-s, peak RSS (MiB)."""
    outdir.parent.mkdir(parents=True, exist_ok=True)
    timefile = outdir.with_suffix(".time")
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = ["/usr/bin/time", "-v", "-o", str(timefile), sys.executable, str(Path(__file__)),
           str(folder), "--run", str(outdir)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{tree}: run failed:\n{proc.stdout}\n{proc.stderr}")
    text = timefile.read_text()
    cpu = sum(float(v) for v in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) / 1024
    return {"wall": wall, "cpu": cpu, "rss": rss, "load": os.getloadavg()[0]}


def same_catalogs(a: Path, b: Path) -> list[str]:
    """Names of ECSV files that differ between two output folders (or exist in one only)."""
    na = {p.name for p in a.glob("*.ecsv")}
    nb = {p.name for p in b.glob("*.ecsv")}
    bad = sorted(na ^ nb)
    bad += [n for n in sorted(na & nb) if not filecmp.cmp(a / n, b / n, shallow=False)]
    return bad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("products", type=Path, help="folder of a finished hapdask svm run")
    ap.add_argument("--run", type=Path, help="run the step once in this process; ECSV here")
    ap.add_argument("--base", type=Path, help="reference hapdask tree (e.g. a main worktree)")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None, help="output folder (default: temp)")
    args = ap.parse_args()
    if args.run:
        run_once(args.products, args.run)
        return
    if args.base is None:
        raise SystemExit("--base TREE is needed (or --run OUTDIR)")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_catalogs-"))
    res: dict[str, list[dict]] = {"base": [], "ours": []}
    first = None
    for k in range(args.pairs):
        for tag, tree in (("base", args.base), ("ours", ROOT)):
            out = work / f"{tag}{k}"
            r = measured(tree, args.products, out)
            first = first or out
            diff = same_catalogs(first, out)
            r["identical"] = not diff
            res[tag].append(r)
            print(f"{tag} {k}: wall {r['wall']:.1f} s  CPU {r['cpu']:.1f} s  peak RSS "
                  f"{r['rss']:.0f} MiB  load {r['load']:.1f}  ECSV identical to base0: "
                  f"{'yes' if not diff else diff}", flush=True)
    med = {t: {m: statistics.median(r[m] for r in rs) for m in ("wall", "cpu", "rss")}
           for t, rs in res.items()}
    for t in ("base", "ours"):
        print(f"median {t}: wall {med[t]['wall']:.1f} s  CPU {med[t]['cpu']:.1f} s  "
              f"peak RSS {med[t]['rss']:.0f} MiB")
    print(f"ratio = {med['base']['wall'] / med['ours']['wall']:.2f} (wall, base / ours)")
    print(f"ratio = {med['base']['cpu'] / med['ours']['cpu']:.2f} (CPU-s, base / ours)")
    print(f"peak RSS ours / base = {med['ours']['rss'] / med['base']['rss']:.2f}")
    print("all ECSV identical:", all(r["identical"] for rs in res.values() for r in rs))


if __name__ == "__main__":
    main()
