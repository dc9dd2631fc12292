"""FITS/zarr tile writers and whole-layer statistics on synthetic arrays."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from astropy.wcs import WCS

from hapdask.export import fits as xfits
from hapdask.export import headers, stats
from hapdask.export import zarr as xzarr


def _wcs_header(ny: int, nx: int) -> fits.Header:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [180.0, 26.0]
    w.wcs.crpix = [nx / 2, ny / 2]
    w.wcs.cd = np.diag([-1.1111111111111112e-05, 1.1111111111111112e-05])
    return w.to_header()


def _tiles(ny, nx, t):
    for ty, y0 in enumerate(range(0, ny, t)):
        for tx, x0 in enumerate(range(0, nx, t)):
            yield (ty, tx), (y0, min(y0 + t, ny), x0, min(x0 + t, nx))


@pytest.mark.parametrize("tile", [64, 300])  # partial-width tiles; full-width tiles
def test_fits_tiles_zero_rows_left_out_same_bytes(tmp_path, tile):
    """WHT and CTX rows whose bytes are all 0 are not written (the data areas are created as
    zeros): the file holds exactly the arrays, -0.0 (sign bit set) included."""
    ny, nx = 203, 257
    rng = np.random.default_rng(7)
    sci = rng.normal(size=(ny, nx)).astype(np.float32)
    wht = rng.uniform(1, 100, size=(ny, nx)).astype(np.float32)
    wht[:50] = 0.0                 # empty bands above, inside and below the footprint
    wht[90:130, :] = 0.0
    wht[95, 17] = -0.0             # not 0 bytes: must be written
    wht[180:] = 0.0
    wht[60:70, 100:] = 0.0         # zero only in some tiles of the row
    for j in range(140, 175):      # a slanted footprint edge: zeros before and after in a row
        wht[j, :j - 130] = 0.0
        wht[j, 250 - (j - 140):] = 0.0
    wht[150, 3] = -0.0             # inside the leading zeros: written
    ctx = rng.integers(1, 2**31 - 1, size=(2, ny, nx)).astype(np.int32)
    ctx[0, :50] = 0
    ctx[1, 100:] = 0
    final = tmp_path / "zero_drz.fits"
    layout = xfits.create_fits(final, (ny, nx), primary=fits.Header(), sci=_wcs_header(ny, nx),
                               nplanes=2)
    for _, (y0, y1, x0, x1) in _tiles(ny, nx, tile):
        xfits.write_fits_tile(layout, (y0, y1, x0, x1), sci[y0:y1, x0:x1], wht[y0:y1, x0:x1],
                              ctx[:, y0:y1, x0:x1])
    xfits.finalize_fits(layout, {})
    with fits.open(final) as hdul:
        assert hdul["WHT"].data.astype(np.float32).view(np.uint32).tobytes() \
            == wht.view(np.uint32).tobytes()
        np.testing.assert_array_equal(hdul["CTX"].data, ctx)
        np.testing.assert_array_equal(hdul["SCI"].data, sci)


@pytest.mark.parametrize("nplanes", [0, 1, 2])
def test_fits_tiles_out_of_order_round_trip(tmp_path, nplanes):
    ny, nx, t = 301, 257, 64
    rng = np.random.default_rng(1)
    sci = rng.normal(size=(ny, nx)).astype(np.float32)
    sci[:10, :20] = np.nan
    wht = rng.uniform(0, 100, size=(ny, nx)).astype(np.float32)
    ctx = rng.integers(0, 2**31 - 1, size=(max(nplanes, 1), ny, nx)).astype(np.int32)
    primary = fits.Header({"SCELLID": "p1889x07y19", "MEANWHT": 0.0, "MEDWHT": 0.0})
    tab = headers.hdrtab([{"ROOTNAME": "a", "EXPTIME": 10.0}, {"ROOTNAME": "bb", "X": 3}])
    final = tmp_path / "out_drz.fits"
    layout = xfits.create_fits(final, (ny, nx), primary=primary, sci=_wcs_header(ny, nx),
                               nplanes=nplanes, hdrtab=tab)
    assert not final.exists() and xfits.temporary_name(final).exists()
    tiles = list(_tiles(ny, nx, t))
    for _, (y0, y1, x0, x1) in reversed(tiles):
        c = ctx[:nplanes, y0:y1, x0:x1] if nplanes else None
        xfits.write_fits_tile(layout, (y0, y1, x0, x1), sci[y0:y1, x0:x1], wht[y0:y1, x0:x1], c)
    assert not final.exists()
    xfits.finalize_fits(layout, {"MEANWHT": 12.5, "MEDWHT": 3.25})
    assert final.exists() and not xfits.temporary_name(final).exists()
    with fits.open(final, checksum=False) as hdul:
        hdul.verify("exception")
        names = [h.name for h in hdul]
        assert names == ["PRIMARY", "SCI", "WHT"] + (["CTX"] if nplanes else []) + ["HDRTAB"]
        np.testing.assert_array_equal(hdul["SCI"].data, sci)
        np.testing.assert_array_equal(hdul["WHT"].data, wht)
        if nplanes == 1:
            np.testing.assert_array_equal(hdul["CTX"].data, ctx[0])
        elif nplanes == 2:
            np.testing.assert_array_equal(hdul["CTX"].data, ctx[:2])
        assert hdul[0].header["MEANWHT"] == 12.5 and hdul[0].header["MEDWHT"] == 3.25
        assert WCS(hdul["SCI"].header).wcs.crval[1] == 26.0
        assert list(hdul["HDRTAB"].data["ROOTNAME"]) == ["a", "bb"]
        assert np.isnan(hdul["HDRTAB"].data["EXPTIME"][1])


@pytest.mark.parametrize("tile", [(64, 257), (300, 100), (7, 256)])
def test_fits_data_areas_byte_identical_to_astropy(tmp_path, tile):
    """Tiles spanning the whole width (one write per extension), tiles that do not (one write
    per row, the last one narrower) and rows one pixel short of the width: every data area,
    padding included, is byte for byte what astropy writes for the same arrays."""
    ny, nx = 301, 257
    th, tw = tile
    rng = np.random.default_rng(7)
    sci = rng.normal(size=(ny, nx)).astype(np.float32)
    sci[5:9, 30:40] = np.nan
    wht = rng.uniform(0, 100, size=(ny, nx)).astype(np.float32)
    ctx = rng.integers(0, 2**32, size=(2, ny, nx), dtype=np.uint64).astype(np.uint32)
    layout = xfits.create_fits(tmp_path / "a_drz.fits", (ny, nx), primary=fits.Header(),
                               sci=_wcs_header(ny, nx), nplanes=2)
    for y0 in range(0, ny, th):
        for x0 in range(0, nx, tw):
            y1, x1 = min(y0 + th, ny), min(x0 + tw, nx)
            xfits.write_fits_tile(layout, (y0, y1, x0, x1), sci[y0:y1, x0:x1],
                                  wht[y0:y1, x0:x1], ctx[:, y0:y1, x0:x1])
    final = xfits.finalize_fits(layout)
    ref = tmp_path / "ref.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci, name="SCI"),
                  fits.ImageHDU(wht, name="WHT"),
                  fits.ImageHDU(ctx.view(np.int32), name="CTX")]).writeto(ref)
    ours, theirs = final.read_bytes(), ref.read_bytes()
    with fits.open(ref) as h:
        spans = [(hdu._data_offset, hdu._data_offset + hdu._data_size) for hdu in h[1:]]
    offsets = (layout.sci_offset, layout.wht_offset, layout.ctx_offset)
    for (a, b), o in zip(spans, offsets, strict=True):
        padded = -(-(b - a) // 2880) * 2880
        assert ours[o:o + padded] == theirs[a:a + padded]


def test_fits_unreserved_keyword_is_refused(tmp_path):
    layout = xfits.create_fits(tmp_path / "x.fits", (4, 4), primary=fits.Header(),
                               sci=_wcs_header(4, 4))
    with pytest.raises(ValueError, match="not reserved"):
        xfits.finalize_fits(layout, {"MEANWHT": 1.0})
    assert not (tmp_path / "x.fits").exists()


def test_fits_window_checked(tmp_path):
    layout = xfits.create_fits(tmp_path / "x.fits", (4, 4), primary=fits.Header(),
                               sci=_wcs_header(4, 4))
    z = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="outside"):
        xfits.write_fits_tile(layout, (3, 5, 0, 2), z, z)


def test_zarr_layer_tiles_markers_and_xarray(tmp_path):
    ny, nx, t = 300, 520, 256
    rng = np.random.default_rng(2)
    sci = rng.normal(size=(ny, nx)).astype(np.float32)
    wht = rng.uniform(size=(ny, nx)).astype(np.float32)
    ctx = rng.integers(0, 100, size=(1, ny, nx)).astype(np.int32)
    store = tmp_path / "cell.zarr"
    hdr = _wcs_header(ny, nx)
    lay = xzarr.create_zarr_layer(store, "layer_a", (ny, nx), t, wcs_header=hdr,
                                  fingerprint="abc", nplanes=1)
    for idx, (y0, y1, x0, x1) in _tiles(ny, nx, t):
        assert not xzarr.tile_done(lay, *idx)
        xzarr.write_zarr_tile(lay, idx, (y0, y1, x0, x1), sci[y0:y1, x0:x1],
                              wht[y0:y1, x0:x1], ctx[:, y0:y1, x0:x1])
        assert xzarr.tile_done(lay, *idx)
    xzarr.finish_zarr_layer(lay, {"MEANWHT": 1.5})
    ds = xr.open_zarr(store, group="layer_a", consolidated=False)
    assert ds.sci.dims == ("y", "x") and ds.ctx.dims == ("plane", "y", "x")
    np.testing.assert_array_equal(ds.sci.values, sci)
    np.testing.assert_array_equal(ds.ctx.values, ctx)
    assert ds.attrs["wcs"]["CRVAL2"] == 26.0 and ds.attrs["complete"] is True
    # reopening with the same plan resumes; a different plan is refused
    again = xzarr.create_zarr_layer(store, "layer_a", (ny, nx), t, wcs_header=hdr,
                                    fingerprint="abc", nplanes=1)
    assert xzarr.tile_done(again, 0, 0)
    with pytest.raises(ValueError, match="different plan"):
        xzarr.create_zarr_layer(store, "layer_a", (ny, nx), t, wcs_header=hdr,
                                fingerprint="other", nplanes=1)


def test_stats_merge_matches_numpy():
    rng = np.random.default_rng(3)
    ny, nx = 200, 300
    count = rng.integers(0, 4, size=(ny, nx))
    expt = count * 100.0 + (count > 1) * 7.5
    wht = np.where(count > 0, rng.uniform(1, 1000, size=(ny, nx)), 0.0).astype(np.float32)
    parts = [stats.tile_stats(wht[y0:y1, x0:x1], count[y0:y1, x0:x1], expt[y0:y1, x0:x1])
             for _, (y0, y1, x0, x1) in _tiles(ny, nx, 64)]
    kw = stats.layer_keywords(stats.merge(parts), full_cell_pixels=4 * ny * nx)
    g = count > 0
    assert kw["NPIXFRAC"] == pytest.approx(g.sum() / (4 * ny * nx))
    assert kw["MEANNEXP"] == pytest.approx(count[g].mean())
    assert kw["MEDNEXP"] == np.median(count[g])
    assert kw["MEANEXPT"] == pytest.approx(expt[g].mean())
    assert kw["MEDEXPT"] == np.median(expt[g])
    w = wht[wht > 0].astype(np.float64)
    assert kw["MEANWHT"] == pytest.approx(w.mean(), rel=1e-12)
    assert kw["MEDWHT"] == pytest.approx(np.median(w), rel=2 * stats.WHT_MEDIAN_RTOL)


def test_combine_primary_rules():
    p1 = fits.Header({"INSTRUME": "WFC3", "PROPOSID": 12286, "EXPTIME": 100.0,
                      "EXPSTART": 55000.0, "EXPEND": 55000.01, "FILTER": "F160W",
                      "ROOTNAME": "ib1", "APERTURE": "IR", "ASN_ID": "X", "PA_V3": 12.0})
    p2 = fits.Header({"INSTRUME": "WFC3", "PROPOSID": 9999, "EXPTIME": 50.0,
                      "EXPSTART": 56000.0, "EXPEND": 56000.01, "FILTER": "F160W",
                      "ROOTNAME": "ib2", "APERTURE": "IR-FIX"})
    name = "hst_skycell-p1889x07y19_wfc3_ir_f160w_all_drz.fits"
    h = headers.combine_primary([p1, p2], filename=name, skycell="skycell-p1889x07y19",
                                ndrizim=2)
    assert h["SCELLID"] == "p1889x07y19" and h["HAPLEVEL"] == 4
    assert h["PROPOSID"] == "9999; 12286"
    assert h["EXPTIME"] == 150.0 and h["TEXPTIME"] == 150.0
    assert h["APERTURE"] == "MULTIPLE" and h["FILTER"] == "F160W"
    assert h["NUMEXP"] == 2 and h["NDRIZIM"] == 2
    assert h["DATE-BEG"].startswith("2009-06-18") and h["DATE-END"].startswith("2012-03-14")
    assert "ASN_ID" not in h and h["PA_V3"] == 0.0


def _write_window(group, lay, t: int, window, sci, wht, ctx) -> None:
    """Write one tile window of sci/wht/ctx: through zarr's own array API into ``group`` (the
    oracle) when it is given, else through :func:`xzarr.write_zarr_tile` into ``lay``."""
    y0, y1, x0, x1 = window
    if group is not None:
        group["sci"][y0:y1, x0:x1] = sci[y0:y1, x0:x1]
        group["wht"][y0:y1, x0:x1] = wht[y0:y1, x0:x1]
        group["ctx"][:, y0:y1, x0:x1] = ctx[:, y0:y1, x0:x1]
    else:
        xzarr.write_zarr_tile(lay, (y0 // t, x0 // t), window, sci[y0:y1, x0:x1],
                              wht[y0:y1, x0:x1], ctx[:, y0:y1, x0:x1])


def _store_bytes(root) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("case", ["no_fill_chunk", "some_fill_chunks", "all_fill"])
def test_zarr_tiles_same_bytes_as_zarrs_own_fill_checks(tmp_path, case):
    """write_zarr_tile skips zarr's fill-value checks only for a tile without a fill chunk:
    the store's bytes equal those zarr writes with its checks on (the oracle), for tiles with
    no, some and only fill chunks (NaN SCI, 0 WHT/CTX; -0.0 is not fill; cut edge chunks)."""
    zarr = pytest.importorskip("zarr")
    ny, nx, t = 200, 136, 64  # inner chunks of 32; edge tiles cut (200 = 3*64+8, 136 = 2*64+8)
    rng = np.random.default_rng(3)
    sci = rng.normal(size=(ny, nx)).astype(np.float32)
    wht = rng.uniform(1, 2, size=(ny, nx)).astype(np.float32)
    ctx = rng.integers(1, 4, size=(1, ny, nx)).astype(np.int32)
    if case == "some_fill_chunks":
        sci[:32, :32] = np.nan             # one whole inner chunk of tile (0, 0)
        sci[64:96, 70:80] = np.nan         # part of a chunk only: not fill
        wht[:32, 32:64] = 0.0
        wht[32:64, 32:64] = 0.0
        wht[40, 40] = -0.0                 # a -0.0 makes that chunk non-fill
        ctx[0, 192:, 128:] = 0             # the cut corner chunk
    elif case == "all_fill":
        sci[:] = np.nan
        wht[:] = 0.0
        ctx[:] = 0
    windows = [(y, min(y + t, ny), x, min(x + t, nx)) for y in range(0, ny, t)
               for x in range(0, nx, t)]

    def write(root, checked: bool):
        lay = xzarr.create_zarr_layer(root / "s.zarr", "lay", (ny, nx), t,
                                      wcs_header=fits.Header(), fingerprint="f", nplanes=1)
        g = zarr.open_group(str(root / "s.zarr"), mode="r+", zarr_format=3)["lay"]
        for y0, y1, x0, x1 in windows:
            # checked: zarr alone, fill checks on (write_empty_chunks False)
            _write_window(g if checked else None, lay, t, (y0, y1, x0, x1), sci, wht, ctx)
        return _store_bytes(root / "s.zarr" / "lay")

    assert not zarr.config.get("array.write_empty_chunks")
    ours = write(tmp_path / "ours", False)
    oracle = write(tmp_path / "oracle", True)
    def shards(files):  # the data arrays' shards (the tile markers are write_zarr_tile's own)
        return {k: v for k, v in files.items() if k.split("/")[0] in ("sci", "wht", "ctx")
                and "/c/" in k}

    data = shards(ours)
    assert shards(oracle) == data
    assert (len(data) == 0) == (case == "all_fill")
    got = zarr.open_group(str(tmp_path / "ours" / "s.zarr"), mode="r")["lay"]
    np.testing.assert_array_equal(got["sci"][...], sci)
    np.testing.assert_array_equal(got["wht"][...].view(np.uint32), wht.view(np.uint32))
    np.testing.assert_array_equal(got["ctx"][...], ctx)


def test_has_fill_chunk_finds_each_kind():
    a = np.ones((70, 70), np.float32)
    assert not xzarr._has_fill_chunk(a, (32, 32), True)
    b = a.copy()
    b[64:, 64:] = np.nan  # the cut corner chunk (6 x 6) is all NaN
    assert xzarr._has_fill_chunk(b, (32, 32), True)
    c = np.zeros((1, 70, 70), np.float32) + 1
    c[0, 32:64, :32] = 0.0
    assert xzarr._has_fill_chunk(c, (1, 32, 32), False)
    c[0, 40, 5] = -0.0
    assert not xzarr._has_fill_chunk(c, (1, 32, 32), False)


def test_fits_zero_bytes_at_row_ends_not_written(tmp_path, monkeypatch):
    """Of a partial-width tile's WHT/CTX rows only the part from the first to the last non-zero
    element is written (the rest of the file's data area is already zeros); SCI rows whole."""
    ny, nx, t = 40, 96, 32
    wht = np.zeros((ny, nx), np.float32)
    for j in range(ny):  # a slanted band
        wht[j, j:j + 30] = 1.0 + j
    ctx = (wht > 0).astype(np.int32)[None]
    sci = np.where(wht > 0, 2.0, np.nan).astype(np.float32)
    layout = xfits.create_fits(tmp_path / "e_drz.fits", (ny, nx), primary=fits.Header(),
                               sci=_wcs_header(ny, nx), nplanes=1)
    writes = []
    real = xfits.os.pwrite

    def spy(fd, buf, offset):
        writes.append((offset, bytes(buf)))
        return real(fd, buf, offset)

    monkeypatch.setattr(xfits.os, "pwrite", spy)
    for _, (y0, y1, x0, x1) in _tiles(ny, nx, t):
        xfits.write_fits_tile(layout, (y0, y1, x0, x1), sci[y0:y1, x0:x1], wht[y0:y1, x0:x1],
                              ctx[:, y0:y1, x0:x1])
    monkeypatch.undo()
    sci_end = layout.sci_offset + ny * nx * 4
    for offset, data in writes:
        if offset < sci_end:
            assert len(data) == t * 4  # whole SCI rows of the tile (NaN included)
        else:
            assert data[:4] != bytes(4) and data[-4:] != bytes(4)
    wht_bytes = sum(len(d) for o, d in writes if layout.wht_offset <= o < layout.ctx_offset)
    assert wht_bytes == np.count_nonzero(wht) * 4  # the band has no inner zeros
    xfits.finalize_fits(layout, {})
    with fits.open(tmp_path / "e_drz.fits") as hdul:
        np.testing.assert_array_equal(hdul["WHT"].data, wht)
        np.testing.assert_array_equal(hdul["CTX"].data, ctx[0])
        np.testing.assert_array_equal(hdul["SCI"].data, sci)


@pytest.mark.parametrize("case", ["probe_miss", "rewrite", "planes"])
def test_zarr_shard_writer_same_bytes_as_zarr(tmp_path, case, monkeypatch):
    """The shards write_zarr_tile encodes itself (export.zarr._ShardWriter) are byte for byte
    what zarr writes for the same tiles (the oracle, its own path with its fill checks):
    chunks whose only non-fill value is off the writer's probe grid (probe_miss), a tile
    written over earlier different data of the same tiles (rewrite: partly to fill, one
    shard then removed), several CTX planes (planes)."""
    zarr = pytest.importorskip("zarr")
    ny, nx, t = 150, 200, 64  # chunks of 32; 150 = 2*64+22, 200 = 3*64+8: cut edge shards
    rng = np.random.default_rng(11)
    nplanes = 2 if case == "planes" else 1
    sci = rng.normal(size=(ny, nx)).astype(np.float32)
    wht = rng.uniform(1, 2, size=(ny, nx)).astype(np.float32)
    ctx = rng.integers(1, 4, size=(nplanes, ny, nx)).astype(np.int32)
    sci[:32, :32] = np.nan
    sci[17, 29] = 1.5                       # the one value of that chunk, off the probe
    wht[32:64, :32] = 0.0
    wht[60, 3] = 2.0
    wht[128:, 192:] = 0.0                   # the cut corner chunk: fill
    ctx[:, 96:128, 96:128] = 0
    ctx[-1, 100, 101] = 7                   # only in the last plane
    windows = [(y, min(y + t, ny), x, min(x + t, nx)) for y in range(0, ny, t)
               for x in range(0, nx, t)]
    used = []
    real = xzarr._ShardWriter.write

    def spy(self, coords, data):
        used.append(coords)
        return real(self, coords, data)

    monkeypatch.setattr(xzarr._ShardWriter, "write", spy)

    def write(root, oracle: bool):
        lay = xzarr.create_zarr_layer(root / "s.zarr", "lay", (ny, nx), t,
                                      wcs_header=fits.Header(), fingerprint="f",
                                      nplanes=nplanes)
        g = zarr.open_group(str(root / "s.zarr"), mode="r+", zarr_format=3)["lay"]
        passes = [(sci + 1, wht + 1, ctx + 1), (sci, wht, ctx)] if case == "rewrite" \
            else [(sci, wht, ctx)]
        if case == "rewrite":  # then the second pass turns tile (0, 0) into fill only
            passes[1] = (sci.copy(), wht.copy(), ctx.copy())
            passes[1][0][:64, :64] = np.nan
            passes[1][1][:64, :64] = 0.0
            passes[1][2][:, :64, :64] = 0
        for s, w, c in passes:
            for y0, y1, x0, x1 in windows:
                _write_window(g if oracle else None, lay, t, (y0, y1, x0, x1), s, w, c)
        files = _store_bytes(root / "s.zarr" / "lay")
        return {k: v for k, v in files.items() if k.split("/")[0] in ("sci", "wht", "ctx")
                and "/c/" in k}

    ours = write(tmp_path / "ours", False)
    assert len(used) == 3 * len(windows) * (2 if case == "rewrite" else 1)
    oracle = write(tmp_path / "oracle", True)
    assert ours.keys() == oracle.keys()
    assert ours == oracle
    if case == "rewrite":
        assert "sci/c/0/0" not in ours and "ctx/c/0/0/0" not in ours
    exp_sci, exp_wht, exp_ctx = sci.copy(), wht.copy(), ctx.copy()
    if case == "rewrite":
        exp_sci[:64, :64], exp_wht[:64, :64], exp_ctx[:, :64, :64] = np.nan, 0.0, 0
    got = zarr.open_group(str(tmp_path / "ours" / "s.zarr"), mode="r")["lay"]
    np.testing.assert_array_equal(got["sci"][...], exp_sci)
    np.testing.assert_array_equal(got["wht"][...].view(np.uint32), exp_wht.view(np.uint32))
    np.testing.assert_array_equal(got["ctx"][...], exp_ctx)


def test_fits_tile_writeback_hint_covers_its_rows(tmp_path, monkeypatch):
    """Each tile write asks the kernel to start writing the tile's rows of every extension
    (SCI, WHT, each CTX plane) to disk; the ranges come from the file's layout, so every
    written data byte lies in a hinted range (a wrong offset would leave them to the fsync)."""
    import threading

    calls = []
    done = threading.Event()

    def record(fd, offset, nbytes, flags):
        calls.append((offset, nbytes, flags))
        if len(calls) == 2 + nplanes:  # the hints of one tile, given in a background thread
            done.set()
        return 0

    monkeypatch.setattr(xfits, "_SYNC_FILE_RANGE", record)
    ny, nx, nplanes = 40, 30, 2
    hdr = fits.Header()
    lay = xfits.create_fits(tmp_path / "x_drz.fits", (ny, nx), primary=hdr, sci=hdr,
                            nplanes=nplanes)
    y0, y1, x0, x1 = 10, 25, 5, 20
    sci = np.ones((y1 - y0, x1 - x0), np.float32)
    ctx = np.ones((nplanes, y1 - y0, x1 - x0), np.int32)
    xfits.write_fits_tile(lay, (y0, y1, x0, x1), sci, sci, ctx)
    assert done.wait(10)
    starts = [lay.sci_offset, lay.wht_offset] + [lay.ctx_offset + p * ny * nx * 4
                                                 for p in range(nplanes)]
    assert sorted(c[:2] for c in calls) == sorted((s + y0 * nx * 4, (y1 - y0) * nx * 4)
                                                  for s in starts)
    assert {c[2] for c in calls} == {2}  # SYNC_FILE_RANGE_WRITE: start, never wait


def _layer_arrays(ny, nx, nplanes, seed=3):
    rng = np.random.default_rng(seed)
    sci = rng.normal(size=(ny, nx)).astype(np.float32)
    sci[5:9, 30:40] = np.nan
    wht = rng.uniform(0, 100, size=(ny, nx)).astype(np.float32)
    wht[:40] = 0.0
    wht[200:230, 500:] = -0.0
    ctx = rng.integers(0, 2**32, size=(nplanes, ny, nx), dtype=np.uint64).astype(np.uint32)
    return sci, wht, ctx


def _write_layer(path, arrays, tile, *, bands, order=None, skip=(), threads=1):
    """The layer of ``arrays`` written tile by tile (tiles in ``order``, from ``threads``
    threads; tile indices in ``skip`` never written); returns the final file's bytes."""
    from concurrent.futures import ThreadPoolExecutor

    sci, wht, ctx = arrays
    ny, nx = sci.shape
    hdr = _wcs_header(ny, nx)
    layout = xfits.create_fits(path, (ny, nx), primary=fits.Header({"MEANWHT": 0.0}), sci=hdr,
                               nplanes=len(ctx), bands=bands,
                               hdrtab=headers.hdrtab([{"ROOTNAME": "a", "EXPTIME": 1.0}]))
    tiles = [t for t in _tiles(ny, nx, tile) if t[0] not in skip]
    if order is not None:
        tiles = [tiles[i] for i in order(len(tiles))]

    def one(t):
        y0, y1, x0, x1 = t[1]
        xfits.write_fits_tile(layout, t[1], sci[y0:y1, x0:x1], wht[y0:y1, x0:x1],
                              ctx[:, y0:y1, x0:x1])

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, tiles))
    return xfits.finalize_fits(layout, {"MEANWHT": 2.5}).read_bytes()


