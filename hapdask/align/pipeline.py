"""The alignment graph: source tasks per chip -> one fit task per visit -> per-chip WCS updates.

:func:`align_graph` builds the Dask graph (a plain dict graph, like ``hapdask.mvm``);
:func:`align` computes it and returns an :class:`AlignResult`; :func:`write_outputs` writes
``wcs_updates.fits``, ``alignment.ecsv`` and (optionally) headerlets. Inputs are never modified.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.table import Table

from hapdask.align.catalog import FileCatalog, RefCatalog
from hapdask.align.fit import ChipSources, ExposureFit, ExposureInput, fit_visit
from hapdask.align.params import FitParams, SourceParams, fit_params, source_params
from hapdask.align.sources import chip_sources
from hapdask.align.updates import WcsUpdate, write_wcs_updates

#: WCSNAME marks of an a-posteriori solution already holding an SVM/MVM alignment.
ALIGNED_MARKS = ("-FIT_SVM", "-FIT_MVM")

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
    visits: dict[str, list] = {}
    kept: list[ExposureFit] = []
    for e in exposures:
        v = visit_key(e)
        if any(m in e.wcsname.upper() for m in ALIGNED_MARKS):
            kept.append(_exposure_fit_kept(e, v))
            continue
        visits.setdefault(v, []).append(e)
    graph: dict = {}
    keys = []
    n = 0
    for vi, (_v, exps) in enumerate(sorted(visits.items())):
        exps = sorted(exps, key=lambda e: (e.expstart or 0.0, e.rootname))
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

    def result(self, values: list) -> AlignResult:
        """The :class:`AlignResult` from the computed values of :attr:`keys` (same order)."""
        fits_ = [r for visit in values for r in visit]
        rank = {r: i for i, r in enumerate(self.order)}
        allfits = sorted(fits_ + self.kept, key=lambda r: rank.get(r.rootname, 0))
        return AlignResult(allfits, self.catalog, list(self.unreadable))


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
                    refcat.name if refcat is not None else "", bad)


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



#: Alignment margin (arcsec) of MVM runs: plans use the a-priori WCS, so a correction larger
#: than this is rejected (the exposure keeps its a-priori WCS, with the reason).
MVM_ALIGN_MARGIN = 3.0


def mvm_alignment_job(inputs, refcat: RefCatalog | str | os.PathLike, *,
                      margin: float = MVM_ALIGN_MARGIN) -> AlignJob:
    """The :class:`AlignJob` of an MVM run: corrections limited to ``margin`` arcsec, WCSNAMEs
    ``...-FIT_MVM_<catalog>`` (DrizzlePac's MVM alignment label)."""
    return align_job(inputs, refcat, max_correction=float(margin), label="MVM")


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
