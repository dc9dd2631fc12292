"""Run-scoped scratch files: cached chip pixel maps and separate-drizzle stacks."""

from __future__ import annotations

import numpy as np
import pytest

from hapdask.drizzle import calc_pixmap
from hapdask.io import open_exposure
from hapdask.mosaic import chip_refs, north_up_grid
from hapdask.mosaic.scratch import Scratch, load_array
from hapdask.mosaic.stages import chip_pixmap
from hapdask.mosaic.tiles import place_chips


def test_save_and_load_regions(tmp_path):
    s = Scratch.create(tmp_path, "out")
    a = np.arange(5 * 7 * 2, dtype=np.float64).reshape(5, 7, 2)
    path = s.save("a", a)
    assert path == s.path("a")
    assert np.array_equal(load_array(path), a)
    assert np.array_equal(load_array(path, (1, 4, 2, 6)), a[1:4, 2:6])
    assert [p.name for p in (tmp_path / s.directory).iterdir()] == ["a.npy"]  # no .part left
    with pytest.raises(ValueError, match="outside"):
        load_array(path, (0, 6, 0, 7))
    s.remove()
    assert not (tmp_path / s.directory).exists()


def test_cached_pixmap_equals_computed(tmp_path):
    """The plan's cached whole-chip map gives, per region, exactly what calc_pixmap gives."""
    from hapdask.simulate import simulate_visits

    sim = simulate_visits("p1889x07y19", tmp_path / "sim", small=True, visits=3)
    path = next(p for p in sim.exposures if p.name.startswith("jf3t03a1q"))
    chips = chip_refs(open_exposure(str(path)), 0)
    grid = north_up_grid([c.wcs() for c in chips], scale=0.04)
    scratch = Scratch.create(tmp_path, "m")
    placed = place_chips(chips, grid, 128, scratch=scratch, tag="t")
    plain = place_chips(chips, grid, 128)
    for chip, pl, ref in zip(chips, placed, plain, strict=True):
        assert pl.pixmap is not None and ref.pixmap is None
        assert pl.boxes == ref.boxes
        for region in [(0, chip.shape[0], 0, chip.shape[1]), (3, 70, 100, 301)]:
            want = calc_pixmap(chip.wcs(), grid.wcs(), chip.shape, region=region)
            got = chip_pixmap(chip, grid.thread_wcs(), region, pl.pixmap)
            assert np.array_equal(got, want, equal_nan=True)
            assert np.array_equal(chip_pixmap(chip, grid.thread_wcs(), region), want,
                                  equal_nan=True)
    scratch.remove()
