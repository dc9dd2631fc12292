"""Alignment: sources per chip, offline reference catalogs, tweakwcs fits, WCS updates as data.

Public API::

    align(inputs, refcat, *, fit_pars=None, compute=None, label=None) -> AlignResult
    align_graph(exposures, refcat, ...) -> (graph, keys, kept)     # the Dask graph
    align_job(inputs, refcat, ...) -> AlignJob   # .graph, .keys, .result(values): compute
                                                 # it merged with other work
    write_outputs(result, outdir, *, headerlets=False) -> [paths]
    read_wcs_updates(path) -> {(rootname, sci_extver): Header}
    mvm_alignment(inputs, refcat, *, margin=3.0, compute=None) -> AlignResult  # MVM runs
    mvm_alignment_job(inputs, refcat, *, margin=3.0) -> AlignJob  # ...-FIT_MVM_<catalog>
    FileCatalog(path, name=None)   # a RefCatalog: .query(footprint, epoch) -> Table
    find_sources(sci, err, dq, pixel_scale, params) -> (Table, note)
    fit_visit(exposures, refcat, params) -> [ExposureFit]

Names are imported lazily (on first use): the fits and source finding pull in photutils,
tweakwcs and gwcs (~2 s of imports), which an MVM plan that only needs the alignment margin
(:mod:`hapdask.align.params`) or a run without ``--refcat`` should not pay.
"""

from __future__ import annotations

from hapdask._lazy import lazy_names

_LAZY = {
    "CatalogError": "catalog",
    "FileCatalog": "catalog",
    "RefCatalog": "catalog",
    "ExposureFit": "fit",
    "fit_visit": "fit",
    "wcsname_for": "fit",
    "FitParams": "params",
    "SourceParams": "params",
    "fit_params": "params",
    "source_params": "params",
    "ALIGNED_MARKS": "params",
    "MVM_ALIGN_MARGIN": "params",
    "AlignJob": "pipeline",
    "AlignResult": "pipeline",
    "align": "pipeline",
    "align_graph": "pipeline",
    "align_job": "pipeline",
    "mvm_alignment": "pipeline",
    "mvm_alignment_job": "pipeline",
    "write_outputs": "pipeline",
    "find_sources": "sources",
    "WcsUpdate": "updates",
    "read_wcs_updates": "updates",
    "write_wcs_updates": "updates",
}

__getattr__, __all__ = lazy_names(__name__, _LAZY)
