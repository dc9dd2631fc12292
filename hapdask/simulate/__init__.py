"""Realistic simulated HST visits with known truth, and the built-in demo data.

Public API::

    simulate_visits(skycell, outdir, *, visits=4, small=False, seed=0) -> SimulatedSet
    demo_dataset(skycell="p1889x07y19", cache_dir=None) -> SimulatedSet
    load_set(outdir) -> SimulatedSet
    read_true_wcs(path) -> dict[(rootname, extver), astropy.io.fits.Header]
    true_chip_wcs(exposure, extver, true_headers) -> astropy.wcs.WCS

See :mod:`hapdask.simulate.core` for what a set contains.
"""

from hapdask.simulate.core import (
    SimulatedSet,
    SimulationError,
    default_demo_dir,
    demo_dataset,
    load_set,
    read_true_wcs,
    simulate_visits,
    skycell_center,
    true_chip_wcs,
)

__all__ = [
    "SimulatedSet",
    "SimulationError",
    "default_demo_dir",
    "demo_dataset",
    "load_set",
    "read_true_wcs",
    "simulate_visits",
    "skycell_center",
    "true_chip_wcs",
]
