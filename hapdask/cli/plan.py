"""``hapdask plan``: an archive inventory -> the SkyCells of a full-sky MVM run (issue 12)."""

from __future__ import annotations

import argparse
import sys
import time

from hapdask.cli import CLIError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hapdask plan``."""
    p = sub.add_parser(
        "plan", help="assign an archive's exposures to SkyCells (PLAN/ for hapdask mvm --plan)",
        description="Assign every exposure of an inventory (MAST-style table: obs_id, "
                    "instrument_name, filters, s_region, t_exptime, t_min, proposal_id, "
                    "path/dataURL; Parquet, ECSV or CSV) to the SkyCells its chips overlap, "
                    "and write PLAN/assignments.parquet, PLAN/skycells.parquet (exposures, "
                    "layers, pixels and cost per SkyCell), PLAN/exposures.parquet and "
                    "PLAN/rejected.csv. Bad rows are reported and skipped.")
    p.add_argument("inventory", nargs="?", help="inventory table (.parquet, .ecsv, .csv)")
    p.add_argument("--exposures", action="append", metavar="DIR|LIST|URL",
                   help="build the inventory from these exposures' headers instead "
                        "(repeatable); it is saved as PLAN/inventory.parquet")
    p.add_argument("--output", required=True, metavar="PLAN", help="plan directory to write")
    p.add_argument("--workers", type=int, help="worker processes (default: all cores)")
    p.add_argument("--pollers", nargs="*", metavar="SKYCELL",
                   help="also write MVM pollers to PLAN/pollers/ (all SkyCells, or those named)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing PLAN")
    p.set_defaults(func=run)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Execute ``hapdask plan``."""
    from hapdask import archive

    if bool(args.inventory) == bool(args.exposures):
        raise CLIError("give an INVENTORY table or --exposures, not both or neither")
    if args.workers is not None and args.workers < 1:
        raise CLIError(f"--workers must be at least 1, got {args.workers}")
    t0 = time.perf_counter()
    bad_files: dict[str, str] = {}
    if args.inventory:
        inv = archive.read_inventory(args.inventory)
        source = str(args.inventory)
    else:
        inv, bad_files = archive.inventory_from_exposures(args.exposures)
        for path, why in bad_files.items():
            _log(f"skipped {path}: {why}")
        if not len(inv):
            raise CLIError("no readable exposure in --exposures")
        source = ", ".join(args.exposures)
    _log(f"inventory: {len(inv)} row(s) read in {time.perf_counter() - t0:.1f} s")
    pollers = False if args.pollers is None else (args.pollers or True)
    result = archive.plan_archive(inv, args.output, num_workers=args.workers, pollers=pollers,
                                  source=source, overwrite=args.overwrite, log=_log)
    if args.exposures:
        archive.write_inventory(inv, result.path / "inventory.parquet")
    info = result.info
    rejected = result.path / "rejected.csv"
    if info["rejected"]:
        import pandas as pd

        rej = pd.read_csv(rejected)
        for r in rej.head(20).itertuples():
            _log(f"row {r.row} ({r.obs_id}): {r.reason}")
        if len(rej) > 20:
            _log(f"... {len(rej) - 20} more in {rejected}")
    sc = result.skycells
    print(f"plan {result.path}: {info['exposures']} exposure(s) -> {info['skycells']} "
          f"SkyCell(s) in {info['projection_cells']} projection cell(s), "
          f"{info['assignments']} assignment(s), {info['rejected']} row(s) rejected; "
          f"estimated {info['total_cost_s'] / 3600:.2f} CPU-hours; "
          f"{time.perf_counter() - t0:.1f} s")
    for r in sc.head(5).itertuples():
        print(f"  {r.skycell}: {r.exposures} exposure(s), {r.layers} layer(s), "
              f"{r.output_pixels / 1e6:.1f} Mpix out, ~{r.cost_s:.0f} s")
    return 0
