"""hapdask plan: assignments against skycells.cells_for_footprint (the oracle), bad rows, files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hapdask.archive import assign, plan_archive, read_inventory, read_plan, write_inventory
from hapdask.archive.synthetic import DETECTORS, chip_polygons, synthetic_inventory
from hapdask.cli import main as cli_main
from hapdask.io import read_poller
from skycells import cells_for_footprint
from skycells._grid import grid


def _inventory(seed: int = 3) -> pd.DataFrame:
    """Exposures at the poles, across RA = 0/360, on ring DEC_MIN/DEC_MAX edges and at random."""
    rng = np.random.default_rng(seed)
    g = grid()
    edges = np.concatenate([g.dec_min, g.dec_max])
    edges = edges[np.abs(edges) < 89.9]
    wrap_dec = rng.uniform(-80, 80, 40)
    nband = g.nband[np.argmin(np.abs(wrap_dec[:, None] - g.dec[None, :]), axis=1)]
    ra = np.concatenate([
        rng.uniform(0, 360, 30),                          # polar caps
        rng.uniform(-0.05, 0.05, 20) % 360.0,             # across RA = 0/360
        360.0 - 180.0 / nband[20:] + rng.uniform(-0.05, 0.05, 20),  # last cell <-> cell 0
        rng.uniform(0, 360, 60),                          # ring edges
        rng.uniform(0, 360, 70),                          # anywhere
    ])
    dec = np.concatenate([
        np.where(rng.random(30) < 0.5, -1, 1) * rng.uniform(89.9, 90.0, 30),
        wrap_dec,
        rng.choice(edges, 60) + rng.normal(0, 0.02, 60),
        np.degrees(np.arcsin(rng.uniform(-1, 1, 70))),
    ])
    dec = np.clip(dec, -89.999, 89.999)
    names = list(DETECTORS)
    rows = []
    for k, (a, d) in enumerate(zip(ra, dec, strict=True)):
        inst = names[k % 3]
        polys = chip_polygons(np.array([a]), np.array([d]), rng.uniform(0, 360, 1),
                              DETECTORS[inst][1])[0]
        s = " ".join("POLYGON ICRS " + " ".join(f"{v:.9f}" for v in p.ravel()) for p in polys)
        rows.append({"obs_id": f"i{k:07d}q", "instrument_name": inst,
                     "filters": DETECTORS[inst][0][0], "s_region": s, "t_exptime": 100.0,
                     "path": f"/data/i{k:07d}q_flt.fits"})
    return pd.DataFrame(rows)


def _oracle(s_region: str) -> set[str]:
    from hapdask.archive import parse_s_region

    return set(cells_for_footprint(parse_s_region(s_region)))


def test_plan_matches_cells_for_footprint(tmp_path):
    inv = _inventory()
    write_inventory(inv, tmp_path / "inv.parquet")
    plan = plan_archive(read_inventory(tmp_path / "inv.parquet"), tmp_path / "plan",
                        num_workers=1, log=lambda m: None)
    got = plan.assignments.groupby("obs_id")["skycell"].apply(set).to_dict()
    for row in inv.itertuples():
        assert got[row.obs_id] == _oracle(row.s_region), row.obs_id
    # polar caps land on the pole cells; the RA-0 rows include cells of both sides of the wrap
    assert plan.assignments["skycell"].str.startswith(("skycell-p0000", "skycell-p2643")).any()
    wrap = plan.assignments[plan.assignments["obs_id"].isin(inv.obs_id[30:70])]
    k = wrap["skycell"].str.slice(9, 13).astype(int).to_numpy()
    ring = grid().ring_of[k]
    first = grid().projcell[ring]
    last = first + grid().nband[ring] - 1
    assert (k == first).any() and (k == last).any()
    # per-SkyCell table agrees with the assignments
    counts = plan.assignments.groupby("skycell").size()
    sc = plan.skycells.set_index("skycell")
    assert (sc.loc[counts.index, "exposures"].to_numpy() == counts.to_numpy()).all()
    assert (sc["cost_s"] > 0).all() and sc["cost_s"].is_monotonic_decreasing


def test_partitioning_does_not_change_the_result():
    inv = synthetic_inventory(400, seed=5)
    one = assign(inv.s_region.tolist(), num_workers=1)
    many = assign(inv.s_region.tolist(), num_workers=2, partition=37, scheduler="threads")
    np.testing.assert_array_equal(one.row, many.row)
    np.testing.assert_array_equal(one.code, many.code)
    np.testing.assert_array_equal(one.box, many.box)


def test_bad_rows_reported_and_skipped(tmp_path, capsys):
    inv = _inventory().iloc[:12].copy()
    inv.loc[2, "s_region"] = "POLYGON ICRS 10 10 11"
    inv.loc[5, "instrument_name"] = "NICMOS/NIC3"
    inv.loc[7, "s_region"] = "CIRCLE ICRS 10 10 0.1"
    inv.to_csv(tmp_path / "inv.csv", index=False)
    code = cli_main(["plan", str(tmp_path / "inv.csv"), "--output", str(tmp_path / "plan"),
                     "--workers", "1", "--pollers"])
    assert code == 0
    err = capsys.readouterr().err
    assert "row 3 " in err and "row 6 " in err and "row 8 " in err and "NICMOS/NIC3" in err
    plan = read_plan(tmp_path / "plan")
    rej = pd.read_csv(tmp_path / "plan" / "rejected.csv")
    assert rej["row"].tolist() == [3, 6, 8]
    assert set(plan.exposures["obs_id"]) == set(inv.obs_id) - set(inv.obs_id[[2, 5, 7]])
    # pollers: one per SkyCell, readable MVM pollers naming the exposures of that SkyCell
    for name, grp in plan.assignments.groupby("skycell"):
        table = read_poller(tmp_path / "plan" / "pollers" / f"{name}_input.out")
        assert table.meta["poller_type"] == "mvm"
        assert set(table["skycell_id"]) == {name}
        assert sorted(table["pathname"]) == sorted(plan.inputs(name))
        assert len(table) == len(grp)
    # an existing plan is not overwritten
    assert cli_main(["plan", str(tmp_path / "inv.csv"), "--output",
                     str(tmp_path / "plan")]) == 1


def test_ecsv_and_missing_column(tmp_path):
    inv = _inventory().iloc[:5].copy()
    inv.loc[1, "path"] = "sub/x_flt.fits"
    inv.loc[2, "path"] = "s3://stpubdata/hst/public/x_flt.fits"
    write_inventory(inv, tmp_path / "inv.ecsv")
    back = read_inventory(tmp_path / "inv.ecsv")
    assert len(back) == 5
    # relative paths are relative to the inventory file; URLs and absolute paths unchanged
    assert back["path"].tolist()[:3] == [inv.path[0], str(tmp_path / "sub" / "x_flt.fits"),
                                         inv.path[2]]
    # a directory that is not a plan is never replaced
    (tmp_path / "notaplan").mkdir()
    with pytest.raises(FileExistsError, match="not a hapdask plan"):
        plan_archive(back, tmp_path / "notaplan", overwrite=True, num_workers=1)
    inv.drop(columns=["s_region"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="lacks column"):
        read_inventory(tmp_path / "bad.csv")
