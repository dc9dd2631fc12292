"""AstroDrizzle's ``median`` step (createMedian) on one tile of singly-drizzled images.

:func:`combine_stack` combines a stack of singly-drizzled tiles into the "median" image that blot
and driz_cr compare each exposure against, with AstroDrizzle's parameters (:class:`CombineParams`)
and numerics (``drizzlepac.createMedian._median``, ``drizzlepac.minmed.min_med`` and
``stsci.image.numcombine.num_combine``). Nothing here reads files or knows WCS or Dask.

Units and conventions (what the engine hands in)
------------------------------------------------
``images``
    (n, ny, nx) singly-drizzled science in **electrons/s, sky removed** (AstroDrizzle's
    ``driz_separate`` output: input minus MDRIZSKY, times the effective gain, divided by EXPTIME).
``weights``
    (n, ny, nx) the matching drizzle weights, **EXP type** (``driz_sep_wt_scl = exptime``: weight =
    exposure time x pixel coverage); 0 = no data.
``skies``
    (n,) for ``minmed``: the sky that was subtracted, **electrons per input pixel**
    (MDRIZSKY x the chip's conversion to electrons: x1 for data in electrons, x EXPTIME for
    electrons/s; AstroDrizzle takes the smallest value over the exposure's chips -- see
    :func:`exposure_noise`).
``readnoise``
    (n,) for ``minmed``: read noise in electrons (AstroDrizzle: root-mean-square over the chips).
``exptimes``
    (n,) for ``minmed``: exposure times in seconds.

minmed's noise model is then, per pixel, with W = sum of the weights (total exposure time):
``sigma**2 = median * W + sum_i(weight_i * sky_i / exptime_i) + sum_valid(readnoise_i**2)``
(electrons): the median's source counts, the sky added back, and the read noise.

Which pixels are used: image i's pixel is valid when its weight is > 0, not below
``combine_maskpt`` x the **mean of image i's positive weights over the whole output frame** (as
AstroDrizzle: ``ImageStats(weight, lower=1e-8).mean``; the brief's "median" is AstroDrizzle's mean),
and its value is finite. In a tiled graph the mean must come from the whole image, not the tile:
reduce :func:`weight_sums` over the tiles and pass ``weight_means``.

Deviations from AstroDrizzle (each tested in tests/combine)
-----------------------------------------------------------
* ``imedian``/``imean``/``iminmed`` fill *every* pixel without valid input with the first non-zero
  input value; stsci.image 2.3.11 does so only in column 0 of each row (its fill flag is reset
  after the first pixel of a row), which no tiling could reproduce. Under minmed the fill only
  moves the thresholds of the neighbours (the pixel itself is set to 0 by both).
* A weight of 0 is never used, also with ``combine_maskpt = 0`` (AstroDrizzle then lets the
  zeros of pixels without data into the median).
* ``combine_lthresh``/``combine_hthresh`` apply to the values given; AstroDrizzle multiplies them
  by gain and/or exposure time per image for counts or per-second native units (cumulatively,
  over the images) -- the caller converts a user's threshold to electrons/s once.

Tiling: ``minmed`` with ``combine_grow`` > 0 looks ``combine_grow`` pixels around each pixel
(:attr:`CombineParams.halo`); every other option is per pixel. Give the stack with ``halo`` pixels
of context on each side where the output frame has them (at the frame's edges give it as is, or
padded with zero weight): the result inside the halo is then identical to a whole-frame call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["COMBINE_TYPES", "CombineParams", "combine_stack", "exposure_noise", "weight_sums"]

#: AstroDrizzle's combine_type values (``astrodrizzle.cfgspc``).
COMBINE_TYPES = ("median", "mean", "sum", "imedian", "imean", "minmed", "iminmed")

#: ImageStats lower cutoff AstroDrizzle uses for the mean weight (compared in float32).
WEIGHT_MEAN_LOWER = np.float32(1e-8)

_NONE_WORDS = {"", "none", "indef"}


def _as_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer | float | str):
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    try:
        f = float(value)
    except ValueError:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}") from None
    if not math.isfinite(f) or f != int(f) or f < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return int(f)


def _as_float(name: str, value: object, *, minimum: float | None = None,
              optional: bool = False) -> float | None:
    if optional and (value is None or (isinstance(value, str)
                                       and value.strip().lower() in _NONE_WORDS)):
        return None
    what = "a finite number" + (f" >= {minimum}" if minimum is not None else "")
    if optional:
        what += " or None"
    if isinstance(value, bool):
        raise ValueError(f"{name}: must be {what}, got {value!r}")
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be {what}, got {value!r}") from None
    if not math.isfinite(f) or (minimum is not None and f < minimum):
        raise ValueError(f"{name}: must be {what}, got {value!r}")
    return f


def parse_pair(name: str, value: object) -> tuple[float, float]:
    """AstroDrizzle's two-number string parameters ("4 3", "3.5,3.0"); one number is used twice.

    Numbers must be finite and >= 0. Raises ``ValueError`` naming ``name``.
    """
    if isinstance(value, str):
        parts = [p for p in re.split(r"[,;\s]+", value.strip()) if p]
    elif isinstance(value, Sequence):
        parts = list(value)
    else:
        parts = [value]
    if len(parts) not in (1, 2):
        raise ValueError(f"{name}: expected one or two numbers, got {value!r}")
    vals = tuple(_as_float(name, p, minimum=0.0) for p in parts)
    if len(vals) == 1:
        vals = vals * 2
    return float(vals[0]), float(vals[1])  # type: ignore[arg-type]


@dataclass(frozen=True)
class CombineParams:
    """AstroDrizzle's median-step parameters, with its names and defaults (astrodrizzle.cfg).

    Attributes
    ----------
    combine_type : str
        ``median``, ``mean``, ``sum``, ``imedian``, ``imean``, ``minmed`` or ``iminmed``
        (AstroDrizzle's default ``minmed``). The ``i`` forms fill pixels where every input is
        masked with the first non-zero input value. ``sum`` adds every input, masks ignored.
    combine_nsigma : str
        "n1 n2": minmed takes the minimum instead of the median where it is n1 sigma below it,
        and n2 sigma within ``combine_grow`` pixels of such a pixel. One number: used for both.
    combine_nlow, combine_nhigh : int
        Lowest/highest valid values rejected per pixel (median/mean types; minmed has its own:
        nhigh=1 for >= 3 inputs, a plain mean for 2, as AstroDrizzle).
    combine_lthresh, combine_hthresh : float or None
        Values < lthresh or >= hthresh are not used (median/mean types), compared in float32 in
        the images' units (AstroDrizzle scales them by gain/exptime for counts or per-second
        native units; the caller converts them to electrons/s).
    combine_grow : int
        minmed's neighbour radius (pixels); ignored by other types (AstroDrizzle sets it to 0).
    combine_maskpt : float
        A weight below ``combine_maskpt`` x the image's mean positive weight is not used.
    """

    combine_type: str = "minmed"
    combine_nsigma: str = "4 3"
    combine_nlow: int = 0
    combine_nhigh: int = 0
    combine_lthresh: float | None = None
    combine_hthresh: float | None = None
    combine_grow: int = 1
    combine_maskpt: float = 0.3

    def __post_init__(self) -> None:
        ctype = self.combine_type
        if not isinstance(ctype, str) or ctype.strip().lower() not in COMBINE_TYPES:
            raise ValueError(f"combine_type: must be one of {', '.join(COMBINE_TYPES)}, "
                             f"got {ctype!r}")
        set_ = object.__setattr__
        set_(self, "combine_type", ctype.strip().lower())
        parse_pair("combine_nsigma", self.combine_nsigma)
        set_(self, "combine_nlow", _as_int("combine_nlow", self.combine_nlow, 0))
        set_(self, "combine_nhigh", _as_int("combine_nhigh", self.combine_nhigh, 0))
        set_(self, "combine_grow", _as_int("combine_grow", self.combine_grow, 0))
        lo = _as_float("combine_lthresh", self.combine_lthresh, optional=True)
        hi = _as_float("combine_hthresh", self.combine_hthresh, optional=True)
        if lo is not None and hi is not None and lo >= hi:
            raise ValueError(f"combine_lthresh: must be below combine_hthresh ({hi!r}), "
                             f"got {lo!r}: every pixel would be rejected")
        set_(self, "combine_lthresh", lo)
        set_(self, "combine_hthresh", hi)
        set_(self, "combine_maskpt", _as_float("combine_maskpt", self.combine_maskpt,
                                               minimum=0.0))

    @property
    def nsigma(self) -> tuple[float, float]:
        """``combine_nsigma`` as two floats."""
        return parse_pair("combine_nsigma", self.combine_nsigma)

    @property
    def is_minmed(self) -> bool:
        return "minmed" in self.combine_type

    @property
    def halo(self) -> int:
        """Pixels of context :func:`combine_stack` needs on each side of a tile."""
        return self.combine_grow if self.is_minmed else 0


def weight_sums(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-image sum and count of the weights >= 1e-8 (AstroDrizzle's mean-weight statistic).

    Reduce these over all tiles of the output frame (add them up) and pass
    ``weight_means = sums / counts`` (0 where a count is 0) to :func:`combine_stack`.

    Parameters
    ----------
    weights : (n, ny, nx) array

    Returns
    -------
    sums : (n,) float64
    counts : (n,) int64
    """
    from hapdask.combine import _kernels as k  # numba: compiled on first use, not on import

    w = np.ascontiguousarray(weights, dtype=np.float32)
    if w.ndim != 3:
        raise ValueError(f"weights: expected an (n, ny, nx) stack, got shape {w.shape}")
    sums = np.empty(w.shape[0], np.float64)
    counts = np.empty(w.shape[0], np.int64)
    k.weight_sums(w, WEIGHT_MEAN_LOWER, sums, counts)
    return sums, counts


