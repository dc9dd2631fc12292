"""The numba passes of the source finder against their library oracles and truth."""

from __future__ import annotations

import numpy as np
from astropy.nddata import block_reduce
from photutils.detection import DAOStarFinder, find_peaks
from scipy import ndimage

from hapdask.align import _kernels as K
from hapdask.align.sources import windowed_centroids


def _image(seed: int = 1, shape=(120, 150)):
    rng = np.random.default_rng(seed)
    img = rng.normal(10.0, 2.0, shape).astype(np.float32)
    dq = np.zeros(shape, np.uint16)
    dq[rng.random(shape) < 0.02] = 4  # bad
    dq[rng.random(shape) < 0.02] = 256  # ignored (saturation is not masked)
    img[5, 7] = np.nan
    return img, dq


def test_block_mean_is_masked_block_average():
    img, dq = _image()
    mean, n = K.block_mean(img, dq, 256, 3)
    good = ((dq.astype(np.int64) & ~256) == 0) & np.isfinite(img)
    # oracle: astropy block_reduce of the good pixels and of their count (shapes are multiples)
    s = block_reduce(np.where(good, img, 0.0).astype(np.float64), 3, func=np.sum)
    c = block_reduce(good.astype(np.int64), 3, func=np.sum)
    np.testing.assert_array_equal(n, c)
    np.testing.assert_allclose(mean, np.where(c > 0, s / np.maximum(c, 1), 0.0), rtol=1e-12)


def test_residual_is_bilinear_background_subtracted():
    img, dq = _image()
    rng = np.random.default_rng(2)
    grid = rng.normal(10.0, 1.0, (5, 6))
    c0, step = 13.0, 27.0
    res, good = K.residual(img, dq, 256, grid, c0, step)
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    fy = np.clip((yy - c0) / step, 0, grid.shape[0] - 1)
    fx = np.clip((xx - c0) / step, 0, grid.shape[1] - 1)
    bkg = ndimage.map_coordinates(grid, [fy.ravel(), fx.ravel()], order=1).reshape(img.shape)
    ok = ((dq.astype(np.int64) & ~256) == 0) & np.isfinite(img)
    np.testing.assert_array_equal(good.astype(bool), ok)
    np.testing.assert_allclose(res[ok], (img - bkg)[ok], atol=1e-5)
    assert (res[~ok] == 0).all()


def test_peaks_match_photutils_find_peaks_as_daostarfinder_calls_it():
    img, dq = _image(3)
    rng = np.random.default_rng(4)
    for _ in range(40):  # stars
        y, x = rng.uniform(0, img.shape[0]), rng.uniform(0, img.shape[1])
        yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
        img += (rng.uniform(20, 400) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 2.2)
                ).astype(np.float32)
    data = np.where(np.isfinite(img), img - 10.0, 0.0).astype(np.float32)
    good = (((dq.astype(np.int64) & ~256) == 0) & np.isfinite(img)).astype(np.uint8)
    finder = DAOStarFinder(6.0, 2.5, exclude_border=True)
    kern = finder.kernel
    conv = ndimage.convolve(data, kern.data.astype(np.float32), mode="constant", cval=0.0)
    r = finder.min_separation
    idx = np.arange(-r, r + 1)
    foot = (idx[None, :] ** 2 + idx[:, None] ** 2) <= r ** 2
    py, px = K.peaks(conv, good, foot.astype(np.uint8), float(finder.threshold_eff),
                     kern.y_radius)
    oracle = find_peaks(conv, float(finder.threshold_eff), footprint=foot, mask=good == 0,
                        border_width=(kern.y_radius, kern.x_radius))
    assert len(oracle) > 10
    assert sorted(zip(py.tolist(), px.tolist(), strict=True)) == sorted(
        zip(np.asarray(oracle["y_peak"]).tolist(), np.asarray(oracle["x_peak"]).tolist(),
            strict=True))


