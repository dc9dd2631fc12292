"""``hapdask info``: what the pipeline sees in each exposure (issue: I/O)."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from hapdask.analyze import RULES, Verdict, analyze_exposure, exposure_identity, find_duplicates
from hapdask.cli import printable
from hapdask.io import Exposure, open_exposure


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hapdask info``."""
    p = sub.add_parser("info", help="describe HST exposures as the pipeline sees them")
    p.add_argument("files", nargs="+", metavar="FILE", help="FLT/FLC/DRZ/DRC files or URLs")
    p.add_argument("--mode", choices=("svm", "mvm"), default="mvm", help="analyze rules to apply")
    p.add_argument(
        "--no-data",
        action="store_true",
        help="read headers only: skip the analyze tests that read pixels (all-zero, guiding)",
    )
    p.set_defaults(func=run)


def describe(exp: Exposure, mode: str = "mvm", *, check_data: bool = True,
             duplicate: str | None = None) -> list[str]:
    """Return the lines ``hapdask info`` prints for one exposure.

    ``duplicate`` (the reason from :func:`hapdask.analyze.find_duplicates`) makes the verdict
    a rule-D rejection, as ``hapdask mvm`` decides it for the same set of files.

    Footprint corners are the sky positions of the outer chip corners, 0-based pixel
    coordinates (-0.5, -0.5), (nx-0.5, -0.5), (nx-0.5, ny-0.5), (-0.5, ny-0.5), through the
    full distortion model. SkyCells are those the union of the densified chip outlines
    overlaps (:func:`skycells.cells_for_footprint`).
    """
    from skycells import cells_for_footprint

    lines = [f"{exp.filename}  ({exp.path})"]

    def add(label: str, text: str) -> None:
        lines.append(f"  {label:<11}: {text}")

    add("instrument", f"{exp.instrument}/{exp.detector}  ({exp.kind}, rootname {exp.rootname})")
    add("filter", f"{exp.filter}  (raw {exp.filters_raw})")
    add("exptime", f"{exp.exptime:g} s")
    if exp.is_rate:
        add("units", f"{exp.bunit}  (rate)")
    else:
        add("units", f"{exp.bunit}  (counts: divide by EXPTIME for a rate)")
    for chip in exp.chips:
        ny, nx = chip.shape
        extras = []
        if not chip.has_data:
            extras.append("header only, no pixels")
        if chip.err_source != "image":
            extras.append(f"ERR {chip.err_source}")
        if chip.dq_source != "image":
            extras.append(f"DQ {chip.dq_source}")
        note = f"  ({', '.join(extras)})" if extras else ""
        ccd = f" CCDCHIP {chip.ccdchip}" if chip.ccdchip is not None else ""
        add("chip", f"SCI,{chip.extver}{ccd}: {nx} x {ny} pixels (nx x ny){note}")
    for chip in exp.chips:
        parts = "+".join(chip.distortion) or "no distortion terms"
        if "-SIP" in str(chip.header.get("CTYPE1", "")) and "SIP" not in chip.distortion:
            parts += "; CTYPE says -SIP but there are no SIP coefficients"
        add("wcs", f"SCI,{chip.extver}: {chip.wcsname or '(no WCSNAME)'}  [{parts}]")
    verdict = analyze_exposure(exp, mode, check_data=check_data)
    if verdict.rule in ("W", "N"):  # no sky geometry from an unusable WCS or detector
        add("footprint", f"not computed ({verdict.reason})")
    else:
        try:
            for chip in exp.chips:
                ny, nx = chip.shape
                corners = np.array([[-0.5, -0.5], [nx - 0.5, -0.5], [nx - 0.5, ny - 0.5],
                                    [-0.5, ny - 0.5]])
                sky = chip.wcs().all_pix2world(corners, 0)
                text = " ".join(f"({ra % 360:.6f}, {dec:+.6f})" for ra, dec in sky)
                add("footprint", f"SCI,{chip.extver} corners RA, Dec [deg]: {text}")
            cells = cells_for_footprint(exp.footprints())
            add("skycells", f"{len(cells)}: {' '.join(cells)}")
        except (ValueError, ArithmeticError) as exc:
            add("footprint", f"not computed ({exc})")
    if duplicate and verdict.keep:
        verdict = Verdict(False, "D", duplicate, verdict.warnings)
    if verdict.keep:
        extra = f"  ({verdict.reason})" if verdict.reason else ""
        add("analyze", f"{mode.upper()}: keep{extra}")
    else:
        add(
            "analyze",
            f"{mode.upper()}: reject, rule {verdict.rule} ({RULES[verdict.rule]}): "
            f"{verdict.reason}",
        )
    for warning in verdict.warnings:
        add("warning", warning)
    return [printable(line) for line in lines]


def run(args: argparse.Namespace) -> int:
    """Execute ``hapdask info``: describe every file (a bad one is reported in one line and the
    others still described; never a traceback); exit 1 if any file could not be read."""
    failed = 0
    opened: dict[int, Exposure] = {}
    for i, name in enumerate(args.files):
        try:
            opened[i] = open_exposure(name)
        except Exception as exc:  # anything a hostile file triggers: one line, go on
            failed += 1
            _error(name, exc)
    duplicates: dict[str, str] = {}
    try:
        duplicates = find_duplicates(
            (e.path, e.rootname, e.is_flc,
             exposure_identity(e.primary, [c.header for c in e.chips]))
            for e in opened.values())
    except Exception as exc:
        print(f"hapdask info: error: duplicate check failed: {printable(exc)}", file=sys.stderr)
    first = True
    for i, exp in opened.items():
        try:
            lines = describe(exp, args.mode, check_data=not args.no_data,
                             duplicate=duplicates.get(exp.path))
        except Exception as exc:
            failed += 1
            _error(args.files[i], exc)
            continue
        if not first:
            print()
        first = False
        print("\n".join(lines))
    return 1 if failed else 0


def _error(name: str, exc: BaseException) -> None:
    message = str(exc) if isinstance(exc, OSError | ValueError) else \
        f"{type(exc).__name__}: {exc}"
    if str(name) not in message and exp_name(name) not in message:
        message = f"{name}: {message}"
    print(f"hapdask info: error: {printable(message)}", file=sys.stderr)


def exp_name(name: str) -> str:
    """The last path component of a path or URL."""
    return str(name).rstrip("/").rsplit("/", 1)[-1]
