"""S_REGION and HDRTAB's HAPEXPNAME of SVM products (inventory 4.5), against DrizzlePac.

``S_REGION`` is compared with DrizzlePac's own ``processing_utils.compute_sregion`` (the
oracle, run on the same file) and with the geometry the test draws; HAPEXPNAME with the names
inventory 2.2 gives.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage.measure import approximate_polygon, find_contours

from hapdask.export.stats import layer_keywords, merge, tile_stats
from hapdask.mosaic.coverage import tile_coverage
from hapdask.svm.keywords import (
    _fill_holes,
    add_hapexpname,
    data_mask,
    footprint_regions,
    mask_part,
    merge_mask,
    region_of_mask,
    s_region,
)
from hapdask.svm.runner import _footprint


def _polygons(text: str) -> list[np.ndarray]:
    parts = text.split("POLYGON ICRS")[1:]
    return [np.array(p.split(), dtype=float).reshape(-1, 2) for p in parts]


def _dense(xy: np.ndarray, step: float = 0.25) -> np.ndarray:
    pts = []
    for a, b in zip(xy[:-1], xy[1:], strict=True):
        n = max(2, int(np.hypot(*(b - a)) / step) + 1)
        pts.append(a + (b - a) * np.linspace(0.0, 1.0, n)[:, None])
    return np.vstack(pts)


def _hausdorff(p: np.ndarray, q: np.ndarray) -> float:
    a, b = _dense(p), _dense(q)
    return float(max(cKDTree(b).query(a)[0].max(), cKDTree(a).query(b)[0].max()))


def _area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def _wcs(ny: int, nx: int) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [181.0, 27.9]
    w.wcs.crpix = [nx / 2, ny / 2]
    w.wcs.cd = [[-0.05 / 3600, 0.0], [0.0, 0.05 / 3600]]
    return w


def _two_chips(ny=600, nx=700, gap=30.0, angle=20.0, fill=np.nan):
    """Two 550 x 220 px 'chips' rotated by ``angle``, ``gap`` px apart, noise with a hole."""
    yy, xx = np.mgrid[:ny, :nx]
    a = np.radians(angle)
    u = (xx - nx / 2) * np.cos(a) + (yy - ny / 2) * np.sin(a)
    v = -(xx - nx / 2) * np.sin(a) + (yy - ny / 2) * np.cos(a)
    chip1 = (np.abs(u) < 275) & (v > gap / 2) & (v < gap / 2 + 220)
    chip2 = (np.abs(u) < 275) & (v < -gap / 2) & (v > -gap / 2 - 220)
    sci = np.full((ny, nx), fill, dtype=np.float32)
    rng = np.random.default_rng(1)
    sci[chip1 | chip2] = rng.normal(1.0, 0.1, int((chip1 | chip2).sum()))
    cy, cx = int(ny / 2 + (gap / 2 + 100) * np.cos(a)), int(nx / 2 - (gap / 2 + 100) * np.sin(a))
    sci[cy:cy + 5, cx:cx + 5] = fill  # a hole inside chip 1: filled, no extra polygon
    return sci, [chip1, chip2]


def test_s_region_one_polygon_per_chip_like_drizzlepac(tmp_path):
    pu = pytest.importorskip("drizzlepac.haputils.processing_utils")
    sci, chips = _two_chips()
    w = _wcs(*sci.shape)
    path = tmp_path / "hst_x_drc.fits"
    hdr = w.to_header()
    hdus = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci, header=hdr, name="SCI")])
    hdus[0].header["D001DATA"] = "x_flc.fits[sci,1]"  # a drizzled product for DrizzlePac
    hdus.writeto(path)
    ours = s_region(sci, w)
    with fits.open(path, mode="update") as hdul:
        pu.compute_sregion(hdul)
    ref = fits.getval(path, "S_REGION", "SCI")
    ours_p, ref_p = _polygons(ours), _polygons(ref)
    assert len(ours_p) == len(ref_p) == 2
    for r in ref_p:
        rxy = np.column_stack(w.all_world2pix(r[:, 0], r[:, 1], 0))
        o = min(ours_p, key=lambda p: np.hypot(*(p.mean(0) - r.mean(0))))
        oxy = np.column_stack(w.all_world2pix(o[:, 0], o[:, 1], 0))
        assert np.allclose(oxy[0], oxy[-1]) and np.allclose(rxy[0], rxy[-1])  # closed
        # both outlines are simplified with a 10-pixel tolerance (DrizzlePac's simplify,
        # Douglas-Peucker here): they lie within 2 x 10 px of each other and run the same way
        # round; their areas differ by less than a 1.5-px strip along the outline (ours runs
        # through pixel-edge midpoints, DrizzlePac's through edge-pixel centres: 0.5 px, and
        # hapdask.svm.keywords.BLOCK may trace blocks of pixels: <= 1 px)
        assert _hausdorff(oxy, rxy) <= 20.0
        perimeter = float(np.sum(np.hypot(*np.diff(rxy, axis=0).T)))
        assert abs(abs(_area(oxy)) - abs(_area(rxy))) <= 1.5 * perimeter
        assert np.sign(_area(oxy)) == np.sign(_area(rxy))
        assert 4 <= len(oxy) - 1 <= 8
    # truth: each polygon encloses one chip's pixel count (to a 1.5-px strip, as above)
    areas = sorted(abs(_area(np.column_stack(w.all_world2pix(p[:, 0], p[:, 1], 0))))
                   for p in ours_p)
    truth = sorted(float(c.sum()) for c in chips)
    assert np.all(np.abs(np.subtract(areas, truth)) <= 1.5 * 2 * (550 + 220))


@pytest.mark.parametrize("fill", [np.nan, 0.0])
def test_s_region_merges_chips_closer_than_the_closing(fill):
    """A gap narrower than DrizzlePac's 11-pixel closing is bridged: one polygon; a wider one
    is not. Without NaN in the array, 0 marks pixels without data (total products)."""
    sci, _ = _two_chips(gap=8.0, fill=fill)
    assert len(_polygons(s_region(sci, _wcs(*sci.shape)))) == 1
    sci, _ = _two_chips(gap=30.0, fill=fill)
    assert len(_polygons(s_region(sci, _wcs(*sci.shape)))) == 2


def test_s_region_empty():
    assert s_region(np.zeros((50, 60), np.float32), _wcs(50, 60)) == ""


def _regions_whole_array(mask: np.ndarray) -> list[np.ndarray]:
    """The outline steps of the module docstring done the plain way, on the whole array (scipy's
    fill_holes, iterated morphology, Gaussian; the oracle of the cut-out implementation)."""
    filled = ndimage.binary_fill_holes(mask)
    closed = ndimage.binary_erosion(ndimage.binary_dilation(filled, iterations=11),
                                    iterations=11)
    opened = ndimage.binary_dilation(ndimage.binary_erosion(filled | closed, iterations=3),
                                     iterations=3)
    labels, _ = ndimage.label(ndimage.gaussian_filter(opened.astype(np.float32), 2.0) > 0.5)
    out = []
    for label, sl in enumerate(ndimage.find_objects(labels), start=1):
        ring = max(find_contours(np.pad(labels[sl] == label, 1).astype(np.float32), 0.5),
                   key=len)
        ring = approximate_polygon(ring, tolerance=10.0)
        xy = np.column_stack([ring[:, 1] - 1 + sl[1].start, ring[:, 0] - 1 + sl[0].start])
        out.append(xy if np.array_equal(xy[0], xy[-1]) else np.vstack([xy, xy[:1]]))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_footprint_regions_equal_whole_array_morphology(seed):
    """The cut-out morphology (bounding box plus margin, holes filled from runs) gives the
    vertices of the whole-array steps exactly: blobs with holes, near and on the array edges,
    gaps narrower and wider than the closing."""
    rng = np.random.default_rng(seed)
    ny, nx = (int(v) for v in rng.integers(60, 260, 2))
    mask = ndimage.binary_dilation(rng.random((ny, nx)) < 0.002,
                                   iterations=int(rng.integers(3, 15)))
    mask &= rng.random((ny, nx)) > 0.03  # pixel holes
    if seed % 2:
        mask[:, int(nx * 0.4):int(nx * 0.4) + int(rng.integers(5, 30))] = False  # a gap
    if seed == 5:
        mask[:] = False
        mask[0:ny // 2, 3:nx - 1] = True  # touching the array's edges
    sci = np.where(mask, 1.0, np.nan if seed % 3 else 0.0).astype(np.float32)
    assert np.array_equal(data_mask(sci, band=64), mask)
    got, want = footprint_regions(mask), _regions_whole_array(mask)
    assert len(got) == len(want) > 0
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("block", [1, 4])
def test_data_mask_rule_from_the_whole_array(block):
    """DrizzlePac's rule on the whole array: NaN marks no data as soon as one pixel anywhere is
    NaN (then zeros are data), else 0 does, whichever band holds the first NaN; blocks have
    data when at least half their pixels have."""
    rng = np.random.default_rng(7)
    sci = rng.normal(1.0, 1.0, (300, 130)).astype(np.float32)
    sci[rng.random(sci.shape) < 0.2] = 0.0  # zeros in every band
    for nan_row in (None, 5, 290):  # no NaN, NaN in the first band, only in the last one
        a = sci.copy()
        if nan_row is not None:
            a[nan_row:nan_row + 3, 20:90] = np.nan
        good = ~np.isnan(a) if nan_row is not None else a != 0
        pad = np.zeros((-(-300 // block) * block, -(-130 // block) * block), bool)
        pad[:300, :130] = good
        counts = pad.reshape(pad.shape[0] // block, block, -1, block).sum(axis=(1, 3))
        assert np.array_equal(data_mask(a, block=block, band=64), counts * 2 >= block * block)


def _disk(ny, nx, cy, cx, r):
    yy, xx = np.mgrid[:ny, :nx]
    return np.hypot(yy - cy, xx - cx) < r


@pytest.mark.parametrize("case", ["corners", "chips"])
def test_footprint_regions_through_one_trace(case):
    """Outlines taken from one trace of the whole array (``_outer_rings``) equal the oracle's
    region-by-region traces: two chips of an exposure, squares meeting at corners."""
    from hapdask.svm import keywords

    ny, nx = 400, 460
    if case == "corners":  # squares touching at one corner (kept so by the smoothing)
        mask = np.zeros((ny, nx), bool)
        mask[60:160, 60:160] = True
        mask[160:260, 160:260] = True
        mask[300:340, 300:420] = True
    else:
        yy, xx = np.mgrid[:ny, :nx]
        u, v = (xx - 230) * 0.9 + (yy - 200) * 0.43, -(xx - 230) * 0.43 + (yy - 200) * 0.9
        mask = (np.abs(u) < 120) & (np.abs(v) < 120) & (np.abs(v - 4) > 16)
    traced = []
    real = keywords._outer_rings
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(keywords, "_outer_rings", lambda *a: traced.append(real(*a)) or traced[-1])
        got = footprint_regions(mask)
    want = _regions_whole_array(mask)
    assert traced and traced[0] is not None  # the one trace was used
    assert len(got) == len(want) >= (2 if case == "chips" else 1)
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("case", ["hole", "island", "long-hole", "corners"])
def test_outer_rings_equal_region_traces_or_decline(case):
    """On region masks with holes (the outlines' input after the smoothing), the one trace of
    the whole array gives each labelled region's longest contour on its padded cut-out, in
    label order, with the cut-out's origin; it declines (None) when a hole's contour is longer
    than a region's outer one (which contour is whose then needs the labels; always so for an
    island in a hole)."""
    from hapdask.svm.keywords import _outer_rings

    ny, nx = 300, 340
    smooth = np.zeros((ny, nx), bool)
    smooth |= _disk(ny, nx, 150, 170, 120) & ~_disk(ny, nx, 150, 170, 60)
    if case == "island":
        smooth |= _disk(ny, nx, 150, 170, 20)
    if case == "long-hole":
        smooth[4:14, 4:14] = True
    if case == "corners":
        smooth[:] = False
        smooth[20:60, 20:60] = True
        smooth[60:100, 60:100] = True
        smooth[100:140, 20:60] = True
    labels, _ = ndimage.label(smooth)
    want = []
    for label, sl in enumerate(ndimage.find_objects(labels), start=1):
        ring = max(find_contours(np.pad(labels[sl] == label, 1).astype(np.float32), 0.5),
                   key=len)
        want.append((ring, sl[0].start, sl[1].start))
    got = _outer_rings(smooth)
    if case in ("island", "long-hole"):  # the island's, the square's outline is shorter
        assert got is None
        return
    assert got is not None and len(got) == len(want)
    for (ring, r0, c0), (wring, wr0, wc0) in zip(got, want, strict=True):
        assert (r0, c0) == (wr0, wc0)
        assert np.array_equal(ring, wring)


def _rotated_axes(rng, ny: int, nx: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates of an ``ny`` x ``nx`` array about its centre, along two axes rotated
    by a random angle (tilted footprint edges for the outline tests)."""
    yy, xx = np.mgrid[:ny, :nx]
    angle = rng.uniform(0, np.pi / 2)
    u = (xx - nx / 2) * np.cos(angle) + (yy - ny / 2) * np.sin(angle)
    v = -(xx - nx / 2) * np.sin(angle) + (yy - ny / 2) * np.cos(angle)
    return u, v


