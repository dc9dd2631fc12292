"""ProjectionCell / SkyCell WCS arithmetic (skycells.md sections 1-3) and naming (section 4)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from skycells import (
    ProjectionCell,
    SkyCell,
    has_coarse_layer,
    layer_filename,
    normalize_filter,
)

NBAND = [1, 9, 15, 21, 27, 33, 39, 45, 50, 55, 60, 64, 68, 72, 76, 79, 82, 84, 86, 88, 89, 89,
         90, 90, 89, 89, 88, 86, 84, 82, 79, 76, 72, 68, 64, 60, 55, 50, 45, 39, 33, 27, 21, 15,
         9, 1]  # fmt: skip


def test_documented_p1889x07y19_fine():
    c = SkyCell.from_name("skycell-p1889x07y19")
    assert c.name == "skycell-p1889x07y19"
    assert (c.projection_cell.index, c.x, c.y, c.scale) == (1889, 7, 19, 0.04)
    w = c.wcs
    assert tuple(w.wcs.crval) == (180.0, 26.0)
    assert tuple(w.wcs.crpix) == (96492.0, -160812.0)
    assert w.wcs.cd[0, 0] == -1.1111111111111112e-05
    assert w.wcs.cd[1, 1] == 1.1111111111111112e-05
    assert w.wcs.cd[0, 1] == 0.0 and w.wcs.cd[1, 0] == 0.0
    assert tuple(w.pixel_shape) == (21954, 21954)
    assert c.shape == (21954, 21954)
    assert list(w.wcs.ctype) == ["RA---TAN", "DEC--TAN"]
    pc = c.projection_cell
    assert pc.ring == 29 and pc.ring_index == 41
    assert pc.crpix == (225144.0, 225144.0)
    assert tuple(pc.wcs.pixel_shape) == (450287, 450287)


def test_documented_p1889x07y19_coarse():
    c = SkyCell.from_name("p1889x07y19", scale="coarse")
    w = c.wcs
    assert c.scale == 0.12
    assert tuple(w.wcs.crpix) == (32164.000000000004, -53604.00000000001)
    assert tuple(w.pixel_shape) == (7318, 7318)
    assert w.wcs.cd[0, 0] == -3.333333333333333e-05
    assert w.wcs.cd[1, 1] == 3.333333333333333e-05
    assert tuple(w.wcs.crval) == (180.0, 26.0)
    # a genuinely fractional coarse CRPIX
    assert SkyCell(1889, 2, 19, scale="coarse").crpix[0] == 67900.66666666667


def test_float_scale_and_same_cell_equality():
    a = SkyCell(1889, 7, 19, scale=0.04)
    assert a == SkyCell.from_name("p1889x07y19")
    b = SkyCell(ProjectionCell(1889), 7, 19, scale="0.08")
    assert b.shape == (10977, 10977)
    assert b.crpix == (48246.0, -80406.0)


def test_wcs_is_new_object_each_access():
    c = SkyCell.from_name("p1889x07y19")
    w1 = c.wcs
    w1.wcs.crpix = [0.0, 0.0]
    assert tuple(c.wcs.wcs.crpix) == (96492.0, -160812.0)
    assert c.wcs is not c.wcs


def test_ring_first_and_last_projection_cells(shared_data):
    tab = fits.getdata(shared_data / "allsky_cells.fits", 1)
    assert list(tab["NBAND"]) == NBAND
    assert sum(NBAND) == 2644
    first = 0
    for r, n in enumerate(NBAND):
        dec = float(tab["DEC"][r])
        p0 = ProjectionCell(first)
        assert (p0.ring, p0.ring_index) == (r, 0)
        assert p0.crval == (0.0, dec)
        p1 = ProjectionCell(first + n - 1)
        assert (p1.ring, p1.ring_index) == (r, n - 1)
        assert p1.crval == (((n - 1) * 360.0) / n, dec)
        w = p1.wcs
        assert tuple(w.wcs.crpix) == (225144.0, 225144.0)
        assert tuple(w.pixel_shape) == (450287, 450287)
        assert w.wcs.cd[0, 0] == -0.04 / 3600.0
        first += n
    assert ProjectionCell(0).crval == (0.0, -89.999999999997)
    assert ProjectionCell(2643).crval == (0.0, 89.999999999997)
    assert ProjectionCell(1889).crval == (180.0, 26.0)  # 41 * 360 / 82


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ("p1889x22y19", "x index 22 is out of range 1..21"),
        ("p1889x07y00", "y index 0 is out of range 1..21"),
        ("p2644x01y01", "projection cell 2644 is out of range 0..2643"),
        ("skycell_p1889x07y19", "malformed SkyCell name"),
        ("p1889x7y19", "malformed SkyCell name"),
        ("p1889x07y19z", "malformed SkyCell name"),
        ("", "malformed SkyCell name"),
    ],
)
def test_bad_names(bad, match):
    with pytest.raises(ValueError, match=match):
        SkyCell.from_name(bad)


def test_bad_indices_and_scales():
    with pytest.raises(ValueError, match="out of range 0..2643"):
        ProjectionCell(-1)
    with pytest.raises(ValueError, match="must be an integer"):
        ProjectionCell(3.0)
    with pytest.raises(ValueError, match="x index 0"):
        SkyCell(5, 0, 3)
    with pytest.raises(ValueError, match="invalid scale"):
        SkyCell(5, 1, 3, scale="medium")
    with pytest.raises(ValueError, match="positive"):
        SkyCell(5, 1, 3, scale=-0.1)


@pytest.mark.parametrize("p", [0, 1, 1889, 2643])
def test_neighbours_overlap_by_512_fine_pixels(p):
    """x and y neighbours share exactly a 512-pixel strip (one-sided overlap)."""
    for (x, y), (x2, y2), axis in [((7, 5), (8, 5), 0), ((7, 5), (7, 6), 1)]:
        a = SkyCell(p, x, y)
        b = SkyCell(p, x2, y2)
        wa, wb = a.wcs, b.wcs
        n = a.shape[1 - axis]
        # 0-based pixels of a along the shared axis: a's pixel k sits on b's pixel k - 21442
        k = np.array([21442.0, 21953.0, 10000.0])
        other = np.full(3, 777.0)
        px, py = (k, other) if axis == 0 else (other, k)
        ra, dec = wa.wcs_pix2world(px, py, 0)
        bx, by = wb.wcs_world2pix(ra, dec, 0)
        got = bx if axis == 0 else by
        np.testing.assert_allclose(got, k - 21442.0, atol=1e-6)
        # a's pixels 21442..21953 (512 of them) are b's 0..511: b's pixel 0 lies in a's last 512
        assert n - 21442 == 512
    # the last cell ends 507 px beyond the pcell's last column
    last = SkyCell(p, 21, 21)
    ra, dec = last.wcs.wcs_pix2world([21953.0], [21953.0], 0)
    px, py = ProjectionCell(p).wcs.wcs_world2pix(ra, dec, 0)
    np.testing.assert_allclose([px[0], py[0]], [450286 + 507, 450286 + 507], atol=1e-4)
    first = SkyCell(p, 1, 1)
    ra, dec = first.wcs.wcs_pix2world([0.0], [0.0], 0)
    px, py = ProjectionCell(p).wcs.wcs_world2pix(ra, dec, 0)
    np.testing.assert_allclose([px[0], py[0]], [0.0, 0.0], atol=1e-4)


def test_corners_are_pixel_edges():
    c = SkyCell.from_name("p1889x07y19")
    ra, dec = c.wcs.wcs_pix2world([-0.5], [-0.5], 0)
    np.testing.assert_allclose(c.corners[0], [ra[0], dec[0]], rtol=0, atol=1e-12)
    # x grows west: the x-max corners have smaller RA; y grows north
    assert c.corners[1, 0] < c.corners[0, 0]
    assert c.corners[3, 1] > c.corners[0, 1]
    pole = SkyCell(0, 1, 1)
    assert 130 < pole.corners[0, 0] < 140  # fixed by the RA = 0 meridian (skycells.md)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("F160W", "f160w"),
        ("F850LP;CLEAR2L", "f850lp"),
        ("CLEAR1L;F435W", "f435w"),
        (("F606W", "POL60V"), "f606w-pol60v"),
        (("POL0UV", "F330W"), "f330w-pol0uv"),
        ("CLEAR1L;CLEAR2S", "clear"),
        ("F122M;N/A", "f122m"),
        ("F115LP;N/A;BOGUS", "f115lp"),
        ("F502N;F658N", "f502n-f658n"),
        (["N/A", None], "clear"),
    ],
)
def test_normalize_filter(spec, expected):
    assert normalize_filter(spec) == expected


def test_layer_filename():
    assert (
        layer_filename("p1889x07y19", "WFC3", "IR", "F160W", "coarse", False)
        == "hst_skycell-p1889x07y19_wfc3_ir_f160w_coarse-all_drz.fits"
    )
    assert (
        layer_filename(SkyCell.from_name("p1889x07y19"), "WFC3", "IR", "F160W", "fine", False)
        == "hst_skycell-p1889x07y19_wfc3_ir_f160w_all_drz.fits"
    )
    assert (
        layer_filename("skycell-p1889x07y19", "ACS", "WFC", "F775W;CLEAR2L", "fine", True)
        == "hst_skycell-p1889x07y19_acs_wfc_f775w_all_drc.fits"
    )
    assert (
        layer_filename("p0001x01y01", "WFPC2", "PC", "F606W", 0.12, False)
        == "hst_skycell-p0001x01y01_wfpc2_pc_f606w_coarse-all_drz.fits"
    )
    with pytest.raises(ValueError, match="no coarse layer"):
        layer_filename("p1889x07y19", "ACS", "WFC", "F606W", "coarse", True)
    with pytest.raises(ValueError, match="malformed"):
        layer_filename("p1889", "ACS", "WFC", "F606W", "fine", True)


def test_has_coarse_layer():
    assert has_coarse_layer("WFC3", "IR")
    assert has_coarse_layer("wfpc2", "pc")
    assert not has_coarse_layer("WFC3", "UVIS")
    assert not has_coarse_layer("ACS", "WFC")
    assert not has_coarse_layer("WFPC2", "WF3")
