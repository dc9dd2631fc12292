"""Fits with tweakwcs: relative alignment within a visit, then absolute alignment to a catalog.

Follows DrizzlePac's SVM hierarchy (``align_utils``, ``hap_pipeline_inventory.md`` section 3):
method ``relative`` (exposures to each other, then the visit as one group to the catalog),
then ``2dhist`` and ``default`` (each exposure to the catalog), each with fit geometry chosen
by the number of matches and DrizzlePac's acceptance checks. A fit that fails is never applied:
the exposure keeps its a-priori WCS and the reason is reported.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table, vstack
from tweakwcs import XYXYMatch, align_wcs
from tweakwcs.correctors import FITSWCSCorrector

from hapdask.align.catalog import RefCatalog
from hapdask.align.params import FitParams, MatchParams
from hapdask.align.updates import WcsUpdate
from hapdask.profile import timed

#: tweakwcs logs every step at INFO; keep warnings only.
logging.getLogger("tweakwcs").setLevel(logging.WARNING)


@dataclass
class ChipSources:
    """Sources of one chip (output of the per-chip source task)."""

    rootname: str
    extver: int
    chip: object  # hapdask.io.Chip (picklable)
    sources: Table
    note: str = ""


@dataclass
class ExposureInput:
    """One exposure of a visit, as the fit task needs it."""

    rootname: str
    path: str
    visit: str
    epoch: float  # Julian year
    wcsname: str  # a-priori WCSNAME
    chips: list[ChipSources]


@dataclass
class ExposureFit:
    """Outcome for one exposure (one row of ``alignment.ecsv``)."""

    rootname: str
    path: str
    visit: str
    status: str  # "aligned" | "relative" | "apriori" | "kept"
    method: str = ""
    geometry: str = ""
    catalog: str = ""
    matches: int = 0
    rms_mas: float = math.nan
    rms_ra: float = math.nan
    rms_dec: float = math.nan
    relmatch: int = 0
    relrms: float = math.nan
    nref: int = 0
    nsources: int = 0
    wcsname: str = ""
    reason: str = ""
    updates: list[WcsUpdate] = field(default_factory=list)


def wcsname_for(apriori: str, label: str, catalog: str) -> str:
    """DrizzlePac's a-posteriori WCSNAME: ``<part before the first '-'>-FIT_<label>_<catalog>``.

    ``catalog`` is ``NONE`` for a relative-only solution.
    """
    base = (apriori or "").split("-")[0].strip() or "IDC"
    return f"{base}-FIT_{label}_{catalog}"


def _corrector(cs: ChipSources, group: str, weights: bool = True) -> FITSWCSCorrector:
    w = cs.chip.wcs()
    ny, nx = cs.chip.shape
    w.pixel_shape = (nx, ny)
    t = Table()
    t["x"] = np.asarray(cs.sources["x"], dtype=float)
    t["y"] = np.asarray(cs.sources["y"], dtype=float)
    if weights:
        sig_mas = np.asarray(cs.sources["sigma"], dtype=float) * cs.chip.pixel_scale * 1e3
        t["weight"] = 1.0 / (2.0 * sig_mas ** 2)
    t.meta["name"] = f"{cs.rootname}[SCI,{cs.extver}]"
    return FITSWCSCorrector(w, meta={"catalog": t, "name": f"{cs.rootname}_{cs.extver}",
                                     "group_id": group, "rootname": cs.rootname,
                                     "extver": cs.extver})


def _sep_mas(ra1, dec1, ra2, dec2) -> tuple[np.ndarray, np.ndarray]:
    """(d_ra*cos(dec), d_dec) in mas."""
    dra = ((np.asarray(ra1) - np.asarray(ra2) + 180.0) % 360.0 - 180.0) * np.cos(
        np.radians(np.asarray(dec2)))
    return dra * 3.6e6, (np.asarray(dec1) - np.asarray(dec2)) * 3.6e6


@dataclass
class _Fit:
    ok: bool
    reason: str
    geometry: str = ""
    matches: int = 0
    rms: float = math.nan
    rms_ra: float = math.nan
    rms_dec: float = math.nan


def _quality(info: dict, ref: Table, p: FitParams, pscale_mas: float,
             tolerance: float) -> _Fit:
    """DrizzlePac's acceptance checks (``determine_fit_quality``) on one tweakwcs fit_info."""
    status = str(info.get("status", "SKIPPED"))
    if status != "SUCCESS":
        return _Fit(False, f"tweakwcs: {status}")
    n = int(info.get("nmatches", 0))
    fm = np.asarray(info["fitmask"], bool)
    nfit = int(fm.sum())
    ridx = np.asarray(info["matched_ref_idx"])[fm]
    dra, ddec = _sep_mas(info["fit_RA"], info["fit_DEC"], np.asarray(ref["RA"])[ridx],
                         np.asarray(ref["DEC"])[ridx])
    rms_ra = float(np.std(dra)) if nfit else math.nan
    rms_dec = float(np.std(ddec)) if nfit else math.nan
    rms = float(np.sqrt(np.mean(dra ** 2 + ddec ** 2))) if nfit else math.nan
    f = _Fit(False, "", str(info.get("fitgeom", "")), nfit, rms, rms_ra, rms_dec)
    if nfit < p.min_matches:
        f.reason = f"{nfit} matches < MIN_FIT_MATCHES {p.min_matches}"
        return f
    if not rms <= p.max_fit_limit:
        f.reason = f"fit rms {rms:.1f} mas > MAX_FIT_LIMIT {p.max_fit_limit:g}"
        return f
    if float(info.get("rmse", 0.0)) > 0.5 * tolerance:
        f.reason = (f"fit rms {float(info['rmse']):.2f} px > half the matching tolerance "
                    f"({tolerance:g} px): chance matches")
        return f
    scale = float(info.get("<scale>", 1.0))
    rot = float(info.get("proper_rot", info.get("<rot>", 0.0)))
    rot = (rot + 180.0) % 360.0 - 180.0
    skew = abs(float(info.get("skew", 0.0)))
    if (abs(scale - 1) > p.max_scale or abs(rot) > p.max_rot) and skew > p.max_skew:
        f.reason = f"implausible fit (scale {scale:.4f}, rotation {rot:.3f} deg, skew {skew:.4f})"
        return f
    shift_arcsec = math.hypot(*np.asarray(info["shift"], float)) * pscale_mas / 1e3
    if not (n + 2) * 0.36 > 0.8 + (shift_arcsec / 10.0) ** 8:
        f.reason = f"radial offset check failed ({nfit} matches, offset ~{shift_arcsec:.1f}\")"
        return f
    f.ok = True
    return f


