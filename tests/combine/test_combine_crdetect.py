"""The hysteresis cosmic-ray detector (``driz_cr_method="hysteresis"``, hapdask.combine.crdetect).

Expected values come from the construction of the inputs (known cosmic rays, known noise model),
never from the detector: sigma below is the module's documented noise model computed here by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hapdask.combine.crdetect import (
    GROW_REACH,
    MEDIAN_VARIANCE,
    HysteresisParams,
    cr_mask,
    hysteresis_cr_mask,
)
from hapdask.combine.crrej import CRParams, driz_cr_mask
from hapdask.mosaic.params import AstroDrizzleParams, ParameterError

SKY, RN = 100.0, 4.0
#: one exposure's sigma times the median's share, electrons (gain 1), on flat sky
SIGMA = math.sqrt((SKY + RN * RN) * (1 + MEDIAN_VARIANCE))


def _flat(shape=(15, 15)):
    blot = np.full(shape, SKY, np.float32)
    return blot.copy(), blot


def _mask(sci, blot, params=None, **kw):
    return hysteresis_cr_mask(sci, blot, sky=SKY, exptime=500.0, gain=1.0, readnoise=RN,
                              params=params or HysteresisParams(), **kw)


def test_seed_grows_into_its_wing_and_tails_stay_alone():
    sci, blot = _flat((15, 25))
    sci[3, 3] += 4.5 * SIGMA  # isolated tail between grow (4) and seed (5): not a cosmic ray
    sci[7, 7] += 20 * SIGMA  # seed ...
    sci[7, 8] += 4.5 * SIGMA  # ... its wing (grown) ...
    sci[8, 8] += 3.5 * SIGMA  # ... and a neighbour below the grow threshold
    sci[11, 3] -= 30 * SIGMA  # low pixels are never cosmic rays
    m = _mask(sci, blot)
    assert set(zip(*np.nonzero(m), strict=True)) == {(7, 7), (7, 8)}


def test_growth_reaches_grow_reach_steps():
    sci, blot = _flat((5, 20))
    sci[2, 1] += 20 * SIGMA
    sci[2, 2:15] += 4.5 * SIGMA  # a long faint chain
    m = _mask(sci, blot)
    np.testing.assert_array_equal(np.nonzero(m[2])[0], np.arange(1, 2 + GROW_REACH))
    assert m.sum() == 1 + GROW_REACH


def test_pixels_without_information_are_never_flagged_nor_grown_through():
    sci, blot = _flat()
    sci[5, 5] += 20 * SIGMA
    sci[5, 6] += 4.5 * SIGMA
    good = np.ones(sci.shape, bool)
    good[5, 5] = False  # e.g. a DQ bit the final drizzle rejects
    assert not _mask(sci, blot, good=good).any()
    sci[9, 9] = np.nan  # non-finite SCI: never flagged (default good)
    sci[9, 10] += 20 * SIGMA
    m = _mask(sci, blot)
    assert m[9, 10] and not m[9, 9]


def test_grow_box_and_cte_tail():
    sci, blot = _flat()
    sci[7, 7] += 20 * SIGMA
    m = _mask(sci, blot, HysteresisParams(driz_cr_grow=3))
    assert set(zip(*np.nonzero(m), strict=True)) == {(y, x) for y in (6, 7, 8) for x in (6, 7, 8)}
    m = _mask(sci, blot, HysteresisParams(driz_cr_ctegrow=2), cte_direction=1)
    # the pixels whose ctegrow read-out side holds the cosmic ray: rows 5 and 6 (as driz_cr)
    assert set(zip(*np.nonzero(m), strict=True)) == {(5, 7), (6, 7), (7, 7)}


def _chip(shape=(160, 130), seed=0, nstars=25):
    """Noisy exposure with known cosmic rays, and its blot: the noise-free scene plus the
    median's noise (variance MEDIAN_VARIANCE times the exposure's)."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    model = np.zeros(shape)
    for _ in range(nstars):
        y0, x0, s = rng.uniform(0, ny), rng.uniform(0, nx), rng.uniform(1.2, 1.8)
        flux = 10 ** rng.uniform(2.5, 5.0)
        model += flux / (2 * np.pi * s * s) * np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2)
                                                      / (2 * s * s))
    level = model + SKY
    var = level + RN * RN
    sci = rng.poisson(level) + rng.normal(0, RN, shape)
    blot = level + rng.normal(0, 1, shape) * np.sqrt(MEDIAN_VARIANCE * var)
    crs = rng.random(shape) < 0.01
    sci[crs] += 80 + rng.lognormal(np.log(500), 0.7, crs.sum())
    return sci.astype(np.float32), blot.astype(np.float32), crs, model


@pytest.mark.parametrize("seed", [0, 1])
def test_finds_the_cosmic_rays_without_false_flags(seed):
    sci, blot, crs, model = _chip(seed=seed)
    m = _mask(sci, blot, HysteresisParams(driz_cr_scale="1.5 1.2"))
    # off the stars' profiles (on steep wings the derivative term, which protects the cores,
    # hides some cosmic rays, as in AstroDrizzle)
    off = crs & (model < 100)
    assert off.sum() > 150
    assert m[off].mean() >= 0.995
    assert m[crs].mean() >= 0.95
    assert (m & ~crs).sum() == 0


