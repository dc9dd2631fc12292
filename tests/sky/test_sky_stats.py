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


def _numpy_clipping(v, nclip, lsig, usig, lower=None, upper=None):
    """ImageStats' clipping passes in plain numpy, the oracle of the fused passes: each pass's
    selection by float32 comparisons, its sums in float64 in index order (``np.cumsum`` adds
    one value after the other, as ImageStats' C loop), mean and stddev rounded to float32; the
    median numpy's of the final selection. Returns ``(npix, mean, stddev, lo, hi, median)``."""
    import math

    vmin, vmax = float(v.min()), float(v.max())
    lower = vmin if lower is None else float(lower)
    upper = vmax if upper is None else float(upper)
    lo, hi = lower, upper
    for it in range(nclip + 1):
        sel = v[(v >= np.float32(lo)) & (v <= np.float32(hi))].astype(np.float64)
        n = sel.size
        s = float(np.cumsum(sel)[-1])
        ss = float(np.cumsum(sel * sel)[-1])
        mean = float(np.float32(s / n))
        var = (ss - s * s / n) / (n - 1) if n > 1 else float("nan")
        std = float(np.float32(math.sqrt(var))) if var >= 0 else 0.0
        if it == nclip:
            break
        lo, hi = max(lower, mean - lsig * std), min(upper, mean + usig * std)
    final = v[(v >= np.float32(lo)) & (v <= np.float32(hi))]
    return n, mean, std, lo, hi, float(np.median(final))


def _adversarial(kind, n, rng):
    if kind == "tails":  # sky + cosmic rays + a few huge values
        v = _data(n, 1)
        v[rng.integers(0, n, 20)] = rng.choice([-3e4, 1e30, 6e5], 20)
        return v
    if kind == "cauchy":
        return (rng.standard_cauchy(n) * 10.0).astype(np.float32)
    if kind == "constant":
        return np.full(n, 2.5, np.float32)
    if kind == "one":
        return np.full(1, -7.25, np.float32)
    if kind == "integers":
        return rng.integers(-3, 9, n).astype(np.float32)
    if kind == "zeros":  # signed zeros at the extremes, tiny and subnormal values
        v = rng.normal(0.0, 1e-3, n).astype(np.float32)
        v[::7] = -0.0
        v[::11] = 0.0
        v[::13] = np.float32(1e-42)
        return np.abs(v) if rng.random() < 0.5 else -np.abs(v)
    raise ValueError(kind)


KINDS = ["tails", "cauchy", "constant", "one", "integers", "zeros"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("nclip", "lower", "upper"), [(5, -100.0, None), (3, None, None),
                                                        (2, 20.0, 300.0), (0, None, None)])
def test_fused_first_pass_and_range_are_the_plain_statistics(kind, nclip, lower, upper):
    """``clipped_stats`` given the first clipping pass made beside the gather
    (``gather_first_pass``) or the data range (``finite_range``) returns the same values as
    without them (every field equal, bit for bit), and npix, mean, stddev, the final range and
    the median equal a plain numpy implementation's (the oracle), on adversarial data: heavy
    tails, Cauchy, a constant, one value, integer ties, signed zeros and subnormals at the
    extremes, NaN where the good mask leaves them in (then there is no fused pass)."""
    from hapdask.sky.stats import finite_range, gather_first_pass

    rng = np.random.default_rng(abs(hash(kind)) % 1000 + nclip)
    ny, nx = (1, 1) if kind == "one" else (150, 200)
    sci = _adversarial(kind, ny * nx, rng).reshape(ny, nx)
    good = rng.random(sci.shape) > 0.05
    good[40:45, :] = False
    good.flat[0] = True
    if kind == "tails":  # NaN in the image, some of them inside the good mask
        sci[3, ::9] = np.nan
        good[3, ::18] = False
    rows = np.arange(ny)
    xlo = (rows % 5).astype(np.int64)
    xhi = np.full(ny, nx - 1 - 3 * (rows % 2), np.int64)
    if ny > 1:
        xhi[::17] = xlo[::17] - 1  # empty rows
    mask = np.zeros(sci.shape, bool)
    for k in range(ny):
        mask[k, xlo[k]:xhi[k] + 1] = True
    want_vals = sci[mask & good]
    vals, first = gather_first_pass(sci, good, 0, xlo, xhi, lower, upper)
    np.testing.assert_array_equal(vals, want_vals)
    has_nan = bool(np.isnan(want_vals).any())
    assert (first is None) == has_nan
    data_range = finite_range(vals)
    assert (data_range is None) == has_nan
    if has_nan:
        return
    sel = vals[((lower is None) | (vals >= np.float32(lower or 0)))
               & ((upper is None) | (vals <= np.float32(upper or 0)))].astype(np.float64)
    assert first[:3] == (sel.size, float(np.cumsum(sel)[-1]) if sel.size else 0.0,
                         float(np.cumsum(sel * sel)[-1]) if sel.size else 0.0)
    assert (first[3], first[4]) == (vals.min(), vals.max())
    assert data_range == (vals.min(), vals.max())
    kw = dict(nclip=nclip, lsig=3.0, usig=3.0, lower=lower, upper=upper, binwidth=0.1,
              median=True, mode=True)

    def outcome(**extra):  # the statistics, or the message of the ValueError raised
        try:
            return clipped_stats(vals, **kw, **extra)
        except ValueError as exc:
            return str(exc)

    plain = outcome()
    assert outcome(first=first) == plain
    assert outcome(data_range=data_range) == plain
    if isinstance(plain, str):  # no pixel inside the range
        assert plain.startswith("no pixel")
        return
    assert (plain.npix, plain.mean, plain.stddev, plain.lo, plain.hi, plain.median) == \
        _numpy_clipping(vals, nclip, 3.0, 3.0, lower, upper)


