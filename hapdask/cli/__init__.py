"""The ``hapdask`` command: a thin argparse layer over the Python API.

Each sub-command lives in its own module of this package and provides two functions:
``add_parser(subparsers)`` registers its arguments and ``run(args) -> int`` executes it and
returns the process exit code. Errors a user can fix are raised as :class:`CLIError` (or
``ValueError``/``OSError`` from the API) and printed as one line; the exit code is then 1.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import sys
from collections.abc import Iterator, Sequence

from hapdask import __version__

#: Sub-command modules, in the order ``hapdask --help`` lists them.
COMMANDS = ("mvm", "svm", "drizzle", "plan", "align", "cells", "info", "simulate")


def printable(text: object) -> str:
    """``text`` with control characters (newlines included) shown as escapes: header values
    written by others never break or take over a report line."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in str(text))


@contextlib.contextmanager
def fewer_full_collections() -> Iterator[None]:
    """For one command's run (``hapdask mvm``, ``svm``, ``drizzle``): the garbage collector's
    full passes after 100 instead of 10 passes over the young objects, and none over the
    objects made before :func:`gc.freeze` (the imports': each command calls it once they are
    done). Each full pass walks every object while holding the GIL, stalling every task
    thread, for a few hundred small objects of cyclic garbage; the young generations are
    collected as before. Measured (collector callbacks' time, one run each, quiet): an mvm
    acs4 run made 4 full passes, 0.2-0.4 s in all; the svm demo visit 1.43 s of collections
    (9 full, the longest 0.32 s) -> 0.51 s (5 full, the longest 0.10 s). The collector's
    settings are restored afterwards (tests call the commands in their own process)."""
    young, middle, old = gc.get_threshold()
    gc.set_threshold(young, middle, 100)
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(young, middle, old)


class CLIError(Exception):
    """An error the user can fix; printed as a single line, exit code 1 (or ``code``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="hapdask",
        description="Hubble Advanced Products mosaics (SVM/MVM) as a Dask dataflow.",
    )
    parser.add_argument("--version", action="version", version=f"hapdask {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"hapdask.cli.{name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hapdask`` command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as exc:
        print(f"hapdask {args.command}: error: {printable(exc)}", file=sys.stderr)
        return exc.code
    except (ValueError, OSError) as exc:
        print(f"hapdask {args.command}: error: {printable(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"hapdask {args.command}: interrupted", file=sys.stderr)
        return 130


def console() -> None:
    """Entry point of the ``hapdask`` console script and of ``python -m hapdask``: run
    :func:`main` and exit with its code.

    The command is done then (products written and closed). The interpreter's final garbage
    collections over the ~200 k objects a run leaves behind take 0.5-1.5 s on one core after an
    ``mvm`` run of 4 ACS/WFC exposures, for memory the operating system takes back with the
    process anyway: they skip the objects frozen here. Exit handlers and flushing still run.
    (Only here, not in :func:`main`, which tests and notebooks call in their own process.)
    """
    rc = main()
    gc.disable()
    gc.freeze()
    sys.exit(rc)
