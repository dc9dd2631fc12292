"""calc_pixmap: exactness against astropy, sub-regions, fallbacks and thread safety."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS, DistortionLookupTable

from hapdask.drizzle import calc_pixmap
from hapdask.drizzle.pixmap import (
    calc_pixmap_at,
    fast_models,
    fast_path_reason,
    fill_segments,
    grown_segments,
)
from hapdask.io import apply_reference_distortion

# Accuracy we assert against astropy's exact transform (the target is 0.01 px; the
# numba path reproduces astropy's arithmetic to ~1e-8 px).
TOL_PX = 1e-6


def _north_up(wcs: WCS, scale_arcsec: float, shape=(8000, 8000)) -> WCS:
    """North-up TAN grid centred on the chip's reference point."""
    out = WCS(naxis=2)
    out.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    out.wcs.crval = list(wcs.wcs.crval)
    out.wcs.crpix = [shape[1] / 2 + 0.5, shape[0] / 2 + 0.5]
    out.wcs.cdelt = [-scale_arcsec / 3600.0, scale_arcsec / 3600.0]
    out.pixel_shape = shape[::-1]
    return out


def _astropy(wcs_from: WCS, wcs_to: WCS, x: np.ndarray, y: np.ndarray):
    return wcs_to.world_to_pixel_values(*wcs_from.pixel_to_world_values(x, y))


@pytest.fixture(scope="session")
def acs_wfc_full(shared_data, tmp_path_factory):
    """ACS/WFC j94f05bgq with SIP + NPOL + D2IM, made by stwcs.updatewcs in a temp dir.

    The file in ../shared/data carries SIP only; its reference files are beside it. The
    header names them without the ``jref$`` prefix stwcs needs, so the copy gets it.
    """
    pytest.importorskip("stwcs.updatewcs")
    real = shared_data / "real"
    path = apply_reference_distortion(
        real / "j94f05bgq_flt.fits.gz", tmp_path_factory.mktemp("acs") / "j94f05bgq_flt.fits", real
    )
    with fits.open(path) as hdul:
        names = {h.name for h in hdul}
        assert {"WCSDVARR", "D2IMARR"} <= names, f"updatewcs did not add tables to {path}"
    return path


def _load(path, ext=("SCI", 1), shape=None) -> WCS:
    with fits.open(path) as hdul:
        wcs = WCS(hdul[ext].header, hdul)
    if shape is not None:
        wcs.pixel_shape = shape[::-1]
    return wcs


@pytest.fixture(scope="session")
def cases(shared_data, acs_wfc_full):
    """(name, input WCS with distortion, north-up output WCS)."""
    acs = _load(acs_wfc_full)
    acs2 = _load(acs_wfc_full, ("SCI", 2))
    uvis = _load(shared_data / "headers" / "sample_svm_flc.fits", shape=(2051, 4096))
    hrc = _load(shared_data / "headers" / "j8bt06nyq_sip_flt.fits", shape=(1024, 1024))
    return {
        "acs_wfc1": (acs, _north_up(acs, 0.04)),
        "acs_wfc2": (acs2, _north_up(acs, 0.04)),
        "wfc3_uvis": (uvis, _north_up(uvis, 0.04)),
        "acs_hrc": (hrc, _north_up(hrc, 0.025)),
    }


CASES = ["acs_wfc1", "acs_wfc2", "wfc3_uvis", "acs_hrc"]


