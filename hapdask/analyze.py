"""The SVM/MVM analyze rules: which exposures the pipeline uses (inventory section 1.5).

The rules are those of drizzlepac ``haputils/analyze.py`` (``analyze_data`` and
``analyze_wrapper``), evaluated per exposure from its primary header:

1. a first-match-wins chain (rule ids as in the inventory):

   ==  ========================================================================  ==========
   id  condition                                                                 effect
   ==  ========================================================================  ==========
   1   OBSTYPE != IMAGING (WFPC2: IMAGETYP != EXT)                               reject
   2   DRIZCORR in {OMIT, SKIPPED}                                               reject
   3   MTFLAG = T (moving target)                                                reject
   4   SCAN_TYP in {C, D} (WFC3 spatial scan)                                    reject
   5   TARGNAME contains DARK, TUNG, BIAS, FLAT, DEUT or EARTH-CAL (not WFPC2)   reject
   6   WFPC2: TARGNAME contains INTFLAT, UVFLAT, VISFLAT, KSPOTS, DARK, BIAS or  reject
       EARTH-CALIB and IMAGETYP != EXT
   7   EXPTIME == 0 (absolute tolerance 1e-5 s)                                  reject
   8   FGSLOCK contains GY or COARSE (FINE/GYRO, GYROS, COARSE)                  warn, keep
   9   CHINJECT != NONE (WFC3/UVIS)                                              reject
   ==  ========================================================================  ==========

2. a filter pass over the filter tokens (WFC3: FILTER; ACS: the non-blank FILTER1, FILTER2;
   WFPC2 and others: none), token by token:

   * F1, grism/prism (token starts with ``G`` or ``PR``): in SVM with EXPTIME > 0 the exposure
     is *kept* whatever rule 1-9 said (it only gets its WCS reconciled); in MVM, or with
     EXPTIME = 0, it is rejected;
   * F2, ``BLOCK*`` (SBC internal): reject, overriding everything before;
   * F3, ``FR*`` ramp filters: reject in MVM only.

3. Z: when no rule matched at all, an exposure whose SCI arrays are all exactly zero is
   rejected (the data are read block by block, stopping at the first non-zero block).

4. MVM only, for kept exposures: G, bad guiding, and S, HRC/SBC when ``include_small=False``
   (``MVM_INCLUDE_SMALL=false``).

Decisions where this deliberately differs from the drizzlepac code (all noted in the
inventory as quirks):

* Rule 8 sits in the chain before rule 9, so a gyro-guided exposure is never tested for
  CHINJECT, and (as in drizzlepac) it also skips the all-zero test Z: kept as drizzlepac does.
* MVM grism/prism frames are always rejected (rule id F1, or the earlier rejecting rule with the
  grism note appended, like drizzlepac's message). drizzlepac crashes when no earlier rule
  matched and keeps the frame when the earlier match was the FGSLOCK warning; the inventory
  table says "MVM -> reject", which is what is implemented.
* The FGSLOCK warning is kept in ``Verdict.warnings`` even when the SVM grism rule un-rejects
  the frame (drizzlepac drops the message there).
* G, the guiding test, implements only its header part: QUALITY containing ``GSFAIL`` or
  ``TDF-DOWN``. The image-based linear-trail detector of ``verify_guiding`` (Canny edges +
  Hough lines on SCI,1) is NOT implemented.
* Keywords missing from the primary header do not crash the analysis: each gets the benign
  value HST writes for ordinary imaging (OBSTYPE=IMAGING, DRIZCORR=PERFORM, MTFLAG=F,
  SCAN_TYP=N, TARGNAME="", FGSLOCK=FINE, CHINJECT=NONE, WFPC2 IMAGETYP=EXT) and a warning
  naming the keyword is added to the verdict. EXPTIME and INSTRUME are required.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from astropy.table import Table

from hapdask.io import Exposure, open_exposure

__all__ = ["RULES", "Verdict", "analyze_exposure", "analyze_header", "analyze_table"]

#: Rule ids and what they test.
RULES: dict[str, str] = {
    "1": "OBSTYPE is not IMAGING (WFPC2: IMAGETYP is not EXT)",
    "2": "DRIZCORR is OMIT or SKIPPED",
    "3": "moving target (MTFLAG = T)",
    "4": "WFC3 spatial scan (SCAN_TYP C or D)",
    "5": "calibration target (TARGNAME)",
    "6": "WFPC2 calibration target (TARGNAME, IMAGETYP not EXT)",
    "7": "zero exposure time",
    "8": "gyro or coarse guiding (FGSLOCK): warning only",
    "9": "WFC3/UVIS charge injection (CHINJECT not NONE)",
    "F1": "grism/prism filter (MVM, or EXPTIME 0)",
    "F2": "SBC BLOCK filter",
    "F3": "ramp filter (FR*) in MVM",
    "Z": "SCI data all zeros",
    "G": "bad guiding (QUALITY reports GSFAIL or TDF-DOWN); MVM only",
    "S": "HRC/SBC excluded from MVM (include_small=False)",
}

_CAL_TARGETS = ("DARK", "TUNG", "BIAS", "FLAT", "DEUT", "EARTH-CAL")
_WFPC2_CAL_TARGETS = ("INTFLAT", "UVFLAT", "VISFLAT", "KSPOTS", "DARK", "BIAS", "EARTH-CALIB")
_MODES = ("svm", "mvm")


@dataclass
class Verdict:
    """Outcome of the analyze rules for one exposure.

    Attributes
    ----------
    keep : bool
        True if the pipeline uses the exposure.
    rule : str
        ``"keep"``, or the id of the rule that rejected it (see :data:`RULES`).
    reason : str
        What was found, in drizzlepac's ``KEYWORD=value`` style ("" when kept cleanly).
    warnings : list of str
        Non-fatal findings (FGSLOCK guiding, grism kept for WCS only, missing keywords ...).
    """

    keep: bool
    rule: str
    reason: str = ""
    warnings: list[str] = field(default_factory=list)


def _text(value) -> str:
    if isinstance(value, bool):
        return "T" if value else "F"
    return str(value).strip().upper()


def analyze_header(
    header: Mapping,
    mode: str = "mvm",
    *,
    all_zero: bool | None | Callable[[], bool | None] = None,
    include_small: bool = True,
    name: str = "",
) -> Verdict:
    """Apply the analyze rules to a primary header.

    Parameters
    ----------
    header : Mapping
        The primary header (astropy Header or any mapping of keyword to value).
    mode : {"mvm", "svm"}
        Which variant of the rules.
    all_zero : bool, None or callable
        Result of the all-zero SCI test (rule Z), or a callable computing it, called only
        when the rule is reached. ``None`` means unknown: Z is skipped with a warning.
    include_small : bool
        MVM only: False drops HRC/SBC exposures (rule S), like ``MVM_INCLUDE_SMALL=false``.
    name : str
        File name used in error messages.

    Raises
    ------
    ValueError
        For an unknown mode, or a header without INSTRUME or a numeric EXPTIME.
    """
    mode = str(mode).lower()
    if mode not in _MODES:
        raise ValueError(f"mode must be 'svm' or 'mvm', got {mode!r}")
    where = f"{name}: primary header" if name else "primary header"
    notes: list[str] = []

    def get(key: str, default: str) -> str:
        if key in header and header[key] is not None:
            return _text(header[key])
        notes.append(f"{key} missing from the primary header; assumed {default!r}")
        return default

    if "INSTRUME" not in header:
        raise ValueError(f"{where}: keyword INSTRUME is missing")
    instrument = _text(header["INSTRUME"])
    try:
        exptime = float(header["EXPTIME"])
    except KeyError:
        raise ValueError(f"{where}: keyword EXPTIME is missing") from None
    except (TypeError, ValueError):
        raise ValueError(f"{where}: EXPTIME={header['EXPTIME']!r} is not a number") from None

    wfpc2 = instrument == "WFPC2"
    if wfpc2:
        detector = "PC"
        imagetyp = get("IMAGETYP", "EXT")
        obstype = "IMAGING" if imagetyp == "EXT" else "CAL"
        obskey = "IMAGETYP"
        mtflag = get("MTFLAG", "F")
        if mtflag not in ("T", "F"):
            mtflag = "T" if mtflag in ("TRUE", "1") else "F"
    else:
        detector = get("DETECTOR", "")
        imagetyp = ""
        obstype = get("OBSTYPE", "IMAGING")
        obskey = "OBSTYPE"
        mtflag = get("MTFLAG", "F")
    drizcorr = get("DRIZCORR", "PERFORM")
    scan_typ = get("SCAN_TYP", "N") if instrument == "WFC3" else ""
    targname = get("TARGNAME", "")
    fgslock = get("FGSLOCK", "FINE")
    chinject = get("CHINJECT", "NONE") if (instrument, detector) == ("WFC3", "UVIS") else "NONE"

    if instrument == "WFC3":
        sfilter = get("FILTER", "")
    elif instrument == "ACS":
        parts = [_text(header.get(k, "")) for k in ("FILTER1", "FILTER2")]
        for k in ("FILTER1", "FILTER2"):
            if k not in header:
                notes.append(f"{k} missing from the primary header; assumed ''")
        sfilter = "_".join(p for p in parts if p)
    else:
        sfilter = ""

    is_zero = math.isclose(exptime, 0.0, abs_tol=1e-5)

    rule: str | None = None
    value = ""
    if obstype != "IMAGING":
        rule, value = "1", f"{obskey}={imagetyp if wfpc2 else obstype}"
    elif drizcorr in ("OMIT", "SKIPPED"):
        rule, value = "2", f"DRIZCORR={drizcorr}"
    elif mtflag == "T":
        rule, value = "3", f"MTFLAG={mtflag}"
    elif scan_typ in ("C", "D"):
        rule, value = "4", f"SCAN_TYP={scan_typ}"
    elif not wfpc2 and any(x in targname for x in _CAL_TARGETS):
        rule, value = "5", f"TARGNAME={targname}"
    elif wfpc2 and any(x in targname for x in _WFPC2_CAL_TARGETS) and imagetyp != "EXT":
        rule, value = "6", f"TARGNAME={targname}"
    elif is_zero:
        rule, value = "7", f"EXPTIME={exptime}"
    elif any(x in fgslock for x in ("GY", "COARSE")):
        rule, value = "8", f"FGSLOCK={fgslock}"
    elif chinject != "NONE":
        rule, value = "9", f"CHINJECT={chinject}"

    fgs_warning = f"FGSLOCK={fgslock}: guiding not on fine lock, alignment may be compromised"
    warned_fgs = rule == "8"
    grism_kept = False
    for item in sfilter.upper().split("_"):
        if item.startswith(("G", "PR")):
            if mode == "svm" and not is_zero:
                rule, value = None, ""
                grism_kept = True
            elif mode == "mvm":
                note = "Grism/Prism data and MVM processing"
                rule, value = _reject_grism(rule, value, note, sfilter)
                grism_kept = False
            else:  # SVM with EXPTIME 0: rule 7 already matched
                rule, value = _reject_grism(
                    rule, value, "Grism/Prism data and EXPTIME = 0.0", sfilter
                )
        if item.startswith("BLOCK"):
            rule, value = "F2", f"FILTER={sfilter}"
            grism_kept = False
        if item.startswith("FR") and mode == "mvm":
            rule, value = "F3", "FILTER=Ramp data and MVM processing"

    warnings_out = list(notes)
    if warned_fgs:
        warnings_out.append(fgs_warning)
    if grism_kept and rule is None:
        warnings_out.append(
            f"grism/prism exposure ({sfilter}): kept in SVM for WCS reconciliation only"
        )

    if rule is not None and rule != "8":
        return Verdict(False, rule, value, warnings_out)
    if rule is None:
        zero = all_zero() if callable(all_zero) else all_zero
        if zero is None:
            warnings_out.append("no pixel data: the all-zero SCI test (rule Z) was skipped")
        elif zero:
            return Verdict(False, "Z", "SCI data all zeros", warnings_out)

    if mode == "mvm":
        quality = str(header.get("QUALITY", "")).lower()
        if "gsfail" in quality or "tdf-down" in quality:
            return Verdict(False, "G", f"QUALITY={quality.upper()}", warnings_out)
        if not include_small and detector in ("HRC", "SBC"):
            return Verdict(
                False, "S", f"DETECTOR={detector} (MVM_INCLUDE_SMALL=false)", warnings_out
            )
    return Verdict(True, "keep", value if rule == "8" else "", warnings_out)


def _reject_grism(rule: str | None, value: str, note: str, sfilter: str) -> tuple[str, str]:
    if rule is None or rule == "8":
        return "F1", f"FILTER={sfilter}, {note}"
    return rule, f"{value}, {note}"


def analyze_exposure(
    exposure: Exposure | str | os.PathLike,
    mode: str = "mvm",
    *,
    include_small: bool = True,
    check_data: bool = True,
) -> Verdict:
    """Apply the analyze rules (module docstring) to one exposure.

    Parameters
    ----------
    exposure : Exposure, str or os.PathLike
        An opened exposure or a path/URL to open.
    mode : {"mvm", "svm"}
    include_small : bool
        MVM only: False rejects HRC/SBC (rule S).
    check_data : bool
        If False, the all-zero test Z is skipped (no pixels are read).

    Returns
    -------
    Verdict
    """
    exp = exposure if isinstance(exposure, Exposure) else open_exposure(exposure)

    def all_zero() -> bool | None:
        if not check_data:
            return None
        results = [chip.sci_all_zero() for chip in exp.chips]
        if any(r is False for r in results):
            return False
        if any(r is None for r in results):
            return None
        return True

    verdict = analyze_header(
        exp.primary, mode, all_zero=all_zero, include_small=include_small, name=exp.path
    )
    if not check_data and verdict.keep:
        verdict.warnings = [w for w in verdict.warnings if not w.startswith("no pixel data")] + [
            "all-zero SCI test (rule Z) not run (check_data=False)"
        ]
    return verdict


def analyze_table(
    exposures: Iterable[Exposure | str | os.PathLike],
    mode: str = "mvm",
    *,
    include_small: bool = True,
    check_data: bool = True,
) -> Table:
    """Analyze several exposures; one summary row each.

    Columns: ``file``, ``rootname``, ``instrument``, ``detector``, ``filter``, ``exptime``,
    ``keep``, ``rule``, ``reason``, ``warnings`` (joined with ``"; "``). ``meta["mode"]`` is the
    mode. Files that cannot be opened raise (``OSError``/``ValueError`` naming the file).
    """
    rows = []
    for item in exposures:
        exp = item if isinstance(item, Exposure) else open_exposure(item)
        v = analyze_exposure(exp, mode, include_small=include_small, check_data=check_data)
        rows.append(
            (
                exp.filename,
                exp.rootname,
                exp.instrument,
                exp.detector,
                exp.filter,
                exp.exptime,
                v.keep,
                v.rule,
                v.reason,
                "; ".join(v.warnings),
            )
        )
    names = (
        "file", "rootname", "instrument", "detector", "filter", "exptime",
        "keep", "rule", "reason", "warnings",
    )  # fmt: skip
    dtypes = (str, str, str, str, str, float, bool, str, str, str)
    table = Table(rows=rows if rows else None, names=names, dtype=dtypes)
    table.meta["mode"] = mode
    return table
