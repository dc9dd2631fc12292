"""cells_for_footprint and bounded_wcs against an independent brute-force computation.

The oracle samples the footprint's pixel AREA densely, maps the samples to the sky with astropy
(full distortion), then into every nearby projection cell with astropy's own TAN WCS, and
records which skycell rectangles contain samples. Every cell holding a sample strictly inside
must be found; every cell found must come within the sample spacing of some sample.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from skycells import ProjectionCell, SkyCell, bounded_wcs, cells_for_footprint
from skycells._grid import grid

STEP, SIZE = 21442, 21954
_PCW: dict[int, WCS] = {}


def tan_wcs(ra, dec, nx, ny, scale, rot=0.0):
    """A plain TAN WCS, scale in arcsec/pixel, rotated by ``rot`` degrees."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    s = scale / 3600.0
    c, si = math.cos(math.radians(rot)), math.sin(math.radians(rot))
    w.wcs.cd = np.array([[-s * c, s * si], [s * si, s * c]])
    w.pixel_shape = (nx, ny)
    return w


def samples(wcss, n=120):
    """Dense RA/Dec samples of the chips' pixel areas (edges at -0.5 and n-0.5 included)."""
    out = []
    for w in wcss:
        nx, ny = w.pixel_shape
        gx, gy = np.meshgrid(np.linspace(-0.5, nx - 0.5, n), np.linspace(-0.5, ny - 0.5, n))
        ra, dec = w.all_pix2world(gx.ravel(), gy.ravel(), 0)
        out.append(np.column_stack([ra, dec]))
    return np.concatenate(out)


def brute_cells(radec, tol):
    """Skycell names containing a sample, the rectangles grown by ``tol`` fine pixels."""
    pts = SkyCoord(radec[:, 0], radec[:, 1], unit="deg")
    centre = SkyCoord(*np.degrees(_mean_dir(radec)), unit="deg")
    radius = centre.separation(pts).deg.max()
    g = grid()
    pc = SkyCoord(g.crval[:, 0], g.crval[:, 1], unit="deg")
    cand = np.nonzero(centre.separation(pc).deg < radius + 3.6)[0]
    names = set()
    for p in cand:
        w = _PCW.setdefault(int(p), ProjectionCell(int(p)).wcs)
        x, y = w.wcs_world2pix(radec[:, 0], radec[:, 1], 0)
        for i in range(21):
            inx = (x >= i * STEP - 0.5 - tol) & (x <= i * STEP + SIZE - 0.5 + tol)
            if not inx.any():
                continue
            for j in range(21):
                iny = (y >= j * STEP - 0.5 - tol) & (y <= j * STEP + SIZE - 0.5 + tol)
                if (inx & iny).any():
                    names.add(f"skycell-p{p:04d}x{i + 1:02d}y{j + 1:02d}")
    return names


def _mean_dir(radec):
    ra, dec = np.radians(radec[:, 0]), np.radians(radec[:, 1])
    v = np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)]).sum(0)
    return np.arctan2(v[1], v[0]), np.arctan2(v[2], np.hypot(v[0], v[1]))


def check_against_brute(wcss, n=120):
    got = cells_for_footprint(wcss)
    assert got == sorted(got)
    assert len(got) == len(set(got))
    rad = samples(wcss, n)
    spacing = max(max(w.pixel_shape) / (n - 1) * w.proj_plane_pixel_scales()[0].value * 3600
                  / 0.04 for w in wcss)
    inner = brute_cells(rad, -1e-6)
    outer = brute_cells(rad, 1.5 * spacing + 1e-6)
    assert inner <= set(got), f"missed {sorted(inner - set(got))}"
    assert set(got) <= outer, f"spurious {sorted(set(got) - outer)}"
    return got


# ---------------------------------------------------------------- footprints at special places

