"""numba kernel of the binary morphology of :func:`hapdask.svm.keywords._smooth_box`, in its own
module so that importing :mod:`hapdask.svm` does not load numba (``keywords`` imports it when a
mask is traced).

:func:`close_open` is scipy's ``binary_dilation``/``binary_erosion`` with ``iterations`` and
the default (4-connected, cross) structure, nothing set outside the array: each pass sets (or
keeps) a pixel from itself and its four neighbours, the pixels packed 64 to a word along the
rows (a row's neighbours are the word's bits shifted by one, with the next word's end bit), so
that a pass costs a few operations per 64 pixels. The bits past a row's end are cleared after
every pass: they stand for the outside of the array, which is never set.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["close_open"]


@njit(nogil=True, cache=True)
def _pass(src, dst, last, dilate):  # pragma: no cover - numba
    """One dilation (``dilate``) or erosion pass of the cross on packed rows ``src`` into
    ``dst``; ``last``: the valid bits of a row's last word."""
    ny, nw = src.shape
    one = np.uint64(1)
    top = np.uint64(63)
    zero = np.uint64(0)
    for y in range(ny):
        for w in range(nw):
            v = src[y, w]
            left = v << one  # pixel x - 1 onto x (bit i is pixel 64 w + i)
            right = v >> one
            if w > 0:
                left |= src[y, w - 1] >> top
            if w < nw - 1:
                right |= src[y, w + 1] << top
            if dilate:
                out = v | left | right
                if y > 0:
                    out |= src[y - 1, w]
                if y < ny - 1:
                    out |= src[y + 1, w]
            else:
                out = v & left & right
                out = out & src[y - 1, w] if y > 0 else zero
                out = out & src[y + 1, w] if y < ny - 1 else zero
            if w == nw - 1:
                out &= last
            dst[y, w] = out


@njit(nogil=True, cache=True)
def _passes(a, b, last, n, dilate):  # pragma: no cover - numba
    """``n`` dilations (or erosions) of ``a``, ping-ponging with ``b``: (result, spare)."""
    for _ in range(n):
        _pass(a, b, last, dilate)
        a, b = b, a
    return a, b


@njit(nogil=True, cache=True)
def _close_open(words, last, closing, opening):  # pragma: no cover - numba
    a, b = _passes(words.copy(), np.empty_like(words), last, closing, True)
    a, b = _passes(a, b, last, closing, False)
    a |= words
    a, b = _passes(a, b, last, opening, False)
    a, b = _passes(a, b, last, opening, True)
    return a


def close_open(mask: np.ndarray, closing: int, opening: int) -> np.ndarray:
    """``mask`` ORed with its closing (``closing`` dilations, then as many erosions), then
    opened (``opening`` erosions, then as many dilations), all of scipy's
    ``binary_dilation``/``binary_erosion`` with ``iterations`` on the whole 2-d bool array.

    Parameters
    ----------
    mask : (ny, nx) bool array
    closing, opening : int
        Iterations of the closing and of the opening (0: none, where scipy would repeat until
        nothing changes).
    """
    ny, nx = mask.shape
    if closing < 0 or opening < 0:
        raise ValueError("close_open: iterations must be >= 0")
    if ny == 0 or nx == 0:
        return np.zeros((ny, nx), bool)
    nw = -(-nx // 64)
    packed = np.zeros((ny, nw * 8), np.uint8)
    packed[:, :-(-nx // 8)] = np.packbits(mask, axis=1, bitorder="little")
    words = packed.view("<u8").astype(np.uint64, copy=False)  # bit i: pixel 64 w + i
    rest = nx - 64 * (nw - 1)
    last = np.uint64((1 << rest) - 1 if rest < 64 else 0xFFFFFFFFFFFFFFFF)
    out = _close_open(words, last, int(closing), int(opening)).astype("<u8", copy=False)
    return np.unpackbits(out.view(np.uint8), axis=1, count=nx, bitorder="little").view(bool)
