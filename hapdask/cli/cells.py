"""``hapdask cells``: SkyCell geometry and footprint look-ups (issue: foundation / skycells)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hapdask cells``."""
    p = sub.add_parser("cells", help="show a SkyCell, or list the SkyCells an exposure touches")
    p.add_argument("name", nargs="?", help="SkyCell name, e.g. p1889x07y19 or skycell-p1889x07y19")
    p.add_argument("--scale", default="fine", help="fine, coarse or arcsec/pixel (default fine)")
    p.add_argument("--footprint", metavar="FILE", help="FITS exposure whose SkyCells to list")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``hapdask cells``."""
    raise NotImplementedError("TODO(skycells helper)")