@pytest.fixture(scope="module")
def full_pixmaps(cases):
    """Full-chip pixmaps, computed once per case."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = calc_pixmap(*cases[name])
        return cache[name]

    return get


def test_test_data_carry_the_full_model(cases):
    acs, _ = cases["acs_wfc1"]
    assert acs.sip is not None and acs.cpdis1 is not None and acs.cpdis2 is not None
    assert acs.det2im1 is not None
    uvis, _ = cases["wfc3_uvis"]
    assert uvis.det2im1 is not None and uvis.det2im2 is not None and uvis.cpdis1 is not None


@pytest.mark.parametrize("name", CASES)
def test_fast_path_is_used(cases, name):
    wfrom, wto = cases[name]
    assert fast_path_reason(wfrom, wto) is None


@pytest.mark.parametrize("name", CASES)
def test_full_chip_matches_astropy(cases, full_pixmaps, name):
    """Whole chip: the 4 borders exactly plus a dense random sample of the interior."""
    wfrom, wto = cases[name]
    ny, nx = wfrom.array_shape
    pm = full_pixmaps(name)
    assert pm.shape == (ny, nx, 2) and pm.dtype == np.float64 and pm.flags.c_contiguous
    rng = np.random.default_rng(1)
    n = 200_000
    x = np.concatenate(
        [rng.integers(0, nx, n), np.arange(nx), np.arange(nx), [0] * ny, [nx - 1] * ny]
    )
    y = np.concatenate(
        [rng.integers(0, ny, n), [0] * nx, [ny - 1] * nx, np.arange(ny), np.arange(ny)]
    )
    xa, ya = _astropy(wfrom, wto, x.astype(float), y.astype(float))
    err = np.hypot(pm[y, x, 0] - xa, pm[y, x, 1] - ya)
    assert np.all(np.isfinite(err))
    assert err.max() <= TOL_PX


def test_lookup_tables_matter(cases):
    """The NPOL and D2IM tables of the ACS test chip move pixels by far more than TOL_PX."""
    wfrom, wto = cases["acs_wfc1"]
    bare = wfrom.deepcopy()
    bare.cpdis1 = bare.cpdis2 = bare.det2im1 = bare.det2im2 = None
    full = calc_pixmap(wfrom, wto, region=(0, 64, 0, 4096))
    nodist = calc_pixmap(bare, wto, region=(0, 64, 0, 4096))
    assert np.abs(full - nodist).max() > 0.05


@pytest.mark.parametrize("name", CASES)
def test_regions_are_bit_identical(cases, full_pixmaps, name):
    wfrom, wto = cases[name]
    ny, nx = wfrom.array_shape
    full = full_pixmaps(name)
    regions = [
        (0, 1, 0, 1),
        (0, ny // 2, 0, nx),
        (ny - 7, ny, nx - 300, nx),
        (ny // 3, ny // 3 + 129, nx // 5 + 3, nx // 5 + 517),
        (5, ny - 5, 17, 18),
    ]
    for region in regions:
        y0, y1, x0, x1 = region
        sub = calc_pixmap(wfrom, wto, region=region)
        assert sub.shape == (y1 - y0, x1 - x0, 2)
        assert np.array_equal(sub, full[y0:y1, x0:x1]), region


@pytest.mark.parametrize("name", CASES)
def test_points_are_the_whole_map_bitwise(cases, full_pixmaps, name):
    """calc_pixmap_at at scattered pixels (isolated, clusters, whole rows, region edges) holds
    the whole-chip map's bits there and NaN elsewhere."""
    wfrom, wto = cases[name]
    ny, nx = wfrom.array_shape
    full = full_pixmaps(name)
    rng = np.random.default_rng(11)
    for region in [(0, ny, 0, nx), (ny // 3, ny // 3 + 257, nx // 5 + 3, nx // 5 + 700),
                   (ny - 40, ny, nx - 90, nx)]:
        y0, y1, x0, x1 = region
        need = rng.random((y1 - y0, x1 - x0)) < 0.02
        need[5:9, 10:14] = True  # a cluster
        need[-1] = True  # a whole row at the region's edge
        need[:, 0] = True  # its first column
        need[2] = False  # a row without any
        pm = calc_pixmap_at(wfrom, wto, need, region=region)
        assert pm.shape == (y1 - y0, x1 - x0, 2) and pm.dtype == np.float64
        ref = full[y0:y1, x0:x1]
        assert np.array_equal(pm[need].view(np.uint64), ref[need].view(np.uint64)), region
        assert np.isnan(pm[~need]).all()
        # into a caller's buffer: written at the points only
        buf = np.full((y1 - y0, x1 - x0, 2), -7.0)
        assert calc_pixmap_at(wfrom, wto, need, region=region, out=buf) is buf
        assert np.array_equal(buf[need].view(np.uint64), ref[need].view(np.uint64))
        assert (buf[~need] == -7.0).all()


def _segments_mask(segments, shape) -> np.ndarray:
    """The bool mask of row segments ``(ptr, lo, hi)``, checked increasing and disjoint."""
    ptr, lo, hi = segments
    mask = np.zeros(shape, bool)
    for r in range(shape[0]):
        prev = -1
        for k in range(ptr[r], ptr[r + 1]):
            assert prev < lo[k] < hi[k] <= shape[1]
            mask[r, lo[k]:hi[k]] = True
            prev = hi[k]
    return mask


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (40, 57)])
def test_grown_segments_are_the_3x3_dilation(shape):
    """grown_segments of scattered pixels (edges, corners, clusters, neighbours) covers
    scipy's 3 x 3 binary dilation of them, nothing else."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    for frac in (0.0, 0.03, 0.3, 1.0):
        mask = rng.random(shape) < frac
        mask[0, -1] |= frac > 0.1
        mask[-1, 0] |= frac > 0.1
        points = np.flatnonzero(mask).astype(np.int64)
        want = ndimage.binary_dilation(mask, np.ones((3, 3), bool))
        got = _segments_mask(grown_segments(points, *shape), shape)
        assert np.array_equal(got, want), frac


@pytest.mark.parametrize("name", [*CASES, "synthetic"])
def test_point_segments_with_kept_models_are_the_whole_map_bitwise(cases, full_pixmaps, name):
    """calc_pixmap_at on the row segments of cosmic-ray-like neighbourhoods (several per row),
    with fast_models kept from another call and no input WCS, holds the whole map's bits
    there; a buffer is written there only, and fill_segments puts NaN back."""
    if name == "synthetic":
        wfrom = _synthetic_wcs(with_tables=True)  # both det2im axes, SIP order 3
        wto = _north_up(wfrom, 0.03, shape=(900, 900))
        full = calc_pixmap(wfrom, wto)
    else:
        wfrom, wto = cases[name]
        full = full_pixmaps(name)
    ny, nx = wfrom.array_shape
    models = fast_models(wfrom, wto)
    rng = np.random.default_rng(5)
    for region in [(0, ny, 0, nx), (ny // 3, ny // 3 + 101, nx // 5 + 3, nx // 5 + 250)]:
        y0, y1, x0, x1 = region
        shape = (y1 - y0, x1 - x0)
        points = np.flatnonzero(rng.random(shape) < 0.01).astype(np.int64)
        segments = grown_segments(points, *shape)
        need = _segments_mask(segments, shape)
        assert (np.diff(segments[0]) > 1).any()  # rows with several segments
        ref = full[y0:y1, x0:x1]
        pm = calc_pixmap_at(None, wto, segments, (ny, nx), region=region, models=models)
        assert np.array_equal(pm[need].view(np.uint64), ref[need].view(np.uint64)), region
        assert np.isnan(pm[~need]).all()
        buf = np.full(shape + (2,), -7.0)
        assert calc_pixmap_at(wfrom, wto, segments, region=region, out=buf, models=models) is buf
        assert np.array_equal(buf[need].view(np.uint64), ref[need].view(np.uint64))
        assert (buf[~need] == -7.0).all()
        fill_segments(buf, *segments, np.nan)
        assert np.isnan(buf[need]).all() and (buf[~need] == -7.0).all()
    with pytest.raises(ValueError, match="models"):
        calc_pixmap_at(wfrom, wto, segments, (ny + 1, nx), region=region, models=models)
    with pytest.raises(ValueError, match="segments"):
        calc_pixmap_at(wfrom, wto, (segments[0][:-1], *segments[1:]), region=region)


def test_points_without_the_numba_path():
    wfrom = _synthetic_wcs(with_tables=True)
    wto = _north_up(wfrom, 0.03, shape=(900, 900))
    need = np.zeros((30, 70), bool)
    need[3, 4] = True
    assert calc_pixmap_at(wfrom, wto, need, region=(10, 40, 20, 90)) is not None
    wto.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    assert calc_pixmap_at(wfrom, wto, need, region=(10, 40, 20, 90)) is None
    models = fast_models(wfrom, wto)
    assert isinstance(models, str) and "TAN" in models
    assert calc_pixmap_at(wfrom, wto, need, region=(10, 40, 20, 90), models=models) is None
    with pytest.raises(ValueError, match="need"):
        calc_pixmap_at(wfrom, wto, need[1:], region=(10, 40, 20, 90))
    with pytest.raises(ValueError, match="out"):
        calc_pixmap_at(wfrom, wto, need, region=(10, 40, 20, 90), out=np.empty((30, 70, 2), "f4"))


def _spans_check(pm, ref, region, lo, hi):
    """``pm`` holds ``ref`` exactly inside the spans and NaN everywhere else."""
    y0, y1, x0, x1 = region
    cols = np.arange(x0, x1)
    inside = (cols >= lo[:, None]) & (cols < hi[:, None])
    assert pm.shape == (y1 - y0, x1 - x0, 2) and pm.flags.c_contiguous
    assert np.array_equal(pm[inside], ref[inside])
    assert np.isnan(pm[~inside]).all()
    assert inside.any() and (~inside).any()


def _test_spans(n: int, x0: int, x1: int):
    """Row spans of a region: runs of equal spans, single rows, empty rows, spans touching
    either edge of the region or covering it whole."""
    rng = np.random.default_rng(3)
    lo = rng.integers(x0, x1, n)
    hi = np.minimum(lo + rng.integers(0, x1 - x0, n), x1)
    lo[:5], hi[:5] = x0 + 2, x1 - 3  # a run of 5 equal rows
    lo[7], hi[7] = x0, x1  # the whole row
    lo[8], hi[8] = x0, x0 + 1  # left edge
    lo[9], hi[9] = x1 - 1, x1  # right edge
    lo[10:13], hi[10:13] = x1, x0  # empty rows (hi <= lo)
    return lo, hi


@pytest.mark.parametrize("name", ["acs_wfc1", "wfc3_uvis"])
def test_spans_are_the_region_map_inside_and_nan_outside(cases, name):
    wfrom, wto = cases[name]
    region = (301, 341, 1003, 1400)
    lo, hi = _test_spans(region[1] - region[0], region[2], region[3])
    ref = calc_pixmap(wfrom, wto, region=region)
    pm = calc_pixmap(wfrom, wto, region=region, spans=(lo, hi))
    _spans_check(pm, ref, region, lo, hi)


def test_spans_on_the_astropy_path():
    wfrom = _synthetic_wcs(with_tables=True)
    wto = _north_up(wfrom, 0.03, shape=(900, 900))
    wto.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    region = (10, 40, 20, 90)
    lo, hi = _test_spans(region[1] - region[0], region[2], region[3])
    y, x = np.mgrid[10:40, 20:90].astype(float)
    ref = np.stack(_astropy(wfrom, wto, x, y), axis=-1)
    pm = calc_pixmap(wfrom, wto, region=region, spans=(lo, hi))
    _spans_check(pm, ref, region, lo, hi)


def test_matches_drizzle_calc_pixmap(cases):
    dutils = pytest.importorskip("drizzle.utils")
    wfrom, wto = cases["acs_hrc"]
    ours = calc_pixmap(wfrom, wto)
    ref = dutils.calc_pixmap(wfrom, wto)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= TOL_PX


def _synthetic_wcs(with_tables: bool) -> WCS:
    """TAN-SIP WCS with generic lookup tables: both det2im axes, odd CDELT/CRPIX/CRVAL."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.wcs.crval = [150.1, -30.2]
    w.wcs.crpix = [200.5, 150.25]
    w.wcs.cd = np.array([[-1.1e-5, 2.0e-6], [1.5e-6, 1.2e-5]])
    w.pixel_shape = (400, 300)
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    a[2, 0], a[1, 1], a[0, 2], a[3, 0], a[1, 2] = 3e-6, -2e-6, 1e-6, 2e-9, -1e-9
    b[2, 0], b[1, 1], b[0, 2], b[0, 3], b[2, 1] = -1e-6, 2.5e-6, 4e-6, 3e-9, 1e-9
    from astropy.wcs import Sip

    w.sip = Sip(a, b, None, None, w.wcs.crpix)
    if with_tables:
        rng = np.random.default_rng(7)

        def tab(shape, crpix, crval, cdelt):
            data = rng.normal(0.0, 0.3, shape).astype(np.float32)
            return DistortionLookupTable(data, crpix, crval, cdelt)

        w.det2im1 = tab((7, 9), (1.5, 2.0), (10.0, -3.0), (50.0, 45.0))
        w.det2im2 = tab((5, 11), (0.0, 1.0), (0.0, 0.0), (37.0, 61.0))
        w.cpdis1 = tab((6, 8), (2.0, 1.0), (-5.0, 7.0), (60.0, 70.0))
        w.cpdis2 = tab((9, 12), (12.0, 3.0), (3.0, 3.0), (-32.0, 33.0))
    return w


