"""Stacks of singly-drizzled-like tiles for the combine tests (no drizzling needed)."""

from __future__ import annotations

import numpy as np
import pytest


def realistic_stack(n: int, shape=(96, 112), seed: int = 0, exptime: float = 500.0,
                    sky_e: float = 60.0, readnoise: float = 4.5):
    """Stars on a sky, Poisson + read noise, cosmic rays, EXP weights with partial edges.

    Returns images (e-/s, sky removed), weights, skies (e-), readnoise (e-), exptimes (s) and the
    cosmic-ray truth (n, ny, nx).
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    model = np.zeros(shape)
    for _ in range(25):
        y0, x0 = rng.uniform(0, ny), rng.uniform(0, nx)
        flux = 10 ** rng.uniform(2.5, 5.5)
        s = rng.uniform(0.9, 1.6)
        r2 = (yy - y0) ** 2 + (xx - x0) ** 2
        model += flux / (2 * np.pi * s * s) * np.exp(-r2 / (2 * s * s))
    images = np.empty((n, ny, nx), np.float32)
    weights = np.empty((n, ny, nx), np.float32)
    crs = np.zeros((n, ny, nx), bool)
    et = exptime * rng.uniform(0.8, 1.2, n)
    skies = sky_e * rng.uniform(0.8, 1.2, n)
    for i in range(n):
        counts = rng.poisson(model * et[i] / exptime + skies[i]) + rng.normal(0, readnoise, shape)
        hit = rng.random(shape) < 0.01
        crs[i] = hit
        counts[hit] += 80 + rng.lognormal(np.log(500), 0.7, hit.sum())
        images[i] = (counts - skies[i]) / et[i]
        w = np.full(shape, et[i], np.float32)
        # a partial-coverage edge and a gap (no data) that move with the "dither"
        w[:, : 3 + 2 * i] *= 0.2
        w[: 2 + i, :] = 0
        images[i][w == 0] = 0
        weights[i] = w
    rn = np.full(n, readnoise)
    return images, weights, skies, rn, et, crs


def random_stack(n: int, shape=(64, 80), seed: int = 1):
    rng = np.random.default_rng(seed)
    images = rng.normal(1.0, 0.3, (n, *shape)).astype(np.float32)
    hit = rng.random(images.shape) < 0.03
    images[hit] += rng.uniform(2, 500, hit.sum()).astype(np.float32)
    weights = (500 * rng.uniform(0.0, 1.2, images.shape)).astype(np.float32)
    weights[rng.random(images.shape) < 0.05] = 0
    weights[:, :, :6] = 0
    images[weights == 0] = 0
    return images, weights


@pytest.fixture(scope="module")
def stacks():
    out = {}
    for n in (2, 3, 4, 6):
        out[("real", n)] = realistic_stack(n, seed=n)
        out[("rand", n)] = random_stack(n, seed=10 + n)
    return out
