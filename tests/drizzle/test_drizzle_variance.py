"""Variance (``data2``) and DQ propagation against drizzle C 3.0 (the oracle).

Tolerances as in the other oracle tests: where the C weight is >= 1% of its maximum, ``out_img2``
agrees with C's to 2e-5 relative (relative to ``max(|C|, median |C|)``); ``out_dq`` and
``out_ctx`` are identical everywhere. The tile API's ``num2 / den**2`` and ``out_dq`` are
compared with the same C run, and tiling must not change them.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hapdask.drizzle import Drizzle, add_to_tile, finalize_tile, input_bbox

drizzle = pytest.importorskip("drizzle")
from drizzle.resample import Drizzle as CDrizzle  # noqa: E402

# Drizzle normalises lanczos weights (a documented deviation), so lanczos is compared with C
# through the tile API with lanczos_normalize=False
KERNELS = ["square", "point", "turbo", "gaussian"]


def distorted_pixmap(rng, ny, nx, offset=(30.0, 20.0), scale=1.1, theta=0.35):
    y, x = np.indices((ny, nx), dtype=np.float64)
    xs = scale * (np.cos(theta) * x - np.sin(theta) * y) + 0.3 * np.sin(x / 7) + offset[0]
    ys = scale * (np.sin(theta) * x + np.cos(theta) * y) + 0.2 * np.cos(y / 5) + offset[1]
    return np.dstack([xs, ys]) + rng.normal(0, 1.5, 2)


def make_image(rng, ny=30, nx=36):
    data = rng.uniform(0, 10, (ny, nx)).astype(np.float32)
    var = rng.uniform(0.5, 3.0, (ny, nx)).astype(np.float32)
    wht = rng.uniform(0.5, 2, (ny, nx)).astype(np.float32)
    wht[rng.random((ny, nx)) < 0.05] = 0
    dq = np.zeros((ny, nx), np.uint32)
    bad = rng.random((ny, nx)) < 0.1
    dq[bad] = rng.choice(np.array([4, 16, 256, 4096, 1 << 31], np.uint32), bad.sum())
    return data, var, wht, dq, distorted_pixmap(rng, ny, nx)


def c_add(d, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return d.add_image(*args, **kw)


def assert_close(ours, ref, cwht):
    good = cwht >= 0.01 * cwht.max()
    assert good.sum() > 50
    r = np.abs(ref[good]).astype(np.float64)
    denom = np.maximum(r, np.median(r))
    rel = np.abs(ours[good].astype(np.float64) - ref[good]) / denom
    assert rel.max() <= 2e-5, f"differs from C by {rel.max():.2e} relative"


@pytest.mark.parametrize("kernel", KERNELS)
def test_add_image_variance_and_dq_match_c(kernel):
    """Three images, counts units (variance scaled by 1/exptime**2), iscale, two data2 arrays
    (the second only for some images: None items), fill values."""
    rng = np.random.default_rng(11)
    kw0 = dict(fillval=0, fillval2=-1, out_shape=(90, 90))
    ours = Drizzle(kernel=kernel, **kw0)
    theirs = CDrizzle(kernel=kernel, **kw0)
    for k in range(3):
        data, var, wht, dq, pm = make_image(rng)
        var2 = var * 0.5 + 1.0 if k != 1 else None
        kw = dict(
            exptime=2.5,
            pixmap=pm,
            weight_map=wht,
            pixfrac=0.8,
            in_units="counts",
            iscale=1.2,
            pixel_scale_ratio=0.9,
            data2=[var, var2],
            dq=dq,
        )
        c_add(theirs, data, **kw)
        ours.add_image(data, **kw)
    assert len(ours.out_img2) == len(theirs.out_img2) == 2
    for mine, ref in zip(ours.out_img2, theirs.out_img2, strict=True):
        assert mine.dtype == np.float32
        assert_close(mine, ref, theirs.out_wht)
        # fill value where nothing contributed
        np.testing.assert_array_equal(mine[theirs.out_wht == 0], -1.0)
    assert_close(ours.out_img, theirs.out_img, theirs.out_wht)
    assert ours.out_dq.dtype == np.uint32
    np.testing.assert_array_equal(ours.out_dq, theirs.out_dq)
    assert np.count_nonzero(ours.out_dq) > 100
    np.testing.assert_array_equal(ours.out_ctx, theirs.out_ctx)


def test_variance_propagation_is_the_variance_of_the_mean():
    """Physics: a constant-weight point drizzle of one pixel onto one output pixel gives back its
    variance; N equal-weight inputs on the same pixels give var / N."""
    y, x = np.indices((8, 9), dtype=np.float64)
    pm = np.dstack([x + 3, y + 2])
    d = Drizzle(kernel="point", out_shape=(15, 15))
    var = np.full((8, 9), 4.0, np.float32)
    for _ in range(4):
        d.add_image(np.ones((8, 9), np.float32), exptime=1.0, pixmap=pm, data2=var)
    np.testing.assert_allclose(d.out_img2[0][2:10, 3:12], 1.0, rtol=1e-6)


def test_data2_count_must_stay_the_same():
    rng = np.random.default_rng(2)
    data, var, wht, dq, pm = make_image(rng)
    d = Drizzle(out_shape=(90, 90))
    d.add_image(data, exptime=1.0, pixmap=pm, data2=var)
    with pytest.raises(ValueError, match="Mismatch between the number of 'out_img2'"):
        d.add_image(data, exptime=1.0, pixmap=pm)
    d = Drizzle(out_shape=(90, 90))
    d.add_image(data, exptime=1.0, pixmap=pm)
    with pytest.raises(ValueError, match="Mismatch between the number of 'out_img2'"):
        d.add_image(data, exptime=1.0, pixmap=pm, data2=var)
    with pytest.raises(TypeError, match="'out_dq' must be of an unsigned integer type"):
        Drizzle(out_shape=(90, 90), out_dq=np.zeros((90, 90)))


def test_user_out_img2_and_out_dq_continued_in_place():
    rng = np.random.default_rng(4)
    imgs = [make_image(rng) for _ in range(2)]
    theirs = CDrizzle(out_shape=(90, 90))
    for data, var, wht, dq, pm in imgs[:1]:
        c_add(theirs, data, exptime=1.0, pixmap=pm, weight_map=wht, data2=var, dq=dq)
    out2 = theirs.out_img2[0].copy()
    outdq = theirs.out_dq.copy()
    ours = Drizzle(
        out_img=theirs.out_img.copy(),
        out_wht=theirs.out_wht.copy(),
        out_ctx=theirs.out_ctx.copy(),
        exptime=1.0,
        begin_ctx_id=1,
        out_img2=out2,
        out_dq=outdq,
    )
    data, var, wht, dq, pm = imgs[1]
    c_add(theirs, data, exptime=1.0, pixmap=pm, weight_map=wht, data2=var, dq=dq)
    ours.add_image(data, exptime=1.0, pixmap=pm, weight_map=wht, data2=var, dq=dq)
    assert ours.out_img2[0] is out2 and ours.out_dq is outdq
    assert_close(out2, theirs.out_img2[0], theirs.out_wht)
    np.testing.assert_array_equal(outdq, theirs.out_dq)


@pytest.mark.parametrize("kernel", ["square", "turbo", "lanczos3"])
def test_tile_variance_and_dq_match_c_and_tiling(kernel):
    """add_to_tile's num2 / out_dq (whole frame, and tile by tile) against one C call."""
    rng = np.random.default_rng(8)
    data, var, wht, dq, pm = make_image(rng, 40, 44)
    out_shape = (100, 100)
    kw = dict(kernel=kernel, pixfrac=1.0, pixel_scale_ratio=0.9)
    theirs = CDrizzle(kernel=kernel, out_shape=out_shape)
    c_add(
        theirs, data, exptime=1.0, pixmap=pm, weight_map=wht, data2=var, dq=dq, iscale=1.3,
        pixfrac=1.0, pixel_scale_ratio=0.9,
    )  # fmt: skip
    num, den, num2 = np.zeros(out_shape), np.zeros(out_shape), np.zeros(out_shape)
    odq = np.zeros(out_shape, np.uint32)
    ctx = np.zeros((1,) + out_shape, np.int32)
    add_to_tile(
        data, wht, pm, num, den, ctx, origin=(0, 0), iscale=1.3, data2=var, num2=num2, dq=dq,
        out_dq=odq, lanczos_normalize=False, **kw,
    )  # fmt: skip
    sci, w, v = finalize_tile(num, den, num2=num2, fillval2=0.0)
    assert_close(sci, theirs.out_img, theirs.out_wht)
    assert_close(v, theirs.out_img2[0], theirs.out_wht)
    np.testing.assert_array_equal(v[den == 0], 0.0)
    np.testing.assert_array_equal(odq, theirs.out_dq)
    np.testing.assert_array_equal(ctx, theirs.out_ctx)

    # tile by tile (MVM contract): num2 and out_dq bit-identical to the whole frame
    ny, nx = data.shape
    tnum2 = np.zeros(out_shape)
    tdq = np.zeros(out_shape, np.uint32)
    for a, b in ((0, 37), (37, 71), (71, 100)):
        for c, e in ((0, 45), (45, 100)):
            box = input_bbox(pm, (a, b, c, e), **kw)
            if box is None:
                continue
            j0, j1, i0, i1 = box
            a0, a1, b0, b1 = max(j0 - 1, 0), min(j1 + 1, ny), max(i0 - 1, 0), min(i1 + 1, nx)
            n, dd = np.zeros((b - a, e - c)), np.zeros((b - a, e - c))
            n2, q = np.zeros((b - a, e - c)), np.zeros((b - a, e - c), np.uint32)
            sl = (slice(a0, a1), slice(b0, b1))
            add_to_tile(
                data[sl], wht[sl], pm[sl], n, dd, None, origin=(a, c), iscale=1.3,
                in_box=(j0 - a0, j1 - a0, i0 - b0, i1 - b0), in_origin=(a0, b0),
                data2=var[sl], num2=n2, dq=dq[sl], out_dq=q, lanczos_normalize=False, **kw,
            )  # fmt: skip
            tnum2[a:b, c:e] = n2
            tdq[a:b, c:e] = q
    np.testing.assert_array_equal(tnum2, num2)
    np.testing.assert_array_equal(tdq, odq)


