"""FileCatalog: formats, Gaia and plain columns, proper motions (truth: the simulator), errors."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from hapdask.align import CatalogError, FileCatalog
from hapdask.simulate.sky import positions_at_epoch


def _circle(ra, dec, r=0.02, n=32):
    t = np.linspace(0, 2 * np.pi, n)
    return np.column_stack([ra + r * np.cos(t) / np.cos(np.radians(dec)), dec + r * np.sin(t)])


@pytest.mark.parametrize("ext", ["fits", "csv", "parquet"])
def test_formats_give_same_query(visit, tmp_path, ext):
    t = Table.read(visit.refcat)
    path = tmp_path / f"cat.{ext}"
    t.meta = {}
    t.write(path, format={"fits": "fits", "csv": "ascii.csv", "parquet": "parquet"}[ext])
    ra0, dec0 = float(np.median(t["ra"])), float(np.median(t["dec"]))
    a = FileCatalog(visit.refcat).query(_circle(ra0, dec0), 2019.3)
    b = FileCatalog(path).query(_circle(ra0, dec0), 2019.3)
    assert len(a) > 5 and len(a) == len(b)
    np.testing.assert_allclose(a["RA"], b["RA"], rtol=0, atol=1e-12)
    assert FileCatalog(path).name == "CAT"


def test_proper_motion_matches_truth(visit):
    """Propagated catalog positions agree with the true star positions at the epoch within the
    catalog's own errors (the catalog carries DR3-like noise; truth is noiseless)."""
    truth = visit.truth()
    cat = Table.read(visit.refcat)
    ra0, dec0 = float(np.median(cat["ra"])), float(np.median(cat["dec"]))
    epoch = 2020.5
    q = FileCatalog(visit.refcat).query(_circle(ra0, dec0, 0.05), epoch)
    tra, tdec = positions_at_epoch(truth, epoch)
    idx = np.searchsorted(np.asarray(truth["id"]), np.asarray(q["objID"]))
    dra = (np.asarray(q["RA"]) - tra[idx]) * np.cos(np.radians(tdec[idx])) * 3.6e6
    ddec = (np.asarray(q["DEC"]) - tdec[idx]) * 3.6e6
    sigma = np.sqrt(1.0 / np.asarray(q["weight"]))  # combined 2-D error (mas)
    z = np.hypot(dra, ddec) / sigma
    assert np.median(z) < 1.5 and np.max(np.hypot(dra, ddec)) < 30.0
    # without propagation the fast movers would be off by tens of mas
    still = FileCatalog(visit.refcat).query(_circle(ra0, dec0, 0.05), 2016.0)
    moved = np.hypot((np.asarray(still["RA"]) - tra[idx]) * np.cos(np.radians(tdec[idx])),
                     np.asarray(still["DEC"]) - tdec[idx]) * 3.6e6
    assert np.max(moved) > 30.0


def test_plain_radec_table(tmp_path):
    path = tmp_path / "plain.csv"
    Table({"RA": [10.0, 10.001], "Dec": [-5.0, -5.001]}).write(path, format="ascii.csv")
    q = FileCatalog(path, name="MYCAT").query(_circle(10.0, -5.0), 2030.0)
    assert len(q) == 2 and FileCatalog(path, name="MYCAT").name == "MYCAT"
    np.testing.assert_allclose(q["RA"], [10.0, 10.001])  # no proper motion: unchanged


def test_missing_empty_and_no_radec(tmp_path):
    with pytest.raises(CatalogError, match="nope.ecsv: reference catalog file not found"):
        FileCatalog(tmp_path / "nope.ecsv")
    empty = tmp_path / "empty.ecsv"
    Table({"ra": np.zeros(0), "dec": np.zeros(0)}).write(empty)
    with pytest.raises(CatalogError, match="empty.ecsv: reference catalog is empty"):
        FileCatalog(empty)
    nodec = tmp_path / "nodec.ecsv"
    Table({"ra": [1.0], "de": [2.0]}).write(nodec)
    with pytest.raises(CatalogError, match="nodec.ecsv: reference catalog has no 'dec' column"):
        FileCatalog(nodec)
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not fits at all")
    with pytest.raises(CatalogError, match="junk.fits: cannot read"):
        FileCatalog(junk)
