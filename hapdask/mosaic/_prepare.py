"""numba kernel of :func:`hapdask.mosaic.stages.prepare_chip_region`'s EXP-weight case, in its
own module so that importing the engine does not load numba (``stages`` imports it when a chip
region is prepared).

One pass over the region instead of numpy's chain of whole-region temporaries (DQ test,
``isfinite``, the static and cosmic-ray masks AND-ed in, three in-place float32 operations on
SCI, the masked zeroing and the weight's ``where``, then the spans' zeroing of the weight):
the same float32 operations on every pixel in the same order, so the same values.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["prepare_exp"]


@njit(nogil=True, cache=True)
def prepare_exp(sci, dq, bad, static, crmask, sky, gain, exptime, weight_value, lo, hi, col0,
                weight):  # pragma: no cover - numba
    """In place: ``sci`` becomes the drizzle data, ``weight`` (float32, ``sci``'s shape) is
    filled.

    A pixel is good when ``dq & bad == 0``, its SCI value is finite, ``static`` is True there
    and ``crmask`` False. ``data = (sci - sky) * gain / exptime``, each operation rounded to
    float32 (numpy's in-place float32 operations; a factor or divisor of 1 changes no value, so
    the caller passes 1 for the operations it would skip), and 0 where not good; ``weight =
    weight_value`` where good and inside the columns ``[lo[r], hi[r])`` of row ``r`` (chip
    columns; ``col0`` the chip column of ``sci[:, 0]``), else 0. ``static`` and ``crmask`` are
    bool arrays of ``sci``'s shape, or of one row (used for every row: all True / all False
    when the caller has no mask); ``lo``/``hi`` have one value per row of ``sci``, or one value
    used for every row. ``sky``, ``gain``, ``exptime`` and ``weight_value`` are float32.

    Nothing in the pixel loop branches (selects only) and the masks are rows of arrays, not
    flags tested per pixel: the loop is vectorised (measured ~8x less CPU than with per-pixel
    flag tests).
    """
    ny, nx = sci.shape
    zero = np.float32(0.0)
    for y in range(ny):
        r = y if lo.size > 1 else 0
        a = min(max(lo[r] - col0, 0), nx)
        b = min(max(hi[r] - col0, a), nx)
        s = sci[y]
        q = dq[y]
        st = static[y if static.shape[0] > 1 else 0]
        cr = crmask[y if crmask.shape[0] > 1 else 0]
        w = weight[y]
        for x in range(nx):
            v = s[x]
            good = ((q[x] & bad) == 0) & (v - v == zero) & st[x] & (not cr[x])  # v - v: 0 if finite
            d = (v - sky) * gain / exptime
            s[x] = d if good else zero
            w[x] = weight_value if good & (x >= a) & (x < b) else zero
