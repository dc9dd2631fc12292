"""``hapdask simulate``: realistic simulated multi-visit data for a SkyCell (issue: simulator)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hapdask simulate``."""
    p = sub.add_parser("simulate", help="simulate HST visits overlapping a SkyCell")
    p.add_argument("skycell", help="SkyCell name, e.g. p1889x07y19")
    p.add_argument("outdir", help="directory to write FLT/FLC files, pollers and truth into")
    p.add_argument("--visits", type=int, default=4, help="number of visits (default 4)")
    p.add_argument("--small", action="store_true", help="small subarray chips, for tests")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``hapdask simulate``."""
    raise NotImplementedError("TODO(simulate helper)")