def test_synthetic_tables_all_axes_match_astropy():
    """Both det2im axes, tables partly outside the chip (clamping), odd and negative CDELT."""
    wfrom = _synthetic_wcs(with_tables=True)
    wto = _north_up(wfrom, 0.03, shape=(900, 900))
    assert fast_path_reason(wfrom, wto) is None
    pm = calc_pixmap(wfrom, wto)
    y, x = np.indices(pm.shape[:2], dtype=float)
    xa, ya = _astropy(wfrom, wto, x, y)
    assert np.hypot(pm[..., 0] - xa, pm[..., 1] - ya).max() <= TOL_PX
    sub = calc_pixmap(wfrom, wto, region=(33, 101, 250, 400))
    assert np.array_equal(sub, pm[33:101, 250:400])


def test_shape_argument_and_errors():
    wfrom = _synthetic_wcs(with_tables=False)
    wto = _north_up(wfrom, 0.03, shape=(900, 900))
    pm = calc_pixmap(wfrom, wto, shape=(20, 30))
    assert pm.shape == (20, 30, 2)
    assert np.array_equal(pm, calc_pixmap(wfrom, wto)[:20, :30])
    noshape = wfrom.deepcopy()
    noshape.pixel_shape = None
    with pytest.raises(ValueError, match="pixel_shape"):
        calc_pixmap(noshape, wto)
    with pytest.raises(ValueError, match="region"):
        calc_pixmap(wfrom, wto, region=(0, 301, 0, 10))
    with pytest.raises(ValueError, match="region"):
        calc_pixmap(wfrom, wto, region=(5, 5, 0, 10))
    with pytest.raises(ValueError, match="disable_bbox"):
        calc_pixmap(wfrom, wto, disable_bbox="sideways")