def test_star_cores_are_protected_by_the_derivative_term():
    ny = nx = 21
    yy, xx = np.mgrid[0:ny, 0:nx]
    star = 2e5 / (2 * np.pi) * np.exp(-((yy - 10) ** 2 + (xx - 10) ** 2) / 2.0)
    sci = (star + SKY).astype(np.float32)
    blot = (0.9 * star + SKY).astype(np.float32)  # blot of an undersampled core: 10 % low
    assert not _mask(sci, blot, HysteresisParams(driz_cr_scale="1.2 0.7")).any()
    # without the term the core would be flagged
    assert _mask(sci, blot, HysteresisParams(driz_cr_scale="0 0"))[10, 10]


@pytest.mark.parametrize("grow, ctegrow, cte_dir", [(1, 0, 0), (3, 0, 0), (1, 2, -1), (2, 3, 1)])
def test_regions_with_halo_equal_the_whole_chip(grow, ctegrow, cte_dir):
    sci, blot, _, _ = _chip((70, 60), seed=5, nstars=8)
    sci[20:23, 5:50] += 2.5 * SIGMA  # faint chains crossing region edges, seeded at one end
    sci[21, 5] += 30 * SIGMA
    p = HysteresisParams(driz_cr_grow=grow, driz_cr_ctegrow=ctegrow)
    full = _mask(sci, blot, p, cte_direction=cte_dir)
    h = p.halo
    for y0 in range(0, 70, 17):
        for x0 in range(0, 60, 13):
            y1, x1 = min(y0 + 17, 70), min(x0 + 13, 60)
            ya, xa, yb, xb = max(y0 - h, 0), max(x0 - h, 0), min(y1 + h, 70), min(x1 + h, 60)
            reg = _mask(sci[ya:yb, xa:xb], blot[ya:yb, xa:xb], p, cte_direction=cte_dir,
                        origin=(ya, xa), chip_shape=sci.shape)
            np.testing.assert_array_equal(reg[y0 - ya:y1 - ya, x0 - xa:x1 - xa],
                                          full[y0:y1, x0:x1])


def test_rate_units_and_gain():
    sci, blot, crs, _ = _chip((60, 60), seed=2, nstars=5)
    e = _mask(sci, blot)
    r = hysteresis_cr_mask(sci / 500.0, blot / 500.0, sky=SKY / 500.0, exptime=500.0, gain=1.0,
                           readnoise=RN, params=HysteresisParams(), rate=True)
    np.testing.assert_array_equal(r, e)
    g = hysteresis_cr_mask(sci / 2.0, blot / 2.0, sky=SKY / 2.0, exptime=500.0, gain=2.0,
                           readnoise=RN, params=HysteresisParams())
    np.testing.assert_array_equal(g, e)


def test_dispatch_by_parameter_record():
    sci, blot, _, _ = _chip((40, 40), seed=3, nstars=3)
    kw = dict(sky=SKY, exptime=500.0, gain=1.0, readnoise=RN, good=np.isfinite(sci))
    np.testing.assert_array_equal(cr_mask(sci, blot, params=CRParams(), **kw),
                                  driz_cr_mask(sci, blot, None, params=CRParams(), **kw))
    dq = np.zeros(sci.shape, np.int16)
    dq[::2] = 4  # rejected by bits 16
    dq[1::4] = 16  # used: suspect
    got = cr_mask(sci, blot, params=HysteresisParams(), dq=lambda: dq, bits=16, **kw)
    np.testing.assert_array_equal(got, _mask(sci, blot, good=dq != 4, suspect=dq == 16))


def test_suspect_pixels_seed_at_the_grow_threshold():
    sci, blot = _flat()
    sci[4, 4] += 4.5 * SIGMA  # a hot pixel's moderate excess: between grow and seed
    sci[4, 5] += 4.5 * SIGMA  # its clean neighbour, grown
    sci[9, 9] += 4.5 * SIGMA  # the same excess on a clean pixel: a noise tail, kept
    suspect = np.zeros(sci.shape, bool)
    suspect[4, 4] = True
    m = _mask(sci, blot, suspect=suspect)
    assert set(zip(*np.nonzero(m), strict=True)) == {(4, 4), (4, 5)}


def test_parameters():
    assert isinstance(AstroDrizzleParams().cr(), CRParams)  # the default is AstroDrizzle's
    assert AstroDrizzleParams().cr() == CRParams()
    p = AstroDrizzleParams.from_mapping({"driz_cr_method": "hysteresis",
                                         "driz_cr_hyst_snr": "6 4.5", "driz_cr_scale": "1.5 1.2",
                                         "driz_cr_grow": 3})
    assert p.cr() == HysteresisParams(driz_cr_hyst_snr="6.0 4.5", driz_cr_scale="1.5 1.2",
                                      driz_cr_grow=3)
    with pytest.raises(ParameterError, match="driz_cr_method"):
        AstroDrizzleParams.from_mapping({"driz_cr_method": "lacosmic"})
    with pytest.raises(ParameterError, match="driz_cr_hyst_snr"):
        AstroDrizzleParams.from_mapping({"driz_cr_method": "hysteresis",
                                         "driz_cr_hyst_snr": "3 5"}).cr()
    with pytest.raises(ValueError, match="driz_cr_hyst_snr"):
        HysteresisParams(driz_cr_hyst_snr="a b")
    with pytest.raises(ValueError, match="driz_cr_grow"):
        HysteresisParams(driz_cr_grow=0)