@pytest.mark.parametrize(("seed", "closing", "opening", "sigma"),
                         [(0, 11, 3, 2.0), (1, 11, 3, 2.0), (2, 3, 1, 0.5), (3, 11, 3, 2.0)])
def test_smoothed_tiles_equal_whole_array_steps(seed, closing, opening, sigma):
    """The tiled outline steps (constant tiles skipped, boundary tiles computed on grown
    windows) equal the steps on the whole array: large set and empty areas (constant tiles,
    also near the array's edges), tilted edges, a chip gap, holes and specks."""
    from hapdask.svm.keywords import _smooth_steps, _smoothed

    rng = np.random.default_rng(seed)
    ny, nx = (int(v) for v in rng.integers(500, 800, 2))
    u, v = _rotated_axes(rng, ny, nx)
    half = rng.uniform(0.3, 0.45) * min(ny, nx)
    filled = (np.abs(u) < half) & (np.abs(v) < half * 1.2)
    filled &= np.abs(v - rng.uniform(-20, 20)) > rng.uniform(3, 12)  # a gap
    filled &= rng.random((ny, nx)) > 0.001  # specks of no data
    filled |= rng.random((ny, nx)) < 0.0005  # isolated pixels
    if seed == 3:
        filled[:, :] = True  # every tile set: the edges decide
        filled[ny // 3:ny // 3 + 5, :] = False
    for _ in range(60):  # set and cleared rectangles: gaps and bridges of every size
        y, x = rng.integers(0, ny), rng.integers(0, nx)
        h, w = rng.integers(2, 40, 2)
        filled[y:y + h, x:x + w] = rng.random() < 0.5
    want = _smooth_steps(filled, closing, opening, sigma)
    for tile in (1, 40, 64, 97, None):  # None: the default, a multiple of the reach
        assert np.array_equal(_smoothed(filled, closing, opening, sigma, tile=tile), want)


@pytest.mark.parametrize(("seed", "tile"), [(0, 64), (1, 40), (2, 97), (3, 64), (4, 1),
                                            (5, 64)])
def test_contours_from_boundary_tiles_equal_find_contours(seed, tile):
    """The contours traced from the squares of the computed tiles only (``_scan_boxes``) are
    scikit-image's ``find_contours`` of the whole array, point for point and in its order:
    tilted edges, a chip gap, specks, regions touching at corners (saddle squares), set and
    cleared rectangles, a region at the array's edge."""
    from hapdask.svm import keywords

    assert keywords._get_contour_segments is not None  # else the whole array is traced
    rng = np.random.default_rng(seed)
    ny, nx = (int(v) for v in rng.integers(300, 600, 2))
    u, v = _rotated_axes(rng, ny, nx)
    filled = (np.abs(u) < 0.35 * min(ny, nx)) & (np.abs(v) < 0.4 * min(ny, nx))
    filled &= np.abs(v - rng.uniform(-20, 20)) > rng.uniform(3, 12)
    filled |= rng.random((ny, nx)) < 0.0005
    for _ in range(40):
        y, x = rng.integers(0, ny), rng.integers(0, nx)
        h, w = rng.integers(2, 40, 2)
        filled[y:y + h, x:x + w] = rng.random() < 0.5
    if seed == 3:  # checkerboard corners: saddle squares after the smoothing
        filled[:] = False
        for k in range(4):
            filled[40 + 60 * k:100 + 60 * k, 40 + 60 * k:100 + 60 * k] = True
    if seed == 4:
        filled[:ny // 3, :] = True  # touching the array's edges
    if seed == 5:  # two regions in one strip of tiles, the right one starting higher: its
        filled[:] = False  # contour is made first although the left one's squares come
        filled[100:200, 40:120] = True  # first in its own run of tiles
        filled[90:200, 330:420] = True
    smooth, tiles = keywords._smoothed_tiles(filled, 11, 3, 2.0, tile=tile)
    assert smooth.any() and not smooth.all()
    boxes = keywords._scan_boxes(tiles, smooth.shape)
    got = keywords._contours(smooth, boxes)
    want = find_contours(smooth, 0.5)
    assert len(got) == len(want) > 0
    for a, b in zip(got, want, strict=True):
        assert np.array_equal(a, b)
    if tile > 1:  # fewer squares than the whole array
        assert sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in boxes) < smooth.size


def _hdrtab_product(path, last: bool = True) -> None:
    rows = np.array(["jf3t03a1q", "jf3t03a2q", "jf3t03a1q"])
    sci = np.arange(1 << 20, dtype=np.float32).reshape(1024, 1024)  # 4 MB
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(sci, name="SCI"),
            fits.BinTableHDU.from_columns([fits.Column("ROOTNAME", "9A", array=rows),
                                           fits.Column("EXTVER", "K", array=[1, 1, 2])],
                                          name="HDRTAB")]
    if not last:
        hdus.append(fits.ImageHDU(np.ones((3, 4), np.int16), name="EXTRA"))
    fits.HDUList(hdus).writeto(path)


