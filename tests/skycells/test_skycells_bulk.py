"""skycells.bulk.cells_for_polygons against skycells.cells_for_footprint, polygon by polygon."""

from __future__ import annotations

import numpy as np
import pytest

from hapdask.archive.synthetic import _tangent_to_radec
from skycells import cells_for_footprint
from skycells.bulk import cells_for_polygons, skycell_names


def _polygons(rng, n):
    """Polygons of 3..7 vertices, 10"..0.3 deg across, uniform on the sphere plus the poles."""
    out = []
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    dec[:10] = np.where(np.arange(10) % 2, 89.995, -89.995)
    for a, d in zip(ra, dec, strict=True):
        k = int(rng.integers(3, 8))
        ang = np.sort(rng.uniform(0, 2 * np.pi, k))
        r = rng.uniform(10, 1000) / 3600.0
        ra_v, dec_v = _tangent_to_radec(np.full(k, a), np.full(k, d), r * np.cos(ang),
                                        r * np.sin(ang))
        out.append(np.column_stack([ra_v, dec_v]))
    return out


def test_same_cells_as_cells_for_footprint():
    rng = np.random.default_rng(7)
    polys = _polygons(rng, 300)
    sizes = np.array([len(p) for p in polys])
    hits = cells_for_polygons(np.concatenate(polys), sizes)
    assert hits.bad.size == 0
    names = skycell_names(hits.code)
    for i, p in enumerate(polys):
        assert set(names[hits.polygon == i]) == set(cells_for_footprint(p)), i
    # the boxes are inside the SkyCells (0-based fine pixels, clipped)
    assert (hits.box[:, 0] >= -0.5).all() and (hits.box[:, 1] <= 21954 - 0.5).all()


def test_too_large_and_bad_input():
    big = np.array([[0.0, -10.0], [120.0, -10.0], [240.0, -10.0]])  # 80 deg from its centre
    small = np.array([[10.0, 10.0], [10.01, 10.0], [10.01, 10.01]])
    hits = cells_for_polygons(np.stack([big, small]))
    assert hits.bad.tolist() == [0]
    assert set(skycell_names(hits.code)) == set(cells_for_footprint(small))
    with pytest.raises(ValueError, match="declination"):
        cells_for_polygons(np.array([[[0, 91.0], [1, 0], [2, 0]]]))
    with pytest.raises(ValueError, match="shape"):
        cells_for_polygons(np.zeros((3, 2, 2)))
