"""``exposures_per_filter`` / ``filters`` of the simulator: N dithered exposures of one filter."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS

from hapdask.cli import main
from hapdask.simulate import SimulationError, dither_pattern, load_set, simulate_visits

CELL = "p1889x07y19"


@pytest.fixture(scope="module")
def quad(tmp_path_factory):
    # visit 3 of the recipe cycle holds ACS/WFC F775W
    return simulate_visits(CELL, tmp_path_factory.mktemp("n4") / "set", visits=3, small=True,
                           seed=2, exposures_per_filter=4, filters=["F775W"])


def test_patterns():
    assert dither_pattern(2) == ((0.0, 0.0), (2.415, 1.575))  # the default pair, unchanged
    assert dither_pattern(2, small=True) == ((0.0, 0.0), (0.62, 0.41))
    line = np.array(dither_pattern(3))
    np.testing.assert_allclose(np.diff(line, axis=0), [[2.415, 1.575]] * 2)
    eight = np.array(dither_pattern(8))
    assert len({tuple(p) for p in eight.round(6)}) == 8  # all positions distinct
    np.testing.assert_allclose(eight[4:] - eight[:4], [[1.2075, 0.7875]] * 4)
    assert dither_pattern(1) == ((0.0, 0.0),)
    with pytest.raises(SimulationError, match="exposures per filter"):
        dither_pattern(0)


def test_n_exposures_on_the_pattern(quad):
    assert len(quad.exposures) == 4 and quad.exposures_per_filter == 4
    assert quad.filters == ("F775W",)
    assert len(set(quad.rootnames)) == 4
    pattern = dither_pattern(4, small=True)
    centres = []
    for p, (dx, dy) in zip(quad.exposures, pattern, strict=True):
        with fits.open(p) as h:
            assert h[0].header["FILTER2"] == "F775W" and h[0].header["EXPTIME"] == 500.0
            assert (h[0].header["POSTARG1"], h[0].header["POSTARG2"]) == (dx, dy)
            w = WCS(h["SCI", 1].header, h)
            centres.append(w.pixel_to_world(255.5, 127.5))
    # the pointings are offset by the pattern (rigid: separation = |offset difference|)
    for k in range(1, 4):
        sep = centres[k].separation(centres[0]).arcsec
        want = math.hypot(pattern[k][0] - pattern[0][0], pattern[k][1] - pattern[0][1])
        assert sep == pytest.approx(want, abs=0.01)
    assert isinstance(centres[0], SkyCoord)


def test_each_exposure_has_its_own_cosmic_rays(quad):
    masks = [fits.getdata(t, 1).astype(bool) for t in quad.crtruth]
    assert all(m.sum() > 50 for m in masks)
    for k in range(1, 4):  # independent events: overlaps only by chance
        assert (masks[0] & masks[k]).sum() < 0.05 * masks[0].sum()


def test_marker_records_the_layout_and_reuse(quad, tmp_path):
    info = json.loads(quad.marker.read_text())
    assert info["params"]["exposures_per_filter"] == 4 and info["params"]["filters"] == ["F775W"]
    again = simulate_visits(CELL, quad.outdir, visits=3, small=True, seed=2,
                            exposures_per_filter=4, filters="F775W")
    assert again.exposures == quad.exposures
    with pytest.raises(FileExistsError, match="different parameters"):
        simulate_visits(CELL, quad.outdir, visits=3, small=True, seed=2, exposures_per_filter=3,
                        filters=["F775W"])
    with pytest.raises(FileExistsError, match="different parameters"):
        simulate_visits(CELL, quad.outdir, visits=3, small=True, seed=2)


@pytest.mark.parametrize("kwargs, match", [
    ({"exposures_per_filter": 0}, "exposures_per_filter must be"),
    ({"exposures_per_filter": 31}, "exposures_per_filter must be"),
    ({"exposures_per_filter": 2.5}, "exposures_per_filter must be"),
    ({"filters": ["F999W"]}, "unknown filter"),
    ({"filters": ["F775W"], "visits": 2}, "no visit of 2"),
])
def test_bad_layout_is_named(tmp_path, kwargs, match):
    with pytest.raises(SimulationError, match=match):
        simulate_visits(CELL, tmp_path / "x", **{"small": True, "visits": 1, **kwargs})
    assert not (tmp_path / "x").exists()
    assert list(tmp_path.iterdir()) == []  # no temporary directory left


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["simulate", CELL, str(out), "--small", "--visits", "3", "--exposures", "3",
                 "--filters", "f775w"]) == 0
    assert "3 exposures in 3 visits" in capsys.readouterr().out
    s = load_set(out)
    assert s.exposures_per_filter == 3 and s.filters == ("F775W",)
    assert len(s.svm_pollers) == 1  # the visits without F775W have no poller
