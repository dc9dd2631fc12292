"""``hapdask mvm``: Multi-Visit Mosaic layers of one SkyCell (issue: mvm)."""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

from hapdask._memory import keep_freed_memory
from hapdask.cli import CLIError, fewer_full_collections, printable
from hapdask.cli._mvm_batch import add_arguments as add_batch_arguments
from hapdask.cli._mvm_batch import run_batch
from hapdask.cli._profile import add_arguments as add_profile_arguments
from hapdask.cli._profile import profiling
from hapdask.profile import step


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hapdask mvm``."""
    p = sub.add_parser(
        "mvm", help="drizzle every exposure touching a SkyCell into its MVM layers",
        description="Drizzle every exposure touching a SkyCell into its MVM layers (FITS with "
                    "the HAP layout and/or one zarr v3 store). Default scheduler: local "
                    "threads, one per core (the drizzle kernels release the GIL); --workers N "
                    "starts a local cluster of N processes, --scheduler ADDRESS uses a "
                    "running one.")
    p.add_argument("skycell", nargs="*",
                   help="SkyCell name, e.g. p1889x07y19 (several with --plan)")
    p.add_argument("--input", action="append", metavar="POLLER|DIR|LIST|URL",
                   help="inputs (repeatable); default: the built-in simulated demo data")
    p.add_argument("--output", default="hapdask_output", metavar="DIR", help="output directory")
    p.add_argument("--format", default="fits,zarr", help="comma list of fits, zarr")
    p.add_argument("--scheduler", metavar="ADDRESS", help="address of a running Dask scheduler")
    p.add_argument("--workers", type=int, help="local cluster worker processes")
    p.add_argument("--threads-per-worker", type=int, help="threads per local worker")
    p.add_argument("--tile-size", type=int, default=2048, help="tile edge in pixels (default 2048)")
    p.add_argument("--no-context", action="store_true", help="do not build the CTX layer")
    p.add_argument("--layer", action="append", metavar="TEXT",
                   help="only the layers whose name contains TEXT (repeatable), e.g. f160w")
    p.add_argument("--masks", metavar="DIR",
                   help="directory of <rootname>_crmask.fits cosmic-ray masks (hapdask drizzle); "
                        "masks beside the inputs are always used")
    p.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    p.add_argument("--refcat", metavar="CAT",
                   help="align the inputs to this reference catalog first (ECSV/FITS/CSV/"
                        "Parquet); the demo uses the simulator's Gaia-like catalog")
    p.add_argument("--wcs-updates", metavar="FILE",
                   help="apply the WCS updates of 'hapdask align' (wcs_updates.fits)")
    add_batch_arguments(p)
    add_profile_arguments(p, "OUTPUT/<skycell>_dask-report.html")
    p.add_argument("--scheduler-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="give up connecting to --scheduler after this long (default 30)")
    p.add_argument("--oversubscribe", action="store_true",
                   help="allow more workers x threads than this machine has cores")
    p.add_argument("--temp-dir", metavar="DIR",
                   help="scratch space of a local cluster (default: under --output; removed)")
    p.set_defaults(func=run)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Execute ``hapdask mvm``."""
    if args.plan is not None:
        return run_batch(args)
    with fewer_full_collections():
        return _run_one(args)


def _run_one(args: argparse.Namespace) -> int:
    from hapdask import mvm

    if len(args.skycell) != 1 or args.all:
        raise CLIError("give one SkyCell name (several, or --all, only with --plan)")
    args.skycell = args.skycell[0]
    if args.scheduler and args.workers:
        raise CLIError("give either --scheduler or --workers, not both")
    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers must be at least 1, got {args.workers}")
    if args.threads_per_worker is not None and args.threads_per_worker < 1:
        raise CLIError(f"--threads-per-worker must be at least 1, got {args.threads_per_worker}")
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    unknown = [f for f in formats if f not in ("fits", "zarr")]
    if unknown or not formats:
        raise CLIError(f"--format: unknown format(s) {', '.join(unknown) or '(none)'}; "
                       "use fits, zarr or fits,zarr")
    from hapdask.mvm.runner import check_parallelism, validate_arguments

    validate_arguments(args.skycell, tile_size=args.tile_size, layers=args.layer,
                       formats=formats)  # before any input is read
    if not args.scheduler:
        check_parallelism(args.workers, args.threads_per_worker, args.oversubscribe)
    updates = None
    if args.wcs_updates:
        from hapdask.align import read_wcs_updates

        updates = read_wcs_updates(args.wcs_updates)
    if args.dry_run:
        inputs, refcat = args.input, args.refcat
        if inputs is None:
            from hapdask.mvm.runner import _demo_inputs

            inputs, demo_refcat, _ = _demo_inputs(args.skycell, _log)
            refcat = refcat or demo_refcat
        if refcat is not None:
            _log("dry run: the run's plan, on the a-priori WCS grown by the alignment margin "
                 "(the alignment itself is not run)")
        from hapdask.mvm.planning import analyze_tasks
        from hapdask.scheduling import local_compute

        with profiling(args, Path(args.output) / f"{args.skycell}_dask-report.html"):
            g, keys, paths = analyze_tasks(inputs)  # the guiding test reads pixels: in parallel
            verdicts = dict(zip(paths, local_compute(g, keys), strict=True))
            with step("plan"):
                p = mvm.plan(args.skycell, inputs, tile_size=args.tile_size,
                             wcs_updates=updates, context=not args.no_context, only=args.layer,
                             verdicts=verdicts, masks=args.masks, refcat=refcat)
            print("\n".join(printable(line) for line in p.describe().splitlines()))
        return 0 if p.layers else 65
    # before the run's threads start: freed tiles and stacks are reused without new page
    # faults (hapdask._memory; a local cluster's workers get it too). acs4 benchmark, load 6-8:
    # system time 6.1-8.3 s -> 4.9-5.0 s, minor faults 200-280 k -> 86 k, peak RSS unchanged
    keep_freed_memory()
    gc.freeze()  # the ~1e5 objects of the imports: see fewer_full_collections
    try:
        with profiling(args, Path(args.output) / f"{args.skycell}_dask-report.html"):
            result = mvm.run(
                args.skycell, args.input, output=args.output, formats=formats,
                scheduler=args.scheduler, workers=args.workers,
                threads_per_worker=args.threads_per_worker, tile_size=args.tile_size,
                context=not args.no_context, progress=True, log=_log,
                layers=args.layer, scheduler_timeout=args.scheduler_timeout,
                oversubscribe=args.oversubscribe, temp_dir=args.temp_dir, refcat=args.refcat,
                wcs_updates=updates, masks=args.masks)
            print("\n".join(printable(line) for line in result.summary().splitlines()))
    except (ValueError, OSError, KeyboardInterrupt, CLIError):
        raise
    except Exception as exc:  # a failed task: one line, not a traceback
        raise CLIError(f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
    return 0