def _bytes_written() -> int | None:
    """Bytes this process has passed to write calls (Linux ``/proc/self/io``), else None."""
    try:
        with open("/proc/self/io") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("wchar:"))
    except (OSError, StopIteration):
        return None


@pytest.mark.parametrize("last", [True, False])
def test_add_hapexpname_in_place(tmp_path, last):
    """HDRTAB gets HAPEXPNAME (51 characters) as its last column, the rows' names by rootname;
    when HDRTAB is the last extension the file is cut at HDRTAB and the table appended: the
    bytes before it are kept and far less than the 4 MB SCI is written (astropy's update mode
    rewrites the file when an HDU is replaced); a second call replaces the column; a foreign
    rootname is an error."""
    path = tmp_path / "p_drc.fits"
    _hdrtab_product(path, last)
    before = path.read_bytes()
    names = {"jf3t03a1": "hst_1_03_acs_wfc_f775w_jf3t03a1", "jf3t03a2": "hst_1_03_acs_wfc_x"}
    for _ in range(2):
        written = _bytes_written()
        add_hapexpname(path, names)
        if written is not None:
            written = _bytes_written() - written
            assert written < 100_000 if last else written > 4_000_000
        with fits.open(path, checksum=True) as hdul:
            hdul.verify("exception")
            assert [h.name for h in hdul] == (["PRIMARY", "SCI", "HDRTAB"]
                                              + ([] if last else ["EXTRA"]))
            start = hdul.fileinfo(hdul.index_of("HDRTAB"))["hdrLoc"]
            tab = hdul["HDRTAB"]
            assert tab.columns.names == ["ROOTNAME", "EXTVER", "HAPEXPNAME"]
            assert tab.columns["HAPEXPNAME"].format == "51A"
            assert list(tab.data["HAPEXPNAME"]) == [names["jf3t03a1"], names["jf3t03a2"],
                                                    names["jf3t03a1"]]
            assert list(tab.data["EXTVER"]) == [1, 1, 2]
            assert np.array_equal(hdul["SCI"].data, np.arange(1 << 20).reshape(1024, 1024))
            if not last:
                assert np.array_equal(hdul["EXTRA"].data, np.ones((3, 4)))
        assert path.read_bytes()[:start] == before[:start]
    with pytest.raises(ValueError, match="jf3t03a2"):
        add_hapexpname(path, {"jf3t03a1": "x"})


