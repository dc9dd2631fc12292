"""``hapdask mvm --plan PLAN [SKYCELL ... | --all]``: many SkyCells of a plan on one cluster.

Registered by :mod:`hapdask.cli.mvm` (its extra arguments) and run from its ``run``; the work
is :func:`hapdask.mvm.batch.run_batch`.
"""

from __future__ import annotations

import argparse
import sys

from hapdask.cli import CLIError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The batch options of ``hapdask mvm``."""
    g = p.add_argument_group("many SkyCells from a plan (hapdask plan)")
    g.add_argument("--plan", metavar="PLAN",
                   help="plan directory: build the SkyCells named, or --all, on one cluster; "
                        "products go to OUTPUT/<skycell>/, finished SkyCells are skipped")
    g.add_argument("--all", action="store_true", help="every SkyCell of --plan")
    g.add_argument("--concurrency", type=int, default=2,
                   help="SkyCell graphs in flight at once (default 2), largest first")
    g.add_argument("--retries", type=int, default=1,
                   help="extra attempts for a failed SkyCell (default 1)")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_batch(args: argparse.Namespace) -> int:
    """Execute ``hapdask mvm --plan``; exit code 0 if no SkyCell failed, else 3."""
    from hapdask.mvm.batch import run_batch as batch

    cells = list(args.skycell or [])
    if args.all == bool(cells):
        raise CLIError("with --plan give SkyCell names or --all (not both)")
    if args.input:
        raise CLIError("--input and --plan exclude each other: the plan lists the inputs")
    if args.dry_run:
        from hapdask.archive import read_plan

        plan = read_plan(args.plan)
        sc = plan.skycells if args.all else plan.skycells[
            plan.skycells["skycell"].isin([c if c.startswith("skycell-") else f"skycell-{c}"
                                           for c in cells])]
        print(sc.to_string(index=False))
        return 0
    if args.scheduler and args.workers:
        raise CLIError("give either --scheduler or --workers, not both")
    if args.concurrency < 1:
        raise CLIError(f"--concurrency must be at least 1, got {args.concurrency}")
    if args.retries < 0:
        raise CLIError(f"--retries must be >= 0, got {args.retries}")
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    opts = {"formats": formats, "tile_size": args.tile_size, "context": not args.no_context,
            "layers": args.layer}
    try:
        result = batch(args.plan, None if args.all else cells, output=args.output,
                       scheduler=args.scheduler, workers=args.workers,
                       threads_per_worker=args.threads_per_worker,
                       concurrency=args.concurrency, retries=args.retries, run_options=opts,
                       log=_log)
    except KeyError as exc:
        raise CLIError(str(exc).strip("'\"")) from None
    print(result.summary())
    return 3 if result.counts().get("failed") else 0