def test_fallback_non_tan_output_is_exact():
    wfrom = _synthetic_wcs(with_tables=True)
    wto = _north_up(wfrom, 0.03, shape=(900, 900))
    wto.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    assert "not TAN" in fast_path_reason(wfrom, wto)
    pm = calc_pixmap(wfrom, wto, region=(10, 40, 20, 90))
    y, x = np.mgrid[10:40, 20:90].astype(float)
    xa, ya = _astropy(wfrom, wto, x, y)
    assert np.array_equal(pm[..., 0], xa) and np.array_equal(pm[..., 1], ya)


def test_fallback_distorted_output(cases):
    """Mapping into a distorted chip (as blot needs) goes through astropy's inverse."""
    wchip, wdrz = cases["acs_hrc"]
    assert "distortion" in fast_path_reason(wdrz, wchip, shape=(900, 900))
    pm = calc_pixmap(wdrz, wchip, shape=(900, 900), region=(400, 420, 400, 430))
    y, x = np.mgrid[400:420, 400:430].astype(float)
    xa, ya = _astropy(wdrz, wchip, x, y)
    assert np.abs(pm[..., 0] - xa).max() == 0 and np.abs(pm[..., 1] - ya).max() == 0


def test_far_side_of_sky_is_nan():
    wfrom = _synthetic_wcs(with_tables=False)
    wto = _north_up(wfrom, 0.03)
    wto.wcs.crval = [330.1, 30.2]  # antipode of the input
    pm = calc_pixmap(wfrom, wto, region=(0, 5, 0, 5))
    assert np.isnan(pm).all()
    xa, _ = _astropy(wfrom, wto, np.zeros(1), np.zeros(1))
    assert np.isnan(xa).all()


