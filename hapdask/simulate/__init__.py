"""Realistic simulated HST visits with known truth, and the built-in demo data.

Public API::

    simulate_visits(skycell, outdir, *, visits=4, small=False, seed=0, star_density=None,
                    exposures_per_filter=None, filters=None) -> SimulatedSet
    dither_pattern(n, small=False) -> ((dx, dy), ...)   # arcsec, HAP-like line/box patterns
    demo_dataset(skycell="p1889x07y19", cache_dir=None) -> SimulatedSet
    load_set(outdir) -> SimulatedSet
    read_true_wcs(path) -> dict[(rootname, extver), astropy.io.fits.Header]
    true_chip_wcs(exposure, extver, true_headers) -> astropy.wcs.WCS

A set holds WFC3/UVIS and ACS/WFC ``_flc.fits`` and WFC3/IR ``_flt.fits`` files built from real
instrument headers and distortion (SIP + NPOL/D2IM lookup tables), SVM pollers (one per visit),
an MVM poller, a truth catalog (ECSV; also usable as the astrometric reference catalog), the
true WCS of every chip and the cosmic-ray truth of every exposure (``<rootname>_crtruth.fits``,
``SimulatedSet.crtruth``: one uint8 ``CRMASK`` HDU per SCI chip, 1 = cosmic ray). The file
headers carry the *uncorrected* pointing; the pixels follow the true one. Using the true WCS as
the "WCS update" of a chip (the stand-in for SVM alignment)::

    s = demo_dataset()
    true = read_true_wcs(s.true_wcs)
    wcs = true_chip_wcs(s.exposures[0], 1, true)      # full distortion, true pointing

See :mod:`hapdask.simulate.core` for the file layout and overwrite rules,
:mod:`hapdask.simulate.instruments` for the instrument constants and :mod:`hapdask.simulate.sky`
for the catalog.
"""

from hapdask.simulate.core import (
    SimulatedSet,
    SimulationError,
    default_demo_dir,
    demo_dataset,
    dither_pattern,
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
    "dither_pattern",
    "load_set",
    "read_true_wcs",
    "simulate_visits",
    "skycell_center",
    "true_chip_wcs",
]