def test_windowed_centroids_recover_true_positions():
    """Noise-free Gaussian stars at known sub-pixel positions (truth)."""
    rng = np.random.default_rng(5)
    shape = (200, 200)
    xt = rng.uniform(10, 190, 30)
    yt = rng.uniform(10, 190, 30)
    keep = np.hypot(xt[:, None] - xt[None], yt[:, None] - yt[None])
    np.fill_diagonal(keep, np.inf)
    sel = keep.min(axis=1) > 15
    xt, yt = xt[sel], yt[sel]
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    img = np.zeros(shape)
    for x, y in zip(xt, yt, strict=True):
        img += 100.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.3 ** 2))
    x0 = xt + rng.uniform(-0.6, 0.6, xt.size)
    y0 = yt + rng.uniform(-0.6, 0.6, yt.size)
    xc, yc = windowed_centroids(img, x0, y0, 1.5)
    np.testing.assert_allclose(xc, xt, atol=1e-3)
    np.testing.assert_allclose(yc, yt, atol=1e-3)
    # masked pixels carry no weight; an empty window gives NaN
    valid = np.ones(shape, bool)
    valid[:, :] = False
    xn, yn = windowed_centroids(img, x0[:2], y0[:2], 1.5, valid=valid)
    assert np.isnan(xn).all() and np.isnan(yn).all()


def test_convolve_equals_ndimage_convolve_bit_for_bit():
    """ndimage.convolve (mode constant, cval 0) is the oracle: the same float32 bits, on
    DAOStarFinder's kernel and on asymmetric kernels with zero and tiny weights, images
    smaller than the kernel included."""
    rng = np.random.default_rng(6)
    kern = DAOStarFinder(5.0, 2.6).kernel.data.astype(np.float32)
    kernels = [kern, rng.normal(size=(3, 5)).astype(np.float32),
               np.array([[0, 1, 0], [2, -3, 0], [0, 0, 1e-20]], np.float32)]
    images = [_image(7)[0], rng.normal(size=(37, 53)).astype(np.float32),
              rng.normal(size=(2, 3)).astype(np.float32)]
    images[0] = np.nan_to_num(images[0])
    for w in kernels:
        for img in images:
            want = ndimage.convolve(img, w, mode="constant", cval=0.0)
            got = K.convolve(img, w.astype(np.float64))
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_stamps_equal_fancy_index_gather():
    """NumPy fancy indexing (``fill`` beyond the image) is the oracle, for the dtypes the
    source finder gathers (float32 residual and error, uint16 DQ, uint8 good mask)."""
    rng = np.random.default_rng(8)
    y0 = rng.integers(-6, 46, 300)
    x0 = rng.integers(-6, 66, 300)
    for img, fill in ((rng.normal(size=(40, 60)).astype(np.float32), 0.0),
                      (rng.integers(0, 9999, (40, 60)).astype(np.uint16), 0),
                      (rng.integers(0, 2, (40, 60)).astype(np.uint8), 0)):
        for half in (0, 4, 8):
            off = np.arange(-half, half + 1)
            gy = y0[:, None, None] + off[None, :, None]
            gx = x0[:, None, None] + off[None, None, :]
            inside = (gy >= 0) & (gy < 40) & (gx >= 0) & (gx < 60)
            want = np.where(inside, img[np.clip(gy, 0, 39), np.clip(gx, 0, 59)], fill)
            got = K.stamps(img, y0, x0, half, fill)
            assert got.dtype == img.dtype
            np.testing.assert_array_equal(got, want)


def test_background_mesh_without_rms_estimator_is_photutils_mesh():
    """Background2D's mesh does not depend on its rms estimator: the source finder's
    (rms not measured) equals the one with photutils' StdBackgroundRMS (the oracle)."""
    from astropy.stats import SigmaClip
    from photutils.background import Background2D, SExtractorBackground, StdBackgroundRMS

    from hapdask.align.params import SourceParams
    from hapdask.align.sources import _background

    rng = np.random.default_rng(9)
    binned = rng.normal(100.0, 5.0, (83, 131))
    binned[rng.random(binned.shape) < 0.01] += 500.0
    mask = rng.random(binned.shape) < 0.05
    mesh, box = _background(binned, mask, SourceParams(filter_size=1), 3)
    want = Background2D(binned, 9, mask=mask, filter_size=1, sigma_clip=SigmaClip(sigma=3.0),
                        bkg_estimator=SExtractorBackground(),
                        bkg_rms_estimator=StdBackgroundRMS(), exclude_percentile=10.0)
    assert box == 27.0
    np.testing.assert_array_equal(mesh, np.asarray(want.background_mesh, dtype=np.float64))
