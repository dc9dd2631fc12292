"""Tile API: any tiling of the output gives the whole-frame result; input_bbox is conservative."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hapdask.drizzle.tile import add_to_tile, finalize_tile, input_bbox

KERNELS = ["square", "point", "turbo", "gaussian", "lanczos3"]


def chip_case(seed=0, ny=45, nx=60, nan=True):
    """A rotated, scaled, smoothly distorted chip whose footprint crosses the output edges."""
    rng = np.random.default_rng(seed)
    y, x = np.indices((ny, nx), dtype=np.float64)
    th = rng.uniform(0, 2 * np.pi)
    s = rng.uniform(0.7, 1.4)
    xs = s * (np.cos(th) * x - np.sin(th) * y) + 0.4 * np.sin(y / 8) + 0.3 * np.cos(x / 5)
    ys = s * (np.sin(th) * x + np.cos(th) * y) + 0.3 * np.sin(x / 7)
    xs += 5 - xs.min()
    ys += 3 - ys.min()
    pixmap = np.dstack([xs, ys])
    if nan:
        pixmap[10, 17] = np.nan
        pixmap[30, 40, 0] = np.nan
    data = rng.normal(5, 2, (ny, nx)).astype(np.float32)
    weight = rng.uniform(0.5, 1.5, (ny, nx)).astype(np.float32)
    # output frame cut so that part of the chip falls off it (borders matter)
    out_shape = (int(ys.max()) - 4, int(xs.max()) + 2)
    return data, weight, pixmap, out_shape, 1.0 / s


def drizzle_tiled(data, weight, pixmap, out_shape, ys, xs, with_origin=True, **kw):
    """Drizzle the chip tile by tile following the MVM contract."""
    ny, nx = data.shape
    num = np.zeros(out_shape)
    den = np.zeros(out_shape)
    ctx = np.zeros((2,) + out_shape, np.int32)
    ntiles = 0
    for a, b in zip(ys[:-1], ys[1:], strict=True):
        for c, e in zip(xs[:-1], xs[1:], strict=True):
            tn = np.zeros((b - a, e - c))
            td = np.zeros((b - a, e - c))
            tc = np.zeros((2, b - a, e - c), np.int32)
            box = input_bbox(
                pixmap,
                (a, b, c, e),
                kernel=kw["kernel"],
                pixfrac=kw["pixfrac"],
                pixel_scale_ratio=kw["pixel_scale_ratio"],
            )
            if box is not None:
                j0, j1, i0, i1 = box
                a0, a1 = max(j0 - 1, 0), min(j1 + 1, ny)
                b0, b1 = max(i0 - 1, 0), min(i1 + 1, nx)
                add_to_tile(
                    data[a0:a1, b0:b1],
                    weight[a0:a1, b0:b1],
                    pixmap[a0:a1, b0:b1],
                    tn,
                    td,
                    tc,
                    origin=(a, c),
                    in_origin=(a0, b0),
                    in_box=(j0 - a0, j1 - a0, i0 - b0, i1 - b0),
                    **kw,
                )
                ntiles += 1
            num[a:b, c:e] = tn
            den[a:b, c:e] = td
            ctx[:, a:b, c:e] = tc
    assert ntiles > 1
    return num, den, ctx


def tilings(out_shape):
    ny, nx = out_shape
    rng = np.random.default_rng(3)
    irregular_y = np.unique(np.r_[0, np.sort(rng.integers(1, ny, 6)), ny])
    irregular_x = np.unique(np.r_[0, np.sort(rng.integers(1, nx, 5)), nx])
    return [
        (np.r_[0:ny:17, ny], np.r_[0:nx:23, nx]),  # regular, last tile smaller
        (np.arange(ny + 1), np.r_[0, nx // 2, nx]),  # tiles of one row
        (np.r_[0, ny], np.arange(0, nx + 1)),  # tiles of one column
        (irregular_y, irregular_x),
    ]


@pytest.mark.parametrize("kernel", KERNELS)
def test_any_tiling_equals_whole_frame(kernel):
    data, weight, pixmap, out_shape, pscale = chip_case(1)
    kw = dict(
        kernel=kernel,
        pixfrac=1.0 if kernel.startswith("lanczos") else 0.8,
        pixel_scale_ratio=pscale,
        iscale=1.3,
        ctx_id=37,
    )
    num = np.zeros(out_shape)
    den = np.zeros(out_shape)
    ctx = np.zeros((2,) + out_shape, np.int32)
    add_to_tile(data, weight, pixmap, num, den, ctx, origin=(0, 0), **kw)
    assert (den > 0).mean() > 0.3
    sci, wht = finalize_tile(num, den)
    for ys, xs in tilings(out_shape):
        tnum, tden, tctx = drizzle_tiled(data, weight, pixmap, out_shape, ys, xs, **kw)
        # the contributions and their order are the same: bit-identical accumulators
        np.testing.assert_array_equal(tnum, num)
        np.testing.assert_array_equal(tden, den)
        np.testing.assert_array_equal(tctx, ctx)
        tsci, twht = finalize_tile(tnum, tden)
        np.testing.assert_array_equal(tsci, sci)
        np.testing.assert_array_equal(twht, wht)


@pytest.mark.parametrize("kernel", KERNELS)
def test_input_bbox_is_conservative_and_tight(kernel):
    data, weight, pixmap, out_shape, pscale = chip_case(2, nan=False)
    pf = 1.0 if kernel.startswith("lanczos") else 0.9
    window = (7, 19, 11, 30)
    box = input_bbox(pixmap, window, kernel=kernel, pixfrac=pf, pixel_scale_ratio=pscale)
    assert box is not None
    j0, j1, i0, i1 = box
    # brute force: which input pixels change the window when drizzled alone?
    touching = np.zeros(data.shape, bool)
    y0, y1, x0, x1 = window
    for j in range(data.shape[0]):
        for i in range(data.shape[1]):
            num = np.zeros((y1 - y0, x1 - x0))
            den = np.zeros_like(num)
            add_to_tile(
                data,
                weight,
                pixmap,
                num,
                den,
                None,
                origin=(y0, x0),
                in_box=(j, j + 1, i, i + 1),
                kernel=kernel,
                pixfrac=pf,
                pixel_scale_ratio=pscale,
            )
            touching[j, i] = np.any(den != 0)
    tj, ti = np.nonzero(touching)
    assert tj.min() >= j0 and tj.max() < j1 and ti.min() >= i0 and ti.max() < i1
    slack = 3 if kernel == "square" else 2
    assert j0 >= tj.min() - slack and j1 <= tj.max() + 1 + slack
    assert i0 >= ti.min() - slack and i1 <= ti.max() + 1 + slack


def test_input_bbox_none_when_window_missed():
    data, weight, pixmap, out_shape, pscale = chip_case(3)
    assert input_bbox(pixmap, (500, 520, 500, 520)) is None
    assert input_bbox(pixmap, (5, 5, 0, 10)) is None


def test_finalize_tile_fill_and_dtypes():
    num = np.array([[2.0, 0.0], [3.0, 0.0]])
    den = np.array([[4.0, 0.0], [1.5, 0.0]])
    sci, wht = finalize_tile(num, den, fillval=-7.0)
    assert sci.dtype == np.float32 and wht.dtype == np.float32
    np.testing.assert_array_equal(sci, [[0.5, -7.0], [2.0, -7.0]])
    np.testing.assert_array_equal(wht, [[4.0, 0.0], [1.5, 0.0]])
    sci, _ = finalize_tile(num, den)
    assert np.isnan(sci[0, 1])


def test_add_to_tile_rejects_bad_input():
    data, weight, pixmap, out_shape, pscale = chip_case(4)
    num = np.zeros((10, 10))
    den = np.zeros((10, 10))
    with pytest.raises(ValueError, match="num must be a 2-D float64"):
        add_to_tile(data, weight, pixmap, num.astype(np.float32), den, None, origin=(0, 0))
    with pytest.raises(ValueError, match="pixmap shape"):
        add_to_tile(data, weight, pixmap[:-1], num, den, None, origin=(0, 0))
    with pytest.raises(ValueError, match="unknown drizzle kernel"):
        add_to_tile(data, weight, pixmap, num, den, None, origin=(0, 0), kernel="box")
    with pytest.raises(ValueError, match="needs plane 1"):
        add_to_tile(
            data,
            weight,
            pixmap,
            num,
            den,
            np.zeros((1, 10, 10), np.int32),
            origin=(0, 0),
            ctx_id=40,
        )
    with pytest.raises(ValueError, match="in_box"):
        add_to_tile(data, weight, pixmap, num, den, None, origin=(0, 0), in_box=(0, 99, 0, 5))
    with pytest.raises(ValueError, match="weight shape"):
        add_to_tile(data, weight[:3], pixmap, num, den, None, origin=(0, 0))


def test_tiling_without_in_origin_agrees_to_float32_rounding():
    """Without ``in_origin`` the scan strips move with the sub-array, so the float64 sums may
    differ in their last bits; sci/wht still agree to float32 rounding and ctx exactly."""
    data, weight, pixmap, out_shape, pscale = chip_case(5, ny=70, nx=300)
    kw = dict(kernel="square", pixfrac=0.9, pixel_scale_ratio=pscale, iscale=1.0, ctx_id=3)
    num = np.zeros(out_shape)
    den = np.zeros(out_shape)
    ctx = np.zeros((2,) + out_shape, np.int32)
    add_to_tile(data, weight, pixmap, num, den, ctx, origin=(0, 0), **kw)
    ys, xs = np.r_[0 : out_shape[0] : 41, out_shape[0]], np.r_[0 : out_shape[1] : 57, out_shape[1]]
    tnum, tden, tctx = drizzle_tiled(
        data, weight, pixmap, out_shape, ys, xs, with_origin=False, **kw
    )
    np.testing.assert_array_equal(tctx, ctx)
    sci, wht = finalize_tile(num, den)
    tsci, twht = finalize_tile(tnum, tden)
    np.testing.assert_allclose(twht, wht, rtol=2e-7, atol=1e-12)
    good = wht > 0.01
    np.testing.assert_allclose(tsci[good], sci[good], rtol=2e-7)


@pytest.mark.parametrize("kernel", ["square", "lanczos3"])
def test_footprint_index_equals_input_bbox(kernel):
    from hapdask.drizzle.tile import FootprintIndex

    data, weight, pixmap, out_shape, pscale = chip_case(6, ny=90, nx=130)
    kw = dict(kernel=kernel, pixfrac=1.0, pixel_scale_ratio=pscale)
    index = FootprintIndex(pixmap, block=16, **kw)
    rng = np.random.default_rng(1)
    for _ in range(40):
        y0, x0 = rng.integers(-20, out_shape[0]), rng.integers(-20, out_shape[1])
        window = (y0, y0 + rng.integers(1, 40), x0, x0 + rng.integers(1, 40))
        assert index.bbox(window) == input_bbox(pixmap, window, **kw)
    # larger windows: covering_bbox (the engine's fast path) equals input_bbox where the
    # pixmap has no NaN, and holds it where NaN pixels sit inside fully covered blocks
    holed = pixmap.copy()
    holed[40:44, 50:60] = np.nan
    holed_index = FootprintIndex(holed, block=16, **kw)
    for _ in range(40):
        y0, x0 = rng.integers(-20, out_shape[0]), rng.integers(-20, out_shape[1])
        window = (y0, y0 + rng.integers(1, 120), x0, x0 + rng.integers(1, 160))
        assert index.covering_bbox(window) == input_bbox(pixmap, window, **kw)
        exact = input_bbox(holed, window, **kw)
        cover = holed_index.covering_bbox(window)
        assert (cover is None) == (exact is None)
        if exact is not None:
            assert cover[0] <= exact[0] and cover[1] >= exact[1]
            assert cover[2] <= exact[2] and cover[3] >= exact[3]


@pytest.mark.parametrize("kernel", ["square", "point", "gaussian"])
@pytest.mark.parametrize("seed", [0, 3])
def test_footprint_extent_counts_exact_and_extent_conservative(kernel, seed):
    """footprint_extent (used by Drizzle.add_image to size its window) gives the exact miss/skip
    counts of the per-pixel reach test and an extent that contains every footprint."""
    from hapdask.drizzle import _kernels as K
    from hapdask.drizzle.tile import _reach_params

    _, _, pixmap, out_shape, pscale = chip_case(seed)
    pixmap = np.ascontiguousarray(pixmap)
    oh, ow = out_shape
    kind, radius = _reach_params(kernel, 0.9, pscale)
    ny, nx = pixmap.shape[:2]
    nmiss = nskip = 0
    ext = [np.inf, -np.inf, np.inf, -np.inf]
    for j in range(ny):
        hit_row = False
        for i in range(nx):
            x, y = pixmap[j, i]
            if not (np.isfinite(x) and np.isfinite(y)):
                nmiss += 1
                continue
            rx, ry = K._pixel_reach(pixmap, j, i, kind, radius)
            if x + rx <= -0.5 or x - rx >= ow - 0.5 or y + ry <= -0.5 or y - ry >= oh - 0.5:
                nmiss += 1
                continue
            hit_row = True
            ext = [
                min(ext[0], y - ry),
                max(ext[1], y + ry),
                min(ext[2], x - rx),
                max(ext[3], x + rx),
            ]
        nskip += not hit_row
    ymn, ymx, xmn, xmx, gmiss, gskip = K.footprint_extent(
        pixmap, 0, ny, 0, nx, kind, radius, oh, ow
    )
    assert (gmiss, gskip) == (nmiss, nskip)
    assert nmiss > 0  # the case really has pixels off the output
    assert ymn <= ext[0] and ymx >= ext[1] and xmn <= ext[2] and xmx >= ext[3]
    assert max(ext[0] - ymn, ymx - ext[1], ext[2] - xmn, xmx - ext[3]) < 3.0


@pytest.mark.parametrize("sparse,nan", [(False, False), (True, False), (False, True),
                                        (True, True)])
def test_square_tile_skips_only_pixels_that_cannot_land(sparse, nan):
    """A tile task drizzles a chip's whole axis-aligned input box (the SVM/drizzle pipelines
    with a cached whole-chip map): the square kernel skips, per strip row, the pixels whose
    footprint cannot reach the tile (jumping along the row by the box's largest step when its
    positions are all finite, pixel by pixel next to NaNs), and gathers the weighted pixels
    of sparse rows (cosmic-ray re-drizzles). Every tile gets exactly the whole-frame
    accumulators (bit-identical), so no pixel whose footprint lands in a tile (centre up to
    ~1.5 output pixels outside it) is skipped, whichever path computed it."""
    ny, nx = 40, 300  # three 128-column strips
    jj, ii = np.mgrid[0:ny, 0:nx].astype(np.float64)
    t = np.deg2rad(57.0)
    s = 1.25  # output pixels per input pixel: footprints reach ~1.3 px beyond their centres
    xs = s * (np.cos(t) * ii - np.sin(t) * jj) + 0.3 * np.sin(jj / 7)
    ys = s * (np.sin(t) * ii + np.cos(t) * jj) + 0.2 * np.cos(ii / 11)
    pixmap = np.dstack([xs - xs.min() + 4.0, ys - ys.min() + 4.0])
    rng = np.random.default_rng(11)
    data = rng.normal(10.0, 2.0, (ny, nx)).astype(np.float32)
    weight = rng.uniform(0.5, 1.5, (ny, nx)).astype(np.float32)
    if nan:  # positions missing here and there: no step bound across them
        pixmap[rng.integers(0, ny, 12), rng.integers(0, nx, 12)] = np.nan
        pixmap[7, 50:60, 0] = np.nan
    if sparse:
        weight[rng.random((ny, nx)) > 0.1] = 0.0  # ~10 % weighted: the gathered path
    out_shape = (int(np.nanmax(pixmap[..., 1])) + 6, int(np.nanmax(pixmap[..., 0])) + 6)
    kw = dict(kernel="square", pixfrac=1.0, ctx_id=5)
    num = np.zeros(out_shape)
    den = np.zeros(out_shape)
    ctx = np.zeros((1,) + out_shape, np.int32)
    add_to_tile(data, weight, pixmap, num, den, ctx, origin=(0, 0), **kw)
    ty, tx = 23, 19
    edge = 0  # pixels whose footprint lands in a tile with their centre outside it
    for a in range(0, out_shape[0], ty):
        for c in range(0, out_shape[1], tx):
            b, e = min(a + ty, out_shape[0]), min(c + tx, out_shape[1])
            tn = np.zeros((b - a, e - c))
            td = np.zeros((b - a, e - c))
            tc = np.zeros((1, b - a, e - c), np.int32)
            # the whole chip as the input box: most of it lands off this tile
            add_to_tile(data, weight, pixmap, tn, td, tc, origin=(a, c), **kw)
            np.testing.assert_array_equal(tn, num[a:b, c:e])
            np.testing.assert_array_equal(td, den[a:b, c:e])
            np.testing.assert_array_equal(tc, ctx[:, a:b, c:e])
            x, y = pixmap[..., 0], pixmap[..., 1]
            with np.errstate(invalid="ignore"):
                out = (x < c - 0.5) | (x > e - 0.5) | (y < a - 0.5) | (y > b - 0.5)
                near = (x > c - 1.5) & (x < e + 0.5) & (y > a - 1.5) & (y < b + 0.5)
            edge += int((out & near & (weight > 0)).sum())
    assert edge > 100
    assert (den > 0).sum() > 0.5 * (weight > 0).sum()


@pytest.mark.parametrize("kernel,pixfrac", [("square", 1.0), ("square", 0.7), ("point", 1.0),
                                            ("turbo", 0.8), ("gaussian", 0.8)])
def test_count_is_the_number_of_pixels_setting_the_context_bit(kernel, pixfrac):
    """``count`` against drizzle C: each input pixel drizzled alone by the C ``Drizzle`` (all
    other weights 0) sets the context bit where it lands with ``dow > 0``; the count of an
    output pixel is how many of those single-pixel drizzles set it. Ours comes from one call
    per tile of a tiling (windows, zero weights), with ctx disabled and enabled (the count must
    not depend on it). No NaN positions: the C code drops the whole image then."""
    cres = pytest.importorskip("drizzle.resample")
    rng = np.random.default_rng(11)
    ny, nx = 14, 17
    y, x = np.indices((ny, nx), dtype=np.float64)
    theta, scale = 0.6, 1.0 / 2.2  # output pixels ~2.2 input pixels wide: counts up to ~9
    xs = scale * (np.cos(theta) * x - np.sin(theta) * y) + 0.05 * np.sin(x / 3) + 6.3
    ys = scale * (np.sin(theta) * x + np.cos(theta) * y) + 0.04 * np.cos(y / 4) + 1.7
    pixmap = np.dstack([xs, ys])
    data = rng.uniform(1, 5, (ny, nx)).astype(np.float32)
    weight = rng.uniform(0.5, 2, (ny, nx)).astype(np.float32)
    weight[7, 2:6] = 0.0
    out_shape = (12, 14)  # holds the whole footprint (C differs at the frame's edges)
    want = np.zeros(out_shape, np.int64)
    for j in range(ny):
        for i in range(nx):
            if weight[j, i] == 0:
                continue
            one = np.zeros_like(weight)
            one[j, i] = weight[j, i]
            d = cres.Drizzle(kernel=kernel, out_shape=out_shape, fillval=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                d.add_image(data, exptime=1.0, pixmap=pixmap, weight_map=one, pixfrac=pixfrac,
                            pixel_scale_ratio=1 / scale)
            want += d.out_ctx[0] != 0
    assert want.max() >= 4 and (want > 0).mean() > 0.3
    for use_ctx in (False, True):
        for ys_, xs_ in ((np.r_[0, 12], np.r_[0, 14]), (np.r_[0, 4, 8, 12], np.r_[0, 6, 14])):
            got = np.zeros(out_shape, np.uint8)
            ctx = np.zeros((1,) + out_shape, np.int32) if use_ctx else None
            for a, b in zip(ys_[:-1], ys_[1:], strict=True):
                for c, e in zip(xs_[:-1], xs_[1:], strict=True):
                    cnt = np.zeros((b - a, e - c), np.uint8)
                    add_to_tile(data, weight, pixmap, np.zeros((b - a, e - c)),
                                np.zeros((b - a, e - c)),
                                None if ctx is None else np.zeros((1, b - a, e - c), np.int32),
                                origin=(a, c), kernel=kernel, pixfrac=pixfrac,
                                pixel_scale_ratio=1 / scale, count=cnt)
                    got[a:b, c:e] = cnt
            np.testing.assert_array_equal(got, want)


def test_count_rejects_bad_arrays():
    data, weight, pixmap, out_shape, _ = chip_case(3)
    num, den = np.zeros(out_shape), np.zeros(out_shape)
    for bad in (np.zeros(out_shape, np.int32), np.zeros((3, 3), np.uint8),
                np.zeros(out_shape[::-1], np.uint16).T):
        with pytest.raises(ValueError, match="count"):
            add_to_tile(data, weight, pixmap, num, den, None, origin=(0, 0), count=bad)


def test_finalize_tile_into_given_planes():
    """``out``: the planes given (e.g. of a stack) are filled and returned, with the values of
    numpy's division of the sums (float32; the fill value where no weight) and the weights."""
    rng = np.random.default_rng(4)
    num = rng.normal(0, 50, (30, 40))
    den = rng.uniform(0, 3, (30, 40))
    den[::3, ::5] = 0.0
    stack = np.full((2, 3, 30, 40), 7.0, np.float32)
    sci, wht = finalize_tile(num, den, fillval=-1.5, out=(stack[0, 1], stack[1, 1]))
    assert np.shares_memory(sci, stack[0, 1]) and np.shares_memory(wht, stack[1, 1])
    hit = den != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        want = np.where(hit, num / den, -1.5).astype(np.float32)
    np.testing.assert_array_equal(stack[0, 1], want)
    np.testing.assert_array_equal(stack[1, 1], den.astype(np.float32))
    assert (stack[:, [0, 2]] == 7.0).all()  # the other planes untouched
    with pytest.raises(ValueError, match="float32"):
        finalize_tile(num, den, out=(np.zeros((30, 40)), np.zeros((30, 40), np.float32)))
