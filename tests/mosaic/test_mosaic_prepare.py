"""prepare_chip_region with EXP weights (one compiled pass, hapdask.mosaic._prepare) gives the
drizzle data and weights of AstroDrizzle's definition, bit for bit: expected values from plain
numpy float32 operations written here (DQ good per bits, finite, static mask, not a cosmic ray;
(SCI - sky) x gain / EXPTIME; weight = the EXP weight, 0 outside the row spans)."""

from types import SimpleNamespace

import numpy as np
import pytest

from hapdask.mosaic.params import DrizzleParams
from hapdask.mosaic.stages import PackedMask, prepare_chip_region
from hapdask.sky.level import SkyLevel


def _expected(sci, dq, bits, static, cr, sky, gain, exptime, rate, wvalue, spans, x0):
    """The oracle: numpy's float32 operations, in AstroDrizzle's order."""
    dqu = dq.view(dq.dtype.str.replace("i", "u")) if dq.dtype.kind == "i" else dq
    if bits is None:
        good = np.ones(sci.shape, bool)
    else:
        good = (dqu.astype(np.uint64) & np.uint64(~bits & 0xFFFFFFFF)) == 0
    good &= np.isfinite(sci)
    if static is not None:
        good &= static
    if cr is not None:
        good &= ~cr
    with np.errstate(invalid="ignore", over="ignore"):
        data = (sci - np.float32(sky)) * np.float32(gain)
        if not rate:
            data = data / np.float32(exptime)
    data = np.where(good, data, np.float32(0.0)).astype(np.float32)
    weight = np.where(good, np.float32(wvalue), np.float32(0.0)).astype(np.float32)
    if spans is not None:
        cols = np.arange(x0, x0 + sci.shape[1])
        weight[(cols < spans[0][:, None]) | (cols >= spans[1][:, None])] = 0.0
    return data, weight


@pytest.mark.parametrize("seed", range(12))
def test_prepare_exp_matches_numpy_definition(seed):
    rng = np.random.default_rng(seed)
    ny, nx = (int(v) for v in rng.integers(1, 70, 2))
    sci = rng.normal(40.0, 30.0, (ny, nx)).astype(np.float32)
    sci[rng.random((ny, nx)) < 0.05] = np.nan
    sci[rng.random((ny, nx)) < 0.02] = np.inf
    sci[rng.random((ny, nx)) < 0.02] = -np.inf
    dtype = (np.uint16, np.int16, np.uint32)[seed % 3]
    dq = rng.choice([0, 16, 64, 256, 4096, 32768], (ny, nx)).astype(dtype)
    bits = (None, 0, 336, 65535)[seed % 4]
    gain = (1.0, 2.02, 0.5)[seed % 3]
    rate = seed % 2 == 1
    exptime = (507.3, 1.0, 33.3)[(seed // 3) % 3]
    wt_scl = ("exptime", "expsq", 2.5)[(seed // 2) % 3]
    params = DrizzleParams(bits=bits, wt_scl=wt_scl)
    wvalue = params.exp_weight(exptime)
    chip = SimpleNamespace(chip=None, gain=gain, is_rate=rate, exptime=exptime)
    sky = float(rng.normal(30.0, 10.0))
    y0, x0 = 3, 7
    region = (y0, y0 + ny, x0, x0 + nx)
    whole = rng.random((ny + 10, nx + 20)) > 0.1
    static = (None, whole, PackedMask.pack(whole))[seed % 3]
    cr = rng.random((ny, nx)) < 0.1 if seed % 4 >= 2 else None
    spans = None
    if seed % 5 != 0:
        lo = rng.integers(0, nx + 20, ny)
        spans = (lo.astype(np.int64), (lo + rng.integers(-5, 40, ny)).astype(np.int64))
    data, weight = prepare_chip_region(chip, SkyLevel(sky, 0.0, 1), region, params,
                                       static=static, crmask=cr, pixels=(sci.copy(), None, dq),
                                       spans=spans)
    st = None if static is None else whole[y0:y0 + ny, x0:x0 + nx]
    want_d, want_w = _expected(sci, dq, None if bits is None else int(bits), st, cr, sky, gain,
                               exptime, rate, wvalue, spans, x0)
    assert data.dtype == np.float32 and weight.dtype == np.float32
    np.testing.assert_array_equal(data.view(np.uint32), want_d.view(np.uint32))
    np.testing.assert_array_equal(weight.view(np.uint32), want_w.view(np.uint32))
