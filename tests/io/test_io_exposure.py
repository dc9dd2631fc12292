"""hapdask.io.open_exposure / Exposure / Chip on the real HST files and synthetic edge cases."""

from __future__ import annotations

import gzip
import pickle
import shutil
import warnings

import fsspec
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from hapdask.io import Chip, Exposure, apply_reference_distortion, open_exposure

# file, instrument, detector, filter, exptime, kind, bunit, chip shapes, has pixel data
REAL_FILES = [
    ("headers/j8bt06nyq_sip_flt.fits", "ACS", "HRC", "f606w", 60.0, "flt", "ELECTRONS",
     [(1024, 1024)], False),
    ("headers/sample_ipppssoot_flc.fits", "WFC3", "UVIS", "f555w", 1.0, "flc", "ELECTRONS",
     [(10, 10), (10, 10)], True),
    ("headers/sample_ipppssoot_flt.fits", "WFC3", "IR", "f110w", 699.232483, "flt",
     "ELECTRONS/S", [(10, 10)], True),
    ("headers/sample_svm_flc.fits", "WFC3", "UVIS", "f555w", 170.0, "flc", "ELECTRONS",
     [(10, 10), (10, 10)], True),
    ("headers/sample_svm_flt.fits", "WFC3", "IR", "f110w", 699.232483, "flt", "ELECTRONS/S",
     [(10, 10)], True),
    ("real/j8bt06nyq_flt.fits", "ACS", "HRC", "f606w", 60.0, "flt", "ELECTRONS",
     [(1024, 1024)], True),
    ("real/j94f05bgq_flt.fits.gz", "ACS", "WFC", "f606w", 400.0, "flt", "ELECTRONS",
     [(2048, 4096), (2048, 4096)], True),
]  # fmt: skip


@pytest.mark.parametrize("row", REAL_FILES, ids=[r[0] for r in REAL_FILES])
def test_io_real_files_metadata(shared_data, row):
    name, inst, det, filt, exptime, kind, bunit, shapes, has_data = row
    exp = open_exposure(shared_data / name)
    assert exp.instrument == inst
    assert exp.detector == det
    assert exp.filter == filt
    assert exp.exptime == pytest.approx(exptime)
    assert exp.kind == kind
    assert exp.is_flc == (kind == "flc")
    assert exp.bunit == bunit
    assert exp.is_rate == bunit.endswith("/S")
    assert [c.shape for c in exp.chips] == shapes
    assert [c.extver for c in exp.chips] == list(range(1, len(shapes) + 1))
    assert all(c.has_data == has_data for c in exp.chips)
    assert exp.primary["INSTRUME"].strip() == inst
    assert exp.rootname == exp.primary["ROOTNAME"].strip().lower()
    assert exp.path.endswith(name.split("/")[-1])
    assert exp.date_obs == exp.primary["DATE-OBS"].strip()
    assert exp.expstart == exp.primary.get("EXPSTART")
    assert exp.proposal_id == exp.primary.get("PROPOSID")


def test_io_header_only_chip_cannot_be_read(shared_data):
    exp = open_exposure(shared_data / "headers/j8bt06nyq_sip_flt.fits")
    chip = exp.chips[0]
    assert chip.distortion == ("SIP",)
    with pytest.raises(ValueError, match=r"j8bt06nyq_sip_flt.fits: SCI,1 has no pixel data"):
        chip.read()


def test_io_gzip_stub_arrays_expand(shared_data):
    """j94f05bgq: zero SCI pixels, 2x2 constant ERR/DQ stubs expanded to the chip shape."""
    exp = open_exposure(shared_data / "real/j94f05bgq_flt.fits.gz")
    chip = exp.chips[1]
    assert chip.err_source == "constant" and chip.dq_source == "constant"
    sci, err, dq = chip.read((0, 64, 100, 228))
    assert sci.shape == err.shape == dq.shape == (64, 128)
    assert sci.dtype == np.float32 and err.dtype == np.float32 and dq.dtype == np.uint16
    assert not sci.any() and not err.any() and not dq.any()
    assert chip.ccdchip == 1 and exp.chips[0].ccdchip == 2


