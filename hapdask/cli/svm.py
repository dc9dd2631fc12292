"""``hapdask svm``: Single-Visit Mosaics of one visit's poller (issue 10)."""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

from hapdask._memory import keep_freed_memory
from hapdask.cli import CLIError, fewer_full_collections, printable
from hapdask.cli._profile import add_arguments as add_profile_arguments
from hapdask.cli._profile import profiling

#: HAP's exit code when a poller holds no viable data (inventory section 0).
NO_VIABLE_DATA = 65


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hapdask svm``."""
    p = sub.add_parser(
        "svm", help="a visit's Single-Visit Mosaics: aligned exposure/filter/total drizzles, "
                    "catalogs, previews",
        description="Make HAP's Single-Visit Mosaic products of one visit: alignment to a "
                    "reference catalog, exposure, filter and total drizzles on the visit's "
                    "north-up grid with HAP's SVM parameters, point and segment catalogs, "
                    "previews, headerlets, wcs_updates.fits and <rootname>_crmask.fits, "
                    "trailers and the manifest. Inputs are never modified.")
    p.add_argument("poller", help="the visit's 8-column SVM poller (or a list of FLT/FLC files)")
    p.add_argument("--refcat", metavar="CAT",
                   help="reference catalog (ECSV/FITS/CSV/Parquet with RA, DEC); without it "
                        "the inputs keep their a-priori WCS (DrizzlePac would query its "
                        "catalog service)")
    p.add_argument("--catalog-name", metavar="NAME",
                   help="reference catalog name in WCSNAME (...-FIT_SVM_<NAME>; default: the "
                        "table's 'catalog' meta value, else the file stem); e.g. GAIAeDR3 for "
                        "a Gaia DR3 extract, DrizzlePac's name for that catalog")
    p.add_argument("--output", default=".", metavar="DIR", help="output directory (default .)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--scheduler", metavar="ADDRESS", help="address of a running Dask "
                                                              "scheduler")
    group.add_argument("--workers", type=int, metavar="N", help="local cluster worker processes")
    p.add_argument("--threads-per-worker", type=int, metavar="N",
                   help="threads (default: one per core) or threads per local worker")
    p.add_argument("--update-inputs", action="store_true",
                   help="also write HAP's renamed input copies hst_..._fl[ct].fits with the "
                        "aligned WCS and cosmic-ray DQ flags (never the originals)")
    p.add_argument("--no-catalogs", action="store_true", help="skip the catalogs")
    p.add_argument("--no-previews", action="store_true", help="skip the JPEG previews")
    p.add_argument("--dry-run", action="store_true", help="print the product tree and stop")
    add_profile_arguments(p, "OUTPUT/<poller>_dask-report.html")
    p.set_defaults(func=run)


def _log(msg: str) -> None:
    print(printable(msg), file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Execute ``hapdask svm``."""
    with fewer_full_collections():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from hapdask import svm

    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers must be >= 1, got {args.workers}")
    if args.threads_per_worker is not None and args.threads_per_worker < 1:
        raise CLIError(f"--threads-per-worker must be >= 1, got {args.threads_per_worker}")
    try:
        if args.dry_run:
            for line in svm.plan(args.poller).describe():
                print(printable(line))
            return 0
        # before the graph's threads start: freed arrays are reused without new page faults
        # (hapdask._memory; a local cluster's workers get it too)
        keep_freed_memory()
        gc.freeze()  # the imports' objects: see fewer_full_collections
        report = Path(args.output) / f"{Path(args.poller).stem}_dask-report.html"
        with profiling(args, report):
            result = svm.run(args.poller, output=args.output, refcat=args.refcat,
                             catalog_name=args.catalog_name, scheduler=args.scheduler,
                             workers=args.workers,
                             threads_per_worker=args.threads_per_worker,
                             update_inputs=args.update_inputs, catalogs=not args.no_catalogs,
                             previews=not args.no_previews, log=_log)
    except svm.NoViableData as exc:
        raise CLIError(str(exc), code=NO_VIABLE_DATA) from None
    for line in result.summary().splitlines():
        print(printable(line))
    return 0