def test_tile_arguments_checked():
    rng = np.random.default_rng(1)
    data, var, wht, dq, pm = make_image(rng)
    num, den = np.zeros((90, 90)), np.zeros((90, 90))
    kw = dict(origin=(0, 0))
    with pytest.raises(ValueError, match="data2 and num2 must be given together"):
        add_to_tile(data, wht, pm, num, den, None, data2=var, **kw)
    with pytest.raises(ValueError, match="num2 shape"):
        add_to_tile(data, wht, pm, num, den, None, data2=var, num2=np.zeros((9, 9)), **kw)
    with pytest.raises(ValueError, match="dq and out_dq must be given together"):
        add_to_tile(data, wht, pm, num, den, None, dq=dq, **kw)
    with pytest.raises(TypeError, match="dq must be of an integer type"):
        add_to_tile(
            data, wht, pm, num, den, None, dq=var, out_dq=np.zeros((90, 90), np.uint32), **kw
        )
    with pytest.raises(ValueError, match="out_dq must be C-contiguous, writeable and of the tile"):
        add_to_tile(data, wht, pm, num, den, None, dq=dq, out_dq=np.zeros((9, 9), np.uint32), **kw)


def test_lanczos_variance_with_tiny_weights():
    """lanczos weights at integer offsets are ~1e-17 (not 0): the squared running sums must be
    formed in double precision (a float32 square underflows to 0; regression)."""
    y, x = np.indices((5, 6), dtype=np.float64)
    pm = np.dstack([x + 2, y + 2])
    ones = np.ones((5, 6), np.float32)
    d = Drizzle(kernel="lanczos3", out_shape=(10, 10), fillval=0, fillval2=0)
    d.add_image(ones, exptime=1.0, pixmap=pm, data2=ones, dq=ones.astype(np.uint32))
    hit = d.out_wht > 0.5
    np.testing.assert_allclose(d.out_img[hit], 1.0, rtol=1e-5)
    assert np.isfinite(d.out_img2[0]).all()
    np.testing.assert_array_equal(d.out_dq[hit], 1)