def _astropy_hapexpname(path, names: dict[str, str]) -> None:
    """The oracle: HAPEXPNAME appended with astropy's table machinery (``from_columns`` with
    the old table's header, the file cut at HDRTAB and the table appended)."""
    with fits.open(path) as hdul:
        tab = hdul["HDRTAB"]
        values = [names[str(r).strip().lower()[:8]] for r in tab.data["ROOTNAME"]]
        width = max(51, max(len(v) for v in values))
        cols = list(tab.columns) + [fits.Column(name="HAPEXPNAME", format=f"{width}A",
                                                array=np.array(values, dtype=f"U{width}"))]
        new = fits.BinTableHDU.from_columns(fits.ColDefs(cols), header=tab.header.copy())
        start = hdul.fileinfo(hdul.index_of("HDRTAB"))["hdrLoc"]
    with open(path, "r+b") as fh:
        fh.truncate(start)
    with fits.open(path, mode="append") as hdul:
        hdul.append(new)


@pytest.mark.parametrize("long_name", [False, True])
def test_add_hapexpname_as_astropy(tmp_path, long_name):
    """A product's HDRTAB as the drizzle writes it (:func:`hapdask.export.headers.hdrtab`:
    integer, float with a missing value, text with inner, leading and trailing blanks and
    boolean columns; rows of two exposures) gets from :func:`add_hapexpname` the same file
    bytes as from astropy's table machinery (the oracle), also with a name longer than 51."""
    from hapdask.export.headers import hdrtab

    rows = [{"ROOTNAME": "jf3t03a1q", "EXTVER": 1, "X": 1.5, "S": "a b  ", "T": " c\t",
             "FLAG": True},
            {"ROOTNAME": "JF3T03A2Q", "EXTVER": 2, "X": None, "S": "abcdef", "T": "",
             "FLAG": False},
            {"ROOTNAME": "jf3t03a1q", "EXTVER": 2, "X": -2.0, "S": "", "T": "x",
             "FLAG": True}]
    names = {"jf3t03a1": "hst_1_03_acs_wfc_f775w_jf3t03a1" + "x" * (40 if long_name else 0),
             "jf3t03a2": "hst_1_03_acs_wfc_x"}
    sci = np.arange(100, dtype=np.float32).reshape(10, 10)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci, name="SCI")]).writeto(tmp_path / "a")
    with open(tmp_path / "a", "ab") as fh:
        fh.write(hdrtab(rows))
    (tmp_path / "b").write_bytes((tmp_path / "a").read_bytes())
    add_hapexpname(tmp_path / "a", names)
    _astropy_hapexpname(tmp_path / "b", names)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    fits.HDUList([fits.PrimaryHDU()]).writeto(tmp_path / "c")
    with open(tmp_path / "c", "ab") as fh:
        fh.write(hdrtab(rows))
    with pytest.raises(ValueError, match="jf3t03a2"):
        add_hapexpname(tmp_path / "c", {"jf3t03a1": "x"})


