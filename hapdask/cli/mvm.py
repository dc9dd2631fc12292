"""``hapdask mvm``: Multi-Visit Mosaic layers of one SkyCell (issue: mvm)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hapdask mvm``."""
    p = sub.add_parser("mvm", help="drizzle every exposure touching a SkyCell into its MVM layers")
    p.add_argument("skycell", help="SkyCell name, e.g. p1889x07y19")
    p.add_argument("--input", action="append", metavar="POLLER|DIR|LIST|URL",
                   help="inputs (repeatable); default: the built-in simulated demo data")
    p.add_argument("--output", default="hapdask_output", metavar="DIR", help="output directory")
    p.add_argument("--format", default="fits,zarr", help="comma list of fits, zarr")
    p.add_argument("--scheduler", metavar="ADDRESS", help="address of a running Dask scheduler")
    p.add_argument("--workers", type=int, help="local cluster worker processes")
    p.add_argument("--threads-per-worker", type=int, help="threads per local worker")
    p.add_argument("--tile-size", type=int, default=2048, help="tile edge in pixels (default 2048)")
    p.add_argument("--no-context", action="store_true", help="do not build the CTX layer")
    p.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``hapdask mvm``."""
    raise NotImplementedError("TODO(mvm helper)")
