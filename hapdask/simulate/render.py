"""Pixel rendering for the simulator: numba stamp kernels and cosmic-ray tracks.

Coordinates are 0-based pixel coordinates with pixel ``(i, j)`` (column, row) centred on ``(i, j)``
and covering ``[i - 0.5, i + 0.5] x [j - 0.5, j + 0.5]``. Images are indexed ``image[row, column]``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def render_gaussians(image, xs, ys, fluxes, ia, ib, ic, norm, halfsize, nsub):  # pragma: no cover
    """Add 2-D Gaussians to ``image``, integrating each over the pixels by sub-sampling.

    Parameters
    ----------
    image : float64 (ny, nx)
        Accumulated in place.
    xs, ys : float64 (m,)
        0-based pixel positions of the Gaussian centres.
    fluxes : float64 (m,)
        Total flux of each Gaussian (image units).
    ia, ib, ic : float64 (m,)
        Inverse covariance ``[[ia, ib], [ib, ic]]`` in pixel^-2.
    norm : float64 (m,)
        ``1 / (2 pi sqrt(det cov))``.
    halfsize : int64 (m,)
        Half-width of each stamp, pixels.
    nsub : int64 (m,)
        Sub-samples per pixel axis.
    """
    ny, nx = image.shape
    for k in range(xs.shape[0]):
        x0 = xs[k]
        y0 = ys[k]
        h = halfsize[k]
        ns = nsub[k]
        ic0 = int(math.floor(x0 + 0.5))
        jc0 = int(math.floor(y0 + 0.5))
        i_lo = max(ic0 - h, 0)
        i_hi = min(ic0 + h + 1, nx)
        j_lo = max(jc0 - h, 0)
        j_hi = min(jc0 + h + 1, ny)
        if i_lo >= i_hi or j_lo >= j_hi:
            continue
        step = 1.0 / ns
        scale = fluxes[k] * norm[k] / (ns * ns)
        a = ia[k]
        b = ib[k]
        c = ic[k]
        for j in range(j_lo, j_hi):
            for i in range(i_lo, i_hi):
                acc = 0.0
                for sj in range(ns):
                    dy = j - 0.5 + (sj + 0.5) * step - y0
                    for si in range(ns):
                        dx = i - 0.5 + (si + 0.5) * step - x0
                        q = a * dx * dx + 2.0 * b * dx * dy + c * dy * dy
                        if q < 60.0:
                            acc += math.exp(-0.5 * q)
                image[j, i] += acc * scale


@njit(nogil=True, cache=True)
def cosmic_ray_tracks(image, hit, x0, y0, length, angle, deposit, add):  # pragma: no cover
    """Draw straight cosmic-ray tracks.

    Each event ``k`` starts at 0-based pixel position ``(x0[k], y0[k])`` and runs ``length[k]``
    pixels at ``angle[k]`` radians; every pixel it crosses (an 8-connected chain) receives
    ``deposit[k]`` electrons when ``add`` is true, and is marked in ``hit`` either way.
    Returns the number of pixels hit.
    """
    ny, nx = image.shape
    npix = 0
    for k in range(x0.shape[0]):
        nstep = int(length[k] * 4.0) + 1
        ca = math.cos(angle[k])
        sa = math.sin(angle[k])
        last_i = -1
        last_j = -1
        for s in range(nstep):
            t = s * 0.25
            i = int(math.floor(x0[k] + t * ca + 0.5))
            j = int(math.floor(y0[k] + t * sa + 0.5))
            if i == last_i and j == last_j:
                continue
            last_i = i
            last_j = j
            if i < 0 or j < 0 or i >= nx or j >= ny:
                continue
            if add:
                image[j, i] += deposit[k]
            if hit[j, i] == 0:
                npix += 1
            hit[j, i] = 1
    return npix


def pixel_components(cov_sky: np.ndarray, jac: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Map sky-frame Gaussian covariances to the pixel frame (vectorised).

    Parameters
    ----------
    cov_sky : (m, 2, 2) array
        Covariances in arcsec^2, axes (east, north).
    jac : (m, 2, 2) array
        d(x, y)/d(east, north) in pixels per arcsec at each component's source.

    Returns
    -------
    ia, ib, ic, norm, sigma_max : (m,) arrays
        Inverse covariance terms (pixel^-2), normalisation ``1/(2 pi sqrt(det))`` and the largest
        standard deviation along x or y, in pixels.
    """
    cp = np.einsum("mij,mjk,mlk->mil", jac, cov_sky, jac)
    det = cp[:, 0, 0] * cp[:, 1, 1] - cp[:, 0, 1] ** 2
    ia = cp[:, 1, 1] / det
    ib = -cp[:, 0, 1] / det
    ic = cp[:, 0, 0] / det
    norm = 1.0 / (2.0 * np.pi * np.sqrt(det))
    smax = np.sqrt(np.maximum(cp[:, 0, 0], cp[:, 1, 1]))
    return ia, ib, ic, norm, smax


@njit(nogil=True, cache=True)
def bleed_saturated(counts, full_well, saturated):  # pragma: no cover - numba
    """Move charge above ``full_well`` along the columns, as a CCD does (blooming).

    For each column, the excess charge of every pixel above ``full_well`` spills into the
    neighbouring pixels of the same column, alternately towards lower and higher rows, filling each
    to ``full_well``; what would leave the chip is lost. Every pixel at full well is marked in
    ``saturated``. Total charge is conserved on the chip. ``counts`` is ``[row, column]``.
    """
    ny, nx = counts.shape
    for i in range(nx):
        for j in range(ny):
            if counts[j, i] <= full_well:
                continue
            excess = counts[j, i] - full_well
            counts[j, i] = full_well
            saturated[j, i] = 1
            lo = j - 1
            hi = j + 1
            turn = 0
            while excess > 0.0 and (lo >= 0 or hi < ny):
                k = -1
                if turn == 0 and lo >= 0:
                    k = lo
                    lo -= 1
                elif hi < ny:
                    k = hi
                    hi += 1
                elif lo >= 0:
                    k = lo
                    lo -= 1
                turn = 1 - turn
                if k < 0:
                    break
                room = full_well - counts[k, i]
                if room <= 0.0:
                    saturated[k, i] = 1
                    continue
                take = room if room < excess else excess
                counts[k, i] += take
                excess -= take
                if counts[k, i] >= full_well:
                    saturated[k, i] = 1
