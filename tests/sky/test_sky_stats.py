"""Clipped sky statistics against stsci.imagestats.ImageStats (AstroDrizzle's own)."""

from __future__ import annotations

import numpy as np
import pytest
from stsci.imagestats import ImageStats

from hapdask.sky import SkyParams, brightness_factor, clipped_stats, sky_statistic
from hapdask.sky.stats import mean_float64, median_float64, numpy_std, std_float64


def _data(n, seed):
    rng = np.random.default_rng(seed)
    v = rng.normal(45.0, 7.0, n) + (rng.random(n) < 0.03) * rng.exponential(400.0, n)
    return v.astype(np.float32)


@pytest.mark.parametrize("n", [50, 3000, 200_000])
@pytest.mark.parametrize(("nclip", "lower", "upper"), [(5, -100.0, None), (0, None, None),
                                                        (3, 20.0, 300.0)])
def test_matches_imagestats(n, nclip, lower, upper):
    v = _data(n, n + nclip)
    ref = ImageStats(v, fields="npix,mean,median,mode", nclip=nclip, lsig=4.0, usig=4.0,
                     lower=lower, upper=upper, binwidth=0.1)
    got = clipped_stats(v, nclip=nclip, lsig=4.0, usig=4.0, lower=lower, upper=upper,
                        binwidth=0.1, median=True, mode=True)
    assert got.npix == ref.npix
    assert got.mean == pytest.approx(ref.mean, rel=1e-6)
    assert got.stddev == pytest.approx(ref.stddev, rel=1e-6)
    assert got.median == pytest.approx(float(ref.median), rel=1e-6)
    assert got.mode == pytest.approx(ref.mode, rel=1e-6)


def test_static_settings_match_imagestats():
    """The static mask's call: nclip=3, default 3-sigma clipping, range = data range."""
    v = _data(100_000, 7)
    ref = ImageStats(v, fields="mode", nclip=3, lower=float(v.min()), upper=float(v.max()))
    got = clipped_stats(v, nclip=3, lsig=3.0, usig=3.0, lower=float(v.min()),
                        upper=float(v.max()), mode=True)
    assert got.mode == pytest.approx(ref.mode, rel=1e-6)
    assert got.stddev == pytest.approx(ref.stddev, rel=1e-6)
    assert got.nbins == len(ref.histogram)


def test_sky_statistic_picks_skystat_and_errors_without_data():
    v = _data(10_000, 3)
    for stat in ("median", "mode", "mean"):
        p = SkyParams(skystat=stat, skylower=-100.0)
        ref = ImageStats(v, fields=f"npix,{stat}", nclip=5, lsig=4.0, usig=4.0, lower=-100.0,
                         binwidth=0.1)
        value, npix = sky_statistic(v, p)
        assert value == pytest.approx(float(getattr(ref, stat)), rel=1e-6)
        assert npix == ref.npix
    with pytest.raises(ValueError):
        sky_statistic(np.array([], np.float32), SkyParams())
    with pytest.raises(ValueError, match="no pixel inside"):
        sky_statistic(v, SkyParams(skylower=1e6))


def test_brightness_factor_is_skypac_conversion():
    """skypac: data -> brightness = 1 / pscale^2 [/ EXPTIME for counts]."""
    assert brightness_factor(0.05, 500.0, False) == pytest.approx(1 / (0.05**2 * 500.0))
    assert brightness_factor(0.128, 300.0, True) == pytest.approx(1 / 0.128**2)


@pytest.mark.parametrize("kind", ["ties", "one_bin", "spread"])
def test_median_is_numpy_median_of_the_selection(kind):
    """The exact median (binned counting pass + sort of the middle bins) equals numpy's median
    of the values inside the range, also with heavy ties and with everything in a few bins."""
    from hapdask.sky.stats import _median

    rng = np.random.default_rng(11)
    if kind == "ties":
        v = rng.integers(0, 7, 100_001).astype(np.float32)
    elif kind == "one_bin":
        v = (50.0 + rng.integers(0, 3, 40_000) * np.float32(1e-5)).astype(np.float32)
        v[:10] = [-1e6, 1e6, 3e5, -2e5, 7, 8, 9, 10, 11, 12]
    else:
        v = _data(200_000, 3)
    for lo, hi in [(float(v.min()), float(v.max())), (20.0, 300.0), (1.0, 5.0)]:
        sel = v[(v >= np.float32(lo)) & (v <= np.float32(hi))]
        if sel.size == 0:
            continue
        assert _median(v, lo, hi, sel.size) == float(np.median(sel))


