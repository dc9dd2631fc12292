"""Blot: resample an image back onto a distorted grid (fast replacement of drizzle's blot_image)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ._interp import INTERP_CODES, blot_kernel, lanczos_table

__all__ = ["blot_image"]

_ALIASES = {"lan3": "lanczos3", "lan5": "lanczos5"}


def blot_image(
    data: np.ndarray,
    pixmap: np.ndarray,
    pix_ratio: float = 1.0,
    exptime: float = 1.0,
    output_pixel_shape: tuple[int, int] | None = None,
    out_img: np.ndarray | None = None,
    fillval: float = 0.0,
    iscale: float = 1.0,
    interp: str = "poly5",
    sinscl: float = 1.0,
    offset: tuple[float, float] = (0.0, 0.0),
    addend: float | None = None,
) -> np.ndarray:
    """Interpolate ``data`` at the positions of ``pixmap`` (inverse of drizzling).

    Compatible with ``drizzle.resample.blot_image`` (drizzle 3.0): same arguments, same
    scaling, float32 result. ``out[jj, ii] = interp(data, x, y) * iscale * exptime /
    pix_ratio**2`` with ``(x, y) = pixmap[jj, ii]`` (0-based pixel coordinates in ``data``,
    pixel centres at integers). The work runs in a numba kernel that releases the GIL, so
    several threads can blot at once. Arithmetic is float64 with a float32 result.

    Deviations from the drizzle 3.0 C code (each is covered by a test):

    * **Valid area.** A position is on the image when ``-0.5 <= x < nx - 0.5`` and
      ``-0.5 <= y < ny - 0.5``, the area the image's pixels cover. C uses ``0 <= x < nx``,
      which drops the outer half of the first pixel and accepts half a pixel beyond the last.
    * **NaN in the pixmap** gives ``fillval`` (C raises "NaN in pixmap").
    * **nearest** never reads outside the image (C reads one element past the row, or past
      the array, for ``x >= nx - 0.5`` or ``y >= ny - 0.5``).
    * **linear** extends the edge value over the outer half pixel (as C does at the last
      row/column).
    * **poly3/poly5** extend the image by point reflection through the edge pixel,
      ``d[-k] = 2 d[0] - d[k]``, so linear trends stay exact up to the edges. C 3.0 does
      this in x, but returns wrong values when the stencil crosses the last rows (measured on
      a plane: off by 0.1 for poly5 at ``y > ny - 3``, by 1 for poly3 at ``y > ny - 2``, and
      garbage from outside the array on tiny images). Elsewhere both are the same
      Everett-form cubic/quintic interpolants.
    * **lanczos3/lanczos5** are normalised by the sum of the kernel weights over the window
      (clipped to the image) and use an accurate kernel table, so a constant image stays
      constant and integer positions return the data exactly. C sums unnormalised weights
      from a coarse table with a truncated index (a constant 1 gives up to 1.002 for
      lanczos3 and 1.008 for lanczos5) and darkens the edges where the window is clipped.
    * Positions are used in float64. C rounds them to float32 first (about 5e-4 pixel at
      x ~ 8000).

    Parameters
    ----------
    data : 2-D array
        Source image (converted to float32, as in C), usually a drizzled product in rate
        units.
    pixmap : (ny_out, nx_out, 2) float array
        For each output pixel, its ``(x, y)`` position in ``data`` (0-based), e.g.
        ``calc_pixmap(wcs_of_output, wcs_of_data)``.
    pix_ratio : float, optional
        Ratio of the ``data`` pixel scale to the output pixel scale; values are divided by
        ``pix_ratio**2`` (drizzle's deprecated argument, kept for DrizzlePac-style calls).
    exptime : float, optional
        Multiplies the values (drizzle's deprecated argument).
    output_pixel_shape : tuple of int, optional
        ``(nx, ny)`` of the output (drizzle's order); must agree with ``pixmap``.
    out_img : 2-D float32 array, optional
        Array to fill in place (shape ``pixmap.shape[:2]``); a new one is made if None.
    fillval : float, optional
        Value of output pixels that map outside ``data`` (or have NaN positions).
    iscale : float, optional
        Extra multiplicative factor (drizzle 3.0's replacement of pix_ratio/exptime).
    interp : {"nearest", "linear", "poly3", "poly5", "lanczos3", "lanczos5"}, optional
        Interpolation ("lan3"/"lan5" are accepted aliases).
    sinscl : float, optional
        Scale of the "sinc" kernels of drizzle 1.x, which drizzle 3.0 removed; accepted so
        that DrizzlePac-style calls work, and has no effect on the interpolations offered
        here (a value other than 1 gives a warning).
    offset : (x0, y0), optional
        The positions in ``data`` are ``pixmap - offset`` (float64 subtractions): for a
        pixmap in a larger frame where ``data`` starts at pixel ``(x0, y0)``, without a
        shifted copy of the pixmap.
    addend : float, optional
        Added to every float32 output value, the fill value included, in float32: the same
        bits as ``out += np.float32(addend)`` after the call, without the second pass over
        the output (e.g. the sky AstroDrizzle's ``blot_addsky`` puts back). None adds
        nothing (0.0 would turn ``-0.0`` outputs into ``+0.0``, as the addition does).

    Returns
    -------
    numpy.ndarray
        The blotted float32 image of shape ``pixmap.shape[:2]`` (``out_img`` if given).

    Raises
    ------
    ValueError
        For an unknown ``interp``, badly shaped ``data``/``pixmap``/``out_img``, or a
        ``pix_ratio``/``exptime`` that is not positive and finite.
    """
    name = _ALIASES.get(interp, interp)
    if name not in INTERP_CODES:
        raise ValueError(
            f"blot_image: unknown interp {interp!r}; use one of {sorted(INTERP_CODES)}"
        )
    if sinscl != 1.0:
        warnings.warn(
            f"blot_image: sinscl={sinscl} has no effect (it scaled drizzle 1.x's sinc kernels, "
            f"not {name!r})",
            UserWarning,
            stacklevel=2,
        )
    data = np.ascontiguousarray(data, dtype=np.float32)
    if data.ndim != 2 or data.size == 0:
        raise ValueError(f"blot_image: data must be a non-empty 2-D array, got shape {data.shape}")
    pixmap = np.asarray(pixmap, dtype=np.float64)
    if pixmap.ndim != 3 or pixmap.shape[2] != 2:
        raise ValueError(f"blot_image: pixmap must have shape (ny, nx, 2), got {pixmap.shape}")
    for label, value in (("pix_ratio", pix_ratio), ("exptime", exptime)):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"blot_image: {label} must be positive and finite, got {value!r}")
    shape = pixmap.shape[:2]
    if output_pixel_shape is not None and tuple(output_pixel_shape)[::-1] != shape:
        raise ValueError(
            f"blot_image: output_pixel_shape {tuple(output_pixel_shape)} (nx, ny) does not "
            f"match pixmap shape {shape} (ny, nx)"
        )
    out = _output(out_img, shape)
    scale = float(iscale) * float(exptime) / (float(pix_ratio) * float(pix_ratio))
    a = {"lanczos3": 3, "lanczos5": 5}.get(name, 1)
    lut = lanczos_table(a) if name.startswith("lanczos") else np.zeros(2)
    ox, oy = (float(v) for v in offset)
    blot_kernel(data, pixmap, out, INTERP_CODES[name], scale, float(fillval), lut, a, ox, oy,
                0.0 if addend is None else float(addend), addend is not None)
    return out


def _output(out_img: Any, shape: tuple[int, int]) -> np.ndarray:
    if out_img is None:
        return np.empty(shape, dtype=np.float32)
    if not isinstance(out_img, np.ndarray) or out_img.dtype != np.float32:
        raise ValueError(
            "blot_image: out_img must be a float32 numpy array (it is filled in place), got "
            f"{getattr(out_img, 'dtype', type(out_img).__name__)}"
        )
    if out_img.shape != shape:
        raise ValueError(
            f"blot_image: out_img shape {out_img.shape} does not match pixmap shape {shape}"
        )
    if not out_img.flags.writeable:
        raise ValueError("blot_image: out_img is read-only")
    return out_img
