"""The alignment graph: source tasks per chip -> one fit task per visit -> per-chip WCS updates.

:func:`align_graph` builds the Dask graph (a plain dict graph, like ``hapdask.mvm``);
:func:`align` computes it and returns an :class:`AlignResult`; :func:`write_outputs` writes
``wcs_updates.fits``, ``alignment.ecsv`` and (optionally) headerlets. Inputs are never modified.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.table import Table

from hapdask.align.catalog import FileCatalog, RefCatalog
from hapdask.align.fit import ChipSources, ExposureFit, ExposureInput, fit_visit
from hapdask.align.params import (
    ALIGNED_MARKS,
    MVM_ALIGN_MARGIN,
    FitParams,
    SourceParams,
    fit_params,
    source_params,
)
from hapdask.align.sources import chip_sources
from hapdask.align.updates import WcsUpdate, write_wcs_updates
from hapdask.analyze import wcs_problem
from hapdask.mosaic.wcsio import updated_wcs_bytes, wcs_from_bytes
from skycells import KNOWN_DETECTORS

#: Columns of ``alignment.ecsv``.
TABLE_COLUMNS = ("rootname", "visit", "status", "method", "geometry", "catalog", "matches",
                 "rms_mas", "rms_ra", "rms_dec", "relmatch", "relrms", "nref", "nsources",
                 "wcsname", "reason", "path")


@dataclass
class AlignResult:
    """Outcome of :func:`align`: one :class:`ExposureFit` per input exposure."""

    exposures: list[ExposureFit]
    catalog: str = ""
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    @property
    def updates(self) -> list[WcsUpdate]:
        """Every applied per-chip update."""
        return [u for e in self.exposures for u in e.updates]

    def wcs_updates(self) -> dict[tuple[str, int], object]:
        """``{(rootname, extver): Header}`` for ``hapdask.mvm.plan(..., wcs_updates=...)``."""
        return {u.key: u.header() for u in self.updates}

    def table(self) -> Table:
        """The ``alignment.ecsv`` table (one row per exposure)."""
        rows = [[getattr(e, c) for c in TABLE_COLUMNS] for e in self.exposures]
        rows += [[os.path.basename(p), "", "unreadable", "", "", "", 0, np.nan, np.nan, np.nan,
                  0, np.nan, 0, 0, "", why, p] for p, why in self.unreadable]
        t = Table(rows=rows or None, names=TABLE_COLUMNS,
                  dtype=[str, str, str, str, str, str, int, float, float, float, int, float,
                         int, int, str, str, str])
        for c, unit in (("rms_mas", "mas"), ("rms_ra", "mas"), ("rms_dec", "mas"),
                        ("relrms", "mas")):
            t[c].unit = unit
        t.meta["catalog"] = self.catalog
        return t

    def summary(self) -> list[str]:
        """One line per visit: what was fitted and how well."""
        lines = []
        by_visit: dict[str, list[ExposureFit]] = {}
        for e in self.exposures:
            by_visit.setdefault(e.visit, []).append(e)
        for visit, exps in by_visit.items():
            ok = [e for e in exps if e.status in ("aligned", "relative")]
            kept = [e for e in exps if e.status == "kept"]
            if ok:
                e = ok[0]
                lines.append(
                    f"visit {visit}: {len(ok)}/{len(exps)} exposures {e.wcsname} "
                    f"({e.method}, {e.geometry}, {min(x.matches for x in ok)}-"
                    f"{max(x.matches for x in ok)} matches, rms "
                    f"{np.nanmax([x.rms_mas for x in ok]):.1f} mas)")
            for e in exps:
                if e.status == "apriori":
                    lines.append(f"visit {visit}: {e.rootname} {e.reason}")
            if kept:
                lines.append(f"visit {visit}: {len(kept)} exposure(s) used as they are "
                             f"({kept[0].wcsname})")
        return lines


def _epoch(expstart_mjd: float | None) -> float:
    return 2000.0 + ((expstart_mjd or 51544.5) - 51544.5) / 365.25


def visit_key(exposure) -> str:
    """Visit of an exposure for alignment: ``ipppss`` of the rootname + detector (lower)."""
    return f"{exposure.rootname[:6]}_{exposure.instrument}_{exposure.detector}".lower()


def _exposure_fit_kept(exp, visit: str) -> ExposureFit:
    return ExposureFit(exp.rootname, exp.path, visit, "kept", wcsname=exp.wcsname,
                       reason="already aligned (WCSNAME holds a FIT_SVM/FIT_MVM solution): "
                              "used as it is")


def _assemble(exps: list, chips: list[tuple[str, int, object, tuple]]) -> list[ExposureInput]:
    by_root: dict[str, list[ChipSources]] = {}
    for root, extver, chip, (src, note) in chips:
        by_root.setdefault(root, []).append(ChipSources(root, extver, chip, src, note))
    return [ExposureInput(e.rootname, e.path, visit_key(e), _epoch(e.expstart), e.wcsname,
                          by_root.get(e.rootname, [])) for e in exps]


def _fit_task(exps: list, refcat: RefCatalog | None, params: FitParams,
              *chip_results) -> list[ExposureFit]:
    chips = [(root, ext, chip, res) for (root, ext, chip), res in
             zip(_chip_list(exps), chip_results, strict=True)]
    return fit_visit(_assemble(exps, chips), refcat, params)


def _chip_list(exps: list) -> list[tuple[str, int, object]]:
    return [(e.rootname, c.extver, c) for e in exps for c in e.chips]


def visit_groups(exposures: list) -> tuple[list[list], list[ExposureFit]]:
    """The visits :func:`align_graph` fits, in the order of its fit keys (each visit's
    exposures in EXPSTART order), and the exposures used as they are (WCSNAME already
    FIT_SVM/FIT_MVM)."""
    visits: dict[str, list] = {}
    kept: list[ExposureFit] = []
    for e in exposures:
        v = visit_key(e)
        if any(m in e.wcsname.upper() for m in ALIGNED_MARKS):
            kept.append(_exposure_fit_kept(e, v))
            continue
        visits.setdefault(v, []).append(e)
    return ([sorted(exps, key=lambda e: (e.expstart or 0.0, e.rootname))
             for _, exps in sorted(visits.items())], kept)


def align_graph(exposures: list, refcat: RefCatalog | None, *,
                source_pars: Mapping[str, SourceParams] | None = None,
                fit_pars: FitParams | None = None, max_correction: float | None = None,
                label: str | None = None) -> tuple[dict, list, list[ExposureFit]]:
    """The Dask graph of the alignment of opened exposures.

    Parameters
    ----------
    exposures : list of hapdask.io.Exposure
        Opened inputs (any order; each visit is fitted in EXPSTART order).
    refcat : RefCatalog or None
    source_pars : mapping, optional
        ``"INSTRUMENT/DETECTOR" -> SourceParams`` overriding :func:`source_params`.
    fit_pars : FitParams, optional
        Overrides :func:`fit_params` for every visit.
    max_correction : float, optional
        Largest accepted correction (arcsec), see :class:`FitParams`.
    label : str, optional
        Fit label of the WCSNAMEs (``SVM`` by default; ``MVM`` for alignment inside an MVM
        run, as DrizzlePac's ``run_mvm_processing``: ``...-FIT_MVM_<catalog>``).

    Returns
    -------
    graph : dict
        ``("align-sources-<token>", i)`` per chip -> ``("align-fit-<token>", v)`` per visit,
        each fit task returning a list of :class:`ExposureFit` with their update records.
    keys : list
        The fit keys.
    kept : list of ExposureFit
        Exposures used as they are (WCSNAME already FIT_SVM/FIT_MVM).
    """
    token = hashlib.sha256("|".join(sorted(e.path for e in exposures)).encode()
                           ).hexdigest()[:12]
    visits, kept = visit_groups(exposures)
    graph: dict = {}
    keys = []
    n = 0
    for vi, exps in enumerate(visits):
        det = f"{exps[0].instrument}/{exps[0].detector}".upper()
        sp = (source_pars or {}).get(det) or source_params(exps[0].instrument, exps[0].detector)
        fp = fit_pars or fit_params(exps[0].instrument, exps[0].detector)
        if max_correction is not None:
            fp = fp.with_(max_correction=float(max_correction))
        if label is not None:
            fp = fp.with_(label=str(label))
        deps = []
        for _, _, chip in _chip_list(exps):
            k = (f"align-sources-{token}", n)
            graph[k] = (chip_sources, chip, sp)
            deps.append(k)
            n += 1
        fk = (f"align-fit-{token}", vi)
        graph[fk] = (_fit_task, exps, refcat, fp, *deps)
        keys.append(fk)
    return graph, keys, kept


def open_inputs(inputs) -> tuple[list, list[tuple[str, str]]]:
    """Resolve and open inputs; returns (exposures, [(path, why unreadable)])."""
    from hapdask.io import open_exposure, resolve_inputs

    items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    exps, bad = [], []
    for path in resolve_inputs([str(i) for i in items]):
        try:
            exps.append(open_exposure(path))
        except (OSError, ValueError) as exc:
            bad.append((path, f"unreadable: {exc}"))
    return exps, bad


@dataclass
class AlignJob:
    """The alignment graph of opened inputs, to be computed alone (:func:`align`) or merged
    with other work into one Dask computation (``hapdask.mvm.run``: alignment overlaps the
    analysis of the inputs).

    Attributes
    ----------
    graph, keys : dict, list
        The plain dict Dask graph (:func:`align_graph`) and its fit keys.
    kept : list of ExposureFit
        Exposures used as they are.
    order : list of str
        Rootnames in input order (the order of :attr:`AlignResult.exposures`).
    catalog : str
        Reference catalog name.
    unreadable : list of (path, reason)
    """

    graph: dict
    keys: list
    kept: list[ExposureFit]
    order: list[str]
    catalog: str = ""
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    visits: list[list] = field(default_factory=list)
    margin: float | None = None

    def result(self, values: list) -> AlignResult:
        """The :class:`AlignResult` from the computed values of :attr:`keys` (same order).

        With a :attr:`margin`, every visit's fits first go through :func:`limit_corrections`
        (what the checked tasks of :meth:`checked_tasks` return: pass their values as they
        are, the check is idempotent).
        """
        if self.margin is not None:
            values = [limit_corrections(v, exps, self.margin)
                      for v, exps in zip(values, self.visits, strict=True)]
        fits_ = [r for visit in values for r in visit]
        rank = {r: i for i, r in enumerate(self.order)}
        allfits = sorted(fits_ + self.kept, key=lambda r: rank.get(r.rootname, 0))
        return AlignResult(allfits, self.catalog, list(self.unreadable))

    def checked_tasks(self, prefix: str) -> tuple[dict, list]:
        """One task per visit, after its fit: the fits with :func:`limit_corrections` applied
        (``(<prefix>, v)``, in the order of :attr:`keys`). Tasks that apply a visit's WCS
        updates depend on its key only, never on the other visits'."""
        graph = {(prefix, v): (limit_corrections, k, exps, self.margin)
                 for v, (k, exps) in enumerate(zip(self.keys, self.visits, strict=True))}
        return graph, list(graph)

    def visit_of(self) -> dict[str, int]:
        """``rootname -> index`` of the fitted visit holding it (kept exposures absent)."""
        return {e.rootname: v for v, exps in enumerate(self.visits) for e in exps}


#: Chip pixels (fractions of each axis) where :func:`limit_corrections` measures a correction.
_SAMPLES = np.linspace(0.0, 1.0, 5)


def _largest_shift(chip, update, nominal: float | None) -> tuple[float, str]:
    """Largest sky shift (arcsec) between a chip's a-priori WCS and the WCS after ``update``
    (a Header) on a 5 x 5 grid of its pixels (corners included), and what is wrong with the
    updated WCS itself ("" when nothing)."""
    ny, nx = chip.shape
    gx, gy = np.meshgrid(_SAMPLES * (nx - 1), _SAMPLES * (ny - 1))
    before = chip.wcs()
    after = wcs_from_bytes(updated_wcs_bytes(chip, update))
    r0, d0 = before.all_pix2world(gx.ravel(), gy.ravel(), 0)
    r1, d1 = after.all_pix2world(gx.ravel(), gy.ravel(), 0)
    dra = ((r1 - r0 + 180.0) % 360.0 - 180.0) * np.cos(np.radians(d0))
    shift = float(np.max(np.hypot(dra, d1 - d0))) * 3600.0
    return shift, (wcs_problem(after, nominal) if nominal else "")


def limit_corrections(fits_: list[ExposureFit], exposures: list,
                      margin: float | None) -> list[ExposureFit]:
    """The fits of one visit with every correction held to ``margin`` arcsec.

    Plans drawn on the a-priori WCS (``hapdask.mvm.plan`` aligning inside the graph) hold the
    input pixels that can land within ``margin`` of their a-priori place; an exposure any of
    whose updated chips moves a pixel of a 5 x 5 grid (corners included) by more than that,
    or whose updated WCS is not sane, keeps its a-priori WCS, with the reason. The fits
    already check the margin on the fitted chips; this also covers chips that follow a
    sibling (no sources) and relative-only solutions. ``margin`` None: returned as they are.
    """
    if margin is None:
        return list(fits_)
    chips = {(e.rootname, c.extver): (c, KNOWN_DETECTORS.get(e.instrument.lower(), {}).get(
        e.detector.lower())) for e in exposures for c in e.chips}
    out = []
    for f in fits_:
        why = ""
        for u in f.updates:
            if u.key not in chips:
                continue
            shift, problem = _largest_shift(chips[u.key][0], u.header(), chips[u.key][1])
            if problem:
                why = f"updated WCS of SCI,{u.extver}: {problem}"
                break
            if shift > margin:
                why = (f"correction {shift:.2f}\" on SCI,{u.extver} exceeds the alignment "
                       f"margin {margin:g}\"")
                break
        if why:
            apriori = next((e.wcsname for e in exposures if e.rootname == f.rootname), "")
            f = dataclasses.replace(f, status="apriori", wcsname=apriori, updates=[],
                                    reason=f"{why}: keeps its a-priori WCS")
        out.append(f)
    return out


def align_job(inputs, refcat: RefCatalog | str | os.PathLike | None, *,
              fit_pars: FitParams | None = None, max_correction: float | None = None,
              label: str | None = None) -> AlignJob:
    """Open the inputs and build their alignment graph (see :func:`align`)."""
    if refcat is not None and not isinstance(refcat, RefCatalog):
        refcat = FileCatalog(refcat)
    items = inputs if isinstance(inputs, list) else [inputs]
    if items and all(hasattr(i, "chips") for i in items):
        exps, bad = list(items), []
    else:
        exps, bad = open_inputs(inputs)
    graph, keys, kept = align_graph(exps, refcat, fit_pars=fit_pars,
                                    max_correction=max_correction, label=label)
    return AlignJob(graph, keys, kept, [e.rootname for e in exps],
                    refcat.name if refcat is not None else "", bad,
                    visits=visit_groups(exps)[0])


def align(inputs, refcat: RefCatalog | str | os.PathLike | None, *,
          fit_pars: FitParams | None = None, max_correction: float | None = None,
          compute: Callable[[dict, list], list] | None = None,
          label: str | None = None) -> AlignResult:
    """Align inputs to each other (per visit) and to a reference catalog.

    Parameters
    ----------
    inputs : poller, directory, list file, paths, or list of opened Exposures
    refcat : RefCatalog, path or None
        A path is read with :class:`FileCatalog`.
    fit_pars : FitParams, optional
        Overrides the per-detector defaults.
    max_correction : float, optional
        Largest accepted correction (arcsec); larger ones are rejected with a reason.
    compute : callable, optional
        ``compute(graph, keys) -> results``; default the threaded Dask scheduler.
    label : str, optional
        WCSNAME fit label (default ``SVM``).

    Returns
    -------
    AlignResult
    """
    from dask.threaded import get

    job = align_job(inputs, refcat, fit_pars=fit_pars, max_correction=max_correction,
                    label=label)
    return job.result((compute or get)(job.graph, job.keys) if job.keys else [])


def write_outputs(result: AlignResult, outdir: str | os.PathLike, *,
                  headerlets: bool = False) -> list[Path]:
    """Write ``wcs_updates.fits``, ``alignment.ecsv`` and optional headerlets into ``outdir``.

    Every file is written under a temporary name and renamed when complete.
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_wcs_updates(out / "wcs_updates.fits", result.updates)]
    tab = out / "alignment.ecsv"
    part = tab.with_name(tab.name + ".part")
    result.table().write(part, format="ascii.ecsv", overwrite=True)
    os.replace(part, tab)
    paths.append(tab)
    if headerlets:
        from hapdask.align.headerlet import write_headerlets

        paths += write_headerlets(result, out)
    return paths




def mvm_alignment_job(inputs, refcat: RefCatalog | str | os.PathLike, *,
                      margin: float = MVM_ALIGN_MARGIN) -> AlignJob:
    """The :class:`AlignJob` of an MVM run: corrections limited to ``margin`` arcsec, WCSNAMEs
    ``...-FIT_MVM_<catalog>`` (DrizzlePac's MVM alignment label)."""
    job = align_job(inputs, refcat, max_correction=float(margin), label="MVM")
    job.margin = float(margin)
    return job


def mvm_alignment(inputs, refcat: RefCatalog | str | os.PathLike, *,
                  margin: float = MVM_ALIGN_MARGIN,
                  compute: Callable[[dict, list], list] | None = None) -> AlignResult:
    """Alignment for an MVM run: :func:`align` with corrections limited to ``margin`` arcsec
    and DrizzlePac's MVM WCSNAMEs (``<a priori>-FIT_MVM_<catalog>``).

    Exposures whose WCSNAME already holds a FIT_SVM/FIT_MVM solution are used as they are.
    The result's :meth:`AlignResult.wcs_updates` feed ``hapdask.mvm.plan(wcs_updates=...)``.
    """
    from dask.threaded import get

    job = mvm_alignment_job(inputs, refcat, margin=margin)
    return job.result((compute or get)(job.graph, job.keys) if job.keys else [])