def _correction_arcsec(before: FITSWCSCorrector, after: FITSWCSCorrector) -> float:
    """Largest change of the sky position over the chip (corners and centre), arcsec."""
    nx, ny = before.wcs.pixel_shape
    x = np.array([0, nx - 1, nx - 1, 0, (nx - 1) / 2])
    y = np.array([0, 0, ny - 1, ny - 1, (ny - 1) / 2])
    r0, d0 = before.det_to_world(x, y)
    r1, d1 = after.det_to_world(x, y)
    dra, ddec = _sep_mas(r1, d1, r0, d0)
    return float(np.max(np.hypot(dra, ddec))) / 1e3


def _run(correctors: list[FITSWCSCorrector], refcat: Table | None, m: MatchParams,
         p: FitParams, *, relative: bool) -> tuple[list[FITSWCSCorrector], str]:
    """align_wcs with the fit geometry walked down by the number of matches.

    Returns the corrected copies and the geometry used ("" if every geometry failed).
    """
    last: list[FITSWCSCorrector] = []
    best = 0
    for geom, nmin in p.fitgeom_min:
        cs = [FITSWCSCorrector(c0.wcs.deepcopy(),
                               meta={k: v for k, v in c0.meta.items() if k != "fit_info"})
              for c0 in correctors]
        match = XYXYMatch(searchrad=m.searchrad, separation=m.separation,
                          tolerance=m.tolerance, use2dhist=m.use2dhist)
        try:
            align_wcs(cs, refcat=refcat, enforce_user_order=True, expand_refcat=relative,
                      minobj=nmin if relative else None, match=match, fitgeom=geom,
                      nclip=p.nclip, sigma=p.sigma, group_bb_policy=0)
        except (ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
            for c in cs:
                c.meta["fit_info"] = {"status": f"FAILED: {exc}"}
            last = cs
            continue
        last = cs
        infos = [c.meta.get("fit_info", {}) for c in cs]
        fitted = [i for i in infos if i.get("status") == "SUCCESS"]
        if fitted:
            nfit = min(int(np.sum(i["fitmask"])) for i in fitted)
            best = max(best, nfit)
            if nfit >= nmin:
                return cs, geom
    need = ", ".join(f"{g} {n}" for g, n in p.fitgeom_min)
    for c in last:
        info = c.meta.setdefault("fit_info", {})
        if info.get("status") == "SUCCESS":
            info["status"] = f"only {best} matches (needed: {need})"
    return last, ""


def _relative(correctors: list[FITSWCSCorrector], first: str, m: MatchParams,
              p: FitParams) -> tuple[list[FITSWCSCorrector], str]:
    """Relative step: every exposure aligned to the first one (poller order), whose sources
    form the reference catalog, expanded with each newly aligned exposure's sources
    (tweakwcs ``enforce_user_order``/``expand_refcat``, as DrizzlePac's relative fit)."""
    ref_cs = [c for c in correctors if c.meta["rootname"] == first]
    others = [c for c in correctors if c.meta["rootname"] != first]
    parts = []
    for c in ref_cs:
        cat = c.meta["catalog"]
        ra, dec = c.det_to_world(np.asarray(cat["x"]), np.asarray(cat["y"]))
        parts.append(Table({"RA": ra, "DEC": dec, "weight": np.asarray(cat["weight"])}))
    for c in ref_cs:
        c.meta["fit_info"] = {"status": "REFERENCE"}
    if not others:
        return ref_cs, ""
    refcat = vstack(parts) if parts else Table({"RA": [], "DEC": [], "weight": []})
    cs, geom = _run(others, refcat, m, p, relative=True)
    return ref_cs + cs, geom


def _relative_split(cs: list[FITSWCSCorrector], m: MatchParams, p: FitParams
                    ) -> tuple[set[str], dict[str, str], dict[str, tuple[int, float]]]:
    """Per-exposure outcome of the relative step.

    Returns (rootnames that aligned, rootname -> why not, rootname -> (matches, rms mas)).
    Besides tweakwcs' status, a relative fit must have ``min_matches`` matches and be
    plausible for exposures of one visit (same guide stars): |rotation| <= ``max_rot``,
    |scale - 1| <= ``max_scale``, shift <= ``max_rel_shift`` (DrizzlePac's
    ``check_consistency`` tolerances), rms <= ``MAX_FIT_LIMIT`` and below a quarter of the
    matching tolerance (chance matches spread over the whole tolerance circle, rms ~ 0.7
    tolerance; a true match has the centroid noise, a few hundredths of a pixel).
    """
    good: set[str] = set()
    bad: dict[str, str] = {}
    stats: dict[str, tuple[int, float]] = {}
    for c in cs:
        info = c.meta.get("fit_info", {})
        root = c.meta["rootname"]
        st = str(info.get("status", "SKIPPED"))
        if st == "REFERENCE":
            stats[root] = (0, 0.0)
            good.add(root)
            continue
        if st != "SUCCESS":
            bad[root] = st
            continue
        n = int(np.sum(info["fitmask"]))
        rms = float(info["rmse"]) * c.meta.get("pscale_mas", 1.0)
        stats[root] = (n, rms)
        rot = (float(info.get("proper_rot", 0.0)) + 180.0) % 360.0 - 180.0
        scale = float(info.get("<scale>", 1.0))
        rms_px = float(info["rmse"])
        shift = math.hypot(*np.asarray(info["shift"], float)) * c.meta["pscale_mas"] / 1e3
        if n < p.min_matches:
            bad[root] = f"{n} relative matches < MIN_FIT_MATCHES {p.min_matches}"
        elif rms > p.max_fit_limit or rms_px > 0.25 * m.tolerance:
            bad[root] = (f"relative fit rms {rms:.1f} mas ({rms_px:.2f} px) too large for "
                         f"a true match ({n} matches)")
        elif (abs(rot) > p.max_rot or abs(scale - 1.0) > p.max_scale
              or shift > p.max_rel_shift):
            bad[root] = (f"implausible relative fit (rotation {rot:.3f} deg, scale "
                         f"{scale:.4f}, shift {shift:.2f}\"): a false match")
        else:
            good.add(root)
    return good - set(bad), bad, stats


def _updates(cs: list[FITSWCSCorrector], keywords: dict[str, dict]) -> list[WcsUpdate]:
    out = []
    for c in cs:
        root, ext = c.meta["rootname"], c.meta["extver"]
        out.append(WcsUpdate.from_wcs(root, ext, c.wcs, c.meta["header"], keywords[root]))
    return out


def fit_visit(exposures: list[ExposureInput], refcat: RefCatalog | None,
              params: FitParams | None = None) -> list[ExposureFit]:
    """Align the exposures of one visit (one detector) to each other and to ``refcat``.

    Parameters
    ----------
    exposures : list of ExposureInput
        The visit's exposures in observation order (the first is the relative reference).
    refcat : RefCatalog or None
        Reference catalog; None: relative alignment only (applied only when
        ``params.apply_relative_only``).
    params : FitParams, optional
        Defaults: :class:`FitParams`.

    Returns
    -------
    list of ExposureFit
        One per exposure, in input order, with the per-chip :class:`WcsUpdate` records of an
        applied fit (none when the a-priori WCS is kept).
    """
    p = params or FitParams()
    results = {e.rootname: ExposureFit(e.rootname, e.path, e.visit, "apriori",
                                       wcsname=e.wcsname) for e in exposures}
    reasons: dict[str, list[str]] = {e.rootname: [] for e in exposures}
    usable: list[ExposureInput] = []
    for e in exposures:
        n = sum(len(c.sources) for c in e.chips)
        results[e.rootname].nsources = n
        if n == 0:
            notes = "; ".join(f"SCI,{c.extver}: {c.note}" for c in e.chips if c.note)
            reasons[e.rootname].append(f"no sources ({notes or 'none detected'})")
        else:
            usable.append(e)
    if not usable:
        return _finish(exposures, results, reasons)

    # correctors: one per chip with sources (chips without sources follow their exposure)
    def make(group_of) -> list[FITSWCSCorrector]:
        out = []
        for e in usable:
            for cs in e.chips:
                if len(cs.sources):
                    c = _corrector(cs, group_of(e))
                    c.meta["header"] = cs.chip.header
                    c.meta["pscale_mas"] = cs.chip.pixel_scale * 1e3
                    c.meta["apriori_wcs"] = c.wcs.deepcopy()
                    out.append(c)
        return out

    ref = Table()
    cat_name = ""
    if refcat is not None:
        cat_name = refcat.name
        fp = []
        for e in usable:
            for cs in e.chips:
                fp.append(cs.chip.footprint())
                fp.append(np.full((1, 2), np.nan))
        epoch = float(np.mean([e.epoch for e in usable]))
        with timed("refcat"):
            ref = refcat.query(np.vstack(fp), epoch)
        for e in usable:
            results[e.rootname].nref = len(ref)
        if len(ref) < p.min_matches:
            for e in usable:
                reasons[e.rootname].append(
                    f"{len(ref)} {cat_name} reference sources in the footprint "
                    f"< MIN_FIT_MATCHES {p.min_matches}")

    methods = list(p.methods)
    if len(usable) < 2:
        methods = [m for m in methods if m.name != "relative"]
    rel_info: dict[str, tuple[int, float]] = {}
    rel_ok = False
    good: set[str] = set()
    for m in methods:
        if m.name == "relative":
            with timed("fit-relative"):
                cs, geom = _relative(make(lambda e: e.rootname), usable[0].rootname, m, p)
            good, bad, rel_info = _relative_split(cs, m, p)
            for root, why in bad.items():
                reasons[root].append(f"relative: {why}")
            rel_ok = bool(geom) and len(good) >= 2
            if not rel_ok:
                for e in usable:
                    if e.rootname not in bad:
                        reasons[e.rootname].append("relative: no other exposure aligned to it")
                continue
            rel_geom = geom
            rel_members = [e for e in usable if e.rootname in good]
            if len(ref) < p.min_matches:
                break
            cs = [c for c in cs if c.meta["rootname"] in good]
            for c in cs:
                c.meta["group_id"] = "visit"
                c.meta.pop("fit_info", None)
            # the relative solution is the start of the absolute fit
            base = [FITSWCSCorrector(c.wcs, meta=dict(c.meta)) for c in cs]
            with timed("fit-absolute"):
                abs_cs, geom = _run(base, ref, m, p, relative=False)
            info = abs_cs[0].meta.get("fit_info", {}) if abs_cs else {}
            q = (_quality(info, ref, p, abs_cs[0].meta["pscale_mas"], m.tolerance) if geom
                 else _Fit(False, str(info.get("status", "no fit"))))
            if q.ok:
                q = _check_margin(abs_cs, [c for c in make(lambda e: e.rootname)
                                           if c.meta["rootname"] in good], p, q)
            if not q.ok:
                for e in rel_members:
                    reasons[e.rootname].append(f"relative+{cat_name}: {q.reason}")
                continue
            kw = {}
            for e in rel_members:
                n_rel, rms_rel = rel_info.get(e.rootname, (0, math.nan))
                kw[e.rootname] = _keywords(e, p, cat_name, m.name, q, rel=(rel_geom, n_rel,
                                                                           rms_rel, usable[0]))
                _set(results[e.rootname], "aligned", m.name, q, cat_name, kw[e.rootname],
                     n_rel, rms_rel)
            for u in _updates(abs_cs, kw):
                results[u.rootname].updates.append(u)
            _fill_empty_chips(rel_members, results, abs_cs)
        else:
            if len(ref) < p.min_matches:
                break
            for e in usable:
                if results[e.rootname].status == "aligned":
                    continue
                own = [c for c in make(lambda x: x.rootname) if c.meta["rootname"] == e.rootname]
                with timed("fit-absolute"):
                    cs, geom = _run(own, ref, m, p, relative=False)
                info = cs[0].meta.get("fit_info", {}) if cs else {}
                q = (_quality(info, ref, p, cs[0].meta["pscale_mas"], m.tolerance) if geom
                     else _Fit(False, str(info.get("status", "no fit"))))
                if q.ok:
                    q = _check_margin(cs, own, p, q)
                if not q.ok:
                    reasons[e.rootname].append(f"{m.name}: {q.reason}")
                    continue
                kw = {e.rootname: _keywords(e, p, cat_name, m.name, q, rel=None)}
                _set(results[e.rootname], "aligned", m.name, q, cat_name, kw[e.rootname], 0,
                     math.nan)
                results[e.rootname].updates.extend(_updates(cs, kw))
                _fill_empty_chips([e], results, cs)
    if p.apply_relative_only and rel_ok:
        cs, geom = _relative(make(lambda e: e.rootname), usable[0].rootname, p.methods[0], p)
        for e in usable:
            r = results[e.rootname]
            if r.status == "aligned" or e.rootname not in good:
                continue
            n_rel, rms_rel = rel_info.get(e.rootname, (0, math.nan))
            q = _Fit(True, "", geom, 0)
            kw = {e.rootname: _keywords(e, p, "NONE", "relative", q, rel=(geom, n_rel, rms_rel,
                                                                          usable[0]))}
            _set(r, "relative", "relative", q, "NONE", kw[e.rootname], n_rel, rms_rel)
            r.updates.extend(_updates([c for c in cs if c.meta["rootname"] == e.rootname], kw))
            _fill_empty_chips([e], results, cs)
            reasons[e.rootname].append("absolute fit failed; relative-only solution applied")
    return _finish(exposures, results, reasons)


def _check_margin(fitted: list[FITSWCSCorrector], original: list[FITSWCSCorrector],
                  p: FitParams, q: _Fit) -> _Fit:
    if p.max_correction is None:
        return q
    for a, b in zip(original, fitted, strict=True):
        d = _correction_arcsec(a, b)
        if d > p.max_correction:
            q.ok = False
            q.reason = (f"correction {d:.2f}\" on {a.meta['name']} exceeds the alignment "
                        f"margin {p.max_correction:g}\"")
            return q
    return q


def _fill_empty_chips(exps: list[ExposureInput], results: dict[str, ExposureFit],
                      fitted: list[FITSWCSCorrector]) -> None:
    """Chips without sources take their exposure's sky correction (via a sibling chip)."""
    for e in exps:
        done = {u.extver for u in results[e.rootname].updates}
        sib = [c for c in fitted if c.meta["rootname"] == e.rootname]
        if not sib:
            continue
        for cs in e.chips:
            if cs.extver in done:
                continue
            results[e.rootname].updates.append(_follow(cs, sib[0], results[e.rootname]))


def _follow(cs: ChipSources, sibling: FITSWCSCorrector, res: ExposureFit) -> WcsUpdate:
    """Update of a source-less chip: the sibling's sky transformation applied to its WCS."""
    w = cs.chip.wcs()
    ny, nx = cs.chip.shape
    w.pixel_shape = (nx, ny)
    c = FITSWCSCorrector(w)
    # map a grid of this chip's pixels through (a-priori sky -> corrected sky) of the sibling
    ref = FITSWCSCorrector(sibling.meta["apriori_wcs"].deepcopy())
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, 5), np.linspace(0, ny - 1, 5))
    ra, dec = c.det_to_world(gx.ravel(), gy.ravel())
    xs, ys = ref.world_to_det(ra, dec)  # sibling pixels (outside its chip: fine, linear)
    ra2, dec2 = sibling.det_to_world(xs, ys)
    t = Table({"x": gx.ravel(), "y": gy.ravel()})
    c.meta["catalog"] = t
    align_wcs([c], refcat=Table({"RA": ra2, "DEC": dec2}), match=None, fitgeom="rscale",
              nclip=0)
    kw = {k: v for k, v in res.updates[0].header().items()
          if k in ("WCSNAME", "RMS_RA", "RMS_DEC", "CRDER1", "CRDER2", "NMATCHES", "FITGEOM",
                   "RELGEOM", "RELMATCH", "RELRMS_R", "RELRMS_D", "RELREFIM", "CATALOG",
                   "FITMETH", "FIT_RMS")}
    return WcsUpdate.from_wcs(cs.rootname, cs.extver, c.wcs, cs.chip.header, kw)