def test_products_s_region_and_hapexpname(acs_run):
    """The ACS visit: an exposure product has two polygons (ACS/WFC's chip gap, ~50 drizzled
    pixels, is wider than the 11-pixel closing), a filter or total product one or two (two when
    the dithers do not cover the gap, as in this small set's; one in the full-frame demo);
    every HDRTAB row names its exposure's HAP product."""
    result, _poller, out = acs_run
    stems = {e.rootname[:8]: e.stem for d in result.plan.detectors for e in d.all_exposures}
    for path in out.glob("hst_*_dr[cz].fits"):
        with fits.open(path) as hdul:
            n = len(_polygons(hdul["SCI"].header["S_REGION"]))
            exposure = hdul[0].header["HAPLEVEL"] == 1
            assert n == 2 if exposure else n in (1, 2), path.name
            tab = hdul["HDRTAB"]
            assert tab.columns.names[-1] == "HAPEXPNAME"
            assert int(tab.columns["HAPEXPNAME"].format[:-1]) >= 51
            for root, name in zip(tab.data["ROOTNAME"], tab.data["HAPEXPNAME"], strict=True):
                root = str(root).strip().lower()
                assert name.strip() == stems[root[:8]]
                assert name.strip().startswith("hst_") and name.strip().endswith(root[:8])


