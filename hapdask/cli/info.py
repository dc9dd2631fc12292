"""``hapdask info``: what the pipeline sees in each exposure (issue: I/O)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hapdask info``."""
    p = sub.add_parser("info", help="describe HST exposures as the pipeline sees them")
    p.add_argument("files", nargs="+", metavar="FILE", help="FLT/FLC/DRZ/DRC files or URLs")
    p.add_argument("--mode", choices=("svm", "mvm"), default="mvm", help="analyze rules to apply")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``hapdask info``."""
    raise NotImplementedError("TODO(io helper)")
