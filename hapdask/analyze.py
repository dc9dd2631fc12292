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

Before all of these, input sanity (:func:`sanity_problem`; not in drizzlepac, which trusts its
archive): N, a header value that becomes part of a product name (INSTRUME, DETECTOR, filter,
ROOTNAME, PROPOSID) is not a valid name component (:func:`skycells.name_component`); T, EXPTIME
negative or not finite; W, a chip WCS that is unusable: non-finite or singular CD/PC matrix,
or a pixel scale (linear part, or IDCSCALE) outside 0.2x-5x the detector's nominal scale.
Across a set of inputs, D (:func:`find_duplicates`): the same exposure given twice (same
ROOTNAME, or the same headers under two names, e.g. ``.fits`` and ``.fits.gz``); one copy is
kept (FLC before FLT, then the first path in sorted order) and the others name it.

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
* G, the guiding test (:func:`verify_guiding`), is the header test (QUALITY containing
  ``GSFAIL`` or ``TDF-DOWN``) followed by the linear-trail detector on SCI,1, re-implemented
  from its description (inventory 1.5) with the same hard-coded parameters. Differences: the
  probabilistic Hough transform is seeded (``rng=0``) so verdicts are reproducible (drizzlepac
  leaves it unseeded); the detector runs on sampled full-resolution windows of the chip
  (:func:`guiding_trails_sampled`: at least 1/8 of the chip holding >= 50 sources, else more,
  up to all of it) with the background level from a regular pixel grid, instead of the whole
  array (tested against drizzlepac's ``verify_guiding`` verdicts); and when scikit-image is not
  installed the image part is skipped with a warning. ``check_data=False`` skips it too.
* Keywords missing from the primary header do not crash the analysis: each gets the benign
  value HST writes for ordinary imaging (OBSTYPE=IMAGING, DRIZCORR=PERFORM, MTFLAG=F,
  SCAN_TYP=N, TARGNAME="", FGSLOCK=FINE, CHINJECT=NONE, WFPC2 IMAGETYP=EXT) and a warning
  naming the keyword is added to the verdict. EXPTIME and INSTRUME are required.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table

from hapdask.io import Chip, Exposure, linear_pixel_scale, open_exposure
from skycells import KNOWN_DETECTORS, name_component, product_name_parts

__all__ = [
    "RULES",
    "TrailSampling",
    "Verdict",
    "analyze_exposure",
    "analyze_header",
    "analyze_table",
    "exposure_identity",
    "find_duplicates",
    "guiding_trails",
    "guiding_trails_sampled",
    "sanity_problem",
    "verify_guiding",
]

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
    "G": "bad guiding (QUALITY GSFAIL/TDF-DOWN, or linear trails in SCI,1); MVM only",
    "S": "HRC/SBC excluded from MVM (include_small=False)",
    "N": "header value not usable in a product name",
    "T": "EXPTIME negative or not finite",
    "W": "unusable WCS (non-finite or singular CD/PC, or absurd pixel scale)",
    "D": "duplicate of another input exposure",
}

#: Sanity rules: an input failing one of these never reaches the drizzle (nor bounds a grid).
SANITY_RULES = frozenset({"N", "T", "W", "D"})
#: Linear WCS keywords that must be finite numbers when present (astropy reads a non-number
#: such as ``NaN`` as 0 and would build a wrong grid without a word).
_WCS_NUMBERS = tuple(f"{k}{i}_{j}" for k in ("CD", "PC") for i in (1, 2) for j in (1, 2)) + (
    "CDELT1", "CDELT2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2")
#: Allowed ratio of a chip's pixel scale to its detector's nominal scale.
SCALE_LIMITS = (0.2, 5.0)