def test_gather_spans_equals_mask_selection():
    """gather_spans gives the values of a boolean-mask selection (numpy, the oracle): spans
    with empty rows, rows without a good pixel, and none good at all."""
    from hapdask.sky.overlap import Spans
    from hapdask.sky.stats import gather_spans

    rng = np.random.default_rng(9)
    sci = rng.normal(10.0, 2.0, (60, 70)).astype(np.float32)
    good = rng.random((60, 70)) > 0.1
    good[20] = False
    rows = np.arange(5, 55)
    xlo = (3 + rows // 2).astype(np.int64)
    xhi = np.minimum(xlo + 40, 69)
    xhi[::7] = xlo[::7] - 1  # empty rows
    sp = Spans(5, xlo, xhi)
    want = sci[sp.mask(sci.shape) & good]
    got = gather_spans(sci, good, sp.y0, sp.xlo, sp.xhi)
    assert got.dtype == np.float32 and got.size == want.size > 1000
    np.testing.assert_array_equal(got, want)
    assert gather_spans(sci, np.zeros_like(good), sp.y0, sp.xlo, sp.xhi).size == 0


@pytest.mark.parametrize("kind", ["normal", "integers", "constant"])
@pytest.mark.parametrize("nclip", [1, 3, 5])
def test_clipped_median_is_numpy_median_of_the_final_range(kind, nclip):
    """The median of clipped_stats (its fine bins counted in the last clipping pass) equals
    numpy's median of the values inside the final range, exactly."""
    rng = np.random.default_rng(nclip)
    n = 250_001
    v = {"normal": _data(n, 3), "integers": rng.integers(0, 9, n).astype(np.float32),
         "constant": np.full(n, 2.5, np.float32)}[kind]
    st = clipped_stats(v, nclip=nclip, lsig=3.0, usig=3.0, lower=-100.0, median=True)
    sel = v[(v >= np.float32(st.lo)) & (v <= np.float32(st.hi))]
    assert sel.size == st.npix
    assert st.median == float(np.median(sel))


def test_clipping_that_converges_early_matches_imagestats():
    """Integer-valued data: the clipping range stops changing after a few of the 10 passes
    (the passes are cut short); the statistics still equal ImageStats' with all 10, and the
    median numpy's of the final range."""
    rng = np.random.default_rng(5)
    v = np.concatenate([rng.integers(0, 20, 60_000), rng.integers(100, 5000, 600)])
    v = rng.permutation(v).astype(np.float32)
    for lsig in (2.0, 3.0):
        ref = ImageStats(v, fields="npix,mean,stddev,median,mode", nclip=10, lsig=lsig,
                         usig=lsig, binwidth=0.1)
        got = clipped_stats(v, nclip=10, lsig=lsig, usig=lsig, binwidth=0.1, median=True,
                            mode=True)
        assert got.npix == ref.npix
        assert got.mean == pytest.approx(ref.mean, rel=1e-6)
        assert got.stddev == pytest.approx(ref.stddev, rel=1e-6)
        assert got.mode == pytest.approx(ref.mode, rel=1e-6)
        sel = v[(v >= np.float32(got.lo)) & (v <= np.float32(got.hi))]
        assert sel.size == got.npix and got.median == float(np.median(sel))
        assert (got.min, got.max) == (float(sel.min()), float(sel.max()))


def test_numpy_std_is_numpys():
    """``numpy_std`` gives ``np.std``'s value bit for bit: every length up to a few pairwise
    blocks (the 8-way unrolled runs, their remainders and the splits), long arrays, heavy-tailed
    values (any change of summation order shows), a view of a longer array; other inputs are
    numpy's (2-D, float32, empty)."""
    rng = np.random.default_rng(9)
    for n in [*range(1, 300), 1023, 8192, 8193, 100_003, 3_000_017]:
        a = rng.normal(0.3, 1.0, n) * rng.random(n) ** 5 * 1e3
        assert numpy_std(a) == np.std(a)
        assert numpy_std(a[: max(1, n - 5)]) == np.std(a[: max(1, n - 5)])
    b = rng.normal(size=(40, 30))
    assert numpy_std(b) == np.std(b)
    assert numpy_std(b.astype(np.float32)) == np.std(b.astype(np.float32))
    with pytest.warns(RuntimeWarning):
        assert np.isnan(numpy_std(np.zeros(0)))


def test_float64_statistics_of_float32_values():
    """``mean_float64``, ``std_float64`` and ``median_float64`` of float32 values are numpy's
    ``mean``, ``std`` and ``median`` of their float64 copy (the oracle) bit for bit: lengths
    around the pairwise blocks and the median's sizes, odd and even, long tails, ties; float64
    values give numpy's own statistics."""
    rng = np.random.default_rng(12)
    for n in [1, 7, 129, 8193, 65535, 65536, 65537, 300_001, 1_000_000]:
        for v in (rng.normal(0.3, 1.0, n) * rng.random(n) ** 5 * 1e3,
                  np.abs(rng.standard_cauchy(n)), np.round(rng.normal(0, 2, n))):
            a = v.astype(np.float32)
            w = a.astype(np.float64)
            assert mean_float64(a) == np.mean(w)
            assert std_float64(a) == np.std(w)
            assert median_float64(a) == np.median(w)
            assert (mean_float64(w), std_float64(w), median_float64(w)) == (
                np.mean(w), np.std(w), np.median(w))
    s = np.arange(200_000, dtype=np.float32)[::2]  # a strided view: numpy's values
    assert (mean_float64(s), std_float64(s), median_float64(s)) == (
        np.mean(s.astype(np.float64)), np.std(s.astype(np.float64)),
        np.median(s.astype(np.float64)))