def test_products_s_region_from_tiles_equals_whole_array(acs_run):
    """The S_REGION the run made from its final tiles' data-mask parts (the tiles written by
    the product family's tasks) is the whole written SCI's :func:`s_region` (the oracle: the
    product read back, as before the parts), in every product."""
    _result, _poller, out = acs_run
    paths = sorted(out.glob("hst_*_dr[cz].fits"))
    assert len(paths) == 7
    for path in paths:
        with fits.open(path) as hdul:
            sci = hdul["SCI"]
            assert sci.header["S_REGION"] == s_region(sci.data, WCS(sci.header)), path.name


def test_catalog_name_reaches_the_wcsname(sim, tmp_path, monkeypatch):
    """``hapdask svm --catalog-name GAIAeDR3`` names the fit as DrizzlePac names its Gaia DR3
    fits (``...-FIT_SVM_GAIAeDR3``); the reference catalog object gets that name."""
    from hapdask import svm
    from hapdask.cli import main

    seen = {}

    def fake_run(poller, **kw):
        from hapdask.align import FileCatalog

        seen["name"] = FileCatalog(kw["refcat"], name=kw["catalog_name"]).name
        raise svm.NoViableData("stop here")

    monkeypatch.setattr(svm, "run", fake_run)
    poller = sim.svm_pollers[0]
    main(["svm", str(poller), "--refcat", str(sim.refcat), "--catalog-name", "GAIAeDR3",
          "--output", str(tmp_path)])
    assert seen["name"] == "GAIAeDR3"


