"""Point and segment catalogs against the simulator's truth (sparse and dense fields).

Figures are printed; run ``PYTHONPATH=$PWD python -m pytest tests/catalogs/test_truth.py -s -q``
to see them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from catalog_truth import (
    FILTERS,
    PSCALE,
    encircled_energy,
    interior,
    make_field,
    nearest,
    single_sources,
    star_snr,
)

from hapdask.catalogs import CatalogParams, make_catalogs
from hapdask.simulate import instruments

PARAMS = CatalogParams.for_detector("acs_wfc")
R2 = PARAMS.aperture_2 / PSCALE


@pytest.fixture(scope="module", params=["field", "dense_field"])
def result(request):
    cats = {"field": "field_catalogs", "dense_field": "dense_catalogs"}[request.param]
    return (request.param, request.getfixturevalue(request.param),
            request.getfixturevalue(cats))


def _robust_sigma(v: np.ndarray) -> float:
    return float(1.482602 * np.median(np.abs(v - np.median(v))))


@pytest.mark.parametrize("fname", FILTERS)
def test_point_catalog_vs_truth(result, fname):
    name, fld, res = result
    truth = fld.truth
    cat = res.point_filters[fname]  # filter catalogs are not trimmed: every detection
    snr = star_snr(truth, fname, R2)
    stars = (np.asarray(truth["type"]) == "star") & interior(truth)
    assert (stars & (snr > 50)).sum() >= 10
    # HAP's PSF star finder searches the footprint eroded by the catalog erosion (10 px) and
    # again by its peak box (``region_size``, 11 px; DrizzlePac ``find_point_sources``):
    # completeness is measured there
    margin = PARAMS.footprint_erosion + PARAMS.region_size
    bright = stars & interior(truth, margin=margin) & (snr > 50)
    idx, dist = nearest(truth, cat["X-Center"], cat["Y-Center"])
    found = bright & (dist < 2.0)
    completeness = found.sum() / bright.sum()
    pos_mas = float(np.median(dist[found]) * PSCALE * 1000.0)
    # truth inside aperture 2: flux x encircled energy of the (pixel-integrated) PSF
    expected = np.asarray(truth[f"mag_{fname.lower()}"]) - 2.5 * math.log10(encircled_energy(R2))
    dmag = np.asarray(cat["MagAp2"])[idx[found]] - expected[found]
    scatter = _robust_sigma(dmag)
    print(f"\n[{name} {fname}] stars S/N>50: {bright.sum()}, found {found.sum()} "
          f"({100 * completeness:.1f} %), median position error {pos_mas:.2f} mas, "
          f"MagAp2 - truth: median {np.median(dmag):+.4f}, robust scatter {scatter:.4f} mag")
    assert completeness >= 0.90
    assert pos_mas <= 10.0
    assert scatter <= 0.05
    assert abs(np.median(dmag)) <= 0.03


def test_segment_catalog_vs_truth(result):
    name, fld, res = result
    truth = fld.truth
    cat = res.segmentation.catalog
    galaxies = (np.asarray(truth["type"]) == "galaxy") & interior(truth)
    _, dist = nearest(truth, cat["X-Centroid"], cat["Y-Centroid"])
    mag = np.asarray(truth["mag_f775w"])
    rows = []
    for lo, hi in ((18.0, 23.0), (23.0, 24.0), (24.0, 25.0), (25.0, 26.0), (26.0, 27.0)):
        sel = galaxies & (mag >= lo) & (mag < hi)
        hit = sel & (dist < 4.0)  # centroid within 0.2"
        rows.append((lo, hi, int(sel.sum()), int(hit.sum())))
    print(f"\n[{name}] segment galaxies recovered (F775W mag bin: n, found): "
          + ", ".join(f"{lo:g}-{hi:g}: {n}, {k}" for lo, hi, n, k in rows)
          + f"; kernel {res.segmentation.kernel}, big island {res.segmentation.big_island}")
    bright = galaxies & (mag < 24.0)
    assert bright.sum() >= 5
    assert (bright & (dist < 4.0)).sum() >= 0.9 * bright.sum()
    # faint galaxies are found less often than bright ones (completeness falls with magnitude)
    assert rows[-1][3] / max(rows[-1][2], 1) < 0.9


def test_segment_measurements_of_a_galaxy():
    """One large exponential galaxy: segment flux, centroid, orientation and elongation vs the
    truth profile."""
    gal = {"x": 200.3, "y": 190.6, "type": "galaxy", "mag": 20.5, "sersic_n": 1.0,
           "r_eff": 0.5, "axis_ratio": 0.5, "pa": 30.0}
    star = {"x": 80.0, "y": 300.0, "type": "star", "mag": 21.0}
    fld = make_field(seed=5, cat=single_sources([gal, star]))
    res = make_catalogs(fld.total, fld.filters, PARAMS)
    cat = res.segment_filters["F775W"]
    k = int(np.argmin(np.hypot(cat["X-Centroid"] - gal["x"], cat["Y-Centroid"] - gal["y"])))
    zp = instruments.FILTERS[("acs_wfc", "F775W")].zp_ab
    ratio = cat["FluxSegment"][k] / 10 ** (-0.4 * (gal["mag"] - zp))
    theta = math.degrees(cat["Theta"][k])
    expected_theta = (gal["pa"] + 90.0 + 90.0) % 180.0 - 90.0  # PA east of north -> from +x
    print(f"\n[galaxy] FluxSegment/truth {ratio:.3f}, centroid offset "
          f"{math.hypot(cat['X-Centroid'][k] - gal['x'], cat['Y-Centroid'][k] - gal['y']):.3f} px,"
          f" Theta {theta:.1f} deg (truth {expected_theta:.1f}), elongation "
          f"{cat['Elongation'][k]:.2f} (truth 1/q = {1 / gal['axis_ratio']:.2f})")
    # the 3-sigma isophote misses the faint wings (a few %); HAP's low background adds a little
    assert 0.85 < ratio < 1.05
    assert math.hypot(cat["X-Centroid"][k] - gal["x"], cat["Y-Centroid"][k] - gal["y"]) < 0.5
    assert abs(theta - expected_theta) < 5.0
    assert abs(cat["Elongation"][k] - 1 / gal["axis_ratio"]) < 0.25
    assert cat["Flags"][k] & 1  # extended
    assert cat["Area"][k] > 200
