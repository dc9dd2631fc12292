"""JPEG previews: names, sizes, stretch, colour channel order, determinism, safe writing."""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import pytest
from astropy.io import fits
from catalog_truth import make_wcs
from PIL import Image

from hapdask.catalogs import DrizzleProduct
from hapdask.preview import (
    PreviewParams,
    color_preview_name,
    display_limits,
    grey_levels,
    preview_names,
    preview_planes,
    render_color,
    render_preview,
    write_color_preview,
    write_previews,
)


def _product(shape=(300, 500), name="hst_1_01_acs_wfc_f775w_j8xx01_drc.fits", filt="F775W",
             pivot=7693.0, spot=None, seed=0):
    rng = np.random.default_rng(seed)
    sci = 0.05 + rng.normal(0.0, 0.01, shape)
    wht = np.full(shape, 1000.0)
    wht[:, :50] = 0.0  # no data on the left
    if spot is not None:
        y, x = spot
        sci[y - 3:y + 4, x - 3:x + 4] += 5.0
    hdr = fits.Header({"FILTER": filt, "PHOTPLAM": pivot, "PHOTFLAM": 1e-19, "EXPTIME": 1.0})
    return DrizzleProduct(sci=sci, wht=wht, wcs=make_wcs(), header=hdr, name=name)


def _read(path):
    with Image.open(path) as im:
        return im.mode, im.size, np.asarray(im)


def test_preview_sizes_and_names(tmp_path):
    params = PreviewParams(max_size=200, thumb_size=64)
    prod = _product(spot=(100, 400))
    big, thumb = write_previews(prod, tmp_path, params=params)
    assert big.name == "hst_1_01_acs_wfc_f775w_j8xx01_drc.jpg"
    assert thumb.name == "hst_1_01_acs_wfc_f775w_j8xx01_drc_thumb.jpg"
    mode, size, arr = _read(big)
    # 500 x 300 binned by ceil(500 / 200) = 3 -> 167 x 100
    assert mode == "L" and size == (167, 100)
    _, tsize, _ = _read(thumb)
    assert tsize == (63, 38)  # factor ceil(500 / 64) = 8
    # no-data columns are black; the spot is bright, at the top-right (row 0 = top)
    assert arr[:, :15].max() <= 8
    spot_row, spot_col = 100 - 1 - 100 // 3, 400 // 3
    assert arr[spot_row, spot_col] > 200
    assert sorted(os.listdir(tmp_path)) == sorted([big.name, thumb.name])
    assert preview_names("a_drz.fits") == ("a_drz.jpg", "a_drz_thumb.jpg")


def test_preview_is_deterministic_and_never_overwrites(tmp_path):
    prod = _product()
    a = write_previews(prod, tmp_path / "a")
    b = write_previews(prod, tmp_path / "b")
    for pa, pb in zip(a, b, strict=True):
        assert pa.read_bytes() == pb.read_bytes()
    foreign = tmp_path / "c" / "hst_1_01_acs_wfc_f775w_j8xx01_drc_thumb.jpg"
    foreign.parent.mkdir()
    foreign.write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_previews(prod, tmp_path / "c")
    assert foreign.read_bytes() == b"not ours"
    assert os.listdir(tmp_path / "c") == [foreign.name]  # nothing else written
    write_previews(prod, tmp_path / "c", overwrite=True)
    assert foreign.read_bytes() == a[1].read_bytes()


def test_stretch_is_monotonic_and_sky_dark():
    data = np.linspace(-1.0, 10.0, 1000).reshape(10, 100)
    data[0, 0] = np.nan
    out = grey_levels(data, PreviewParams(), limits=(0.0, 5.0))
    flat = np.flipud(out)
    assert flat[0, 0] == 0  # NaN
    vals = flat.ravel()[1:]
    assert np.all(np.diff(vals.astype(int)) >= 0)
    assert vals[data.ravel()[1:] <= 0].max() == 0 and vals[data.ravel()[1:] >= 5].min() == 255
    # sky + noise: the sky is dark grey, 3 sigma above it mid-grey
    noise = 0.05 + np.random.default_rng(0).normal(0.0, 0.01, (200, 200))
    lo, hi = display_limits(noise)
    assert lo == pytest.approx(0.04, abs=0.001) and hi == pytest.approx(0.25, abs=0.005)
    sky_level = np.median(grey_levels(noise, PreviewParams()))
    assert 25 <= sky_level <= 55


