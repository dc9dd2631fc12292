"""``hapdask simulate``: realistic simulated multi-visit data for a SkyCell (issue: simulator)."""

from __future__ import annotations

import argparse
import time


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hapdask simulate``."""
    p = sub.add_parser("simulate", help="simulate HST visits overlapping a SkyCell")
    p.add_argument("skycell", help="SkyCell name, e.g. p1889x07y19")
    p.add_argument("outdir", help="directory to write FLT/FLC files, pollers and truth into")
    p.add_argument("--visits", type=int, default=4, help="number of visits (default 4)")
    p.add_argument("--small", action="store_true", help="small subarray chips, for tests")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--star-density", type=float, metavar="N",
                   help="stars per square arcminute, all magnitudes (default 30; 150 with "
                        "--small)")
    p.add_argument("--exposures", type=int, metavar="N", dest="exposures_per_filter",
                   help="dithered exposures per filter in a visit (default 2; 4+ on a box "
                        "pattern)")
    p.add_argument("--filters", metavar="F1,F2",
                   help="keep only these filters of the visit recipes (e.g. F775W)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``hapdask simulate``: write the set and print a one-screen summary."""
    from hapdask.simulate import simulate_visits

    t0 = time.perf_counter()
    result = simulate_visits(args.skycell, args.outdir, visits=args.visits, small=args.small,
                             seed=args.seed, star_density=args.star_density,
                             exposures_per_filter=args.exposures_per_filter,
                             filters=args.filters)
    elapsed = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in result.outdir.iterdir() if p.is_file())
    print(f"simulated set for skycell-{result.skycell} in {result.outdir}")
    print(f"  {len(result.exposures)} exposures in {result.visits} visits "
          f"({'small sub-arrays' if result.small else 'full-size chips'}), seed {result.seed}")
    print(f"  MVM poller:    {result.mvm_poller}")
    print(f"  SVM pollers:   {', '.join(p.name for p in result.svm_pollers)}")
    print(f"  truth catalog: {result.truth_catalog}")
    print(f"  true WCS:      {result.true_wcs}")
    print(f"  Gaia-like reference catalog: {result.refcat}")
    print(f"  CR truth:      {len(result.crtruth)} <rootname>_crtruth.fits files")
    print(f"  {size / 1e6:.1f} MB on disk, {elapsed:.1f} s")
    return 0
