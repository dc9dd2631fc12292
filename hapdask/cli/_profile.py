"""``--profile``: the per-stage breakdown of a command that builds Dask graphs (the work is
:mod:`hapdask.profile`; this module only registers the options and prints the result)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from hapdask.profile import Profile


def add_arguments(p: argparse.ArgumentParser, where: str) -> None:
    """Register ``--profile`` and ``--profile-report`` (``where``: default report location)."""
    g = p.add_argument_group("where the time goes")
    g.add_argument("--profile", action="store_true",
                   help="print a per-stage breakdown (read, pixmap, kernel, sky, align, write, "
                        "scheduler overhead) from Dask task timings at the end")
    g.add_argument("--profile-report", metavar="FILE.html",
                   help=f"with --profile on a distributed scheduler (--workers/--scheduler): "
                        f"save Dask's performance report here (default: {where})")


@contextlib.contextmanager
def profiling(args: argparse.Namespace, default_report: Path) -> Iterator[Profile | None]:
    """Record the block when ``--profile`` was given and print the breakdown (stdout) after it
    (also when it failed: the breakdown is most useful then)."""
    if not getattr(args, "profile", False):
        yield None
        return
    distributed = bool(getattr(args, "workers", None) or getattr(args, "scheduler", None))
    report = None
    if distributed:
        report = Path(args.profile_report) if args.profile_report else default_report
        report.parent.mkdir(parents=True, exist_ok=True)
    prof = Profile(report_path=report)
    try:
        with prof:
            yield prof
    finally:
        print(prof.report(), flush=True)
        sys.stdout.flush()
