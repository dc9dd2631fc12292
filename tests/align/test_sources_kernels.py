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