def test_color_preview_channels(tmp_path):
    """The reddest filter drives R, the bluest B: a source only in the red image is red."""
    blue = _product(name="b_drc.fits", filt="F435W", pivot=4330.0, seed=1)
    green = _product(name="g_drc.fits", filt="F606W", pivot=5920.0, seed=2)
    red = _product(name="r_drc.fits", filt="F814W", pivot=8045.0, spot=(150, 300), seed=3)
    rgb = render_color([red, blue, green], PreviewParams(max_size=500))
    assert rgb.shape == (300, 500, 3)
    r, g, b = (rgb[300 - 1 - 150, 300, k] for k in range(3))
    assert r > 200 and g < 150 and b < 150
    total = _product(name="hst_1_01_acs_wfc_total_j8xx01_drc.fits")
    path = write_color_preview(total, [red, blue, green], tmp_path)
    assert path.name == "hst_1_01_acs_wfc_total_j8xx01_f435w-f606w-f814w_drc.jpg"
    with Image.open(io.BytesIO(path.read_bytes())) as im:
        assert im.mode == "RGB" and im.size == (500, 300)
    # two filters: G is the mean of B and R; one filter: grey
    two = render_color([red, blue], PreviewParams(max_size=500))
    assert np.all(np.abs(two[..., 1].astype(int) - (two[..., 0].astype(int)
                                                     + two[..., 2]) // 2) <= 1)
    one = render_color([red], PreviewParams(max_size=500))
    assert (one[..., 0] == one[..., 1]).all() and (one[..., 1] == one[..., 2]).all()
    assert color_preview_name("t_drz.fits", ["F105W", "F160W"]) == "t_f105w-f160w_drz.jpg"


def test_color_preview_from_the_previews_block_averages(tmp_path):
    """``hapdask svm`` gives the colour preview its filter products' preview block averages:
    the same image as binning the products again; averages of another size are refused."""
    params = PreviewParams(max_size=120, thumb_size=16)
    blue = _product(name="b_drc.fits", filt="F435W", pivot=4330.0, seed=1)
    red = _product(name="r_drc.fits", filt="F814W", pivot=8045.0, spot=(150, 300), seed=3)
    planes = {p.name: preview_planes(p, params)[0] for p in (blue, red)}
    assert planes["r_drc.fits"].shape == (60, 100)  # factor 5
    want = render_color([red, blue], params)
    assert np.array_equal(render_color([red, blue], params, binned=planes), want)
    # the plane is used as given: another product's plane changes the image
    swapped = {"b_drc.fits": planes["r_drc.fits"], "r_drc.fits": planes["b_drc.fits"]}
    assert not np.array_equal(render_color([red, blue], params, binned=swapped), want)
    with pytest.raises(ValueError, match="block averages"):
        render_color([red, blue], params, binned={"r_drc.fits": planes["r_drc.fits"][:-1]})
    total = _product(name="t_drc.fits")
    a = write_color_preview(total, [red, blue], tmp_path / "a", params=params)
    b = write_color_preview(total, [red, blue], tmp_path / "b", params=params, binned=planes)
    assert a.read_bytes() == b.read_bytes()


def test_preview_bad_input(tmp_path):
    a = _product()
    b = _product(shape=(100, 100))
    with pytest.raises(ValueError, match="share the grid"):
        render_color([a, b])
    with pytest.raises(ValueError, match="1 to 3"):
        render_color([a, a, a, a])
    with pytest.raises(ValueError, match="asinh_a"):
        PreviewParams(asinh_a=0.0)
    prev, thumb = render_preview(a, PreviewParams(max_size=1000, thumb_size=128))
    assert prev.shape == (300, 500) and thumb.shape == (75, 125)


@pytest.mark.parametrize("shape,sizes", [((1300, 700), (100, 13)),   # factors 13 and 100
                                         ((2051, 2051), (1024, 128, 3000)),  # 3, 17 and 1
                                         ((600, 1100), (1024, 7)),  # factor 2 and 158 > rows
                                         # 700: blocks taller than a band and > 255 rows
                                         ((1400, 1390), (2, 1400)),
                                         ((1200, 960), (20,))])  # no partial block
def test_one_pass_binning_equals_whole_frame_block_average(shape, sizes):
    """The preview and thumbnail come from one banded pass: every block must be the NaN-aware
    mean of its pixels with data (WHT > 0, finite) exactly as astropy's block_reduce gives it on
    the whole frame padded with NaN (blocks straddling the bands included)."""
    from astropy.nddata import block_reduce

    from hapdask.preview import _binned_many

    rng = np.random.default_rng(3)
    sci = rng.normal(0.0, 1.0, shape).astype(np.float32)
    wht = rng.uniform(0.0, 2.0, shape).astype(np.float32)
    wht[rng.random(shape) < 0.3] = 0.0          # no data
    sci[rng.random(shape) < 0.01] = np.nan       # bad pixels
    wht[:, : shape[1] // 5] = 0.0                # an empty strip: all-NaN blocks
    good = np.where((wht > 0) & np.isfinite(sci), sci, np.nan).astype(np.float64)
    got = _binned_many(sci, wht, sizes)
    for size, g in zip(sizes, got, strict=True):
        f = max(1, -(-max(shape) // size))
        oy, ox = -(-shape[0] // f), -(-shape[1] // f)
        assert g.shape == (oy, ox) and max(g.shape) <= size
        full = np.full((oy * f, ox * f), np.nan)
        full[: shape[0], : shape[1]] = good
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks
            want = block_reduce(full, f, func=np.nanmean) if f > 1 else good
        assert np.array_equal(g, want, equal_nan=True)