def test_footprint_keywords_from_coverage_codes(tmp_path):
    """The footprint keywords from the chips' coverage codes equal those of the per-chip
    rasterisation (``tile_coverage``, checked against matplotlib in the mosaic tests): rotated,
    overlapping chips with different exposure times, bands cut across them."""
    ny, nx = 2500, 1300
    rng = np.random.default_rng(4)
    polys, times = [], []
    for _ in range(7):
        a = np.radians(rng.uniform(0, 90))
        cx, cy = rng.uniform(300, 1000), rng.uniform(300, 2200)
        u = np.array([[-400, -200], [400, -200], [400, 200], [-400, 200]], float)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        polys.append(u @ rot.T + [cx, cy])
        times.append(float(rng.choice([30.0, 339.5, 500.0])))
    wht = rng.uniform(0, 3, (ny, nx)).astype(np.float32)
    wht[rng.random((ny, nx)) < 0.1] = 0
    path = tmp_path / "w.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(wht, name="WHT")]).writeto(path)

    class Grid:
        shape = (ny, nx)

    got = _footprint(path, Grid(), polys, times)
    parts = []
    for y0 in range(0, ny, 1024):
        win = (y0, min(ny, y0 + 1024), 0, nx)
        count, expt = tile_coverage(polys, times, win)
        parts.append(tile_stats(np.where(count > 0, wht[win[0]:win[1]], 0.0), count, expt))
    want = layer_keywords(merge(parts), ny * nx)
    assert got == want and len(got) > 3


def _tiles(ny: int, nx: int, th: int, tw: int) -> list[tuple[int, int, int, int]]:
    return [(y, min(y + th, ny), x, min(x + tw, nx))
            for y in range(0, ny, th) for x in range(0, nx, tw)]


@pytest.mark.parametrize("block", [1, 3, 4])
@pytest.mark.parametrize("tile", [(64, 64), (37, 50), (300, 41)])
def test_mask_parts_of_tiles_equal_whole_array_data_mask(block, tile):
    """The data mask merged from tiles' parts (in any order, blocks straddling tile edges:
    tiles of 37 or 41 pixels against blocks of 3 and 4) is the whole array's
    :func:`data_mask` (the oracle), whichever tile holds the array's NaN (zeros then count
    as data in every tile), and without NaN."""
    rng = np.random.default_rng(11)
    sci = rng.normal(1.0, 1.0, (300, 130)).astype(np.float32)
    sci[rng.random(sci.shape) < 0.3] = 0.0
    sci[100:180, 30:90] = 0.0  # a block of zeros: no data without NaN
    for nan_at in (None, (5, 20), (297, 128)):  # no NaN, NaN in the first / last tile
        a = sci.copy()
        if nan_at is not None:
            a[nan_at[0]:nan_at[0] + 3, nan_at[1]:nan_at[1] + 2] = np.nan
        windows = _tiles(*a.shape, *tile)
        order = rng.permutation(len(windows))
        parts = [mask_part(a[y0:y1, x0:x1], (y0, y1, x0, x1), block)
                 for y0, y1, x0, x1 in (windows[i] for i in order)]
        assert np.array_equal(merge_mask(parts, a.shape, block), data_mask(a, block=block))