_CAL_TARGETS = ("DARK", "TUNG", "BIAS", "FLAT", "DEUT", "EARTH-CAL")
_WFPC2_CAL_TARGETS = ("INTFLAT", "UVFLAT", "VISFLAT", "KSPOTS", "DARK", "BIAS", "EARTH-CALIB")
_MODES = ("svm", "mvm")
# DQ flags the guiding test treats as good: saturation (256), bad reference pixel (512),
# charge trap (1024), A-to-D saturation (2048), cosmic ray (4096)
_GUIDING_IGNORED_DQ = 256 | 512 | 1024 | 2048 | 4096


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
    guiding: Callable[[], tuple[bool | None, str]] | None = None,
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
    guiding : callable, optional
        MVM only, called for exposures still kept after the header guiding test: returns
        ``(bad, message)`` of the image-based trail detector (``bad`` None: not run, the
        message becomes a warning). None skips the image test.

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
        if guiding is not None:
            bad, message = guiding()
            if bad:
                return Verdict(False, "G", message, warnings_out)
            if bad is None and message:
                warnings_out.append(message)
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
        If False, no pixels are read: the all-zero test Z and the image part of the guiding
        test G are skipped. Cost when True: Z usually reads one block of 256 rows; in MVM the
        guiding test reads a grid of SCI,1 rows and a few 512 x 512 windows and runs Canny +
        Hough on the windows (about 0.1 s for a WFC3/IR chip, 0.2-0.3 s for a full WFC3/UVIS
        or ACS/WFC chip on one core; sparse fields are analysed whole, up to 4 s).

    Returns
    -------
    Verdict
    """
    exp = exposure if isinstance(exposure, Exposure) else open_exposure(exposure)
    problem = sanity_problem(exp)
    if problem is not None:
        return Verdict(False, *problem)

    def all_zero() -> bool | None:
        if not check_data:
            return None
        results = [chip.sci_all_zero() for chip in exp.chips]
        if any(r is False for r in results):
            return False
        if any(r is None for r in results):
            return None
        return True

    def guiding() -> tuple[bool | None, str]:
        return verify_guiding(exp, header_only=False)

    verdict = analyze_header(
        exp.primary,
        mode,
        all_zero=all_zero,
        include_small=include_small,
        name=exp.path,
        guiding=guiding if check_data else None,
    )
    if not check_data and verdict.keep:
        verdict.warnings = [w for w in verdict.warnings if not w.startswith("no pixel data")] + [
            "all-zero SCI test (rule Z) not run (check_data=False)"
        ]
    return verdict


def sanity_problem(exp: Exposure) -> tuple[str, str] | None:
    """Input sanity of one exposure (rules N, T, W of the module docstring).

    Returns
    -------
    (rule, reason) or None
        None when the exposure is sane.
    """
    try:
        instr, det, _ = product_name_parts(exp.instrument, exp.detector, exp.filters_raw)
        name_component(exp.rootname, "ROOTNAME")
        if exp.primary.get("PROPOSID") is not None:
            name_component(exp.primary["PROPOSID"], "PROPOSID")
    except ValueError as exc:
        return "N", str(exc)
    if not math.isfinite(exp.exptime) or exp.exptime < 0:
        return "T", f"EXPTIME={exp.exptime!r}"
    nominal = KNOWN_DETECTORS[instr][det]
    for chip in exp.chips:
        if "CTYPE1" not in chip.header:
            continue  # no WCS at all: nothing to check here (the planner cannot place it)
        for key in _WCS_NUMBERS:
            value = chip.header.get(key)
            if value is not None and not _finite_number(value):
                return "W", f"SCI,{chip.extver}: {key}={ascii(value)} is not a finite number"
        try:
            w = chip.wcs()
        except (ValueError, ZeroDivisionError, FloatingPointError) as exc:
            return "W", f"SCI,{chip.extver}: {' '.join(str(exc).split())}"
        problem = wcs_problem(w, nominal, idcscale=chip.pixel_scale)
        if problem:
            return "W", f"SCI,{chip.extver}: {problem}"
    return None


def _finite_number(value) -> bool:
    if isinstance(value, bool | str):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def wcs_problem(w, nominal: float, *, idcscale: float | None = None) -> str:
    """What is wrong with a chip WCS ("" when nothing): non-finite or singular linear
    matrix, or a pixel scale (linear part, and ``idcscale`` when given) outside
    :data:`SCALE_LIMITS` times ``nominal`` (arcsec)."""
    try:
        m = np.asarray(w.celestial.pixel_scale_matrix, dtype=float)
    except Exception as exc:
        return f"no usable linear transformation ({exc})"
    if m.shape != (2, 2) or not np.all(np.isfinite(m)):
        return "CD/PC matrix is not finite"
    det = abs(float(np.linalg.det(m)))
    if not det > 0 or not np.isfinite(1.0 / det):
        return "CD/PC matrix is singular"
    lo, hi = SCALE_LIMITS
    scales = [("pixel scale", linear_pixel_scale(w))]
    if idcscale is not None:
        scales.append(("IDCSCALE", float(idcscale)))
    for what, value in scales:
        if not (math.isfinite(value) and lo * nominal <= value <= hi * nominal):
            return (f"{what} {value:.6g} arcsec is outside {lo:g}-{hi:g} x the detector's "
                    f"nominal {nominal:g} arcsec")
    return ""


def exposure_identity(primary, sci_headers: Sequence) -> str:
    """Digest of an exposure's headers, ROOTNAME and FILENAME left out: two copies of one
    exposure (``.fits`` and ``.fits.gz``, or a renamed copy) share it."""
    h = hashlib.sha256()
    for card in primary.cards:
        if card.keyword not in ("ROOTNAME", "FILENAME"):
            h.update(card.image.encode("ascii", "replace"))
    for hdr in sci_headers:
        h.update(hdr.tostring().encode("ascii", "replace"))
    return h.hexdigest()


def find_duplicates(items: Iterable[tuple[str, str, bool, str]]) -> dict[str, str]:
    """The inputs that repeat another one (rule D).

    Parameters
    ----------
    items : iterable of (path, rootname, is_flc, identity)
        ``identity`` from :func:`exposure_identity`.

    Returns
    -------
    dict
        ``path -> reason`` for every input left out; the reason names the path kept. The kept
        copy does not depend on the input order: FLC before FLT, then the smallest path.
    """
    seen: dict[str, str] = {}
    out: dict[str, str] = {}
    for path, root, _flc, ident in sorted(items, key=lambda t: (not t[2], t[0])):
        keys = [f"root:{root.lower()}", f"content:{ident}"]
        first = next((seen[k] for k in keys if k in seen), None)
        if first is not None:
            why = "same ROOTNAME" if keys[0] in seen else "same headers"
            out[path] = f"{why} as {first} (kept): {path} is a duplicate"
            continue
        for k in keys:
            seen[k] = path
    return out


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


# -- guiding (rule G) -------------------------------------------------------------------------


def verify_guiding(
    exposure: Exposure | str | os.PathLike, *, header_only: bool = False
) -> tuple[bool | None, str]:
    """Decide whether an exposure was affected by guiding problems (MVM rule G).

    First the primary ``QUALITY`` keyword (``GSFAIL`` or ``TDF-DOWN`` means bad guiding),
    then, unless ``header_only``, the linear-trail detector on sampled windows of SCI,1 (with
    its DQ and units), :func:`guiding_trails_sampled`: it never reads the whole array.

    Returns
    -------
    bad : bool or None
        True for bad guiding, False for good, None if the image test could not run.
    message : str
        What was found (suitable as a verdict reason or warning).
    """
    exp = exposure if isinstance(exposure, Exposure) else open_exposure(exposure)
    quality = str(exp.primary.get("QUALITY", "")).lower()
    if "gsfail" in quality or "tdf-down" in quality:
        return True, f"QUALITY={quality.upper()}"
    if header_only:
        return False, ""
    chip = exp.chips[0]
    if not chip.has_data:
        return None, "no pixel data: the guiding trail test (rule G) was skipped"
    try:
        import skimage  # noqa: F401
    except ImportError:
        return None, "scikit-image not installed: the guiding trail test (rule G) was skipped"
    exptime = float(exp.primary.get("EXPTIME", chip.exptime))
    bad, info = guiding_trails_sampled(chip, exptime=exptime)
    if bad:
        return True, (
            f"guiding trails in SCI,{chip.extver}: {info['peak']} of {info['lines']} "
            f"lines share one direction (limit {info['limit']:g})"
        )
    return False, ""


@dataclass(frozen=True)
class TrailSampling:
    """How :func:`guiding_trails_sampled` samples a chip.

    Attributes
    ----------
    window : int
        Edge (pixels) of the square windows the chip is cut into; each window is one
        detector run at full resolution (memory ~ 60 bytes x window^2).
    fraction : float
        Share of the chip's windows analysed before the verdict may be taken.
    min_sources : int
        The verdict is taken once at least ``fraction`` of the chip is analysed *and* the
        analysed windows hold at least this many (non cosmic-ray) sources; until then more
        windows are added, up to the whole chip (sparse fields are analysed entirely).
    stats_pixels : int
        About this many pixels, on a regular grid of rows and columns, give the background
        statistics (all pixels for smaller chips).
    """

    window: int = 512
    fraction: float = 0.125
    min_sources: int = 50
    stats_pixels: int = 1 << 18


def guiding_trails(
    sci: np.ndarray,
    dq: np.ndarray | None = None,
    *,
    rate: bool = False,
    exptime: float = 1.0,
    min_length: int = 33,
    min_lines: int = 4,
) -> tuple[bool, dict]:
    """The linear-trail detector of the MVM guiding test, on one chip's whole arrays.

    Steps (parameters hard-coded as in drizzlepac): per-second data are scaled to counts;
    the 2-iteration sigma-clipped median plus one sigma is subtracted and the result clipped
    at 0; pixels with DQ flags other than 256/512/1024/2048/4096 are zeroed; sources of at
    least 17 connected pixels are segmented and cosmic-ray-like ones dropped (peak central
    moment at index <= 1 on either axis, or narrower than 0.75 x 1.5 px and elongated more
    than 2:1); 2-pixel borders are trimmed; Canny edges (sigma 2.5, thresholds 0/25) feed a
    probabilistic Hough transform (lines >= ``min_length`` px, no gaps, seeded). With at
    least max(``min_lines``, sources/10) lines, lines within 2 deg of vertical (column bleeds,
    CTE) are set aside, the others are histogrammed in 4-deg bins over +-180 deg, and guiding
    is bad when the fullest bin holds more than max(lines/10, vertical lines).

    Returns
    -------
    bad : bool
    info : dict
        ``sources``, ``lines``, ``vertical``, ``peak`` and ``limit`` (what was measured).
    """
    from astropy.stats import sigma_clipped_stats

    data = np.nan_to_num(np.array(sci, dtype=np.float32), nan=0.0)
    if rate:
        data *= exptime
    _, median, std = sigma_clipped_stats(data, maxiters=2)
    sources, angles = _window_trails(data, dq, float(median + std), min_length)
    return _trail_verdict(sources, angles, min_lines)


def guiding_trails_sampled(
    chip: Chip,
    *,
    exptime: float | None = None,
    sampling: TrailSampling | None = None,
    min_length: int = 33,
    min_lines: int = 4,
) -> tuple[bool, dict]:
    """:func:`guiding_trails` on SCI,1 of a chip, reading only sampled windows.

    The background level (sigma-clipped median + sigma) comes from a regular grid of about
    ``sampling.stats_pixels`` pixels (every k-th column of every k-th row); the detector then
    runs window by window (``sampling.window`` square, full resolution, same parameters) in a
    fixed order spread over the chip, and the sources and line angles of the analysed windows
    are pooled into the same verdict as :func:`guiding_trails`. Guiding trails affect every
    star of a frame alike, so a representative share of the frame decides; it stops once
    ``sampling.fraction`` of the chip holding at least ``sampling.min_sources`` sources has
    been analysed, else it goes on to the whole chip. A chip no larger than one window is
    analysed exactly as :func:`guiding_trails` does. Memory is bounded by one window.

    Parameters
    ----------
    chip : Chip
        The chip (SCI units from ``chip.is_rate``).
    exptime : float, optional
        Seconds used to scale per-second data to counts (default ``chip.exptime``).

    Returns
    -------
    bad : bool
    info : dict
        As :func:`guiding_trails`, plus ``windows`` (analysed / total) and ``fraction``.
    """
    from astropy.stats import sigma_clipped_stats

    sampling = sampling or TrailSampling()
    scale = float(chip.exptime if exptime is None else exptime) if chip.is_rate else 1.0
    ny, nx = chip.shape
    step = max(1, int(math.sqrt(ny * nx / max(1, sampling.stats_pixels))))
    if step == 1:
        grid = chip.read_sci()
    else:
        # whole rows, 64 at a time, keep every step-th row and column: bounded memory,
        # 1/step of the file's pages touched
        rows = np.arange(0, ny, step)
        parts = []
        for k in range(0, rows.size, 64):
            block = rows[k:k + 64]
            sub = chip.read_sci((int(block[0]), int(block[-1]) + 1, 0, nx))
            parts.append(sub[block - block[0], ::step])
        grid = np.concatenate(parts)
    grid = np.nan_to_num(grid, nan=0.0) * np.float32(scale)
    _, median, std = sigma_clipped_stats(grid, maxiters=2)
    level = float(median + std)
    del grid

    w = max(64, int(sampling.window))
    boxes = [(y0, min(ny, y0 + w), x0, min(nx, x0 + w))
             for y0 in range(0, ny, w) for x0 in range(0, nx, w)]
    order = _spread_order(len(boxes))
    need = max(1, math.ceil(sampling.fraction * len(boxes)))
    sources = 0
    angles: list[np.ndarray] = []
    done = 0
    for k in order:
        y0, y1, x0, x1 = boxes[k]
        sci, _, dq = chip.read((y0, y1, x0, x1), err=False)
        data = np.nan_to_num(sci, nan=0.0)
        if scale != 1.0:
            data *= np.float32(scale)
        n, a = _window_trails(data, dq, level, min_length)
        sources += n
        angles.append(a)
        done += 1
        if done >= need and sources >= sampling.min_sources:
            break
    bad, info = _trail_verdict(sources, np.concatenate(angles), min_lines)
    info["windows"] = f"{done}/{len(boxes)}"
    area = sum((boxes[k][1] - boxes[k][0]) * (boxes[k][3] - boxes[k][2]) for k in order[:done])
    info["fraction"] = area / (ny * nx)
    return bad, info


def _spread_order(n: int) -> list[int]:
    """A fixed order of ``n`` window indices whose prefixes spread over the chip.

    Golden-ratio stepping: index ``round(i * 0.618 * n) mod n`` skipping repeats.
    """
    out: list[int] = []
    seen = set()
    phi = (math.sqrt(5.0) - 1.0) / 2.0
    for i in range(n * 4):
        k = int(math.floor((0.5 + i * phi) % 1.0 * n))
        if k not in seen:
            seen.add(k)
            out.append(k)
        if len(out) == n:
            break
    out.extend(k for k in range(n) if k not in seen)
    return out


def _window_trails(
    data: np.ndarray, dq: np.ndarray | None, level: float, min_length: int
) -> tuple[int, np.ndarray]:
    """Sources (non cosmic-ray) and Hough line angles (deg) of one image or window.

    ``data`` in counts (float32, no NaN; modified in place); ``level`` = background median +
    1 sigma, subtracted before clipping at 0.
    """
    # scipy and scikit-image only where the guiding check runs (~0.3 s of imports); the
    # segment moments are computed here as photutils' SourceCatalog does (its import alone
    # cost ~1.2 s CPU, a third of a dry run)
    from scipy import ndimage
    from skimage.feature import canny
    from skimage.transform import probabilistic_hough_line

    data -= np.float32(level)
    image = np.clip(data, 0, None)
    if dq is not None:
        flagged = (np.asarray(dq).astype(np.int64) & ~_GUIDING_IGNORED_DQ & 0xFFFF) != 0
        image[flagged] = 0.0
    no_lines = np.zeros(0)

    # photutils.detect_sources(image, 0, 17) semantics (pixels > 0, 8-connected, >= 17
    # pixels), done with scipy: photutils is slow when noise leaves ~1e5 tiny segments
    labels, n_raw = ndimage.label(image > 0, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel(), minlength=n_raw + 1)
    big = sizes >= 17
    big[0] = False
    n_labels = int(big.sum())
    if n_labels < 2:
        return n_labels, no_lines
    relabel = np.zeros(n_raw + 1, dtype=np.int32)
    relabel[big] = np.arange(1, n_labels + 1, dtype=np.int32)
    n_sources = int(_not_cosmic_ray(_segment_shapes(image, relabel[labels]), fwhm=1.5).sum())

    trimmed = image[2:-2, 2:-2]
    edges = canny(trimmed, sigma=2.5, low_threshold=0, high_threshold=25)
    lines = probabilistic_hough_line(edges, threshold=0, line_gap=0, line_length=min_length, rng=0)
    if not lines:
        return n_sources, no_lines
    ends = np.asarray(lines, dtype=float)  # (n, 2 points, (x, y))
    return n_sources, np.rad2deg(
        np.arctan2(ends[:, 1, 1] - ends[:, 0, 1], ends[:, 1, 0] - ends[:, 0, 0]))


def _trail_verdict(sources: int, angles: np.ndarray, min_lines: int) -> tuple[bool, dict]:
    """drizzlepac's ``lines_in_image`` decision from the pooled sources and line angles."""
    info = {"sources": int(sources), "lines": int(angles.size), "vertical": 0, "peak": 0,
            "limit": 0.0}
    if sources < 1 or not angles.size or angles.size < max(min_lines, sources / 10):
        return False, info
    vertical = np.isclose(np.abs(angles), 90.0, atol=2.0)
    others = angles[~vertical]
    counts, _ = np.histogram(others, bins=np.linspace(-180.0, 180.0, 91))
    info["vertical"] = int(vertical.sum())
    info["peak"] = int(counts.max()) if counts.size else 0
    info["limit"] = float(max(others.size / 10.0, vertical.sum()))
    return info["peak"] > info["limit"], info


