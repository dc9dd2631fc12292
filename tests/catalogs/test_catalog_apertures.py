"""The catalogs' per-source aperture masks (``photometry.center_masks``) and their users
against photutils' own objects (the oracle): the flags' circle values, the annulus sky values
and the two aperture sums, and the compiled peak test and max filter against scipy/photutils."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from photutils.aperture import CircularAnnulus, CircularAperture, aperture_photometry
from photutils.detection import find_peaks
from scipy import ndimage

from hapdask.catalogs import photometry
from hapdask.catalogs.background import max_filtered
from hapdask.catalogs.flags import _circle_values
from hapdask.catalogs.photometry import _annulus_stats, _aperture_sums
from hapdask.catalogs.point import band_peaks


def _positions(seed: int, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Positions inside, across and off the edges of an image of ``shape``, with pixel
    centres and pixel edges exactly."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    x = np.concatenate([rng.uniform(-30, nx + 30, 600), [0.5, nx - 0.5, -10.5, 10.5, 0.0],
                        np.arange(-12, 12, 0.5)])
    y = np.concatenate([rng.uniform(-30, ny + 30, 600), [0.5, ny - 0.5, 10.5, -10.5, 0.0],
                        np.arange(-12, 12, 0.5)[::-1]])
    return x, y


def _photutils_circle_values(image, x, y, radius, reduce, empty):
    """The flags' circle values with photutils' per-source masks (the previous code)."""
    out = np.full(x.size, empty, dtype=np.float64)
    for k, aper in enumerate(CircularAperture(np.column_stack([x, y]), r=radius)):
        amask = aper.to_mask(method="center")
        big, small = amask.get_overlap_slices(image.shape)
        if big is None:
            continue
        cut = np.full(amask.shape, empty, dtype=np.float64)
        cut[small] = image[big]
        out[k] = reduce(cut[amask.data > 0])
    return out


@pytest.mark.parametrize("radius", [5.0, 10, 2.5, 7.3, 8.000000001, 12])
def test_circle_values_equal_photutils_masks(radius):
    rng = np.random.default_rng(1)
    count = rng.integers(0, 5, (120, 160)).astype(np.uint8)
    sat = rng.random(count.shape) > 0.99
    x, y = _positions(2, count.shape)
    for image, reduce, empty in ((count, np.min, 0.0), (sat, np.max, 0.0),
                                 (count.astype(np.float32), np.max, -1.0)):
        want = _photutils_circle_values(image, x, y, radius, reduce, empty)
        got = _circle_values(image, x, y, radius, reduce, empty)
        assert np.array_equal(got, want)


@pytest.mark.parametrize("radii", [(6.0, 12.0), (2.5, 7.3), (10, 14.0000001)])
@pytest.mark.parametrize("masked", [False, True])
def test_annulus_values_equal_photutils(radii, masked, monkeypatch):
    """The values stacked for the annulus statistics are photutils' ``get_values`` of its
    annulus masks (finite ones), in its order; the counts are theirs."""
    rng = np.random.default_rng(3)
    img = rng.normal(0, 1, (150, 170))
    img[5:9, 5:9] = np.nan
    img[100, :] = np.inf
    mask = rng.random(img.shape) > 0.97 if masked else None
    x, y = _positions(4, img.shape)
    r_in, r_out = radii
    want = []
    for amask in CircularAnnulus(np.column_stack([x, y]), r_in=r_in, r_out=r_out).to_mask(
            method="center"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            v = amask.get_values(img, mask=mask)
        want.append(v[np.isfinite(v)])
    stacks = []
    clipped = photometry.sigma_clipped_stats

    def keep(stack, **kwargs):
        stacks.append(stack)
        return clipped(stack, **kwargs)

    monkeypatch.setattr(photometry, "sigma_clipped_stats", keep)
    count = _annulus_stats(img, x, y, r_in, r_out, mask)[3]
    assert np.array_equal(count, [v.size for v in want])
    for row, v in zip(stacks[0], want, strict=True):
        assert np.array_equal(row[:v.size], v) and np.isnan(row[v.size:]).all()


@pytest.mark.parametrize("radius", [2.0, 3.3333, 8.0, 0.4])
def test_aperture_sums_equal_photutils(radius):
    rng = np.random.default_rng(5)
    img = rng.normal(0, 1, (150, 170))
    img[5:9, 5:9] = np.nan
    err = np.abs(rng.normal(1, 0.1, img.shape))
    mask = rng.random(img.shape) > 0.97
    x, y = _positions(6, img.shape)
    for m in (None, mask):
        for e in (err, np.broadcast_to(0.7, img.shape)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                want = aperture_photometry(img, CircularAperture(np.column_stack([x, y]),
                                                                 r=radius), error=e, mask=m)
                got = _aperture_sums(img, e, x, y, radius, m)
            assert np.array_equal(got[0], np.asarray(want["aperture_sum"]), equal_nan=True)
            assert np.array_equal(got[1], np.asarray(want["aperture_sum_err"]),
                                  equal_nan=True)


@pytest.mark.parametrize("box", [11, 5, 4, 1])
@pytest.mark.parametrize("threshold", [0.0, -0.5, 1.3])
def test_band_peaks_thresholds_edges(box, threshold):
    """The compiled peak test keeps find_peaks' peaks for negative thresholds too (the
    constant padding's 0 then counts at the image's edges), with edges and bands of one row."""
    rng = np.random.default_rng(7)
    img = np.round(rng.normal(0.0, 1.0, (97, 53)), 1)
    img[:, 0] = -0.2
    img[-1] = -3.0
    for band in (1, 7, 200):
        want = find_peaks(img, threshold=threshold, box_size=box)
        got = band_peaks(lambda lo, hi: img[lo:hi], img.shape, box, threshold=threshold,
                         band=band)
        assert want is not None and got is not None
        assert np.array_equal(got[0], np.asarray(want["x_peak"]))
        assert np.array_equal(got[1], np.asarray(want["y_peak"]))


@pytest.mark.parametrize("size", [1, 2, 4, 11, 21])
@pytest.mark.parametrize("shape", [(300, 170), (5, 3), (1, 40)])
def test_max_filtered_edges_and_infinities(size, shape):
    """The compiled max filter equals scipy's (mode 'reflect') of ``nan_to_num`` of the image,
    with infinities, negative values, windows wider than the image and one-row bands."""
    rng = np.random.default_rng(8)
    wht = rng.uniform(-3.0, 5.0, shape).astype(np.float32)
    wht.flat[::97] = np.nan
    wht.flat[::131] = np.inf
    wht.flat[::151] = -np.inf
    want = ndimage.maximum_filter(np.nan_to_num(wht), size=size)
    want64 = ndimage.maximum_filter(np.nan_to_num(wht.astype(np.float64)), size=size)
    for band in (1, 3, 64):
        assert np.array_equal(max_filtered(wht, size, band=band), want)
        assert np.array_equal(max_filtered(wht.astype(">f4"), size, band=band), want)
        assert np.array_equal(max_filtered(wht.astype(np.float64), size, band=band), want64)