def test_inputs_not_modified(cases):
    wfrom, wto = cases["wfc3_uvis"]
    before = (wfrom.to_header(relax=True).tostring(), wto.to_header().tostring())
    calc_pixmap(wfrom, wto, region=(0, 10, 0, 10))
    after = (wfrom.to_header(relax=True).tostring(), wto.to_header().tostring())
    assert before == after


@pytest.mark.parametrize("fresh", [False, True])
def test_thread_safety(cases, acs_wfc_full, fresh):
    """photutils-style: the same WCS objects from many threads give the serial results.

    All threads start together (barrier). ``fresh``: WCS objects that nothing has used yet
    (astropy sets them up lazily on first use), shared by all threads from the start.
    """
    wfrom, wto = cases["acs_wfc1"]
    sin_to = _north_up(wfrom, 0.04)
    sin_to.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    jobs = []
    for k in range(8):
        y0 = 37 * k
        region = (y0, y0 + 60, 100 * k, 100 * k + 700)
        jobs.append((k % 3 != 0, region))

    def make():
        if not fresh:
            return wfrom, wto, sin_to
        new_sin = _north_up(wfrom, 0.04)
        new_sin.wcs.ctype = ["RA---SIN", "DEC--SIN"]
        return _load(acs_wfc_full), _north_up(wfrom, 0.04), new_sin

    def run(job, objs):
        tan, region = job
        src, tan_to, sin = objs
        return calc_pixmap(src, tan_to if tan else sin, region=region)

    serial = [run(job, make()) for job in jobs]
    shared = make()
    barrier = threading.Barrier(len(jobs))

    def threaded_run(job):
        barrier.wait()
        return run(job, shared)

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        threaded = list(pool.map(threaded_run, jobs))
    for a, b in zip(serial, threaded, strict=True):
        assert np.array_equal(a, b, equal_nan=True)


