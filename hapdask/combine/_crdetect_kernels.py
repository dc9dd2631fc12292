"""numba kernels of :mod:`hapdask.combine.crdetect` (private; plain arrays in and out)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _deriv(b, oy, ox, NY, NX, y, x):
    """max |b[y, x] - neighbour| over the 4 neighbours inside the chip (region-clamped)."""
    h, w = b.shape
    v = b[y, x]
    m = 0.0
    i = oy + y
    j = ox + x
    if i > 0 and y > 0:
        m = max(m, abs(v - b[y - 1, x]))
    if i < NY - 1 and y < h - 1:
        m = max(m, abs(v - b[y + 1, x]))
    if j > 0 and x > 0:
        m = max(m, abs(v - b[y, x - 1]))
    if j < NX - 1 and x < w - 1:
        m = max(m, abs(v - b[y, x + 1]))
    return m


@njit(nogil=True, cache=True)
def hysteresis(sci, blot, good, suspect, conv, gain, rn2, medvar, seed_snr, grow_snr, mult1, mult2,
                reach, grow, ctegrow, cte_dir, oy, ox, NY, NX, out):
    """Hysteresis cosmic-ray mask of a region (float64 arithmetic); see the module docstring."""
    h, w = sci.shape
    b = np.empty((h, w), np.float64)
    for y in range(h):
        for x in range(w):
            b[y, x] = np.float64(blot[y, x]) * conv
    state = np.zeros((h, w), np.uint8)  # 0 below, 1 candidate, 2 flagged
    for y in range(h):
        for x in range(w):
            if not good[y, x]:
                continue
            s = np.float64(sci[y, x]) * conv
            e = s - b[y, x]
            if not e > 0.0:  # also False for NaN
                continue
            var = max(gain * b[y, x], 0.0) + rn2
            sig = math.sqrt(var * (1.0 + medvar)) / gain
            d = _deriv(b, oy, ox, NY, NX, y, x)
            if e * e > (grow_snr * sig) ** 2 + (mult2 * d) ** 2:
                # a known defect (suspect) seeds at the grow threshold
                if suspect[y, x] or e * e > (seed_snr * sig) ** 2 + (mult1 * d) ** 2:
                    state[y, x] = 2
                else:
                    state[y, x] = 1
    # geodesic growth: ``reach`` passes, each flags candidates touching a flagged pixel of the
    # previous pass (snapshot semantics: the result does not depend on the scan order)
    nxt = state.copy()
    for _ in range(reach):
        changed = False
        for y in range(h):
            for x in range(w):
                if state[y, x] != 1:
                    continue
                hit = False
                for yy in range(max(y - 1, 0), min(y + 2, h)):
                    for xx in range(max(x - 1, 0), min(x + 2, w)):
                        if state[yy, xx] == 2:
                            hit = True
                if hit:
                    nxt[y, x] = 2
                    changed = True
        if not changed:
            break
        state[:, :] = nxt
    lo = grow // 2
    hi = (grow - 1) // 2
    for y in range(h):
        for x in range(w):
            f = False
            for dy in range(-lo, hi + 1):
                yy = y + dy
                if yy < 0 or yy >= h:
                    continue
                for dx in range(-lo, hi + 1):
                    xx = x + dx
                    if 0 <= xx < w and state[yy, xx] == 2:
                        f = True
            if not f and ctegrow > 0 and cte_dir != 0:
                for k in range(1, ctegrow + 1):
                    yy = y + k * cte_dir
                    if 0 <= yy < h and state[yy, x] == 2:
                        f = True
                        break
            out[y, x] = f and good[y, x]
