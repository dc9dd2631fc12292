"""s_region (STC-S) parsing: several polygons, frames, malformed strings."""

from __future__ import annotations

import numpy as np
import pytest

from hapdask.archive import format_s_region, parse_s_region, parse_s_regions


def test_several_polygons_and_frames():
    text = ("POLYGON ICRS 10.0 -5.0 10.1 -5.0 10.1 -4.9 10.0 -4.9 "
            "Polygon J2000 359.99 1.0 0.02 1.0 0.02 1.05 "
            "POLYGON 20 20 20.1 20 20.1 20.1 20 20.1 20 20")
    polys = parse_s_region(text)
    assert [len(p) for p in polys] == [4, 3, 4]  # closing vertex of the last one dropped
    np.testing.assert_allclose(polys[0][2], [10.1, -4.9])
    np.testing.assert_allclose(polys[1][0], [359.99, 1.0])
    # FK5 with a reference position and parentheses (STC-S flavours MAST emits)
    (p,) = parse_s_region("POLYGON FK5 GEOCENTER (-1.0 2.0 1.0 2.0 1.0 3.0)")
    np.testing.assert_allclose(p[:, 0], [359.0, 1.0, 1.0])  # RA wrapped into [0, 360)


def test_format_reads_back():
    # two chips' outlines, one crossing RA 0: the written string parses back to the vertices to
    # the requested decimal places, in the STC-S form HAP products carry
    polys = [np.array([[359.99, -5.0], [0.01, -5.0], [0.01, -4.9]]),
             np.array([[10.123456789, 20.5], [10.2, 20.5], [10.2, 20.6], [10.1, 20.6]])]
    text = format_s_region(polys, digits=7)
    assert text.startswith("POLYGON ICRS 359.9900000 -5.0000000 ")
    assert text.count("POLYGON ICRS") == 2
    back = parse_s_region(text)
    for a, b in zip(back, polys, strict=True):
        np.testing.assert_allclose(a, b, atol=5e-8, rtol=0)
    assert abs(back[1][0, 0] - 10.123456789) > 1e-9  # rounded to 7 places, not more


@pytest.mark.parametrize("text, match", [
    ("", "empty"),
    ("CIRCLE ICRS 10 10 0.1", "CIRCLE is not supported"),
    ("POLYGON GALACTIC 10 10 11 10 11 11", "GALACTIC is not supported"),
    ("POLYGON ICRS 10 10 11 10 11", "odd number"),
    ("POLYGON ICRS 10 10 11 10", "needs at least 3"),
    ("POLYGON ICRS 10 10 11 10 11 95", "declination"),
    ("POLYGON ICRS 10 10 11 1x0 11 11", "not a number"),
    ("POLYGON ICRS 10 10 11 10 11 11 BANANA 3", "BANANA"),
    ("BOX ICRS 10 10 1 1", "BOX is not supported"),
])
def test_malformed(text, match):
    with pytest.raises(ValueError, match=match):
        parse_s_region(text)
    bulk = parse_s_regions(["POLYGON ICRS 1 1 2 1 2 2", text])
    assert list(bulk.bad) == [1]
    assert bulk.owner.tolist() == [0]


def test_bulk_matches_single():
    texts = ["POLYGON ICRS 1 1 2 1 2 2", None,
             "POLYGON ICRS 5 5 6 5 6 6 5 6 POLYGON ICRS 7 7 8 7 8 8",
             "POLYGON ICRS nan 1 2 1 2 2"]
    bulk = parse_s_regions(texts)
    assert sorted(bulk.bad) == [1, 3]
    assert bulk.owner.tolist() == [0, 2, 2]
    assert bulk.sizes.tolist() == [3, 4, 3]
    first = np.concatenate([[0], np.cumsum(bulk.sizes)])
    for k, row in enumerate(bulk.owner.tolist()):
        single = parse_s_region(texts[row])
        idx = k - bulk.owner.tolist().index(row)
        np.testing.assert_array_equal(bulk.radec[first[k]:first[k + 1]], single[idx])