@dataclass(frozen=True)
class _SegmentShapes:
    """Per segment: central moments up to 3rd order (n, 4, 4), semiminor axis, elongation and
    whether the centroid is finite -- photutils ``SourceCatalog``'s ``moments_central``,
    ``semiminor_axis``, ``elongation`` and ``x_centroid``/``y_centroid``."""

    moments_central: np.ndarray
    semiminor: np.ndarray
    elongation: np.ndarray
    finite_centroid: np.ndarray


def _segment_shapes(image: np.ndarray, segm: np.ndarray) -> _SegmentShapes:
    """Moment shapes of the segments ``1..n`` of ``segm`` (consecutive labels) on ``image``.

    The arithmetic of photutils 3's ``SourceCatalog(image, segm)`` step by step (no
    convolution, no mask): each segment's bounding-box cutout with pixels outside it, negative
    or non-finite set to 0; raw moments ``yp.T @ cutout @ xp``; centroid ``m10/m00, m01/m00``;
    central moments about it; the covariance of the normalised second moments with
    SourceExtractor's 1/12 diagonal increments while its determinant is below 1/144; its
    eigenvalues (``eigvalsh``, negative -> NaN); semiminor axis ``sqrt(smaller)``, elongation
    ``sqrt(larger) / sqrt(smaller)``. ``tests/analyze`` checks it against photutils.
    """
    from scipy import ndimage

    central, finite = [], []
    for k, slc in enumerate(ndimage.find_objects(segm), start=1):
        arr = image[slc].copy()
        arr[~np.isfinite(arr) | (arr < 0) | (segm[slc] != k)] = 0.0
        ny, nx = arr.shape
        y = np.arange(ny, dtype=float)
        x = np.arange(nx, dtype=float)
        m = np.column_stack([np.ones(ny), y, y * y, y ** 3]).T @ arr \
            @ np.column_stack([np.ones(nx), x, x * x, x ** 3])
        with np.errstate(divide="ignore", invalid="ignore"):
            ycen = m[1, 0] / m[0, 0]
            xcen = m[0, 1] / m[0, 0]
        yc = np.arange(ny, dtype=float) - ycen
        xc = np.arange(nx, dtype=float) - xcen
        central.append(np.column_stack([np.ones(ny), yc, yc * yc, yc ** 3]).T @ arr
                       @ np.column_stack([np.ones(nx), xc, xc * xc, xc ** 3]))
        finite.append(bool(np.isfinite(xcen) and np.isfinite(ycen)))
    mu = np.array(central)
    n = mu.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = mu / mu[:, 0, 0][:, np.newaxis, np.newaxis]
        covar = np.array([norm[:, 0, 2], norm[:, 1, 1], norm[:, 1, 1],
                          norm[:, 2, 0]]).swapaxes(0, 1).reshape((n, 2, 2))
        delta = 1.0 / 12
        det = np.linalg.det(covar)
        covar[np.where(det < 0)[0]] = np.nan
        idx = np.where(det < delta ** 2)[0]
        while idx.size > 0:
            covar[idx, 0, 0] += delta
            covar[idx, 1, 1] += delta
            idx = np.where(np.linalg.det(covar) < delta ** 2)[0]
        eig = np.full((n, 2), np.nan)
        rows = np.unique(np.where(np.isfinite(covar))[0])
        eig[rows] = np.linalg.eigvalsh(covar[rows])
        eig[np.unique(np.where(eig < 0)[0])] = np.nan
        eig = np.fliplr(eig)
        semimajor = np.sqrt(eig[:, 0])
        semiminor = np.sqrt(eig[:, 1])
        elongation = semimajor / semiminor
    return _SegmentShapes(mu, semiminor, elongation, np.array(finite, dtype=bool))


def _not_cosmic_ray(shapes: _SegmentShapes, fwhm: float) -> np.ndarray:
    """True for segments kept as real sources by the moments classifier."""
    moments = np.nan_to_num(shapes.moments_central, nan=0.0)
    flat = moments.reshape(len(moments), -1).argmax(axis=1)
    mi, mj = np.unravel_index(flat, moments.shape[1:])
    peak_ok = (mi > 1) & (mj > 1)
    with np.errstate(invalid="ignore"):
        streak = (shapes.semiminor < 0.75 * fwhm) & (shapes.elongation > 2)
    return peak_ok & ~streak & shapes.finite_centroid