CASES = {
    # RA = 0/360 seam, equator ring 22/23 and ring 29 (drizzlepac's low-side clamp zone)
    "ra0-dec26": (359.999, 26.0, 0.0),
    "ra358.1-dec26": (358.1, 26.0, 30.0),
    "ra0.005-dec-87": (0.005, -87.0, 0.0),  # drizzlepac misses p0009 here
    "ra0-equator": (0.0, 0.0, 45.0),
    "ra359.99-dec2": (359.99, 2.0, 10.0),
    # poles
    "north-pole": (0.0, 90.0, 0.0),
    "south-pole": (123.0, -90.0, 17.0),
    "near-north-pole": (250.0, 89.9, 60.0),
    "near-south-pole": (10.0, -89.95, 0.0),
    "polar-ring-1-edge": (200.0, -88.5, 5.0),
    # ring boundaries
    "dec59.43-ring38": (ProjectionCell(2458).crval[0] + 0.4, 59.43, 0.0),
    "dec-2-0-2": (33.3, 0.0, 0.0),
    "dec86.47": (77.0, 86.4667, 0.0),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("kind", ["acs", "ir"])
def test_special_footprints_match_brute_force(case, kind):
    ra, dec, rot = CASES[case]
    if kind == "acs":  # two 4096x2048 0.05" chips, stacked in y with a small gap
        w1 = tan_wcs(ra, dec, 4096, 2048, 0.05, rot)
        w1.wcs.crpix = [2048.5, 2048 + 25.5]
        w2 = tan_wcs(ra, dec, 4096, 2048, 0.05, rot)
        w2.wcs.crpix = [2048.5, -25.5]
        wcss = [w1, w2]
    else:
        wcss = [tan_wcs(ra, dec, 1014, 1014, 0.128, rot)]
    got = check_against_brute(wcss)
    assert got


def test_known_drizzlepac_misses_are_found():
    # (0.005, -87): p0009 (last cell of the 9-cell ring) covers it (skycells.md section 5)
    got = cells_for_footprint(tan_wcs(0.005, -87.0, 1014, 1014, 0.128))
    assert any(n.startswith("skycell-p0009") for n in got)
    assert any(n.startswith("skycell-p0001") for n in got)
    # ring-38 DEC_MIN straddle: p2458x07y01 / x08y01 are really overlapped
    cell = SkyCell(2458, 7, 1)
    ra, dec = cell.wcs.wcs_pix2world([cell.shape[1] / 2], [0.0], 0)
    got = cells_for_footprint(tan_wcs(ra[0], dec[0], 1000, 1000, 0.4))
    assert "skycell-p2458x07y01" in got
    assert any(n.startswith("skycell-p2384") or n < "skycell-p2458" for n in got)


def test_poles_land_in_polar_cells():
    assert cells_for_footprint(tan_wcs(0.0, 90.0, 1014, 1014, 0.128)) == ["skycell-p2643x11y11"]
    assert cells_for_footprint(tan_wcs(300.0, -90.0, 4096, 4096, 0.05, 33)) == [
        "skycell-p0000x11y11"
    ]


def test_random_points_on_the_sphere_land_in_cells_that_contain_them():
    rng = np.random.default_rng(42)
    n = 150
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    special = [(0.0, 90.0), (0.0, -90.0), (0.0, 0.0), (359.9999999, 10.0), (0.0, -45.0),
               (180.0, 89.99999), (359.99999, -89.99999), (0.0, 2.0), (90.0, -2.0)]  # fmt: skip
    pts = np.vstack([np.column_stack([ra, dec]), np.array(special)])
    for r, d in pts:
        fp = tan_wcs(r, d, 1, 1, 0.004)  # a 4-mas square around the point
        got = cells_for_footprint(fp)
        assert got, f"point ({r}, {d}) is in no SkyCell"
        for name in got:
            c = SkyCell.from_name(name)
            x, y = c.wcs.wcs_world2pix([r], [d], 0)
            assert -0.6 <= x[0] <= c.shape[1] - 0.4 and -0.6 <= y[0] <= c.shape[0] - 0.4, name
        inner = brute_cells(np.array([[r, d]]), -0.2)
        assert inner <= set(got), (r, d, inner - set(got))


def test_polygon_input_and_large_footprint_with_inner_cells():
    # a 1 x 1 deg polygon (great-circle sides): whole skycells lie inside it
    w = tan_wcs(150.0, 2.2, 3600, 3600, 1.0, 20.0)
    poly = w.calc_footprint(center=False)
    assert cells_for_footprint(poly) == cells_for_footprint(w)
    got = check_against_brute([w], n=240)
    assert len(got) > 20
    # a list of (ra, dec) pairs and a tuple of WCSs are accepted
    assert cells_for_footprint([tuple(v) for v in poly]) == got
    assert cells_for_footprint((w,)) == got


def test_union_of_separate_chips():
    a = tan_wcs(10.0, 10.0, 500, 500, 0.1)
    b = tan_wcs(200.0, -30.0, 500, 500, 0.1)
    assert cells_for_footprint([a, b]) == sorted(cells_for_footprint(a) + cells_for_footprint(b))


def test_bad_footprints():
    with pytest.raises(ValueError, match="pixel_shape"):
        w = tan_wcs(10, 10, 100, 100, 0.1)
        w.pixel_shape = None
        cells_for_footprint(w)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        cells_for_footprint(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="declination"):
        cells_for_footprint(np.array([[0, 91.0], [1, 0], [2, 0]]))
    with pytest.raises(ValueError, match="limit 40"):
        cells_for_footprint(np.array([[0, 0.0], [120, 0], [240, 0]]))
    with pytest.raises(ValueError, match="unsupported footprint"):
        cells_for_footprint("j94f05bgq_flt.fits")
    with pytest.raises(ValueError, match="empty"):
        cells_for_footprint([])


# ---------------------------------------------------------------- real distorted headers


def _chips(path, size=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        hdul = fits.open(path)
        out = []
        for h in hdul:
            if h.name != "SCI":
                continue
            w = WCS(h.header, fobj=hdul)
            w.pixel_shape = size or (h.header.get("NAXIS1"), h.header.get("NAXIS2"))
            out.append(w)
    return out


def test_real_acs_wfc_exposure(shared_data):
    wcss = _chips(shared_data / "real" / "j94f05bgq_flt.fits.gz")
    assert len(wcss) == 2 and wcss[1].sip is not None
    got = check_against_brute(wcss, n=150)
    assert len(got) >= 2


def test_real_headers_with_lookup_tables(shared_data):
    # SVM-aligned WFC3/UVIS with SIP + NPOL + D2IM (arrays are 10x10 cut-outs: use the real
    # chip size so the outline is realistic; the lookup tables are honoured by astropy)
    wcss = _chips(shared_data / "headers" / "sample_svm_flc.fits", size=(4096, 2051))
    assert wcss[0].cpdis1 is not None and wcss[0].det2im1 is not None
    check_against_brute(wcss, n=150)
    ir = _chips(shared_data / "headers" / "sample_svm_flt.fits", size=(1014, 1014))
    check_against_brute(ir, n=100)
    hrc = _chips(shared_data / "headers" / "j8bt06nyq_sip_flt.fits", size=(1024, 1024))
    assert hrc[0].sip is not None
    check_against_brute(hrc, n=100)
    # a Header footprint (SIP only) gives the same cells as its WCS
    h = fits.getheader(shared_data / "real" / "j94f05bgq_flt.fits.gz", 4)
    assert cells_for_footprint(h) == cells_for_footprint(_chips(
        shared_data / "real" / "j94f05bgq_flt.fits.gz")[1])


def test_speed_per_exposure(shared_data):
    wcss = _chips(shared_data / "real" / "j94f05bgq_flt.fits.gz")
    cells_for_footprint(wcss)
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        cells_for_footprint(wcss)
        times.append(time.perf_counter() - t0)
    # target 2 ms; allow for a loaded 2-core machine
    assert np.median(times) < 0.02


# ---------------------------------------------------------------- bounded_wcs


def _pix(w, radec):
    x, y = w.wcs_world2pix(radec[:, 0], radec[:, 1], 0)
    return x, y


@pytest.mark.parametrize("scale", ["fine", "coarse"])
def test_bounded_wcs_inside_cell(scale):
    cell = SkyCell.from_name("p1889x07y19", scale=scale)
    fine = SkyCell.from_name("p1889x07y19")
    ra, dec = fine.wcs.wcs_pix2world([5000.3], [7000.7], 0)
    fp = tan_wcs(ra[0], dec[0], 1014, 1014, 0.128, 25.0)
    w = bounded_wcs(cell, [fp])
    nx, ny = w.pixel_shape
    # every footprint corner lies inside the sub-array, touching it on all four sides
    rad = samples([fp], 60)
    x, y = _pix(w, rad)
    assert x.min() >= -0.5 and y.min() >= -0.5
    assert x.max() <= nx - 0.5 and y.max() <= ny - 0.5
    assert x.min() < 0.5 and y.min() < 0.5 and x.max() > nx - 1.5 and y.max() > ny - 1.5
    # the sub-array is the cell shifted by integers: same sky for pixel (0, 0)
    xmin = cell.crpix[0] - w.wcs.crpix[0]
    ymin = cell.crpix[1] - w.wcs.crpix[1]
    assert xmin == int(xmin) and ymin == int(ymin)
    np.testing.assert_allclose(w.wcs_pix2world([[0.0, 0.0]], 0),
                               cell.wcs.wcs_pix2world([[xmin, ymin]], 0), atol=1e-12)
    # size from the footprint corners mapped by astropy into the full cell
    cx, cy = _pix(cell.wcs, fp.calc_footprint(undistort=False, center=False))
    assert nx == math.ceil(cx.max() + 0.5) - math.floor(cx.min() - 0.5) - 1
    assert ny == math.ceil(cy.max() + 0.5) - math.floor(cy.min() - 0.5) - 1


def test_bounded_wcs_clips_and_unions():
    cell = SkyCell.from_name("p1889x07y19")
    # footprint across the cell's x-min edge (east side) and another well inside
    ra, dec = cell.wcs.wcs_pix2world([-100.0, 15000.0], [3000.0, 15000.0], 0)
    a = tan_wcs(ra[0], dec[0], 1000, 1000, 0.1)
    b = tan_wcs(ra[1], dec[1], 500, 500, 0.1)
    w = bounded_wcs(cell, [a, b.calc_footprint(center=False)])
    assert cell.crpix[0] - w.wcs.crpix[0] == 0  # clipped at x = 0
    nx, ny = w.pixel_shape
    bx, by = _pix(cell.wcs, b.calc_footprint(center=False))
    ax, ay = _pix(cell.wcs, a.calc_footprint(center=False))
    assert nx == math.ceil(bx.max() + 0.5)
    assert ny == math.ceil(by.max() + 0.5) - (math.floor(ay.min() - 0.5) + 1)
    with pytest.raises(ValueError, match="none of the 1 footprint"):
        bounded_wcs(cell, [tan_wcs(10.0, -40.0, 100, 100, 0.1)])


def test_bounded_wcs_rounding_covers_touched_pixels():
    cell = SkyCell.from_name("p1889x07y19")
    # a polygon whose cell-pixel bbox is [10.2, 20.7] x [30.5, 40.5] (0-based pixel coords)
    px = np.array([10.2, 20.7, 20.7, 10.2])
    py = np.array([30.5, 30.5, 40.5, 40.5])
    ra, dec = cell.wcs.wcs_pix2world(px, py, 0)
    w = bounded_wcs(cell, [np.column_stack([ra, dec])])
    # pixels 10..21 in x (pixel 21 covers [20.5, 21.5]); 31..40 in y (30.5 only touches 30)
    assert cell.crpix[0] - w.wcs.crpix[0] == 10
    assert cell.crpix[1] - w.wcs.crpix[1] == 31
    assert tuple(w.pixel_shape) == (12, 10)


def test_real_wfc3_uvis_text_headers(shared_data):
    hdrs = [
        fits.Header.fromstring((shared_data / "headers" / f"wfc3_uvis{n}.hdr").read_text())
        for n in (1, 2)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcss = [WCS(h) for h in hdrs]
    assert all(w.sip is not None and tuple(w.pixel_shape) == (4096, 2051) for w in wcss)
    got = check_against_brute(wcss, n=150)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        both = sorted(set(cells_for_footprint(hdrs[0])) | set(cells_for_footprint(hdrs[1])))
    assert got == both