def test_finite_range_is_numpys():
    """``finite_range`` is ``(min, max)`` of finite float32 values (numpy the oracle): signs,
    huge and subnormal values; None with NaN or an infinity, or for other arrays."""
    from hapdask.sky.stats import finite_range

    rng = np.random.default_rng(3)
    for v in (rng.normal(0, 1, 10_001), -np.abs(rng.standard_cauchy(999)) * 1e30,
              np.array([3.0e38, -3.0e38, 1e-45]), np.array([-1e-45, 5.0]), np.array([7.0])):
        a = v.astype(np.float32)
        assert finite_range(a) == (a.min(), a.max())
    a = rng.normal(0, 1, 1000).astype(np.float32)
    for bad in (np.nan, np.inf, -np.inf):
        b = a.copy()
        b[500] = bad
        assert finite_range(b) is None
    assert finite_range(a.astype(np.float64)) is None
    assert finite_range(a[::2]) is None
    assert finite_range(np.zeros(0, np.float32)) is None


def test_static_part_is_the_plain_computation():
    """``static_part`` (range in one pass, mask in one pass) equals the plain numpy
    computation: statistics of the finite values (``sci[np.isfinite(sci)]``), pixels not below
    ``mode - static_sig * stddev`` (NaN pixels never flagged), with and without NaN; None for
    an all-NaN chip or a constant one."""
    from hapdask.sky.static import static_part

    rng = np.random.default_rng(8)
    sci = _data(300 * 200, 4).reshape(300, 200)
    sci[rng.random(sci.shape) < 0.01] -= 60.0  # low pixels to flag
    for with_nan in (False, True):
        s = sci.copy()
        if with_nan:
            s[5, 7:90] = np.nan
            s[100, 3] = np.inf
        st = clipped_stats(s[np.isfinite(s)], nclip=3, lsig=3.0, usig=3.0, binwidth=0.1,
                           mode=True)
        want = ~(s < np.float32(st.mode - 4.0 * st.stddev))
        got = static_part(s, 4.0)
        assert got.dtype == bool and (~got).sum() > 100
        np.testing.assert_array_equal(got, want)
    assert static_part(np.full((20, 30), np.nan, np.float32), 4.0) is None
    assert static_part(np.full((20, 30), 3.0, np.float32), 4.0) is None


@pytest.mark.parametrize("kind", ["mixed_sign", "zero_median", "zero_bounds", "binades",
                                  "ties"])
def test_clipped_median_by_order_key_bins_is_numpys(kind):
    """The median counted in the last clipping pass by order-key bins equals numpy's median of
    the final selection (the oracle): values of both signs around zero, a zero median with
    both zeros present, a range bounded by zeros, values over many binades (wide key bins),
    heavy ties. (The sign of a zero median is the value bins' selection's, as before the key
    bins: not always numpy's.)"""
    rng = np.random.default_rng(21)
    n = 120_001
    if kind == "mixed_sign":
        v = rng.normal(0.0, 1.0, n).astype(np.float32)
    elif kind == "zero_median":
        v = rng.normal(0.0, 1.0, n).astype(np.float32)
        v[rng.random(n) < 0.2] = 0.0
        v[rng.random(n) < 0.2] = -0.0
    elif kind == "zero_bounds":
        v = np.abs(rng.normal(0.0, 1.0, n)).astype(np.float32)
        v[::5] = -0.0
        v[::3] = 0.0
    elif kind == "binades":
        v = (rng.standard_cauchy(n) ** 3).astype(np.float32)
    else:
        v = rng.integers(-2, 3, n).astype(np.float32)
    for nclip, lower, upper in ((1, None, None), (4, -100.0, None), (2, 0.0, None),
                                (2, None, 0.0), (3, -0.0, 5.0)):
        try:
            st = clipped_stats(v, nclip=nclip, lsig=2.5, usig=2.5, lower=lower, upper=upper,
                               median=True)
        except ValueError:
            continue
        sel = v[(v >= np.float32(st.lo)) & (v <= np.float32(st.hi))]
        assert sel.size == st.npix
        want = np.median(sel)
        assert st.median == float(want)
