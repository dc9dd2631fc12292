"""Fitted vs true WCS on simulated visits (truth: the simulator's true chip WCS)."""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from hapdask.align import FileCatalog, align
from hapdask.io import open_exposure


def _errors(sset, result, true_error_mas):
    upd = result.wcs_updates()
    out = {}
    for path in sset.exposures:
        exp = open_exposure(str(path))
        for chip in exp.chips:
            key = (exp.rootname, chip.extver)
            out[key] = true_error_mas(sset, path, chip.extver, upd.get(key), chip.shape)
    return out


def test_dense_visit_true_error(visit, aligned, true_error):
    rows = {e.rootname: e for e in aligned.exposures}
    assert len(rows) == 4
    errs = _errors(visit, aligned, true_error)
    # the a-priori WCS is off by the simulated pointing error (0.1-0.5"): the test can fail
    apriori = _errors(visit, type(aligned)([], ""), true_error)
    assert min(np.median(v) for v in apriori.values()) > 80.0
    for e in aligned.exposures:
        assert e.status == "aligned", e.reason
        assert e.nref >= 10
        assert e.wcsname.endswith("-FIT_SVM_GAIASIM")
    allerr = np.concatenate(list(errs.values()))
    assert np.median(allerr) <= 5.0
    assert np.percentile(allerr, 90) <= 15.0
    assert max(v.max() for v in errs.values()) <= 50.0


def test_sparse_field_fit_or_apriori_with_reason(visit, tmp_path, true_error):
    """Four reference stars: every exposure is within 15 mas or keeps its WCS with a reason."""
    cat = FileCatalog(visit.refcat)
    fp = []
    for path in visit.exposures:
        for chip in open_exposure(str(path)).chips:
            fp += [chip.footprint(), np.full((1, 2), np.nan)]
    inside = cat.query(np.vstack(fp), 2016.0)["objID"]
    full = Table.read(visit.refcat)
    rng = np.random.default_rng(3)
    keep = rng.choice(np.asarray(inside), size=4, replace=False)
    sparse = full[np.isin(full["source_id"], keep)]
    path = tmp_path / "sparse.ecsv"
    sparse.write(path)
    res = align(visit.mvm_poller, path)
    errs = _errors(visit, res, true_error)
    for e in res.exposures:
        worst = max(v.max() for k, v in errs.items() if k[0] == e.rootname)
        p90 = max(np.percentile(v, 90) for k, v in errs.items() if k[0] == e.rootname)
        if e.status == "aligned":
            assert p90 <= 15.0 and worst <= 50.0, (e.rootname, p90, worst)
        else:
            assert e.status == "apriori" and e.reason.startswith("a-priori WCS kept: ")
            assert len(e.reason) > len("a-priori WCS kept: ") + 5
            assert not e.updates
