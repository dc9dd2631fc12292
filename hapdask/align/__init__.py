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
"""

from hapdask.align.catalog import CatalogError, FileCatalog, RefCatalog
from hapdask.align.fit import ExposureFit, fit_visit, wcsname_for
from hapdask.align.params import FitParams, SourceParams, fit_params, source_params
from hapdask.align.pipeline import (
    MVM_ALIGN_MARGIN,
    AlignJob,
    AlignResult,
    align,
    align_graph,
    align_job,
    mvm_alignment,
    mvm_alignment_job,
    write_outputs,
)
from hapdask.align.sources import find_sources
from hapdask.align.updates import WcsUpdate, read_wcs_updates, write_wcs_updates

__all__ = [
    "MVM_ALIGN_MARGIN",
    "AlignJob",
    "AlignResult",
    "CatalogError",
    "ExposureFit",
    "FileCatalog",
    "FitParams",
    "RefCatalog",
    "SourceParams",
    "WcsUpdate",
    "align",
    "align_graph",
    "align_job",
    "find_sources",
    "mvm_alignment",
    "mvm_alignment_job",
    "fit_params",
    "fit_visit",
    "read_wcs_updates",
    "source_params",
    "wcsname_for",
    "write_outputs",
    "write_wcs_updates",
]