@pytest.mark.parametrize(
    "region", [(0, 1024, 0, 1024), (0, 1, 0, 1), (1000, 1024, 3, 700), (17, 400, 1023, 1024)]
)
def test_io_region_read_equals_full_read(shared_data, region):
    chip = open_exposure(shared_data / "real/j8bt06nyq_flt.fits").chips[0]
    sci, err, dq = chip.read()
    y0, y1, x0, x1 = region
    rs, re, rd = chip.read(region)
    np.testing.assert_array_equal(rs, sci[y0:y1, x0:x1])
    np.testing.assert_array_equal(re, err[y0:y1, x0:x1])
    np.testing.assert_array_equal(rd, dq[y0:y1, x0:x1])
    np.testing.assert_array_equal(chip.read_sci(region), sci[y0:y1, x0:x1])
    ns, ne, nd = chip.read(region, err=False)  # ERR not read: None in its place
    assert ne is None
    np.testing.assert_array_equal(ns, sci[y0:y1, x0:x1])
    np.testing.assert_array_equal(nd, dq[y0:y1, x0:x1])


def test_io_scattered_pixels_equal_region_read(shared_data):
    """read_at (cosmic-ray pixels of a region) gives the full read's values at those pixels,
    bit for bit (NaN payloads included: compared as bytes), with ERR optional."""
    chip = open_exposure(shared_data / "real/j8bt06nyq_flt.fits").chips[0]
    sci, err, dq = chip.read()
    rng = np.random.default_rng(9)
    idx = np.sort(rng.choice(sci.size, 5000, replace=False))
    rows, cols = np.divmod(idx, sci.shape[1])
    rows = np.r_[rows, 0, sci.shape[0] - 1]  # the chip's corners too
    cols = np.r_[cols, 0, sci.shape[1] - 1]
    s, e, d = chip.read_at(rows, cols)
    assert s.dtype == np.float32 and e.dtype == np.float32 and d.dtype == dq.dtype
    assert s.tobytes() == sci[rows, cols].tobytes()
    assert e.tobytes() == err[rows, cols].tobytes()
    np.testing.assert_array_equal(d, dq[rows, cols])
    s2, e2, d2 = chip.read_at(rows[:3], cols[:3], err=False)
    assert e2 is None and s2.tobytes() == sci[rows[:3], cols[:3]].tobytes()
    np.testing.assert_array_equal(d2, dq[rows[:3], cols[:3]])
    s0, _, d0 = chip.read_at(rows[:0], cols[:0], err=False)
    assert s0.shape == d0.shape == (0,)
    with pytest.raises(ValueError, match="outside the chip"):
        chip.read_at([0, sci.shape[0]], [0, 0])


def test_io_full_read_matches_astropy(shared_data):
    path = shared_data / "real/j8bt06nyq_flt.fits"
    sci, err, dq = open_exposure(path).chips[0].read()
    with fits.open(path) as hdul:
        np.testing.assert_array_equal(sci, hdul["SCI", 1].data)
        np.testing.assert_array_equal(err, hdul["ERR", 1].data)
        np.testing.assert_array_equal(dq, hdul["DQ", 1].data.astype(np.int16).view(np.uint16))
    assert sci.flags.c_contiguous and sci.flags.writeable
    assert sci.any() and dq.any()


@pytest.mark.parametrize("region", [(-1, 5, 0, 5), (0, 1025, 0, 5), (5, 5, 0, 5), (0, 5, 7, 3)])
def test_io_bad_region_rejected(shared_data, region):
    chip = open_exposure(shared_data / "real/j8bt06nyq_flt.fits").chips[0]
    with pytest.raises(ValueError, match="outside the chip"):
        chip.read(region)


