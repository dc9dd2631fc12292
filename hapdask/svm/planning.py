"""``hapdask.svm.plan``: a visit's poller -> the product tree, with every input checked.

Reads the poller (8-column SVM poller or a plain list, :func:`hapdask.io.read_poller`), opens
every exposure lazily, applies the SVM analyze rules (:func:`hapdask.analyze.analyze_exposure`,
``mode="svm"``) and the name gate, and groups what is left into the tree of
:mod:`hapdask.svm.products`. Nothing is read beyond headers. An input that cannot be used (missing
or unreadable file, analyze rule, a filter or detector that cannot form a HAP name, a detector
without HAP SVM parameters) is reported with its poller line and left out; the rest proceeds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hapdask.analyze import analyze_exposure
from hapdask.io import open_exposure, read_poller
from hapdask.svm.params import DETECTORS
from hapdask.svm.products import (
    DetectorProducts,
    ExposureItem,
    build_detector,
    manifest_name,
    product_prefix,
)
from skycells import product_name_parts

__all__ = ["NoViableData", "SvmPlan", "plan"]


class NoViableData(ValueError):
    """No usable direct image in the poller (HAP's exit code 65, NO_VIABLE_DATA)."""


@dataclass
class SvmPlan:
    """What a visit's SVM run will make.

    Attributes
    ----------
    poller : Path
    detectors : list of DetectorProducts
        One per detector with at least one direct image.
    exposures : dict
        Input path -> opened :class:`hapdask.io.Exposure` of every used exposure.
    rejected : list of (str, str)
        ``(file, reason)`` of every input left out.
    notes : list of str
        Other findings (analyze warnings, single-exposure filters, grism frames ...).
    manifest : str
        ``<instr>_<ppp>_<visit>_manifest.txt``.
    """

    poller: Path
    detectors: list[DetectorProducts]
    exposures: dict
    rejected: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    manifest: str = ""

    def describe(self) -> list[str]:
        """Human-readable lines: the tree, the rejected inputs and notes."""
        lines = [f"SVM plan of {self.poller.name}: {len(self.exposures)} exposure(s), "
                 f"{len(self.detectors)} detector(s)"]
        for d in self.detectors:
            lines.append(f"  {d.drizzle_name}  ({len(d.total_exposures)} exposure(s))")
            for f in d.filters:
                lines.append(f"    {f.drizzle_name}  ({f.n} exposure(s))")
                for e in f.exposures + f.extra:
                    lines.append(f"      {e.drizzle_name}")
            for e in d.ramps + d.grisms:
                lines.append(f"    {os.path.basename(e.path)}: {e.kind} frame, aligned/listed "
                             f"only")
        lines += [f"  rejected {f}: {r}" for f, r in self.rejected]
        lines += [f"  note: {n}" for n in self.notes]
        return lines


def exposure_kind(filters_raw: str, hap_filter: str) -> str:
    """``grism`` (a token starts with G or PR), ``ramp`` (HAP filter ``fr*`` or quad ``fq*``:
    aligned, no drizzle products; inventory 1.5 / quirk 17) or ``direct``."""
    tokens = [t.strip().upper() for t in filters_raw.split(";") if t.strip()]
    if any(t.startswith(("G", "PR")) for t in tokens):
        return "grism"
    if hap_filter.startswith(("fr", "fq")):
        return "ramp"
    return "direct"


def _photflam(exp) -> float:
    """PHOTFLAM as HAP's sort reads it: PRIMARY for WFC3/IR, else SCI,1 (0 when absent)."""
    heads = [exp.primary] if exp.detector.upper() == "IR" else [exp.chips[0].header,
                                                                   exp.primary]
    for h in heads:
        try:
            return float(h["PHOTFLAM"])
        except (KeyError, TypeError, ValueError):
            continue
    return 0.0


def plan(poller: str | os.PathLike) -> SvmPlan:
    """The product tree of one visit's poller.

    Parameters
    ----------
    poller : path
        8-column SVM poller (or a 1-column list of FLT/FLC files).

    Returns
    -------
    SvmPlan

    Raises
    ------
    ValueError
        When the poller cannot be read or is an MVM poller.
    NoViableData
        When it lists no usable direct image (the message lists every input and why it was
        left out).
    """
    poller = Path(poller)
    table = read_poller(poller)
    ptype = table.meta.get("poller_type")
    if ptype not in ("svm", "list"):
        raise ValueError(f"{poller}: a {ptype} poller; hapdask svm needs an 8-column SVM poller "
                         f"or a list of FLT/FLC files")
    rejected: list[tuple[str, str]] = []
    notes: list[str] = []
    exposures: dict = {}
    groups: dict[tuple, list[ExposureItem]] = {}
    seen: set[str] = set()
    first_root = ""
    visit_id = ""
    for row in table:
        where = f"{poller.name} line {row['line']}"
        path = str(row["pathname"])
        label = f"{row['filename']} ({where})"
        if not Path(path).is_file():
            alt = poller.parent / str(row["filename"])
            if alt.is_file():
                path = str(alt)
            else:
                rejected.append((label, f"file not found: {path}"))
                continue
        try:
            exp = open_exposure(path)
        except (OSError, ValueError) as exc:
            rejected.append((label, f"unreadable: {exc}"))
            continue
        if exp.rootname in seen:
            rejected.append((label, f"exposure {exp.rootname} is listed twice"))
            continue
        if exp.kind not in ("flt", "flc"):
            rejected.append((label, f"{exp.kind.upper()} files are not SVM inputs (FLT/FLC)"))
            continue
        verdict = analyze_exposure(exp, mode="svm")
        notes += [f"{exp.filename}: {w}" for w in verdict.warnings]
        if not verdict.keep:
            rejected.append((label, f"analyze rule {verdict.rule}: {verdict.reason}"))
            continue
        try:
            prop = int(row["proposal_id"]) if int(row["proposal_id"]) >= 0 else exp.proposal_id
            if prop is None:
                raise ValueError("no proposal id (poller column 2 or PROPOSID)")
            instr, det, filt = product_name_parts(exp.instrument, exp.detector, exp.filter)
            prefix = product_prefix(prop, row["obset_id"] or exp.rootname[4:6], instr, det)
        except (TypeError, ValueError) as exc:
            rejected.append((label, f"cannot form a HAP product name: {exc}"))
            continue
        kind = exposure_kind(exp.filters_raw, filt)
        if f"{instr}_{det}" not in DETECTORS and kind == "direct":
            rejected.append((label, f"no HAP SVM parameters for {instr}/{det} (known: "
                                    f"{', '.join(DETECTORS)})"))
            continue
        seen.add(exp.rootname)
        exposures[exp.path] = exp
        first_root = first_root or exp.rootname
        visit_id = visit_id or str(row["obset_id"] or exp.rootname[4:6])
        item = ExposureItem(exp.path, exp.rootname, exp.instrument, exp.detector, filt,
                            float(exp.exptime), float(exp.expstart or 0.0), _photflam(exp),
                            exp.is_flc, kind, int(row["line"]))
        groups.setdefault((instr, det, prefix), []).append(item)
    detectors = []
    for (instr, det, prefix), items in groups.items():
        d = build_detector(instr, det, prefix, items)
        for e in items:
            if e.kind == "grism":
                notes.append(f"{os.path.basename(e.path)}: grism/prism frame: no drizzle "
                             f"products (HAP only reconciles its WCS)")
            elif e.kind == "ramp":
                notes.append(f"{os.path.basename(e.path)}: ramp/quad filter {e.filter}: aligned "
                             f"with the visit, no drizzle products")
        if d is None:
            continue
        for f in d.filters:
            if f.n == 1 and det != "ir":
                notes.append(f"{f.drizzle_name}: one exposure: cosmic-ray rejection skipped "
                             f"(HAP's single-image CR cleaning never changes the data)")
        detectors.append(d)
    if not detectors:
        why = "; ".join(f"{f}: {r}" for f, r in rejected) or "no rows"
        extra = " (only grism/prism or ramp frames)" if exposures else ""
        raise NoViableData(f"{poller}: no usable direct image{extra}; {why}")
    instr0 = detectors[0].instrument.lower()
    return SvmPlan(poller, detectors, exposures, rejected, notes,
                   manifest_name(instr0, first_root, visit_id))
