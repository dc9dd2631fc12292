"""The separate drizzle's per-exposure end and reuse_tile's end in one compiled pass each
(hapdask.mosaic._finalize) give numpy's values bit for bit: expected values from plain numpy
written here (float64 ``num / den`` cast to float32 where ``den != 0``, else the fill;
``wht = float32(den)``; the tile sums' float64 adds; AstroDrizzle's mean-weight statistic: sum
(float64, row by row) and count of the float32 weights >= 1e-8 inside a window; context bits
OR-ed per chip plane with a count; the cosmic-ray pixels' sums and counts taken off)."""

import numpy as np
import pytest

from hapdask.mosaic._finalize import finalize_exposure, reuse_finish, take_counts


def _weight_stats(w: np.ndarray, lower: np.float32) -> tuple[float, int]:
    """Sum in row-major order (Python floats: one float64 rounding per add) and count."""
    s = 0.0
    c = 0
    for v in w.ravel().tolist():
        if np.float32(v) >= lower:
            s += v
            c += 1
    return s, c


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("add", [False, True])
def test_finalize_exposure_matches_numpy(seed, add):
    rng = np.random.default_rng(seed)
    shape = (23, 37)
    den = rng.uniform(0, 600, shape) * (rng.random(shape) < 0.8)
    den[rng.random(shape) < 0.05] = 1e-9  # weights below the statistic's cut
    num = rng.normal(0, 50, shape) * den
    sn, sd = rng.normal(0, 9, shape), rng.uniform(0, 9, shape)
    sci = np.full(shape, np.nan, np.float32)
    wht = np.full(shape, np.nan, np.float32)
    got_n, got_d = sn.copy(), sd.copy()
    lower = np.float32(1e-8)
    box = (3, 20, 5, 31)
    s, c = finalize_exposure(num, den, 0.0, sci, wht, got_n, got_d, add, box, lower)
    with np.errstate(divide="ignore", invalid="ignore"):
        ref_sci = np.where(den != 0, (num / den).astype(np.float32), np.float32(0.0))
    np.testing.assert_array_equal(sci.view(np.uint32), ref_sci.view(np.uint32))
    np.testing.assert_array_equal(wht, den.astype(np.float32))
    np.testing.assert_array_equal(got_n, sn + num if add else sn)
    np.testing.assert_array_equal(got_d, sd + den if add else sd)
    ref_s, ref_c = _weight_stats(wht[3:20, 5:31].astype(np.float64), lower)
    assert (s, c) == (ref_s, ref_c)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_take_counts_matches_numpy(dtype):
    rng = np.random.default_rng(5)
    shape = (17, 29)
    left = rng.integers(0, 5, shape).astype(dtype)
    cnt = np.minimum(rng.integers(0, 3, shape).astype(dtype), left)
    touched = rng.random(shape) < 0.1
    ref_left, ref_touched = left - cnt, touched | (cnt > 0)
    assert take_counts(left, cnt, touched)
    np.testing.assert_array_equal(left, ref_left)
    np.testing.assert_array_equal(touched, ref_touched)
    np.testing.assert_array_equal(cnt, 0)
    cnt[3, 4] = left[3, 4] + 1  # more taken than left: refused
    assert not take_counts(left, cnt, touched)


@pytest.mark.parametrize("nplanes", [0, 2])
@pytest.mark.parametrize("fillval", [0.0, np.nan])
def test_reuse_finish_matches_numpy(nplanes, fillval):
    rng = np.random.default_rng(7)
    shape = (19, 31)
    ids = [0, 3, 33, 31]  # bit 31: a negative int32
    counts = (rng.integers(0, 3, (4, *shape)) * (rng.random((4, *shape)) < 0.6)).astype(np.uint8)
    den = rng.uniform(0, 900, shape) * (counts.sum(0) > 0)
    num = rng.normal(0, 40, shape) * den
    touched = rng.random(shape) < 0.3
    den_c = np.where(touched, den * rng.uniform(0, 0.5, shape), 0.0)
    num_c = np.where(touched, num * rng.uniform(0, 0.5, shape), 0.0)
    # the oracle: per plane with a count its bit; empty = touched and no count left
    ref_ctx = np.zeros((nplanes, *shape), np.int32)
    covered = (counts > 0).any(axis=0)
    if nplanes:
        for n, cid in enumerate(ids):
            bit = np.array([1 << (cid % 32)], np.uint32).view(np.int32)[0]
            ref_ctx[cid // 32][counts[n] > 0] |= bit
    empty = touched & ~covered
    left = np.where(empty, 0.0, den - den_c)
    v = np.where(empty, 0.0, num - num_c)
    with np.errstate(divide="ignore", invalid="ignore"):
        ref_sci = np.where(left != 0, (v / left).astype(np.float32), np.float32(fillval))
    ctx = np.zeros((nplanes, *shape), np.int32) if nplanes else np.zeros((0, 1, 1), np.int32)
    masks = np.array([np.array([1 << (c % 32)], np.uint32).view(np.int32)[0] for c in ids])
    sci = np.empty(shape, np.float32)
    wht = np.empty(shape, np.float32)
    assert reuse_finish(counts, np.array(ids), masks.astype(np.int32), ctx, num, den, num_c,
                        den_c, touched, fillval, sci, wht)
    np.testing.assert_array_equal(sci.view(np.uint32), ref_sci.view(np.uint32))
    np.testing.assert_array_equal(wht, left.astype(np.float32))
    if nplanes:
        np.testing.assert_array_equal(ctx, ref_ctx)
    # a touched pixel keeping a chip's pixel with < 1e-6 of its weight left: refused
    y, x = np.argwhere(touched & covered & (den > 0))[0]
    den_c[y, x] = den[y, x] * (1 - 1e-7)
    assert not reuse_finish(counts, np.array(ids), masks.astype(np.int32), ctx, num, den,
                            num_c, den_c, touched, fillval, sci, wht)