def test_io_pickle_roundtrip_is_small_and_complete(shared_data):
    exp = open_exposure(shared_data / "headers/sample_svm_flc.fits")
    exp.chips[0].wcs()  # populate caches: they must not travel
    blob = pickle.dumps(exp)
    assert len(blob) < 250_000
    back = pickle.loads(blob)
    assert isinstance(back, Exposure) and isinstance(back.chips[0], Chip)
    assert back.primary == exp.primary
    assert back.chips[1].header == exp.chips[1].header
    for a, b in zip(back.chips, exp.chips, strict=True):
        np.testing.assert_array_equal(a.read()[0], b.read()[0])
        xy = np.array([[0.0, 0.0], [3000.0, 1500.0]])
        np.testing.assert_allclose(a.wcs().all_pix2world(xy, 0), b.wcs().all_pix2world(xy, 0))
    # a big exposure pickles without its pixels
    big = open_exposure(shared_data / "real/j8bt06nyq_flt.fits")
    assert len(pickle.dumps(big)) < 100_000


def test_io_wcs_new_object_and_matches_astropy(shared_data):
    path = shared_data / "headers/sample_svm_flc.fits"
    exp = open_exposure(path)
    rng = np.random.default_rng(1)
    xy = rng.uniform([0, 0], [4096, 2051], size=(500, 2))
    with fits.open(path) as hdul, warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        for chip in exp.chips:
            w1, w2 = chip.wcs(), chip.wcs()
            assert w1 is not w2 and w1.wcs is not w2.wcs
            assert w1.sip is not None and w1.cpdis1 is not None and w1.det2im1 is not None
            assert w1.pixel_shape == (chip.shape[1], chip.shape[0])
            ref = WCS(hdul["SCI", chip.extver].header, fobj=hdul)
            np.testing.assert_allclose(
                w1.all_pix2world(xy, 0), ref.all_pix2world(xy, 0), rtol=0, atol=1e-12
            )
            # the lookup tables matter: dropping them changes the transform
            plain = ref.deepcopy()
            plain.cpdis1 = plain.cpdis2 = plain.det2im1 = plain.det2im2 = None
            assert np.abs(plain.all_pix2world(xy, 0) - ref.all_pix2world(xy, 0)).max() > 1e-9
            # mutating one copy leaves the next one alone
            w1.wcs.crval = [0.0, 0.0]
            assert chip.wcs().wcs.crval[0] == pytest.approx(ref.wcs.crval[0])