@pytest.mark.parametrize("tile", [128, 256, 1200])
def test_fits_bands_same_bytes_as_tile_rows(tmp_path, tile):
    """Tiles gathered into full-width bands and written with direct I/O (``bands=True``):
    tiles in a random order from 3 threads give a file byte for byte identical to the one
    written tile by tile (headers, padding, HDRTAB, -0.0 and NaN included), whose data areas
    are astropy's (test above)."""
    ny, nx = 301, 1500  # 6000-byte rows: every band's ends fall inside 4 KiB pages
    arrays = _layer_arrays(ny, nx, 2)
    ref = _write_layer(tmp_path / "ref_drz.fits", arrays, tile, bands=False)
    rng = np.random.default_rng(11)
    got = _write_layer(tmp_path / "bands_drz.fits", arrays, tile, bands=True,
                       order=rng.permutation, threads=3)
    assert got == ref
    with fits.open(tmp_path / "bands_drz.fits") as h:
        np.testing.assert_array_equal(h["CTX"].data.astype(np.int32).view(np.uint32), arrays[2])
        assert h[0].header["MEANWHT"] == 2.5


def test_fits_bands_written_direct_whole(tmp_path, monkeypatch):
    """With ``bands=True`` a complete row of tiles is written as one band: per data plane its
    4 KiB-aligned bulk through an ``O_DIRECT`` descriptor (where the file system takes it)
    from 4 KiB-aligned memory, head and tail through the page cache; no tile is written row
    by row."""
    import fcntl
    import os

    writes = []
    real = xfits._pwrite_all

    def spy(fd, buf, offset):
        addr = np.frombuffer(buf, dtype=np.uint8).ctypes.data if len(buf) else 0
        writes.append((bool(fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0)),
                       offset, len(buf), addr))
        real(fd, buf, offset)

    monkeypatch.setattr(xfits, "_pwrite_all", spy)
    monkeypatch.setattr(xfits, "_write_tile_rows", None)  # must not be used
    ny, nx, tile = 200, 1500, 128
    arrays = _layer_arrays(ny, nx, 1)
    got = _write_layer(tmp_path / "d_drz.fits", arrays, tile, bands=True)
    monkeypatch.setattr(xfits, "_pwrite_all", real)
    monkeypatch.undo()
    assert got == _write_layer(tmp_path / "r_drz.fits", arrays, tile, bands=False)
    direct = [w for w in writes if w[0]]
    try:
        fd = os.open(tmp_path / "r_drz.fits", os.O_RDONLY | os.O_DIRECT)
        os.close(fd)
    except OSError:
        pytest.skip("no O_DIRECT on this file system: the bands go through the page cache")
    nbands = -(-ny // tile)
    assert len(direct) == nbands * 3  # SCI, WHT, CTX per band
    assert all(off % 4096 == 0 and n % 4096 == 0 and addr % 4096 == 0
               for _, off, n, addr in direct)
    assert sum(w[2] for w in writes) == ny * nx * 4 * 3  # each data byte once


def test_fits_bands_memory_bound_and_missing_tiles(tmp_path, monkeypatch):
    """Bands beyond :data:`BAND_MEMORY` are written tile by tile, and a band left incomplete
    (a tile never written, e.g. a skipped one) is written at finalize from the tiles it
    has: the file is the same as the tile-by-tile writer's in both cases."""
    ny, nx, tile = 301, 1500, 128
    arrays = _layer_arrays(ny, nx, 2)
    skip = {(1, 3)}
    ref = _write_layer(tmp_path / "ref_drz.fits", arrays, tile, bands=False, skip=skip)
    band = tile * nx * 4 * 4
    calls = []
    real = xfits._write_tile_rows
    monkeypatch.setattr(xfits, "_write_tile_rows", lambda *a: (calls.append(a[1]), real(*a)))
    monkeypatch.setattr(xfits, "BAND_MEMORY", band + band // 2)  # one band at a time
    by_column = lambda n: sorted(range(n), key=lambda i: (i % 12, i // 12))  # noqa: E731
    got = _write_layer(tmp_path / "b_drz.fits", arrays, tile, bands=True, skip=skip,
                       order=by_column)
    assert got == ref
    assert calls  # some tiles went the tile-by-tile way
    assert xfits._HELD[0] == 0  # every band's memory accounted back


def test_fits_bands_of_an_abandoned_file_never_written(tmp_path):
    """A file laid out again under the same name (a run's second attempt) never gets the
    bands of the first one: the incomplete bands are forgotten with it."""
    ny, nx, tile = 64, 1500, 32
    arrays = _layer_arrays(ny, nx, 0)
    sci, wht, ctx = arrays
    path = tmp_path / "again_drz.fits"
    first = xfits.create_fits(path, (ny, nx), primary=fits.Header(), sci=_wcs_header(ny, nx),
                              bands=True)
    xfits.write_fits_tile(first, (0, 32, 0, 1500), sci[:32] + 1, wht[:32] + 1)  # complete
    xfits.write_fits_tile(first, (32, 64, 0, 500), sci[32:, :500] + 1, wht[32:, :500] + 1)
    xfits.discard_fits(first)
    got = _write_layer(path, arrays, tile, bands=True)
    assert got == _write_layer(tmp_path / "ref_drz.fits", arrays, tile, bands=False)
    assert xfits._HELD[0] == 0


@pytest.mark.parametrize("bands", [False, True])
def test_fits_rows_same_bytes_as_tile_rows(tmp_path, bands):
    """Full-width rows written at once (:class:`~hapdask.export.fits.FitsRows`, direct I/O for
    their aligned bulk) in bands of any height, from 3 threads in a random order, give the
    file the tiles make (test above), whichever way the layout was created; a thread's next
    rows reuse its memory."""
    from concurrent.futures import ThreadPoolExecutor

    ny, nx = 301, 1500  # 6000-byte rows: the bands' ends fall inside 4 KiB pages
    sci, wht, ctx = _layer_arrays(ny, nx, 2)
    ref = _write_layer(tmp_path / "ref_drz.fits", (sci, wht, ctx), 128, bands=False)
    layout = xfits.create_fits(tmp_path / "rows_drz.fits", (ny, nx),
                               primary=fits.Header({"MEANWHT": 0.0}),
                               sci=_wcs_header(ny, nx), nplanes=2, bands=bands,
                               hdrtab=headers.hdrtab([{"ROOTNAME": "a", "EXPTIME": 1.0}]))
    edges = [0, 1, 2, 5, 77, 78, 160, 161, 300, 301]
    rng = np.random.default_rng(5)
    spans = [(edges[i], edges[i + 1]) for i in rng.permutation(len(edges) - 1)]

    def one(span):
        y0, y1 = span
        rows = xfits.FitsRows(layout, y0, y1)
        for plane, data in zip(rows.planes, [sci, wht, *ctx.view(np.int32)], strict=True):
            plane[...] = data[y0:y1]
        rows.write()

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(one, spans))
    got = xfits.finalize_fits(layout, {"MEANWHT": 2.5}).read_bytes()
    assert got == ref
    with pytest.raises(ValueError, match="outside"):
        xfits.FitsRows(layout, 300, 302)