def _keywords(e: ExposureInput, p: FitParams, cat: str, method: str, q: _Fit, rel) -> dict:
    kw = {
        "WCSNAME": wcsname_for(e.wcsname, p.label, cat),
        "RMS_RA": (round(q.rms_ra, 3) if math.isfinite(q.rms_ra) else -1.0,
                   "RMS in RA of the fit (mas)"),
        "RMS_DEC": (round(q.rms_dec, 3) if math.isfinite(q.rms_dec) else -1.0,
                    "RMS in Dec of the fit (mas)"),
        "CRDER1": (q.rms_ra / 3.6e6 if math.isfinite(q.rms_ra) else -1.0,
                   "systematic error in RA (deg)"),
        "CRDER2": (q.rms_dec / 3.6e6 if math.isfinite(q.rms_dec) else -1.0,
                   "systematic error in Dec (deg)"),
        "NMATCHES": (q.matches, "number of matches to the reference catalog"),
        "FITGEOM": (q.geometry or "N/A", "fit geometry"),
        "CATALOG": (cat, "astrometric reference catalog"),
        "FITMETH": (method, "alignment method"),
        "FIT_RMS": (round(q.rms, 3) if math.isfinite(q.rms) else -1.0, "fit RMS (mas)"),
    }
    if rel is not None:
        geom, n, rms, first = rel
        kw.update({"RELGEOM": (geom, "relative fit geometry"),
                   "RELMATCH": (int(n), "relative fit matches"),
                   "RELRMS_R": (round(rms / math.sqrt(2), 3) if math.isfinite(rms) else -1.0,
                                "relative fit RMS in RA (mas)"),
                   "RELRMS_D": (round(rms / math.sqrt(2), 3) if math.isfinite(rms) else -1.0,
                                "relative fit RMS in Dec (mas)"),
                   "RELREFIM": (first.rootname, "relative fit reference image")})
    return kw


def _set(r: ExposureFit, status: str, method: str, q: _Fit, cat: str, kw: dict, nrel: int,
         rmsrel: float) -> None:
    r.status = status
    r.method = method
    r.geometry = q.geometry
    r.catalog = cat
    r.matches = q.matches
    r.rms_mas = q.rms
    r.rms_ra = q.rms_ra
    r.rms_dec = q.rms_dec
    r.relmatch = nrel
    r.relrms = rmsrel
    r.wcsname = kw["WCSNAME"]


def _finish(exposures: list[ExposureInput], results: dict[str, ExposureFit],
            reasons: dict[str, list[str]]) -> list[ExposureFit]:
    out = []
    for e in exposures:
        r = results[e.rootname]
        if r.status == "apriori":
            r.reason = "; ".join(dict.fromkeys(reasons.get(e.rootname, []))) or "not fitted"
            r.reason = "a-priori WCS kept: " + r.reason
        elif r.status == "relative":
            r.reason = "; ".join(dict.fromkeys(reasons.get(e.rootname, [])))
        out.append(r)
    return out
