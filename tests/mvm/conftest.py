"""Session fixtures of the MVM tests: one small simulated visit set and one baseline run."""

from __future__ import annotations

import warnings

import pytest

from hapdask import testing

SKYCELL = "p1889x07y19"
BASE_TILE = 512


@pytest.fixture(scope="session")
def sim(tmp_path_factory):
    """The small simulated set (4 visits, WFC3/UVIS, WFC3/IR, ACS/WFC sub-array chips)."""
    from hapdask.simulate import simulate_visits

    return simulate_visits(SKYCELL, tmp_path_factory.mktemp("sim") / "set", small=True)


@pytest.fixture(scope="session")
def true_wcs(sim):
    """``(rootname, extver) -> Header`` of the simulator's true WCS (stands in for alignment)."""
    from hapdask.simulate import read_true_wcs

    return read_true_wcs(sim.true_wcs)


@pytest.fixture(scope="session")
def verdicts(sim):
    """The MVM analyze verdicts of the set, computed once (the guiding test reads pixels)."""
    from hapdask.mvm.planning import analyze_one

    return {str(p): analyze_one(str(p)) for p in sim.exposures}


@pytest.fixture(scope="session")
def baseline(sim, true_wcs, verdicts, tmp_path_factory):
    """One complete run (one local thread, FITS + zarr, tiles of 512): the reference output."""
    from hapdask.mvm import run

    out = tmp_path_factory.mktemp("baseline")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = run(SKYCELL, str(sim.mvm_poller), output=out, tile_size=BASE_TILE,
                     wcs_updates=true_wcs, threads_per_worker=1, log=lambda m: None,
                     verdicts=verdicts)
    return result, out


@pytest.fixture(scope="session")
def sky_pixel_area():
    """``f(wcs, x, y) -> true pixel area (arcsec^2)``: an independent pixel-area map (physics)."""
    return testing.sky_pixel_area
