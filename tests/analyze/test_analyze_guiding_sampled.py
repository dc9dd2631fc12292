"""Rule G on sampled windows (``guiding_trails_sampled``) against drizzlepac's own test.

Oracle: ``drizzlepac.haputils.analyze.verify_guiding`` on the same FITS file (whole SCI,1).
Frames are larger than the sampling window so only part of each chip is analysed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits
from scipy import ndimage

from hapdask.analyze import TrailSampling, guiding_trails, guiding_trails_sampled
from hapdask.io import open_exposure
from hapdask.simulate.core import cosmic_ray_events

pytest.importorskip("skimage")

SHAPE = (640, 640)
SAMPLING = TrailSampling(window=224, fraction=0.25, min_sources=50)


def _field(seed, *, n, trail=0.0, angle=0.0, sigma=1.5, crs=0, shape=SHAPE):
    """Gaussian stars on a noisy sky (counts), optionally trailed, optionally with CR tracks."""
    rng = np.random.default_rng(seed)
    img = np.zeros(shape)
    ys = rng.uniform(15, shape[0] - 15, n)
    xs = rng.uniform(15, shape[1] - 15, n)
    flux = rng.uniform(3e3, 4e4, n)
    steps = np.linspace(-trail / 2, trail / 2, max(1, int(trail * 2)))
    for y, x, f in zip(ys, xs, flux, strict=True):
        yy = np.clip(y + steps * np.sin(np.deg2rad(angle)), 0, shape[0] - 1).astype(int)
        xx = np.clip(x + steps * np.cos(np.deg2rad(angle)), 0, shape[1] - 1).astype(int)
        np.add.at(img, (yy, xx), f / steps.size)
    img = ndimage.gaussian_filter(img, sigma)
    img += 100 + rng.normal(0, 5, shape)
    if crs:
        ev = cosmic_ray_events(rng, shape, exptime=1.0, pixel_um=15.0, rate=1.0)
        keep = slice(0, crs)
        for x0, y0, length, ang, dep in zip(ev["x0"][keep], ev["y0"][keep], ev["length"][keep],
                                            ev["angle"][keep], ev["deposit"][keep], strict=True):
            t = np.linspace(0, length, max(2, int(length * 2)))
            yy = np.clip(np.round(y0 + t * math.sin(ang)), 0, shape[0] - 1).astype(int)
            xx = np.clip(np.round(x0 + t * math.cos(ang)), 0, shape[1] - 1).astype(int)
            img[yy, xx] += dep
    return img.astype(np.float32)


def _write(path, sci, *, ir=False, exptime=500.0):
    prim = fits.Header({"INSTRUME": "WFC3", "DETECTOR": "IR" if ir else "UVIS",
                        "FILTER": "F160W" if ir else "F606W", "EXPTIME": exptime,
                        "ROOTNAME": path.name[:9]})
    data = sci / np.float32(exptime) if ir else sci
    hdu = fits.ImageHDU(data, name="SCI", ver=1)
    hdu.header["BUNIT"] = "ELECTRONS/S" if ir else "ELECTRONS"
    dq = fits.ImageHDU(np.zeros(sci.shape, np.int16), name="DQ", ver=1)
    fits.HDUList([fits.PrimaryHDU(header=prim), hdu, dq]).writeto(path)
    return path


CASES = [
    # (name, field kwargs, ir)
    ("clean dense", {"n": 600}, False),
    ("clean sparse", {"n": 40}, False),
    ("trail 60 px at 30 deg", {"n": 300, "trail": 60, "angle": 30}, False),
    ("trail 40 px at -70 deg", {"n": 300, "trail": 40, "angle": -70}, False),
    ("trail 90 px at 0 deg", {"n": 200, "trail": 90, "angle": 0}, False),
    ("trail 50 px at 135 deg, sparse", {"n": 30, "trail": 50, "angle": 135}, False),
    ("column trails (bleed-like)", {"n": 300, "trail": 60, "angle": 90}, False),
    ("cosmic-ray rich, clean", {"n": 400, "crs": 3000}, False),
    ("cosmic-ray rich, trailed", {"n": 300, "trail": 60, "angle": 45, "crs": 3000}, False),
    ("IR clean", {"n": 400, "sigma": 1.1}, True),
    ("IR trail 45 px at 20 deg", {"n": 300, "trail": 45, "angle": 20, "sigma": 1.1}, True),
]


@pytest.mark.parametrize("seed,name,kwargs,ir", [(i, *c) for i, c in enumerate(CASES)],
                         ids=[c[0] for c in CASES])
def test_sampled_guiding_matches_drizzlepac(tmp_path, seed, name, kwargs, ir):
    dzp = pytest.importorskip("drizzlepac.haputils.analyze")
    sci = _field(100 + seed, **kwargs)
    path = _write(tmp_path / "ixxx01aaq_flt.fits", sci, ir=ir)
    expected = bool(dzp.verify_guiding(str(path)))
    exp = open_exposure(path)
    bad, info = guiding_trails_sampled(exp.chips[0], exptime=exp.exptime, sampling=SAMPLING)
    assert bad == expected, (name, info)
    whole, _ = guiding_trails(sci)
    assert whole == expected, name
    # the verdict comes from part of the chip when the field is dense enough
    if kwargs["n"] >= 300:
        assert info["fraction"] < 1.0, info


def test_sampled_equals_whole_on_one_window(tmp_path):
    """A chip no larger than a window is analysed exactly like guiding_trails."""
    sci = _field(7, n=80, trail=60, angle=30, shape=(320, 320))
    path = _write(tmp_path / "ixxx01abq_flt.fits", sci)
    chip = open_exposure(path).chips[0]
    bad, info = guiding_trails_sampled(chip)
    whole, winfo = guiding_trails(sci)
    assert bad and whole
    assert {k: info[k] for k in winfo} == winfo and info["windows"] == "1/1"


def test_sampled_reads_bounded_regions(tmp_path, monkeypatch):
    """No read of the whole chip: stats rows in blocks, detector windows of the set size."""
    from hapdask.io.exposure import Chip

    regions = []
    original = Chip._read_one

    def spy(self, handle, spec, region):
        regions.append(region)
        return original(self, handle, spec, region)

    monkeypatch.setattr(Chip, "_read_one", spy)
    sci = _field(8, n=600, shape=(1024, 1024))
    chip = open_exposure(_write(tmp_path / "ixxx01acq_flt.fits", sci)).chips[0]
    sampling = TrailSampling(window=256, fraction=0.25, min_sources=50, stats_pixels=1 << 16)
    bad, info = guiding_trails_sampled(chip, sampling=sampling)
    assert not bad
    assert all((r[1] - r[0]) * (r[3] - r[2]) <= 256 * 1024 for r in regions)
    windows = {r for r in regions if r[1] - r[0] == 256 and r[3] - r[2] == 256}
    assert len(windows) == 4 and info["windows"] == "4/16"


@pytest.mark.parametrize("kwargs", [CASES[0][1], CASES[2][1], CASES[8][1]])
def test_segment_shapes_equal_photutils_catalog(kwargs):
    """The segment moments of the source count (no photutils import in the guiding check)
    equal photutils' ``SourceCatalog`` on the same segmentation, value for value, with NaN
    and negative pixels in segments; so does the cosmic-ray classifier built on them."""
    from photutils.segmentation import SegmentationImage, SourceCatalog

    from hapdask.analyze import _not_cosmic_ray, _segment_shapes

    img = _field(3, **kwargs) - np.float32(110.0)
    img[5:9, 100:400] = np.nan
    labels, n = ndimage.label(img > 0, structure=np.ones((3, 3), dtype=bool))
    img[::7, ::5] = np.where(labels[::7, ::5] > 0, -3.0, img[::7, ::5])  # negatives inside
    assert n > 50
    got = _segment_shapes(img, labels)
    cat = SourceCatalog(img, SegmentationImage(labels))
    np.testing.assert_array_equal(got.moments_central, cat.moments_central)
    np.testing.assert_array_equal(got.semiminor, cat.semiminor_axis.value)
    np.testing.assert_array_equal(got.elongation, cat.elongation.value)
    np.testing.assert_array_equal(got.finite_centroid,
                                  np.isfinite(cat.x_centroid) & np.isfinite(cat.y_centroid))
    keep = _not_cosmic_ray(got, fwhm=1.5)
    mom = np.nan_to_num(np.asarray(cat.moments_central, dtype=float), nan=0.0)
    mi, mj = np.unravel_index(mom.reshape(n, -1).argmax(axis=1), (4, 4))
    want = ((mi > 1) & (mj > 1) & ~((cat.semiminor_axis.value < 1.125)
                                   & (cat.elongation.value > 2))
            & np.isfinite(cat.x_centroid) & np.isfinite(cat.y_centroid))
    np.testing.assert_array_equal(keep, want)
    assert 0 < keep.sum() < n