def exposure_noise(chip_skies_e: Sequence[float], chip_readnoise_e: Sequence[float]
                   ) -> tuple[float, float]:
    """One exposure's minmed noise terms from its chips, as AstroDrizzle's createMedian.

    Parameters
    ----------
    chip_skies_e : sequence of float
        Subtracted sky (MDRIZSKY) of each chip converted to electrons per pixel.
    chip_readnoise_e : sequence of float
        Read noise of each chip, electrons.

    Returns
    -------
    sky : float
        The smallest chip sky (0 with no chips).
    readnoise : float
        sqrt(mean(readnoise**2)) over the chips (0 with no chips).
    """
    skies = [float(s) for s in chip_skies_e]
    rns = [float(r) for r in chip_readnoise_e]
    sky = min(skies) if skies else 0.0
    rn = math.sqrt(sum(r * r for r in rns) / len(rns)) if rns else 0.0
    return sky, rn


def _per_image(name: str, values: object, n: int) -> np.ndarray:
    if values is None:
        raise ValueError(f"{name}: required by combine_type minmed (one value per image)")
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size != n:
        raise ValueError(f"{name}: expected {n} values (one per image), got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: values must be finite, got {arr.tolist()}")
    return arr


def combine_stack(images: np.ndarray, weights: np.ndarray, params: CombineParams, *,
                  skies: Sequence[float] | np.ndarray | None = None,
                  readnoise: Sequence[float] | np.ndarray | None = None,
                  exptimes: Sequence[float] | np.ndarray | None = None,
                  weight_means: Sequence[float] | np.ndarray | None = None,
                  n_inputs: int | None = None) -> np.ndarray:
    """Combine singly-drizzled tiles into AstroDrizzle's median image.

    Parameters
    ----------
    images, weights : (n, ny, nx) arrays
        Singly-drizzled science (electrons/s, sky removed) and EXP weights (0 = no data), see
        the module docstring. Converted to float32.
    params : CombineParams
    skies, readnoise, exptimes : (n,) sequences, optional
        minmed's noise model: subtracted sky (electrons per pixel), read noise (electrons),
        exposure time (s). Required for ``minmed``/``iminmed``, ignored otherwise.
    weight_means : (n,) sequence, optional
        Mean positive weight of each image over the whole output frame (from
        :func:`weight_sums`). Default: computed from ``weights`` (right only for a whole frame).
    n_inputs : int, optional
        Number of images of the full stack when ``images`` holds only those reaching this tile
        (an image left out must have weight 0 over the whole tile; it then changes nothing).
        AstroDrizzle's choices that depend on it: minmed uses a mean for 2 inputs, and the
        rejection check below. Keep the images in input order: the ``i`` types' fill value
        is the first non-zero one in stack order.

    Returns
    -------
    (ny, nx) float32
        Pixels with no valid input are 0 (``imedian``/``imean``: the first non-zero input).

    Raises
    ------
    ValueError
        Bad shapes, missing minmed terms, or a rejection leaving nothing
        (``n_inputs - combine_nlow - combine_nhigh < 1``; minmed with a single input).
    """
    from hapdask.combine import _kernels as k  # numba: compiled on first use, not on import

    if not isinstance(params, CombineParams):
        raise TypeError(f"params: expected CombineParams, got {type(params).__name__}")
    img = np.ascontiguousarray(images, dtype=np.float32)
    wht = np.ascontiguousarray(weights, dtype=np.float32)
    if img.ndim != 3:
        raise ValueError(f"images: expected an (n, ny, nx) stack, got shape {img.shape}")
    if wht.shape != img.shape:
        raise ValueError(f"weights: shape {wht.shape} differs from images {img.shape}")
    n = img.shape[0]
    total = n if n_inputs is None else _as_int("n_inputs", n_inputs, max(n, 1))
    if total < 1:
        raise ValueError("images: the stack is empty")
    ctype = params.combine_type
    if ctype == "sum":
        return img.sum(axis=0) if n else np.zeros(img.shape[1:], np.float32)

    if weight_means is None:
        sums, counts = weight_sums(wht)
        means = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    else:
        means = np.asarray(weight_means, dtype=np.float64).reshape(-1)
        if means.size != n:
            raise ValueError(f"weight_means: expected {n} values (one per image), "
                             f"got {means.size}")
    thr = np.ascontiguousarray(means * params.combine_maskpt, dtype=np.float64)
    out = np.empty(img.shape[1:], np.float32)
    fill = ctype.startswith("i")

    if params.is_minmed:
        if total < 2:
            raise ValueError(f"combine_type: {ctype} needs at least 2 input images, got {total}")
        sky = _per_image("skies", skies, n)
        rn = _per_image("readnoise", readnoise, n)
        et = _per_image("exptimes", exptimes, n)
        if np.any(et <= 0):
            raise ValueError(f"exptimes: must be > 0, got {et.tolist()}")
        n1, n2 = params.nsigma
        if not fill and 0 < n <= k.MINMED_ROWS_MAX:
            k.minmed_rows(img, wht, thr, sky / et, rn ** 2, total == 2, n1, n2,
                          params.combine_grow, out)
            return out
        shape = img.shape[1:]
        minimum = np.empty(shape, np.float32)
        median = np.empty(shape, np.float32)
        flag1 = np.empty(shape, np.bool_)
        take2 = np.empty(shape, np.bool_)
        allbad = np.empty(shape, np.bool_)
        k.minmed_pass1(img, wht, thr, sky / et, rn ** 2, total, fill, n1, n2,
                       minimum, median, flag1, take2, allbad)
        k.minmed_pass2(minimum, median, flag1, take2, allbad, params.combine_grow, out)
        return out

    nlow, nhigh = params.combine_nlow, params.combine_nhigh
    if total - nlow - nhigh < 1:
        raise ValueError(f"combine_nlow/combine_nhigh: rejecting {nlow} low and {nhigh} high "
                         f"values of {total} inputs leaves none")
    lo = -np.inf if params.combine_lthresh is None else params.combine_lthresh
    hi = np.inf if params.combine_hthresh is None else params.combine_hthresh
    kind = k.KIND_MEDIAN if ctype in ("median", "imedian") else k.KIND_MEAN
    k.numcombine(img, wht, thr, np.float32(lo), np.float32(hi), kind, nlow, nhigh, fill, out)
    return out
