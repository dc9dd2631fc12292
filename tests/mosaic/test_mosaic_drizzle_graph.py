"""``drizzle_graph``: jobs merged into one graph (as ``hapdask svm`` does), a placement cache
shared by them, and header space reserved for keywords added to the finished product."""

from __future__ import annotations

import os

import numpy as np
import pytest
from astropy.io import fits

import hapdask.drizzle
from hapdask.io import open_exposure
from hapdask.mosaic import chip_refs, north_up_grid
from hapdask.mosaic.job import drizzle_graph
from hapdask.mosaic.tiles import place_chips
from hapdask.scheduling import local_compute


@pytest.fixture(scope="module")
def acs_exposure(tmp_path_factory):
    from hapdask.simulate import simulate_visits

    sim = simulate_visits("p1889x07y19", tmp_path_factory.mktemp("sim"), small=True, visits=3)
    return str(next(p for p in sim.exposures if p.name.startswith("jf3t03a1q")))


def test_placement_cache_shared_by_products(acs_exposure, monkeypatch):
    """A product placing a chip with the parameters another product used on the same grid
    gets a copy of that placement (no pixel map computed); other parameters place it again.
    Either way the placements are those of an uncached run."""
    chips = chip_refs(open_exposure(acs_exposure), 0)
    grid = north_up_grid([c.wcs() for c in chips], scale=0.05)
    cache: dict = {}
    first = place_chips(chips, grid, 128, placed=cache)
    second = place_chips(chips, grid, 128, placed=cache, pixfrac=0.8)
    plain = place_chips(chips, grid, 128, pixfrac=0.8)
    for b, c in zip(second, plain, strict=True):
        assert b.boxes == c.boxes and b.regions == c.regions

    def fail(*_a, **_k):
        raise AssertionError("pixel map recomputed")

    monkeypatch.setattr(hapdask.drizzle, "calc_pixmap", fail)
    third = place_chips(chips, grid, 128, placed=cache)
    monkeypatch.undo()
    plain = place_chips(chips, grid, 128)
    for a, b, c in zip(first, third, plain, strict=True):
        assert b.boxes == c.boxes and b.regions == c.regions
        assert b is not a and b.boxes is not a.boxes


def test_two_jobs_one_graph_and_reserved_cards(acs_exposure, tmp_path):
    """Two products of the same input and parameters in one graph do not share tasks (each
    file is written), equal SCI; with ``reserve_cards`` keywords added afterwards fill the
    blank cards in place: the file is not rewritten (same inode, same size)."""
    params = {"final_wcs": True, "final_scale": 0.1}  # one exposure: no CR search
    jobs = [drizzle_graph([acs_exposure], tmp_path / name, params=params, reserve_cards=36)
            for name in ("one", "two")]
    graph = {k: v for j in jobs for k, v in j.graph.items()}
    results = local_compute(graph, [j.done for j in jobs])
    for j in jobs:
        j.scratch.remove()
    assert [r.output.name for r in results] == ["one_drc.fits", "two_drc.fits"]
    with fits.open(results[0].output) as a, fits.open(results[1].output) as b:
        assert np.array_equal(a["SCI"].data, b["SCI"].data, equal_nan=True)
        assert np.isfinite(a["SCI"].data).any()
    path = results[0].output
    before = os.stat(path)
    with fits.open(path, mode="update") as hdul:
        for i in range(20):
            hdul[0].header[f"HAPK{i}"] = (float(i), "added after the drizzle")
        hdul["SCI"].header["S_REGION"] = "POLYGON ICRS " + " ".join(["181.0 27.9"] * 12)
    after = os.stat(path)
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size)
    with fits.open(path) as hdul:
        assert hdul[0].header["HAPK19"] == 19.0
        assert hdul["SCI"].header["S_REGION"].startswith("POLYGON ICRS")
