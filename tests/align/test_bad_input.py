"""Bad input: a chip without sources, an exposure sharing no sources, no catalog overlap."""

from __future__ import annotations

import shutil

import numpy as np
from astropy.io import fits
from astropy.table import Table

from hapdask.align import align
from hapdask.io import open_exposure


def test_empty_chip_and_unrelated_exposure(visit, tmp_path, true_error):
    """UVIS: chip 2 of the first exposure blank; IR: the second exposure's pixels rotated by
    180 deg (sources that match nothing). The run completes with a reason per exposure."""
    paths = []
    for p in visit.exposures:
        q = tmp_path / p.name
        shutil.copy(p, q)
        paths.append(q)
    uvis = [q for q in paths if q.name.endswith("_flc.fits")]
    ir = [q for q in paths if q.name.endswith("_flt.fits")]
    with fits.open(uvis[0], mode="update") as h:
        h["SCI", 2].data[:] = 0.0
        h["ERR", 2].data[:] = 0.0
    with fits.open(ir[1], mode="update") as h:
        for name in ("SCI", "ERR", "DQ"):
            h[name, 1].data[:] = h[name, 1].data[::-1, ::-1].copy()
    res = align([str(q) for q in paths], visit.refcat)
    rows = {e.rootname: e for e in res.exposures}
    blank = rows[open_exposure(str(uvis[0])).rootname]
    unrelated = rows[open_exposure(str(ir[1])).rootname]
    # the blank chip takes its exposure's correction from the visit's group fit
    assert blank.status == "aligned", blank.reason
    assert sorted(u.extver for u in blank.updates) == [1, 2]
    for u in blank.updates:
        err = true_error(visit, uvis[0], u.extver, u.header(), (256, 512))
        assert np.percentile(err, 90) <= 15.0, (u.extver, err.max())
    # the unrelated exposure keeps its a-priori WCS, with the reasons of every method
    assert unrelated.status == "apriori" and not unrelated.updates, unrelated.method
    for method in ("relative", "2dhist", "default"):
        assert method in unrelated.reason
    # the other IR exposure is aligned on its own (2dhist), the UVIS pair together
    assert rows[open_exposure(str(ir[0])).rootname].status == "aligned"
    assert rows[open_exposure(str(uvis[1])).rootname].status == "aligned"


def test_no_overlap_with_catalog(visit, tmp_path):
    t = Table.read(visit.refcat)
    t["dec"] += 1.0
    far = tmp_path / "far.ecsv"
    t.write(far)
    ir = [str(p) for p in visit.exposures if p.name.endswith("_flt.fits")]
    res = align(ir, far)
    assert len(res.exposures) == 2 and not res.updates
    for e in res.exposures:
        assert e.status == "apriori"
        assert "0 GAIASIM reference sources in the footprint" in e.reason
