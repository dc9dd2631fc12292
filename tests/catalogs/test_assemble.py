"""Total-catalog assembly, trimming, the CR-contamination rule, ECSV output, product reading."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from catalog_truth import make_wcs

from hapdask.catalogs import (
    CatalogParams,
    DrizzleProduct,
    assemble_catalogs,
    catalog_filename,
    catalog_meta,
    context_count,
    cr_contamination,
    detect_points,
    detect_segmentation,
    filter_background,
    make_catalogs,
    measure_filter,
    prepare_detection,
    product,
    read_product,
    total_catalog,
    write_catalog,
)
from hapdask.catalogs.assemble import FILL_VALUE, n_good_sources, trim_total
from hapdask.catalogs.point import POINT_COLUMNS
from hapdask.catalogs.segment import SEGMENT_COLUMNS

PARAMS = CatalogParams.for_detector("acs_wfc")


def _sources(n):
    t = Table()
    t["ID"] = np.arange(1, n + 1)
    t["X-Center"] = np.arange(n, dtype=float)
    t["Y-Center"] = np.arange(n, dtype=float)
    t["RA"] = np.zeros(n)
    t["DEC"] = np.zeros(n)
    return t


def _filter_cat(ids, flags):
    t = Table()
    t["ID"] = ids
    t["MagAp2"] = np.full(len(ids), 22.0)
    t["CI"] = np.full(len(ids), 0.9)
    t["Flags"] = flags
    return t


def test_total_catalog_join_and_trim():
    src = _sources(5)
    f1 = _filter_cat([1, 2, 3, 4, 5], [0, 8, 16, 5, 1])
    f2 = _filter_cat([1, 2, 3, 4], [64, 1, 24, 6, ])  # ID 5 missing in F2
    total = total_catalog(src, {"F775W": f1, "F850LP": f2})
    assert total.colnames == ["ID", "X-Center", "Y-Center", "RA", "DEC", "MagAP2_F775W",
                              "CI_F775W", "Flags_F775W", "MagAP2_F850LP", "CI_F850LP",
                              "Flags_F850LP"]
    assert list(total["ID"]) == [1, 2, 3, 4, 5]
    assert total["Flags_F850LP"].mask[4]
    trimmed = trim_total(total, ["F775W", "F850LP"], PARAMS)
    # kept if any filter has flag <= 5: ID 1 (0), 2 (1 in F850LP), 4 (5), 5 (1, other missing)
    assert list(trimmed["ID"]) == [1, 2, 4, 5]
    # good (flag < 2 in some filter): IDs 1, 2, 5
    assert n_good_sources(total, ["F775W", "F850LP"]) == 3


def test_cr_contamination_rule():
    # two single 400 s exposures (T1 = 800 s), TEXPTIME 800: threshold 300 x 800^2 / 800
    assert cr_contamination(100, 300.0, [400.0, 400.0], 800.0)
    assert not cr_contamination(0, 300.0, [400.0, 400.0], 800.0)  # nothing good: kept
    assert not cr_contamination(240001, 300.0, [400.0, 400.0], 800.0)
    assert not cr_contamination(100, 300.0, None, 800.0)  # multi-exposure filters: T1 = 0
    assert not cr_contamination(100, 0.0, [400.0], 400.0)  # IR: no factor


def test_make_catalogs_rejects_single_exposure_cr_catalogs(field, tmp_path):
    """Single-exposure filter products: N_good is far below crfactor T1^2 / TEXPTIME, so both
    catalog types are written empty, with the reason in the metadata."""
    singles = {}
    for name, prod in field.filters.items():
        hdr = prod.header.copy()
        hdr["NDRIZIM"] = hdr["NUMEXP"] = 1
        hdr["EXPTIME"] = hdr["TEXPTIME"] = 500.0
        singles[name] = replace(prod, header=hdr)
    res = make_catalogs(field.total, singles, PARAMS)
    assert res.rejected and "CR contamination" in res.rejected
    paths = res.write(tmp_path)
    assert len(paths) == 6
    for p in paths:
        t = Table.read(p, format="ascii.ecsv")
        assert len(t) == 0 and "CR contamination" in t.meta["rejected"]


def test_written_catalogs_columns_units_metadata(field, field_catalogs, tmp_path):
    res = field_catalogs
    assert res.rejected is None  # the same products with 2 exposures each are kept
    paths = res.write(tmp_path)
    names = sorted(os.path.basename(p) for p in paths)
    assert names == sorted([
        "test_total_point-cat.ecsv", "test_total_segment-cat.ecsv",
        "test_f775w_point-cat.ecsv", "test_f775w_segment-cat.ecsv",
        "test_f850lp_point-cat.ecsv", "test_f850lp_segment-cat.ecsv"])
    point = Table.read(tmp_path / "test_f775w_point-cat.ecsv", format="ascii.ecsv")
    assert tuple(point.colnames) == POINT_COLUMNS
    assert str(point["RA"].unit) == "deg" and str(point["FluxAp2"].unit) == "electron / s"
    assert str(point["MagAp2"].unit) == "mag(AB)"
    assert point.meta["n_sources"] == len(point) == len(res.point_filters["F775W"])
    assert point.meta["FILTER"] == "F775W" and point.meta["aperture_2_arcsec"] == 0.15
    assert any("0-based" in n for n in point.meta["notes"])
    seg = Table.read(tmp_path / "test_f775w_segment-cat.ecsv", format="ascii.ecsv")
    assert tuple(seg.colnames) == SEGMENT_COLUMNS
    assert str(seg["Theta"].unit) == "rad"
    assert np.all(np.abs(seg["Theta"]) <= np.pi / 2)
    total = Table.read(tmp_path / "test_total_point-cat.ecsv", format="ascii.ecsv")
    assert "Flags_F850LP" in total.colnames and "MagAP2_F775W" in total.colnames
    # no NaN in any file: missing values are -9999
    for t in (point, seg, total):
        for name in t.colnames:
            if t[name].dtype.kind == "f":
                assert np.isfinite(t[name]).all()
    assert (np.asarray(point["MagAp2"]) == FILL_VALUE).sum() == np.isnan(
        res.point_filters["F775W"]["MagAp2"]).sum()
    # deterministic: the same input gives the same bytes
    make_catalogs(field.total, field.filters, PARAMS).write(tmp_path / "again")
    for p in paths:
        assert (tmp_path / "again" / p.name).read_bytes() == p.read_bytes()


def test_write_never_overwrites(tmp_path):
    foreign = tmp_path / "x_point-cat.ecsv"
    foreign.write_text("someone else's file\n")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_catalog(_sources(3), foreign)
    assert foreign.read_text() == "someone else's file\n"
    assert sorted(os.listdir(tmp_path)) == ["x_point-cat.ecsv"]  # no temporary left
    write_catalog(_sources(3), foreign, overwrite=True)
    assert len(Table.read(foreign, format="ascii.ecsv")) == 3
    assert catalog_filename("hst_1_01_acs_wfc_f775w_j8xx01_drc.fits", "point") == \
        "hst_1_01_acs_wfc_f775w_j8xx01_point-cat.ecsv"
    with pytest.raises(ValueError, match="kind"):
        catalog_filename("a_drc.fits", "aperture")


def test_read_product_and_context(tmp_path):
    sci = np.arange(12, dtype=np.float32).reshape(3, 4)
    ctx = np.array([[0, 1, 3, 7]] * 3, dtype=np.int32)
    hdr = make_wcs().to_header()
    hdul = fits.HDUList([fits.PrimaryHDU(header=fits.Header({"PHOTFLAM": 1e-19,
                                                             "PHOTPLAM": 7000.0,
                                                             "EXPTIME": 100.0})),
                         fits.ImageHDU(sci, hdr, name="SCI"),
                         fits.ImageHDU(np.ones_like(sci), hdr, name="WHT"),
                         fits.ImageHDU(ctx, hdr, name="CTX")])
    path = tmp_path / "p_drz.fits"
    hdul.writeto(path)
    prod = read_product(path)
    assert prod.name == "p_drz.fits" and prod.photometry_keywords() == (1e-19, 7000.0)
    assert prod.pixel_scale == pytest.approx(0.05)
    assert (prod.exposure_count == np.array([[0, 1, 2, 3]] * 3)).all()
    two = np.stack([ctx, np.full((3, 4), -1, dtype=np.int32)])
    assert (context_count(two) == np.array([[32, 33, 34, 35]] * 3)).all()
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci, name="SCI")]).writeto(
        tmp_path / "bad.fits")
    with pytest.raises(ValueError, match="bad.fits: no WHT"):
        read_product(tmp_path / "bad.fits")
    with pytest.raises(ValueError, match="PHOTFLAM"):
        DrizzleProduct(sci, sci, make_wcs()).photometry_keywords()


def _popcount_oracle(ctx: np.ndarray) -> np.ndarray:
    """Set bits per pixel summed over planes, bit by bit in Python integers."""
    planes = ctx.reshape(-1, *ctx.shape[-2:]).astype(np.int64) & 0xFFFFFFFF
    return np.array([[sum(bin(int(v)).count("1") for v in planes[:, i, j])
                      for j in range(planes.shape[2])] for i in range(planes.shape[1])])


@pytest.mark.parametrize("nplanes", [0, 1, 3])
def test_read_product_band_by_band(tmp_path, monkeypatch, nplanes):
    """SCI/WHT (big-endian float64 in the file) and the exposure count are read in bands of a
    few rows: the same values as astropy's whole-image read (float32) and the bit count of an
    oracle; CTX of up to 7 planes counts in uint8; ``weights=False`` leaves WHT a memory map."""
    monkeypatch.setattr(product, "_BAND", 4)  # several bands and a partial last one
    rng = np.random.default_rng(5)
    sci = rng.normal(0.0, 1.0, (11, 6)) * 1e3
    sci[2, 3] = np.nan
    wht = rng.uniform(0.0, 5.0, (11, 6))
    ctx = rng.integers(-2**31, 2**31, (max(nplanes, 1), 11, 6), dtype=np.int64).astype(np.int32)
    ctx[0, 0, 0] = -1  # all 32 bits
    hdr = make_wcs().to_header()
    hdus = [fits.PrimaryHDU(header=fits.Header({"EXPTIME": 1.0})),
            fits.ImageHDU(sci, hdr, name="SCI"), fits.ImageHDU(wht, hdr, name="WHT")]
    if nplanes:
        hdus.append(fits.ImageHDU(ctx[0] if nplanes == 1 else ctx, hdr, name="CTX"))
    path = tmp_path / "p_drz.fits"
    fits.HDUList(hdus).writeto(path)
    prod = read_product(path)
    with fits.open(path) as hdul:
        want_sci = np.asarray(hdul["SCI"].data, dtype=np.float32)
        want_wht = np.asarray(hdul["WHT"].data, dtype=np.float32)
    assert prod.sci.dtype == np.float32 and prod.sci.dtype.isnative
    assert np.array_equal(prod.sci, want_sci, equal_nan=True)
    assert np.array_equal(prod.wht, want_wht)
    if nplanes:
        assert prod.nexp.dtype == np.uint8
        assert np.array_equal(prod.nexp, _popcount_oracle(ctx))
        assert np.array_equal(context_count(ctx), _popcount_oracle(ctx))
    else:
        assert prod.nexp is None
    lazy = read_product(path, weights=False)
    # the file's memory map (big-endian float64, not converted) with the same values
    assert lazy.wht.dtype == np.dtype(">f8") and not lazy.wht.flags.owndata
    assert np.array_equal(lazy.wht, wht)
    assert np.array_equal(lazy.sci, want_sci, equal_nan=True)


def test_context_count_wide():
    """More than 7 planes (over 255 exposures) count in uint16."""
    ctx = np.full((9, 2, 3), -1, dtype=np.int32)
    ctx[8, 1, 2] = 5
    got = context_count(ctx)
    assert got.dtype == np.uint16
    assert np.array_equal(got, _popcount_oracle(ctx))


def _steps_apart(field, order_detections):
    """make_catalogs' steps called apart, as the SVM tasks call them (each detection releases
    its use of the total's SCI; ``order_detections(det)`` runs the two detections and returns
    ``(points, seg)``; the filters measured in the other order, from a float64 SCI used in
    place): the catalogs and the Detection."""
    bkgs = {f: filter_background(p, PARAMS) for f, p in field.filters.items()}
    det = prepare_detection(field.total, PARAMS)
    points, seg = order_detections(det)
    measured = {f: measure_filter(replace(field.filters[f],
                                          sci=field.filters[f].sci.astype(np.float64)),
                                  points, seg, PARAMS, background=bkgs[f], own_sci=True)
                for f in reversed(field.filters)}
    meta = {field.filters[f].name: catalog_meta(field.filters[f], PARAMS, f)
            for f in field.filters}
    meta[field.total.name] = catalog_meta(field.total, PARAMS)
    cats = assemble_catalogs(field.total.name, field.total.exptime, points, seg,
                             {f: measured[f] for f in field.filters}, PARAMS, meta)
    return cats, det


def _side_by_side(det):
    with ThreadPoolExecutor(2) as pool:
        seg = pool.submit(detect_segmentation, det, PARAMS, release=True)
        points = pool.submit(detect_points, det, PARAMS, release=True)
        return points.result(), seg.result()


def _segmentation_first(det):
    """The order a free thread may give the SVM tasks: the segmentation done (and its use of
    the SCI released) before the point detection starts."""
    seg = detect_segmentation(det, PARAMS, release=True)
    assert det.total.sci.strides != (0, 0) and det.sci_users == 1  # still held for points
    return detect_points(det, PARAMS, release=True), seg


@pytest.mark.parametrize("order", [_side_by_side, _segmentation_first])
def test_steps_apart_equal_make_catalogs(field, field_catalogs, tmp_path, order):
    """The steps apart (detections side by side or the segmentation first, filters in the
    other order, float64 SCI in place): the same ECSV bytes as the one call; the total's SCI
    is dropped once both detections are done with it."""
    cats, det = _steps_apart(field, order)
    assert det.total.sci.strides == (0, 0) and det.sci_users == 0  # released: a broadcast 0
    one = field_catalogs.write(tmp_path / "one")
    apart = cats.write(tmp_path / order.__name__)
    assert [p.name for p in one] == [p.name for p in apart]
    for a, b in zip(one, apart, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert len(field_catalogs.point_total) > 10 and len(field_catalogs.segment_total) > 10


def test_read_product_float64_sci(field, tmp_path):
    """``sci_dtype=np.float64``: the file's float32 SCI exactly, as float64 (NaN kept)."""
    prod = field.filters[next(iter(field.filters))]
    sci = prod.sci.copy()
    sci[3, 4] = np.nan
    path = tmp_path / "p_drz.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci, name="SCI"),
                  fits.ImageHDU(prod.wht, name="WHT")]).writeto(path)
    got = read_product(path, sci_dtype=np.float64).sci
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, sci.astype(np.float64))
