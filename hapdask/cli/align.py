"""``hapdask align``: align exposures to each other and to an offline reference catalog."""

from __future__ import annotations

import argparse
import time

from hapdask.cli import CLIError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hapdask align``."""
    p = sub.add_parser(
        "align", help="align exposures (per visit) to each other and to a reference catalog",
        description="TweakReg's role for any list of FLT/FLC files, directories or pollers: "
                    "sources per chip, relative fit within each visit, absolute fit to an "
                    "offline reference catalog (DrizzlePac's SVM hierarchy and acceptance "
                    "rules). Writes DIR/wcs_updates.fits, DIR/alignment.ecsv and, with "
                    "--headerlets, one stwcs headerlet per aligned exposure. Inputs are never "
                    "modified.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="FLT/FLC files, directories, list files or pollers")
    p.add_argument("--refcat", required=True, metavar="CAT",
                   help="reference catalog (ECSV/FITS/CSV/Parquet; Gaia column names or "
                        "plain ra/dec)")
    p.add_argument("--catalog-name", metavar="NAME",
                   help="catalog name for WCSNAME (default: table meta 'catalog' or file stem)")
    p.add_argument("--output", default="hapdask_align", metavar="DIR", help="output directory")
    p.add_argument("--headerlets", action="store_true",
                   help="also write a headerlet per aligned exposure (stwcs can apply it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``hapdask align``."""
    from hapdask.align import CatalogError, FileCatalog, align, write_outputs

    t0 = time.perf_counter()
    try:
        cat = FileCatalog(args.refcat, name=args.catalog_name)
    except CatalogError as exc:
        raise CLIError(str(exc)) from None
    result = align(args.inputs, cat)
    if not result.exposures and not result.unreadable:
        raise CLIError("no input exposure found")
    paths = write_outputs(result, args.output, headerlets=args.headerlets)
    for line in result.summary():
        print(line)
    for path, why in result.unreadable:
        print(f"{path}: {why}")
    n_ok = sum(e.status in ("aligned", "relative") for e in result.exposures)
    print(f"{n_ok}/{len(result.exposures)} exposures aligned to {cat.name} "
          f"({len(result.updates)} chip updates) in {time.perf_counter() - t0:.1f} s")
    for path in paths:
        print(f"wrote {path}")
    return 0