@pytest.mark.parametrize(
    ("crval_in", "crval_out", "lonpole"),
    [((10.0, 89.95), (190.0, 89.97), 180.0), ((300.0, -45.0), (300.02, -44.99), 150.0)],
)
def test_rotation_general(crval_in, crval_out, lonpole):
    """Near the pole, across RA = 0/180, non-default LONPOLE, rotated output grid."""
    wfrom = _synthetic_wcs(with_tables=True)
    wfrom.wcs.crval = list(crval_in)
    wfrom.wcs.lonpole = lonpole
    wto = WCS(naxis=2)
    wto.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wto.wcs.crval = list(crval_out)
    wto.wcs.crpix = [1000.0, -200.0]
    ang = np.radians(33.0)
    wto.wcs.cd = 8e-6 * np.array([[-np.cos(ang), np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    wto.wcs.lonpole = 175.0
    assert fast_path_reason(wfrom, wto) is None
    pm = calc_pixmap(wfrom, wto)
    y, x = np.indices(pm.shape[:2], dtype=float)
    xa, ya = _astropy(wfrom, wto, x, y)
    assert np.hypot(pm[..., 0] - xa, pm[..., 1] - ya).max() <= TOL_PX


def test_kernel_releases_the_gil():
    from hapdask.drizzle import _distortion

    assert _distortion.pixmap_kernel.targetoptions.get("nogil") is True


def _gwcs_with_bbox():
    gwcs = pytest.importorskip("gwcs")
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling import models
    from gwcs import coordinate_frames as cf

    transform = (
        (models.Shift(-50.0) & models.Shift(-40.0))
        | (models.Scale(1.0e-5) & models.Scale(1.0e-5))
        | models.Pix2Sky_TAN()
        | models.RotateNative2Celestial(150.0, -30.0, 180.0)
    )
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), name="sky", unit=(u.deg, u.deg))
    w = gwcs.WCS(forward_transform=transform, input_frame=detector, output_frame=sky)
    w.bounding_box = ((-0.5, 79.5), (-0.5, 59.5))  # x, y
    return w


@pytest.mark.parametrize("disable_bbox", ["to", "from", "both", "none"])
def test_gwcs_fallback_matches_drizzle(disable_bbox):
    """gwcs objects go through the fallback with drizzle's bounding-box semantics."""
    dutils = pytest.importorskip("drizzle.utils")
    wfrom = _gwcs_with_bbox()
    wto = WCS(naxis=2)
    wto.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wto.wcs.crval = [150.0, -30.0]
    wto.wcs.crpix = [60.0, 50.0]
    wto.wcs.cdelt = [-1.2e-5, 1.2e-5]
    assert fast_path_reason(wfrom, wto, shape=(70, 90)) is not None
    ours = calc_pixmap(wfrom, wto, shape=(70, 90), disable_bbox=disable_bbox)
    ref = dutils.calc_pixmap(wfrom, wto, shape=(70, 90), disable_bbox=disable_bbox)
    assert np.array_equal(ours, ref, equal_nan=True)
    assert np.isnan(ours[65, 85, 0]) == (disable_bbox in ("to", "none"))
    assert wfrom.bounding_box is not None  # the caller's object is untouched
    sub = calc_pixmap(
        wfrom, wto, shape=(70, 90), disable_bbox=disable_bbox, region=(50, 70, 70, 90)
    )
    assert np.array_equal(sub, ours[50:70, 70:90], equal_nan=True)
    if disable_bbox == "to":  # shape from the bounding box, as drizzle
        assert calc_pixmap(wfrom, wto).shape == (60, 80, 2)


def test_gil_released_while_computing(assert_releases_gil):
    """Other Python threads keep running during the call (C drizzle holds the GIL)."""
    wfrom = _synthetic_wcs(with_tables=True)
    wfrom.pixel_shape = (3000, 1500)
    wto = _north_up(wfrom, 0.03, shape=(900, 900))
    calc_pixmap(wfrom, wto, region=(0, 2, 0, 2))  # compiled
    assert_releases_gil(lambda: calc_pixmap(wfrom, wto))


def test_check_points_guard_the_fast_path(monkeypatch):
    """A model that disagrees with astropy (as an unmodelled WCS feature would) is not used."""
    import dataclasses

    from hapdask.drizzle import pixmap as pixmap_mod

    real_extract = pixmap_mod.extract_forward

    def off_by_a_bit(wcs):
        model = real_extract(wcs)
        return dataclasses.replace(model, crpix=model.crpix + 1e-4)

    monkeypatch.setattr(pixmap_mod, "extract_forward", off_by_a_bit)
    wfrom = _synthetic_wcs(with_tables=True)
    wto = _north_up(wfrom, 0.03, shape=(900, 900))
    assert "differs from astropy" in fast_path_reason(wfrom, wto)
    pm = calc_pixmap(wfrom, wto, region=(0, 20, 0, 30))
    y, x = np.mgrid[0:20, 0:30].astype(float)
    xa, ya = _astropy(wfrom, wto, x, y)
    assert np.array_equal(pm[..., 0], xa) and np.array_equal(pm[..., 1], ya)


# Lookup-table layouts that take different paths through the kernel's row-to-row reuse
# (det2im x row kept while its table cell is unchanged, NPOL x cells at dx, per-column NPOL
# products when dy is the row coordinate, per-pixel y cells otherwise, NPOL tables sharing
# one grid, SIP of order 4 in one pass or of another order; the first two, like ACS/WFC, take
# the kernel's one-pass rows, _row_fused): each is checked against astropy, and its regions,
# row spans and thread bands against its own full map, bit for bit.
_LAYOUTS = {
    # ACS/WFC-like: one-row det2im x table, NPOL on one grid, no det2im y
    "d2im_x_one_row": dict(d2im1=((1, 420), (0.0, 0.0), (0.0, 0.0), (1.0, 1.0)),
                           npol_same_grid=True, sip_order=4),
    # det2im x with several rows (dx changes along y), no det2im y, NPOL on two grids
    "d2im_x_rows": dict(d2im1=((7, 9), (1.5, 2.0), (10.0, -3.0), (50.0, 45.0)), sip_order=4),
    # det2im y only, one NPOL table (y), SIP order 4 varying along the row
    "d2im_y_npol_y": dict(d2im2=((5, 11), (0.0, 1.0), (0.0, 0.0), (37.0, 61.0)),
                          npol=(False, True), sip_order=4),
    # WFC3/UVIS-like: both det2im axes, NPOL on one grid, SIP order 4
    "uvis_like": dict(d2im1=((10, 10), (0.0, 0.0), (0.0, 0.0), (45.5, 33.3)),
                      d2im2=((10, 10), (0.0, 0.0), (0.0, 0.0), (45.5, 33.3)),
                      npol_same_grid=True, sip_order=4),
    # both det2im axes, one NPOL table (x), SIP of order 5 (the general Horner path)
    "d2im_xy_npol_x_sip5": dict(d2im1=((7, 9), (1.5, 2.0), (10.0, -3.0), (50.0, 45.0)),
                                d2im2=((5, 11), (0.0, 1.0), (0.0, 0.0), (37.0, 61.0)),
                                npol=(True, False), sip_order=5),
    # no det2im, SIP of order 2 (row-constant v, general order)
    "npol_sip2": dict(sip_order=2),
}


def _layout_wcs(d2im1=None, d2im2=None, npol=(True, True), npol_same_grid=False,
                sip_order=4) -> WCS:
    """TAN-SIP WCS (420 x 310 pixels) with the lookup tables of one of ``_LAYOUTS``."""
    from astropy.wcs import Sip

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.wcs.crval = [150.1, -30.2]
    w.wcs.crpix = [210.5, 155.25]
    w.wcs.cd = np.array([[-1.1e-5, 2.0e-6], [1.5e-6, 1.2e-5]])
    w.pixel_shape = (420, 310)
    rng = np.random.default_rng(11)
    m = sip_order + 1
    tri = np.add.outer(np.arange(m), np.arange(m))
    scale = np.where((tri >= 2) & (tri <= sip_order), 10.0 ** (-3.0 * tri), 0.0)
    a = rng.normal(0.0, 1.0, (m, m)) * scale
    b = rng.normal(0.0, 1.0, (m, m)) * scale
    w.sip = Sip(a, b, None, None, w.wcs.crpix)

    def tab(spec):
        shape, crpix, crval, cdelt = spec
        data = rng.normal(0.0, 0.3, shape).astype(np.float32)
        return DistortionLookupTable(data, crpix, crval, cdelt)

    if d2im1 is not None:
        w.det2im1 = tab(d2im1)
    if d2im2 is not None:
        w.det2im2 = tab(d2im2)
    grid1 = ((6, 8), (2.0, 1.0), (-5.0, 7.0), (60.0, 70.0))
    grid2 = grid1 if npol_same_grid else ((9, 12), (12.0, 3.0), (3.0, 3.0), (-32.0, 33.0))
    if npol[0]:
        w.cpdis1 = tab(grid1)
    if npol[1]:
        w.cpdis2 = tab(grid2)
    return w


@pytest.mark.parametrize("layout", list(_LAYOUTS))
def test_table_layouts_match_astropy(layout):
    wfrom = _layout_wcs(**_LAYOUTS[layout])
    wto = _north_up(wfrom, 0.03, shape=(900, 900))
    assert fast_path_reason(wfrom, wto) is None
    pm = calc_pixmap(wfrom, wto)
    y, x = np.indices(pm.shape[:2], dtype=float)
    xa, ya = _astropy(wfrom, wto, x, y)
    assert np.hypot(pm[..., 0] - xa, pm[..., 1] - ya).max() <= TOL_PX
    # without the tables the map moves by far more than the tolerance: they are applied
    bare = wfrom.deepcopy()
    bare.cpdis1 = bare.cpdis2 = bare.det2im1 = bare.det2im2 = None
    assert np.abs(calc_pixmap(bare, wto) - pm).max() > 100 * TOL_PX
    for region in [(33, 101, 250, 420), (0, 310, 0, 1), (309, 310, 0, 420), (77, 78, 5, 6)]:
        y0, y1, x0, x1 = region
        assert np.array_equal(calc_pixmap(wfrom, wto, region=region), pm[y0:y1, x0:x1]), region
    region = (3, 303, 11, 400)
    lo, hi = _test_spans(region[1] - region[0], region[2], region[3])
    _spans_check(calc_pixmap(wfrom, wto, region=region, spans=(lo, hi)),
                 pm[3:303, 11:400], region, lo, hi)
    assert np.array_equal(calc_pixmap(wfrom, wto, threads=3), pm)


@pytest.mark.parametrize("name", ["acs_wfc1", "wfc3_uvis"])
def test_threads_give_the_same_bits(cases, full_pixmaps, name):
    """Row bands in several threads: the map of one thread, also with row spans."""
    wfrom, wto = cases[name]
    full = full_pixmaps(name)
    assert np.array_equal(calc_pixmap(wfrom, wto, threads=2), full)
    region = (100, 1100, 500, 1500)
    lo, hi = _test_spans(region[1] - region[0], region[2], region[3])
    pm = calc_pixmap(wfrom, wto, region=region, spans=(lo, hi), threads=4)
    _spans_check(pm, full[100:1100, 500:1500], region, lo, hi)
    with pytest.raises(ValueError, match="threads"):
        calc_pixmap(wfrom, wto, region=(0, 2, 0, 2), threads=0)


@pytest.mark.parametrize("name", ["acs_wfc1", "wfc3_uvis"])
def test_kept_models_give_the_same_bits(cases, full_pixmaps, name):
    """calc_pixmap(models=fast_models(...)) skips the per-call WCS copies and astropy check:
    the whole map, a region and its row spans hold the bits of the calls without them; models
    of another shape are refused."""
    wfrom, wto = cases[name]
    full = full_pixmaps(name)
    models = fast_models(wfrom, wto)
    ny, nx = wfrom.array_shape
    assert np.array_equal(calc_pixmap(wfrom, wto, models=models).view(np.uint64),
                          full.view(np.uint64))
    region = (100, 1100, 500, 1500)
    lo, hi = _test_spans(region[1] - region[0], region[2], region[3])
    pm = calc_pixmap(wfrom, wto, region=region, spans=(lo, hi), models=models)
    _spans_check(pm, full[100:1100, 500:1500], region, lo, hi)
    with pytest.raises(ValueError, match="models"):
        calc_pixmap(wfrom, wto, (ny + 1, nx), models=models)