def test_mask_parts_take_the_values_as_float32():
    """A tile's values are taken as written (float32): a float64 value below float32's range
    is 0 there, as the whole array read back from the file gives; a part must cover the
    array exactly once."""
    a = np.ones((40, 40))
    a[3, 4] = 1e-50
    parts = [mask_part(a[y0:y1, x0:x1], (y0, y1, x0, x1))
             for y0, y1, x0, x1 in _tiles(40, 40, 16, 16)]
    assert np.array_equal(merge_mask(parts, a.shape), data_mask(a.astype(np.float32)))
    assert not merge_mask(parts, a.shape)[3, 4]
    with pytest.raises(ValueError, match="windows"):
        merge_mask(parts[1:], a.shape)


def test_region_of_mask_is_s_region():
    """:func:`region_of_mask` of the tiles' merged mask is the whole array's S_REGION."""
    sci, _ = _two_chips()
    w = _wcs(*sci.shape)
    parts = [mask_part(sci[y0:y1, x0:x1], (y0, y1, x0, x1))
             for y0, y1, x0, x1 in _tiles(*sci.shape, 128, 128)]
    got = region_of_mask(merge_mask(parts, sci.shape), w)
    assert got == s_region(sci, w) and got.count("POLYGON") == 2


@pytest.mark.parametrize("seed", range(8))
def test_fill_holes_equal_scipy(seed):
    """The holes filled from runs of background (union-find) are scipy's
    ``binary_fill_holes`` (the oracle; 4-connected background): random masks with pixel and
    blob holes, holes that touch the edge only diagonally or through one pixel, empty and full
    masks."""
    rng = np.random.default_rng(seed)
    ny, nx = (int(v) for v in rng.integers(1, 90, 2))
    mask = rng.random((ny, nx)) < rng.uniform(0.3, 0.95)
    if seed % 2:
        mask = ndimage.binary_dilation(mask, iterations=int(rng.integers(1, 4)))
    for m in (mask, ~mask, np.zeros((ny, nx), bool), np.ones((ny, nx), bool)):
        assert np.array_equal(_fill_holes(m), ndimage.binary_fill_holes(m))
    ring = np.ones((7, 7), bool)
    ring[3, 3] = ring[0, 0] = False  # a hole, and a corner pixel touching the edge
    ring[2, 3] = False               # the hole is two pixels
    ring[5, 6] = False               # an edge pixel: not a hole
    ring[5, 5] = False               # connected to the edge through it
    want = ndimage.binary_fill_holes(ring)
    assert np.array_equal(_fill_holes(ring), want) and want[3, 3] and not want[5, 5]


@pytest.mark.parametrize("seed", range(8))
def test_close_open_equal_scipy(seed):
    """The packed-row morphology of the outline steps is scipy's ``binary_dilation``/
    ``binary_erosion`` with ``iterations`` (the oracle; cross structure, nothing set outside
    the array): random masks, specks and blobs, near and on the edges, rows shorter and longer
    than a word (64 pixels) and not a multiple of it, thin arrays, empty and full masks, radii
    below and beyond the array's size."""
    from hapdask.svm._morph import close_open

    rng = np.random.default_rng(seed)
    ny, nx = (int(v) for v in rng.integers(1, 150, 2))
    mask = rng.random((ny, nx)) < rng.uniform(0.02, 0.98)
    if seed % 2:
        mask = ndimage.binary_dilation(mask, iterations=int(rng.integers(1, 5)))
    for m in (mask, ~mask, np.zeros((ny, nx), bool), np.ones((ny, nx), bool)):
        for closing, opening in ((11, 3), (1, 1), (3, 7), (40, 2)):
            closed = ndimage.binary_erosion(ndimage.binary_dilation(m, iterations=closing),
                                            iterations=closing)
            want = ndimage.binary_dilation(ndimage.binary_erosion(m | closed, iterations=opening),
                                           iterations=opening)
            assert np.array_equal(close_open(m, closing, opening), want)