def test_io_footprints_follow_outer_pixel_edges(shared_data):
    exp = open_exposure(shared_data / "real/j94f05bgq_flt.fits.gz")
    fps = exp.footprints(step=512)
    assert len(fps) == 2
    for chip, fp in zip(exp.chips, fps, strict=True):
        ny, nx = chip.shape
        assert fp.shape == (2 * (nx // 512 + ny // 512), 2)
        w = chip.wcs()
        corners = np.array([[-0.5, -0.5], [nx - 0.5, -0.5], [nx - 0.5, ny - 0.5], [-0.5, ny - 0.5]])
        sky = w.all_pix2world(corners, 0)
        for corner in sky:
            assert np.min(np.hypot(fp[:, 0] - corner[0], fp[:, 1] - corner[1])) < 1e-9
        np.testing.assert_allclose(fp[0], sky[0], atol=1e-12)
        # the chip centre lies inside the outline (tangent-plane point-in-polygon)
        centre = w.all_pix2world([[nx / 2, ny / 2]], 0)[0]
        assert _inside(fp, centre)
    # the two ACS/WFC chips do not overlap: each centre is outside the other outline
    c0 = exp.chips[0].wcs().all_pix2world([[2048, 1024]], 0)[0]
    assert not _inside(fps[1], c0)


def _inside(poly: np.ndarray, point: np.ndarray) -> bool:
    dec0 = np.deg2rad(point[1])
    x = (poly[:, 0] - point[0]) * np.cos(dec0)
    y = poly[:, 1] - point[1]
    winding = np.sum(np.diff(np.unwrap(np.arctan2(np.r_[y, y[:1]], np.r_[x, x[:1]]))))
    return abs(winding) > np.pi


def test_io_fsspec_memory_and_file_urls(shared_data):
    src = shared_data / "real/j8bt06nyq_flt.fits"
    fs = fsspec.filesystem("memory")
    fs.pipe("/hapdask-test/j8bt06nyq_flt.fits", src.read_bytes())
    local = open_exposure(src)
    for url in ("memory://hapdask-test/j8bt06nyq_flt.fits", src.resolve().as_uri()):
        remote = open_exposure(url)
        assert remote.path == url
        assert remote.filter == local.filter and remote.chips[0].shape == (1024, 1024)
        region = (100, 180, 900, 1024)
        for a, b in zip(remote.chips[0].read(region), local.chips[0].read(region), strict=True):
            np.testing.assert_array_equal(a, b)
        assert pickle.loads(pickle.dumps(remote)).path == url


def test_io_fsspec_gzip_url(shared_data):
    src = shared_data / "real/j94f05bgq_flt.fits.gz"
    fsspec.filesystem("memory").pipe("/hapdask-test/j94f05bgq_flt.fits.gz", src.read_bytes())
    exp = open_exposure("memory://hapdask-test/j94f05bgq_flt.fits.gz")
    assert [c.shape for c in exp.chips] == [(2048, 4096), (2048, 4096)]
    assert exp.chips[0].read((0, 4, 0, 4))[0].shape == (4, 4)


def test_io_to_rate(shared_data):
    counts = open_exposure(shared_data / "real/j8bt06nyq_flt.fits").chips[0]
    assert not counts.is_rate
    np.testing.assert_allclose(counts.to_rate(np.full(3, 120.0, np.float32)), 2.0)
    rate = open_exposure(shared_data / "headers/sample_svm_flt.fits").chips[0]
    arr = np.ones(3, np.float32)
    assert rate.is_rate and rate.to_rate(arr) is arr


# -- synthetic files ---------------------------------------------------------------------------


def _primary(**extra) -> fits.PrimaryHDU:
    hdr = fits.Header()
    hdr["INSTRUME"] = "WFC3"
    hdr["DETECTOR"] = "UVIS"
    hdr["FILTER"] = "F606W"
    hdr["EXPTIME"] = 100.0
    hdr["ROOTNAME"] = "itest01aq"
    for key, value in extra.items():
        if value is None:
            del hdr[key]
        else:
            hdr[key] = value
    return fits.PrimaryHDU(header=hdr)


def _sci(data, extver=1, **extra) -> fits.ImageHDU:
    hdu = fits.ImageHDU(data=data, name="SCI", ver=extver)
    h = hdu.header
    h["BUNIT"] = "ELECTRONS"
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRPIX1"], h["CRPIX2"] = 5.0, 5.0
    h["CRVAL1"], h["CRVAL2"] = 150.0, 2.0
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -1e-5, 0.0, 0.0, 1e-5
    for key, value in extra.items():
        h[key] = value
    return hdu


def _write(path, hdus):
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path


def test_io_constant_arrays_and_signed_dq(tmp_path):
    """NAXIS=0 + PIXVALUE arrays (HST constant-array convention) and int16 DQ bit 32768."""
    sci = np.arange(48, dtype=np.float32).reshape(6, 8)
    err = fits.ImageHDU(name="ERR", ver=1)
    err.header["PIXVALUE"], err.header["NPIX1"], err.header["NPIX2"] = 1.5, 8, 6
    dq = np.zeros((6, 8), np.int16)
    dq[2, 3] = -32768  # bit 15 as stored in a signed 16-bit FITS column
    dq[4, 5] = 4096
    path = _write(
        tmp_path / "itest01aq_flt.fits",
        [_primary(), _sci(sci), err, fits.ImageHDU(dq, name="DQ", ver=1)],
    )
    chip = open_exposure(path).chips[0]
    assert chip.err_source == "constant" and chip.dq_source == "image"
    s, e, d = chip.read((1, 5, 2, 7))
    np.testing.assert_array_equal(s, sci[1:5, 2:7])
    np.testing.assert_array_equal(e, np.full((4, 5), 1.5, np.float32))
    assert d.dtype == np.uint16 and d[1, 1] == 32768 and d[3, 3] == 4096
    # scattered pixels: the same conversions (constant ERR expanded, signed DQ as unsigned)
    s, e, d = chip.read_at([2, 4, 0], [3, 5, 7])
    np.testing.assert_array_equal(s, sci[[2, 4, 0], [3, 5, 7]])
    np.testing.assert_array_equal(e, np.full(3, 1.5, np.float32))
    assert d.dtype == np.uint16 and list(d) == [32768, 4096, 0]


def test_io_drz_without_err_dq(tmp_path):
    sci = np.ones((5, 7), np.float32)
    wht = fits.ImageHDU(np.ones((5, 7), np.float32), name="WHT", ver=1)
    path = _write(
        tmp_path / "hst_1_01_wfc3_uvis_f606w_itest01a_drz.fits",
        [_primary(), _sci(sci, BUNIT="ELECTRONS/S"), wht],
    )
    exp = open_exposure(path)
    assert exp.kind == "drz" and exp.is_rate
    chip = exp.chips[0]
    assert chip.err_source == "missing" and chip.dq_source == "missing"
    s, e, d = chip.read()
    assert s.sum() == 35 and not e.any() and not d.any()


def test_io_kind_from_contents_when_name_is_unusual(tmp_path):
    path = _write(
        tmp_path / "whatever.fits",
        [_primary(FILENAME="itest01aq_flc.fits"), _sci(np.ones((3, 3), np.float32))],
    )
    assert open_exposure(path).kind == "flc"


def test_io_gzip_local_equals_plain(tmp_path, shared_data):
    plain = shared_data / "real/j8bt06nyq_flt.fits"
    gz = tmp_path / "j8bt06nyq_flt.fits.gz"
    with open(plain, "rb") as src, gzip.open(gz, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst)
    region = (500, 520, 10, 900)
    for a, b in zip(
        open_exposure(gz).chips[0].read(region),
        open_exposure(plain).chips[0].read(region),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


# -- errors ------------------------------------------------------------------------------------


def test_io_missing_file(tmp_path):
    with pytest.raises(OSError, match=r"nope_flt\.fits: no such file"):
        open_exposure(tmp_path / "nope_flt.fits")


def test_io_not_fits(tmp_path):
    path = tmp_path / "junk_flt.fits"
    path.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(OSError, match=r"junk_flt\.fits: cannot open as FITS"):
        open_exposure(path)


def test_io_truncated_plain_file(tmp_path, shared_data):
    path = tmp_path / "cut_flt.fits"
    path.write_bytes((shared_data / "real/j8bt06nyq_flt.fits").read_bytes()[:3_000_000])
    with pytest.raises(OSError, match=r"cut_flt\.fits: .*truncated"):
        open_exposure(path)


def test_io_truncated_gzip_file(tmp_path, shared_data):
    path = tmp_path / "cut_flt.fits.gz"
    path.write_bytes((shared_data / "real/j94f05bgq_flt.fits.gz").read_bytes()[:20_000])
    with pytest.raises(OSError, match=r"cut_flt\.fits\.gz: gzip file is truncated"):
        open_exposure(path)


def test_io_missing_sci(tmp_path):
    path = _write(
        tmp_path / "nosci_flt.fits",
        [_primary(), fits.ImageHDU(np.zeros((3, 3)), name="ERR", ver=1)],
    )
    with pytest.raises(ValueError, match=r"nosci_flt\.fits: no SCI extension"):
        open_exposure(path)


@pytest.mark.parametrize("key", ["INSTRUME", "EXPTIME", "DETECTOR", "FILTER"])
def test_io_missing_primary_keyword(tmp_path, key):
    path = _write(
        tmp_path / "nokey_flt.fits", [_primary(**{key: None}), _sci(np.ones((3, 3), np.float32))]
    )
    with pytest.raises(ValueError, match=rf"nokey_flt\.fits: primary header \(HDU 0\).*{key}"):
        open_exposure(path)


def test_io_missing_bunit(tmp_path):
    sci = _sci(np.ones((3, 3), np.float32))
    del sci.header["BUNIT"]
    path = _write(tmp_path / "nobunit_flt.fits", [_primary(), sci])
    with pytest.raises(ValueError, match=r"nobunit_flt\.fits: SCI,1 \(HDU 1\).*BUNIT"):
        open_exposure(path)


def test_io_missing_lookup_extension(tmp_path):
    sci = _sci(np.ones((3, 3), np.float32), CPDIS1="LOOKUP")
    sci.header["DP1"] = "EXTVER: 1"
    sci.header["DP1"] = "NAXES: 2"
    path = _write(tmp_path / "nonpol_flt.fits", [_primary(), sci])
    with pytest.raises(ValueError, match=r"nonpol_flt\.fits: SCI,1 refers to WCSDVARR,1"):
        open_exposure(path)


def test_io_nonconstant_stub_rejected(tmp_path):
    err = fits.ImageHDU(np.array([[1, 2], [3, 4]], np.float32), name="ERR", ver=1)
    path = _write(tmp_path / "stub_flt.fits", [_primary(), _sci(np.ones((6, 6), np.float32)), err])
    with pytest.raises(ValueError, match=r"stub_flt\.fits: ERR,1 \(HDU 2\).*not constant"):
        open_exposure(path)


def test_io_bad_wcs_names_file_and_hdu(tmp_path):
    sci = _sci(np.ones((3, 3), np.float32))
    sci.header["CTYPE1"] = "RA---XYZ"
    path = _write(tmp_path / "badwcs_flt.fits", [_primary(), sci])
    chip = open_exposure(path).chips[0]
    with pytest.raises(ValueError, match=r"badwcs_flt\.fits: SCI,1: invalid or incomplete WCS"):
        chip.wcs()


def test_io_concurrent_reads_and_wcs_are_consistent(shared_data):
    """Dask's threaded scheduler reads chips and builds WCSs from many threads at once."""
    from concurrent.futures import ThreadPoolExecutor

    exp = open_exposure(shared_data / "real/j8bt06nyq_flt.fits")
    chip = exp.chips[0]
    regions = [(y, y + 64, x, x + 96) for y in range(0, 1024, 128) for x in range(0, 1024, 256)]
    sci_full, _, dq_full = chip.read()
    xy = np.array([[10.0, 20.0], [900.0, 800.0]])
    expected_sky = chip.wcs().all_pix2world(xy, 0)

    def work(region):
        sci, _, dq = chip.read(region)
        sky = chip.wcs().all_pix2world(xy, 0)
        return region, sci, dq, sky

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, regions * 2))
    for (y0, y1, x0, x1), sci, dq, sky in results:
        np.testing.assert_array_equal(sci, sci_full[y0:y1, x0:x1])
        np.testing.assert_array_equal(dq, dq_full[y0:y1, x0:x1])
        np.testing.assert_array_equal(sky, expected_sky)


def test_io_s3_urls_are_anonymous(monkeypatch):
    """s3:// goes through fsspec with anon=True (no network here: the call is intercepted)."""
    import hapdask.io._fits as fitsmod

    seen = {}

    def fake_open(name, **kwargs):
        seen["name"], seen["kwargs"] = name, kwargs
        raise FileNotFoundError("intercepted")

    monkeypatch.setattr(fitsmod.fits, "open", fake_open)
    url = "s3://stpubdata/hst/public/j8bt/j8bt06nyq/j8bt06nyq_flt.fits"
    with pytest.raises(OSError, match="j8bt06nyq_flt.fits"):
        open_exposure(url)
    assert seen["name"] == url
    assert seen["kwargs"]["use_fsspec"] is True
    assert seen["kwargs"]["fsspec_kwargs"] == {"anon": True}
    assert seen["kwargs"]["lazy_load_hdus"] is True
    with pytest.raises(OSError):
        open_exposure("https://example.invalid/x_flt.fits")
    assert seen["kwargs"]["fsspec_kwargs"] == {}


def test_io_big_endian_dq_region_from_memmap(tmp_path):
    """Region reads of memory-mapped files return native-endian copies with the right bits."""
    dq = (np.arange(40 * 50).reshape(40, 50) % 7 * 512).astype(np.int16)
    sci = np.random.default_rng(3).normal(size=(40, 50)).astype(np.float32)
    path = _write(
        tmp_path / "imm01aaq_flt.fits",
        [_primary(), _sci(sci), fits.ImageHDU(dq, name="DQ", ver=1)],
    )
    s, _, d = open_exposure(path).chips[0].read((5, 30, 7, 44))
    assert s.dtype.isnative and d.dtype == np.uint16 and d.dtype.isnative
    np.testing.assert_array_equal(s, sci[5:30, 7:44])
    np.testing.assert_array_equal(d, dq[5:30, 7:44].astype(np.uint16))
    s[:] = 0  # a private copy: the file is untouched
    np.testing.assert_array_equal(open_exposure(path).chips[0].read_sci(), sci)


@pytest.mark.slow
def test_io_full_acs_distortion_matches_stwcs(shared_data, tmp_path):
    """j94f05bgq after stwcs.updatewcs (real IDCTAB/NPOLFILE/D2IMFILE): SIP + NPOL + D2IM.

    The oracle is stwcs' HSTWCS, the WCS drizzlepac uses; our chip WCS must agree exactly.
    """
    pytest.importorskip("stwcs.updatewcs")
    hstwcs = pytest.importorskip("stwcs.wcsutil")
    real = shared_data / "real"
    path = apply_reference_distortion(
        real / "j94f05bgq_flt.fits.gz", tmp_path / "j94f05bgq_flt.fits", real
    )

    exp = open_exposure(path)
    assert [c.distortion for c in exp.chips] == [("SIP", "NPOL", "D2IM")] * 2
    assert len(pickle.dumps(exp)) < 300_000  # lookup tables travel, pixels do not
    rng = np.random.default_rng(0)
    xy = rng.uniform([-0.5, -0.5], [4095.5, 2047.5], size=(2000, 2))
    with fits.open(path) as hdul:
        for chip, fp in zip(exp.chips, exp.footprints(step=256), strict=True):
            ref = hstwcs.HSTWCS(hdul, ext=("SCI", chip.extver))
            ours = chip.wcs()
            np.testing.assert_allclose(ours.all_pix2world(xy, 0), ref.all_pix2world(xy, 0),
                                       rtol=0, atol=1e-11)  # fmt: skip
            # the lookup tables move positions by several milli-arcseconds: they are in use
            plain = ours.deepcopy()
            plain.cpdis1 = plain.cpdis2 = plain.det2im1 = plain.det2im2 = None
            shift = np.abs(ours.all_pix2world(xy, 0) - plain.all_pix2world(xy, 0)).max() * 3600
            assert shift > 1e-3
            corner = ref.all_pix2world([[4095.5, 2047.5]], 0)[0]
            assert np.min(np.hypot(fp[:, 0] - corner[0], fp[:, 1] - corner[1])) < 1e-10


def test_io_editing_a_parsed_header_does_not_change_other_wcs(shared_data):
    """The per-process WCS template cache is keyed on the file's header text: an in-place edit
    of one Exposure's parsed header must not leak into the WCS another Exposure gets."""
    path = shared_data / "real/j8bt06nyq_flt.fits"
    xy = np.array([[10.0, 20.0], [900.0, 800.0]])
    with fits.open(path) as h:  # oracle: astropy on the file itself
        expected = WCS(h["SCI", 1].header, h).all_pix2world(xy, 0)
    from hapdask.io import exposure as exposure_module

    exposure_module._WCS_CACHE.clear()
    edited = open_exposure(path).chips[0]
    edited.header["CRVAL1"] = edited.header["CRVAL1"] + 0.01
    edited.wcs()
    fresh = open_exposure(path).chips[0]
    np.testing.assert_allclose(fresh.wcs().all_pix2world(xy, 0), expected, rtol=0, atol=1e-9)
