"""combine_stack against AstroDrizzle's own functions (stsci.image num_combine, drizzlepac min_med).

Tolerance: identical float32 outputs (the kernels reproduce the oracles' arithmetic), except for
the one documented deviation: ``imedian``/``imean`` fill *every* pixel without valid input with the
first non-zero input value; stsci.image 2.3.11's C loop does it only in column 0 of each row.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from drizzlepac.minmed import min_med
from scipy import ndimage
from stacks import random_stack, realistic_stack
from stsci.image import numcombine
from stsci.imagestats import ImageStats

from hapdask.combine import CombineParams, combine_stack, exposure_noise, weight_sums


def _astrodrizzle_masks(weights, maskpt):
    """createMedian's weight masks: weight < maskpt * ImageStats(weight, lower=1e-8).mean."""
    means = [ImageStats(w, lower=1e-8, fields="mean", nclip=0).mean * maskpt for w in weights]
    return np.less(weights, np.asarray(means)[:, None, None]).astype(np.uint8)


def _first_nonzero(images):
    nz = images != 0
    idx = np.argmax(nz, axis=0)
    val = np.take_along_axis(images, idx[None], axis=0)[0]
    return np.where(nz.any(axis=0), val, 0)


@pytest.mark.parametrize("kind", ["real", "rand"])
@pytest.mark.parametrize("n", [2, 3, 4, 6])
@pytest.mark.parametrize("ctype", ["median", "mean", "imedian", "imean", "sum"])
def test_numcombine_types_match_stsci_image(stacks, kind, n, ctype):
    images, weights = stacks[(kind, n)][:2]
    for maskpt in (0.3, 0.7):
        masks = _astrodrizzle_masks(weights, maskpt)
        for nlow, nhigh in ((0, 0), (0, 1), (1, 1), (0, n - 1), (n // 2, n - 1 - n // 2)):
            if nlow + nhigh > n - 1:
                continue
            p = CombineParams(combine_type=ctype, combine_nlow=nlow, combine_nhigh=nhigh,
                              combine_maskpt=maskpt)
            ref = numcombine.num_combine(images, masks=masks, combination_type=ctype,
                                         nlow=nlow, nhigh=nhigh)
            ours = combine_stack(images, weights, p)
            assert ours.dtype == np.float32
            diff = ours != ref
            if ctype.startswith("i"):
                allbad = masks.all(axis=0)
                allbad[:, 0] = False  # the oracle fills column 0 only
                assert not (diff & ~allbad).any()
                expected = _first_nonzero(images)
                if ctype == "imean" and nlow + nhigh > 0:
                    expected = np.zeros_like(expected)  # one filled value, rejected -> 0
                np.testing.assert_array_equal(ours[allbad], expected[allbad])
            else:
                assert not diff.any(), (maskpt, nlow, nhigh, np.argwhere(diff)[:5])


def test_maskpt_zero_never_uses_zero_weights(stacks):
    """Deviation: with maskpt 0 AstroDrizzle masks nothing, zero-weight pixels included."""
    images, weights = stacks[("rand", 4)]
    ref = numcombine.num_combine(images, masks=np.zeros(images.shape, np.uint8),
                                 combination_type="median", nhigh=1)
    ours = combine_stack(images, weights, CombineParams(combine_type="median", combine_nhigh=1,
                                                        combine_maskpt=0))
    zero = (weights == 0).any(axis=0)
    np.testing.assert_array_equal(ours[~zero], ref[~zero])
    both = CombineParams(combine_type="median", combine_nhigh=1, combine_maskpt=1e-6)
    ref = numcombine.num_combine(images, masks=weights == 0, combination_type="median", nhigh=1)
    np.testing.assert_array_equal(combine_stack(images, weights, both), ref)


@pytest.mark.parametrize("n", [3, 4])
def test_thresholds_match_stsci_image(stacks, n):
    images, weights = stacks[("real", n)][:2]
    masks = _astrodrizzle_masks(weights, 0.3)
    for lo, hi in ((None, 2.0), (-0.05, None), (-0.05, 0.4), (0.1, 0.100001)):
        p = CombineParams(combine_type="median", combine_nhigh=1, combine_lthresh=lo,
                          combine_hthresh=hi)
        ref = numcombine.num_combine(images, masks=masks, combination_type="median", nlow=0,
                                     nhigh=1, lower=lo, upper=hi)
        np.testing.assert_array_equal(combine_stack(images, weights, p), ref)


@pytest.mark.parametrize("kind", ["real", "rand"])
@pytest.mark.parametrize("n", [2, 3, 4, 6])
@pytest.mark.parametrize("ctype", ["minmed", "iminmed"])
def test_minmed_matches_drizzlepac(stacks, kind, n, ctype):
    if kind == "real":
        images, weights, skies, rn, et, _ = stacks[(kind, n)]
    else:
        images, weights = stacks[(kind, n)]
        rng = np.random.default_rng(n)
        skies, rn, et = rng.uniform(50, 150, n), rng.uniform(3, 6, n), rng.uniform(300, 600, n)
    for grow, nsigma in ((1, "4 3"), (0, "4 3"), (2, "3 2"), (1, "5")):
        p = CombineParams(combine_type=ctype, combine_grow=grow, combine_nsigma=nsigma,
                          combine_maskpt=0.3)
        n1, n2 = p.nsigma
        ref = min_med(images, weights, list(rn), list(et), list(skies),
                      weight_masks=_astrodrizzle_masks(weights, 0.3), combine_grow=grow,
                      combine_nsigma1=n1, combine_nsigma2=n2, fillval=ctype == "iminmed")
        ours = combine_stack(images, weights, p, skies=skies, readnoise=rn, exptimes=et)
        if ctype == "iminmed":
            # the filled median of pixels without valid input only moves the threshold of
            # their neighbours (their own value is 0); the oracle fills column 0 only
            allbad = _astrodrizzle_masks(weights, 0.3).all(axis=0)
            allbad[:, 0] = False
            near = ndimage.binary_dilation(allbad, np.ones((2 * grow + 1,) * 2)) if grow else allbad
            assert not ((ours != ref) & ~near).any()
        else:
            np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize("n", [2, 3, 5, 8, 9])
@pytest.mark.parametrize("shape", [(1, 7), (2, 1), (3, 33), (40, 5), (9, 7)])
def test_minmed_ties_and_small_tiles_match_drizzlepac(n, shape):
    """Values quantized into many ties (0 among them), partial masks and tiles thinner than
    the grow box's rows (the oracle's boxcar must fit in the tile): the row-wise path (n <= 8;
    2: the mean) and the per-pixel one (9) give min_med's bits."""
    rng = np.random.default_rng(n * 100 + shape[0])
    images = (rng.integers(-3, 4, (n, *shape)) * 0.25).astype(np.float32)
    images[rng.random(images.shape) < 0.05] += np.float32(300)
    weights = (400 * rng.uniform(0.05, 1.2, images.shape)).astype(np.float32)
    weights[rng.random(images.shape) < 0.2] = 0
    weights[:, 0, 0] = 300  # each image has a weight (the oracle's mean weight needs one)
    images[weights == 0] = 0
    skies, rn, et = rng.uniform(0, 80, n), rng.uniform(3, 6, n), rng.uniform(300, 600, n)
    for grow in range(min(shape) // 2 + 1):
        p = CombineParams(combine_type="minmed", combine_grow=grow, combine_nsigma="4 3")
        ref = min_med(images, weights, list(rn), list(et), list(skies),
                      weight_masks=_astrodrizzle_masks(weights, 0.3), combine_grow=grow,
                      combine_nsigma1=4.0, combine_nsigma2=3.0, fillval=False)
        ours = combine_stack(images, weights, p, skies=skies, readnoise=rn, exptimes=et)
        np.testing.assert_array_equal(ours.view(np.uint32), ref.astype(np.float32).view(np.uint32))


def test_minmed_removes_the_cosmic_rays():
    """Physics: with 4 inputs minmed's combined image has no CR left (truth from the stack)."""
    images, weights, skies, rn, et, crs = realistic_stack(4, seed=3)
    out = combine_stack(images, weights, CombineParams(), skies=skies, readnoise=rn, exptimes=et)
    means = weight_sums(weights)[0] / weight_sums(weights)[1]
    valid = weights >= 0.3 * means[:, None, None]
    # where at least 3 unhit inputs exist the result is within the spread of the unhit values
    ok = (~crs & valid).sum(axis=0) >= 3
    hi = np.where(crs | ~valid, -np.inf, images).max(axis=0)
    assert (out[ok] <= hi[ok] + 1e-6).all()


def test_weight_means_match_imagestats_and_reduce_over_tiles(stacks):
    images, weights = stacks[("real", 4)][:2]
    sums, counts = weight_sums(weights)
    for i, w in enumerate(weights):
        ref = ImageStats(w, lower=1e-8, fields="mean", nclip=0).mean
        assert sums[i] / counts[i] == pytest.approx(ref, rel=1e-6)
    parts = [weight_sums(weights[:, y:y + 30, x:x + 40]) for y in range(0, 96, 30)
             for x in range(0, 112, 40)]
    np.testing.assert_allclose(sum(p[0] for p in parts), sums, rtol=1e-12)
    np.testing.assert_array_equal(sum(p[1] for p in parts), counts)


@pytest.mark.parametrize("ctype,grow", [("minmed", 1), ("minmed", 2), ("median", 0)])
def test_tiles_with_halo_equal_the_whole_frame(ctype, grow):
    images, weights, skies, rn, et, _ = realistic_stack(4, shape=(90, 100), seed=7)
    p = CombineParams(combine_type=ctype, combine_grow=grow, combine_nhigh=1)
    kw = dict(skies=skies, readnoise=rn, exptimes=et)
    full = combine_stack(images, weights, p, **kw)
    sums, counts = weight_sums(weights)
    means = sums / counts
    h = p.halo
    assert h == (grow if ctype == "minmed" else 0)
    out = np.full_like(full, np.nan)
    for y0 in range(0, 90, 23):
        for x0 in range(0, 100, 31):
            y1, x1 = min(y0 + 23, 90), min(x0 + 31, 100)
            ya, xa = max(y0 - h, 0), max(x0 - h, 0)
            yb, xb = min(y1 + h, 90), min(x1 + h, 100)
            tile = combine_stack(images[:, ya:yb, xa:xb], weights[:, ya:yb, xa:xb], p,
                                 weight_means=means, **kw)
            out[y0:y1, x0:x1] = tile[y0 - ya:y1 - ya, x0 - xa:x1 - xa]
    np.testing.assert_array_equal(out, full)


def test_absent_inputs_equal_masked_inputs():
    """A tile may carry only the images overlapping it: n_inputs keeps AstroDrizzle's choices."""
    images, weights, skies, rn, et, _ = realistic_stack(3, seed=5)
    weights = weights.copy()
    weights[1, :, :] = 0  # image 1 does not reach this tile
    means = weight_sums(weights)[0] / np.maximum(weight_sums(weights)[1], 1)
    means[1] = 400.0  # its mean over the whole frame
    for ctype in ("minmed", "median", "imedian"):
        p = CombineParams(combine_type=ctype, combine_nhigh=1)
        full = combine_stack(images, weights, p, skies=skies, readnoise=rn, exptimes=et,
                             weight_means=means)
        keep = [0, 2]
        part = combine_stack(images[keep], weights[keep], p, skies=skies[keep],
                             readnoise=rn[keep], exptimes=et[keep], weight_means=means[keep],
                             n_inputs=3)
        np.testing.assert_array_equal(part, full)


def test_exposure_noise_is_astrodrizzles_choice():
    sky, rn = exposure_noise([30.0, 25.0], [4.0, 5.0])
    assert sky == 25.0 and rn == pytest.approx(np.sqrt((16 + 25) / 2))


@pytest.mark.parametrize("name,value", [
    ("combine_type", "average"), ("combine_type", 3), ("combine_nsigma", "4 3 2"),
    ("combine_nsigma", "four"), ("combine_nsigma", "-1 2"), ("combine_nlow", -1),
    ("combine_nhigh", 1.5), ("combine_nhigh", True), ("combine_grow", -2),
    ("combine_lthresh", "low"), ("combine_hthresh", float("nan")), ("combine_maskpt", -0.1),
])
def test_bad_parameters_are_named(name, value):
    with pytest.raises(ValueError, match=f"^{name}"):
        CombineParams(**{name: value})


def test_parameter_defaults_and_coercion():
    p = CombineParams()
    assert (p.combine_type, p.nsigma, p.combine_nlow, p.combine_nhigh, p.combine_grow,
            p.combine_maskpt) == ("minmed", (4.0, 3.0), 0, 0, 1, 0.3)
    assert p.combine_lthresh is None and p.combine_hthresh is None
    q = CombineParams(combine_type="IMEDIAN", combine_nhigh="1", combine_lthresh="None",
                      combine_hthresh="INDEF", combine_nsigma="5,4")
    assert q.combine_type == "imedian" and q.combine_nhigh == 1 and q.nsigma == (5.0, 4.0)
    with pytest.raises(ValueError, match="^combine_lthresh"):
        CombineParams(combine_lthresh=3, combine_hthresh=2)
    with pytest.raises(TypeError, match="combine_bogus"):
        CombineParams(combine_bogus=1)  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.combine_grow = 3  # type: ignore[misc]


def test_bad_stacks_are_named():
    images, weights = random_stack(3)
    with pytest.raises(ValueError, match="^combine_nlow/combine_nhigh"):
        combine_stack(images, weights, CombineParams(combine_type="median", combine_nlow=2,
                                                      combine_nhigh=1))
    with pytest.raises(ValueError, match="^skies"):
        combine_stack(images, weights, CombineParams(), readnoise=[1] * 3, exptimes=[1] * 3)
    with pytest.raises(ValueError, match="^exptimes"):
        combine_stack(images, weights, CombineParams(), skies=[1] * 3, readnoise=[1] * 3,
                      exptimes=[1, 2])
    with pytest.raises(ValueError, match="^combine_type: minmed needs at least 2"):
        combine_stack(images[:1], weights[:1], CombineParams(), skies=[1], readnoise=[1],
                      exptimes=[1])
    with pytest.raises(ValueError, match="^weights"):
        combine_stack(images, weights[:, :5], CombineParams(combine_type="median"))
    with pytest.raises(ValueError, match="^images"):
        combine_stack(images[0], weights[0], CombineParams(combine_type="median"))
