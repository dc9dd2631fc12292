"""``hapdask.drizzle.Drizzle`` against ``drizzle.resample.Drizzle`` 3.0 (the C reference).

Same tolerances as the kernel tests: where the C weight is >= 1% of its maximum, out_img and
out_wht agree to 2e-5 relative and out_ctx is identical. The documented deviations (module
docstring of hapdask.drizzle.resample) each have a test below that shows our behaviour and, for
drizzle 3.0.0, the C behaviour it replaces.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hapdask.drizzle import Drizzle

drizzle = pytest.importorskip("drizzle")
from drizzle.resample import Drizzle as CDrizzle  # noqa: E402

C_300 = drizzle.__version__ == "3.0.0"


def distorted_pixmap(rng, ny, nx, offset=(30.0, 20.0), scale=1.1, theta=0.35):
    y, x = np.indices((ny, nx), dtype=np.float64)
    xs = scale * (np.cos(theta) * x - np.sin(theta) * y) + 0.3 * np.sin(x / 7) + offset[0]
    ys = scale * (np.sin(theta) * x + np.cos(theta) * y) + 0.2 * np.cos(y / 5) + offset[1]
    return np.dstack([xs, ys]) + rng.normal(0, 1.5, 2)


def c_add(d, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return d.add_image(*args, **kw)


def assert_close(ours: Drizzle, theirs: CDrizzle):
    good = theirs.out_wht >= 0.01 * theirs.out_wht.max()
    ref = np.abs(theirs.out_img[good]).astype(np.float64)
    denom = np.maximum(ref, np.median(ref))
    assert np.max(np.abs(ours.out_img[good] - theirs.out_img[good]) / denom) <= 2e-5
    assert np.max(np.abs(ours.out_wht[good] - theirs.out_wht[good]) / theirs.out_wht[good]) <= 2e-5
    np.testing.assert_array_equal(ours.out_ctx, theirs.out_ctx)
    assert ours.total_exptime == theirs.total_exptime


@pytest.mark.parametrize("kernel", ["square", "point", "turbo", "gaussian"])
def test_sequential_adds_match_c(kernel):
    """35 images (context grows to a second plane), counts units, weights, fill value 0."""
    rng = np.random.default_rng(5)
    ny, nx = 30, 36
    ours = Drizzle(kernel=kernel, out_shape=(90, 90), fillval=0)
    theirs = CDrizzle(kernel=kernel, out_shape=(90, 90), fillval=0)
    for _ in range(35):
        data = rng.uniform(0, 10, (ny, nx)).astype(np.float32)
        wht = rng.uniform(0.5, 2, (ny, nx)).astype(np.float32)
        pixmap = distorted_pixmap(rng, ny, nx)
        kw = dict(
            exptime=2.5,
            pixmap=pixmap,
            weight_map=wht,
            wht_scale=0.7,
            pixfrac=0.8,
            in_units="counts",
            iscale=1.2,
            pixel_scale_ratio=0.9,
        )
        c_add(theirs, data, **kw)
        ours.add_image(data, **kw)
    assert ours.out_ctx.shape == (2, 90, 90)
    assert_close(ours, theirs)
    # untouched pixels hold the fill value, like C
    np.testing.assert_array_equal(ours.out_img[ours.out_wht == 0], 0.0)


def test_continue_from_c_outputs():
    """A user passing existing C out_img/out_wht/out_ctx continues them like C would."""
    rng = np.random.default_rng(6)
    imgs = [
        (rng.uniform(0, 5, (25, 30)).astype(np.float32), distorted_pixmap(rng, 25, 30))
        for _ in range(3)
    ]
    theirs = CDrizzle(out_shape=(80, 80))
    for data, pm in imgs[:2]:
        c_add(theirs, data, exptime=1.0, pixmap=pm, pixfrac=0.7)
    ours = Drizzle(
        out_img=theirs.out_img.copy(),
        out_wht=theirs.out_wht.copy(),
        out_ctx=theirs.out_ctx.copy(),
        exptime=2.0,
        begin_ctx_id=2,
    )
    c_add(theirs, imgs[2][0], exptime=1.0, pixmap=imgs[2][1], pixfrac=0.7)
    ours.add_image(imgs[2][0], exptime=1.0, pixmap=imgs[2][1], pixfrac=0.7)
    assert_close(ours, theirs)
    # INDEF fill with a supplied out_img: pixels without contributions are left as they were
    assert np.isnan(ours.out_img[ours.out_wht == 0]).all()


def test_user_output_arrays_updated_in_place():
    out_img = np.zeros((40, 40), np.float32)
    out_wht = np.zeros((40, 40), np.float32)
    d = Drizzle(out_img=out_img, out_wht=out_wht, fillval=0)
    y, x = np.indices((10, 10), dtype=np.float64)
    d.add_image(np.full((10, 10), 3, np.float32), exptime=1.0, pixmap=np.dstack([x + 5, y + 5]))
    assert d.out_img is out_img and d.out_wht is out_wht
    assert out_wht.sum() == 100.0 and out_img[10, 10] == 3.0


def test_box_limits_match_c():
    rng = np.random.default_rng(7)
    data = rng.uniform(1, 2, (30, 30)).astype(np.float32)
    pm = distorted_pixmap(rng, 30, 30)
    ours = Drizzle(out_shape=(80, 80))
    theirs = CDrizzle(out_shape=(80, 80))
    kw = dict(exptime=1.0, pixmap=pm, xmin=3, xmax=20, ymin=5, ymax=25)
    c_add(theirs, data, **kw)
    ours.add_image(data, **kw)
    assert_close(ours, theirs)
    assert ours.out_wht.sum() == pytest.approx(18 * 21, rel=1e-6)


# --- documented deviations ----------------------------------------------------------------------


def test_deviation_nan_pixmap_does_not_blank_the_call():
    """C 3.0.0: one NaN in a small pixmap can make the whole call a silent no-op. Ours drops only
    that pixel."""
    y, x = np.indices((10, 10), dtype=np.float64)
    pm = np.dstack([x + 5, y + 5])
    pm[5, 5] = np.nan
    data = np.ones((10, 10), np.float32)
    ours = Drizzle(out_shape=(20, 20))
    ours.add_image(data, exptime=1.0, pixmap=pm)
    assert ours.out_wht.sum() == pytest.approx(99.0)
    assert ours.out_wht[10, 10] == 0 and ours.out_wht[10, 11] == 1.0
    if C_300:
        theirs = CDrizzle(out_shape=(20, 20))
        c_add(theirs, data, exptime=1.0, pixmap=pm)
        assert theirs.out_wht.sum() == 0.0


def test_deviation_nan_pixmap_no_3x3_hole():
    """C 3.0.0 (square): the 8 neighbours of a NaN pixmap entry are dropped too (3x3 hole). Ours
    places them with a local Jacobian; exact for an affine map."""
    y, x = np.indices((40, 40), dtype=np.float64)
    pm = np.dstack([1.1 * x + 0.2 * y + 5, -0.15 * x + 0.9 * y + 12])
    pm[20, 20] = np.nan
    data = np.random.default_rng(0).normal(size=(40, 40)).astype(np.float32)
    ours = Drizzle(out_shape=(60, 60))
    ours.add_image(data, exptime=1.0, pixmap=pm)
    assert ours.out_wht.sum() == pytest.approx(1599.0, rel=1e-9)
    # the neighbours land exactly as without the NaN (affine map)
    ref = Drizzle(out_shape=(60, 60))
    mask = np.ones((40, 40), np.float32)
    mask[20, 20] = 0
    pm_ok = pm.copy()
    pm_ok[20, 20] = [1.1 * 20 + 0.2 * 20 + 5, -0.15 * 20 + 0.9 * 20 + 12]
    ref.add_image(data, exptime=1.0, pixmap=pm_ok, weight_map=mask)
    np.testing.assert_allclose(ours.out_wht, ref.out_wht, atol=1e-6)
    good = ref.out_wht > 0.01
    np.testing.assert_allclose(ours.out_img[good], ref.out_img[good], rtol=1e-5, atol=1e-5)
    if C_300:
        theirs = CDrizzle(out_shape=(60, 60))
        c_add(theirs, data, exptime=1.0, pixmap=pm)
        assert theirs.out_wht.sum() == pytest.approx(1600 - 9, rel=1e-6)


def test_deviation_partial_edge_coverage_kept():
    """A pixel whose centre maps 0.25 px off the output still gives its 25 % overlap to the
    edge output pixel (C drops it: the edge column gets 0.75 instead of 1)."""
    y, x = np.indices((12, 12), dtype=np.float64)
    pm = np.dstack([x - 0.75, y + 3])
    data = np.full((12, 12), 2.0, np.float32)
    ours = Drizzle(out_shape=(20, 20))
    ours.add_image(data, exptime=1.0, pixmap=pm)
    np.testing.assert_allclose(ours.out_wht[3:15, 0], 1.0, rtol=1e-6)
    np.testing.assert_allclose(ours.out_img[3:15, 0], 2.0, rtol=1e-6)
    if C_300:
        theirs = CDrizzle(out_shape=(20, 20))
        c_add(theirs, data, exptime=1.0, pixmap=pm)
        np.testing.assert_allclose(theirs.out_wht[3:15, 0], 0.75, rtol=1e-6)


@pytest.mark.parametrize("kernel", ["lanczos2", "lanczos3"])
def test_deviation_lanczos_weights_normalised(kernel):
    """Each input pixel adds exactly its weight (C: about 1 / pixel_scale_ratio**2)."""
    rng = np.random.default_rng(8)
    pm = distorted_pixmap(rng, 30, 30, scale=1.25, offset=(40, 20))
    data = rng.uniform(1, 2, (30, 30)).astype(np.float32)
    ours = Drizzle(kernel=kernel, out_shape=(100, 100))
    ours.add_image(data, exptime=1.0, pixmap=pm, pixel_scale_ratio=0.8)
    assert ours.out_wht.sum() == pytest.approx(900.0, rel=1e-5)
    theirs = CDrizzle(kernel=kernel, out_shape=(100, 100))
    c_add(theirs, data, exptime=1.0, pixmap=pm, pixel_scale_ratio=0.8)
    assert theirs.out_wht.sum() == pytest.approx(900 / 0.8**2, rel=0.02)
    # the mean itself moves only by the sub-pixel variation of the normalisation
    good = theirs.out_wht > 0.3 * theirs.out_wht.max()
    np.testing.assert_allclose(ours.out_img[good], theirs.out_img[good], rtol=5e-3)
    # a constant image stays constant
    flat = Drizzle(kernel=kernel, out_shape=(100, 100))
    flat.add_image(
        np.full((30, 30), 4.0, np.float32), exptime=1.0, pixmap=pm, pixel_scale_ratio=0.8
    )
    good = flat.out_wht > 0.5
    np.testing.assert_allclose(flat.out_img[good], 4.0, rtol=1e-5)


def test_deviation_degenerate_square_skipped():
    pm = np.zeros((6, 6, 2))
    pm[...] = 3.0
    d = Drizzle(out_shape=(8, 8))
    d.add_image(np.ones((6, 6), np.float32), exptime=1.0, pixmap=pm)
    assert np.all(np.isfinite(d.out_wht)) and d.out_wht.sum() == 0.0


def test_deviation_inferred_shape_not_transposed():
    y, x = np.indices((5, 9), dtype=np.float64)
    pm = np.dstack([x * 2 + 10.3, y + 4.2])  # 17 x 5 output pixels wide/high
    d = Drizzle()
    d.add_image(np.ones((5, 9), np.float32), exptime=1.0, pixmap=pm)
    assert d.out_img.shape == d.out_wht.shape == d.out_ctx.shape[1:] == (6, 18)
    # every centre lands on the output (footprints of the outermost pixels stick out)
    assert np.all(d.out_wht[1:5, 2:17] > 0)
    if C_300:
        c = CDrizzle()
        c_add(c, np.ones((5, 9), np.float32), exptime=1.0, pixmap=pm)
        assert c.out_img.shape == (18, 6)


# --- API behaviour ------------------------------------------------------------------------------


def test_deviation_pixel_scale_ratio_none_estimate():
    y, x = np.indices((20, 20), dtype=np.float64)
    pm = np.dstack([2 * x + 5, 2 * y + 5])  # input pixels twice the output: ratio 0.5
    data = np.random.default_rng(1).uniform(size=(20, 20)).astype(np.float32)
    a = Drizzle(kernel="turbo", out_shape=(50, 50))
    a.add_image(data, exptime=1.0, pixmap=pm, pixel_scale_ratio=None)
    b = Drizzle(kernel="turbo", out_shape=(50, 50))
    b.add_image(data, exptime=1.0, pixmap=pm, pixel_scale_ratio=0.5)
    np.testing.assert_array_equal(a.out_wht, b.out_wht)
    # the 2x2-output-pixel footprint of each input pixel is covered (turbo box = input pixel)
    assert np.count_nonzero(a.out_wht) == 41 * 41
    if C_300:  # deviation: C estimates the inverse ratio (2), shrinking the turbo box 4x
        c_none = CDrizzle(kernel="turbo", out_shape=(50, 50))
        c_add(c_none, data, exptime=1.0, pixmap=pm, pixel_scale_ratio=None)
        c_two = CDrizzle(kernel="turbo", out_shape=(50, 50))
        c_add(c_two, data, exptime=1.0, pixmap=pm, pixel_scale_ratio=2.0)
        np.testing.assert_array_equal(c_none.out_wht, c_two.out_wht)


def test_bad_arguments_raise_clear_errors():
    y, x = np.indices((5, 5), dtype=np.float64)
    pm = np.dstack([x, y])
    data = np.ones((5, 5), np.float32)
    with pytest.raises(ValueError, match="not supported"):
        Drizzle(kernel="tophat")
    with pytest.raises(ValueError, match="Exposure time must be 0.0"):
        Drizzle(out_shape=(5, 5), exptime=3.0)
    with pytest.raises(ValueError, match="Inconsistent data shapes"):
        Drizzle(out_shape=(5, 5), out_img=np.zeros((4, 4), np.float32))
    d = Drizzle(out_shape=(5, 5))
    with pytest.raises(ValueError, match="exptime"):
        d.add_image(data, exptime=0.0, pixmap=pm)
    with pytest.raises(ValueError, match="'pixmap' shape"):
        d.add_image(data, exptime=1.0, pixmap=pm[:4])
    with pytest.raises(ValueError, match="'weight_map' shape"):
        d.add_image(data, exptime=1.0, pixmap=pm, weight_map=np.ones((3, 3)))
    with pytest.raises(ValueError, match="'data2'\\[0\\] shape"):
        d.add_image(data, exptime=1.0, pixmap=pm, data2=np.ones((3, 3)))
    with pytest.raises(TypeError, match="'dq' must be of an unsigned integer type"):
        d.add_image(data, exptime=1.0, pixmap=pm, dq=np.ones((5, 5)))
    with pytest.raises(ValueError, match="Inconsistent values of supplied 'out_wht'"):
        Drizzle(
            out_wht=np.ones((5, 5), np.float32), out_ctx=np.zeros((5, 5), np.int32), exptime=1.0
        )


@pytest.mark.parametrize("kernel", ["square", "gaussian", "lanczos3"])
def test_add_image_equals_tile_sums(kernel):
    """add_image's in-place running mean (lanczos: float64 sums per image) equals the tile API's
    float64 sums divided once, to float32 rounding, with the same context (partial box, NaNs,
    zero weights, a second image on top)."""
    from hapdask.drizzle import add_to_tile, finalize_tile

    ny, nx = 50, 64
    ours = Drizzle(kernel=kernel, out_shape=(110, 110), fillval=0)
    num = np.zeros((110, 110))
    den = np.zeros((110, 110))
    ctx = np.zeros((1, 110, 110), np.int32)
    r = np.random.default_rng(3)
    for k in range(2):
        data = r.uniform(0, 10, (ny, nx)).astype(np.float32)
        wht = r.uniform(0.5, 2, (ny, nx)).astype(np.float32)
        wht[r.random((ny, nx)) < 0.05] = 0
        pixmap = distorted_pixmap(r, ny, nx)
        pixmap[20:23, 30:33] = np.nan
        kw = dict(exptime=1.0, pixmap=pixmap, weight_map=wht, pixel_scale_ratio=1.1)
        box = dict(xmin=3, xmax=60, ymin=2) if k else {}
        counts = ours.add_image(data, **kw, **box)
        assert counts[0] > 0
        in_box = (2, ny, 3, 61) if k else None
        add_to_tile(
            data,
            wht,
            pixmap,
            num,
            den,
            ctx,
            origin=(0, 0),
            in_box=in_box,
            kernel=kernel,
            pixel_scale_ratio=1.1,
            ctx_id=k,
        )
    sci, w = finalize_tile(num, den, fillval=0.0)
    wmax = w.max()
    np.testing.assert_allclose(ours.out_wht, w, rtol=1e-6, atol=1e-6 * wmax)
    good = w >= 0.01 * wmax
    np.testing.assert_allclose(ours.out_img[good], sci[good], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ours.out_ctx, ctx)
    np.testing.assert_array_equal(ours.out_wht == 0, w == 0)
    np.testing.assert_array_equal(ours.out_img[w == 0], 0.0)


@pytest.mark.parametrize("kernel", ["square", "point", "turbo", "gaussian", "lanczos3"])
def test_miss_and_skip_counts(kernel):
    """(nmiss, nskip) from the geometry: input pixels 10 output pixels apart; rows 0..4 and
    columns 20..23 land entirely off the output (square footprints end exactly on its edges, the
    other kernels reach < 4 pixels); NaN pixmap and zero-weight pixels contribute nothing."""
    ny, nx = 20, 24
    y, x = np.indices((ny, nx), dtype=np.float64)
    # row 4 at y = -6, row 5 at y = 4 (square boundary at -1); column 19 at x = 195, column 20
    # at x = 205 (square boundary at 200 = the output width)
    pm = np.dstack([10.0 * x + 5.0, 10.0 * y - 46.0])
    wht = np.ones((ny, nx), np.float32)
    wht[10, 3] = 0.0  # zero weight
    pm[12, 7] = np.nan  # NaN pixmap
    d = Drizzle(kernel=kernel, out_shape=(200, 200))
    nmiss, nskip = d.add_image(
        np.ones((ny, nx), np.float32), exptime=1.0, pixmap=pm, weight_map=wht
    )
    off = 5 * nx + (ny - 5) * 4  # the 5 low rows and the 4 right columns
    assert nskip == 5
    assert nmiss == off + 2
