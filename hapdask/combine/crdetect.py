"""Cosmic-ray detection by hysteresis (a hapdask extension, ``driz_cr_method="hysteresis"``).

AstroDrizzle's ``driz_cr`` (:mod:`hapdask.combine.crrej`, the default and the oracle-tested
path) flags ``|sci - blot|`` above 3.0-3.5 sigma of a noise that ignores the median's own
uncertainty: on simulated visits with truth, noise tails and negative deviations make its false
flags on clean pixels a few % of the cosmic-ray pixel count. This detector keeps its inputs
(the chip, the blotted median with sky, the sky, gain and read noise, all in the chip's units as
:func:`hapdask.combine.crrej.driz_cr_mask`) and its blot-error term (``driz_cr_scale`` times the
blot's local derivative, which protects star cores), and changes the decision:

* **one-sided**: cosmic rays add charge; only ``sci - blot > threshold`` can be flagged (a low
  pixel is a cosmic ray in the median or a defect, never a cosmic ray of this chip);
* **noise model** (electrons): ``var = gain * max(blot, 0) + readnoise**2`` (Poisson of the
  expected level, which already holds the sky, plus read noise) times ``1 + MEDIAN_VARIANCE``
  for the median's own noise: 0.5, the variance of the mean of two exposures, the noisiest median
  AstroDrizzle forms from >= 2 inputs (more inputs, or the resampling of the separate drizzles
  and of the blot, only lower it: the threshold is conservative);
* **hysteresis**: a *seed* exceeds ``hypot(seed_snr * sigma, scale1 * deriv)``; a pixel
  exceeding ``hypot(grow_snr * sigma, scale2 * deriv)`` is flagged when an 8-connected chain of
  such pixels of at most :data:`GROW_REACH` steps joins it to a seed. An isolated noise tail at
  4-5 sigma never reaches a seed, the faint wings of a track do. The noise and the blot-error
  allowance are independent errors, added in quadrature (AstroDrizzle adds them linearly):
  where a cosmic ray leaked into the median (two exposures) the blot's derivative is large at
  the cosmic ray itself, and the linear sum hid it; at star cores the derivative term dominates
  either way;
* pixels that are not ``good`` (non-finite SCI, DQ bits the final drizzle rejects) carry no
  cosmic-ray information: they are never seeds, never grown into and never flagged;
* *suspect* pixels -- used by the final drizzle but carrying DQ bits (e.g. hot pixels under
  HAP's final_bits 336) -- seed at the grow threshold: an outlier there is a known defect the
  dithered median does not share (AstroDrizzle's low thresholds reject it too); keeping it would
  put the defect's excess into the product. They are outliers, not cosmic rays: benchmarks and
  tests report them apart from the clean (DQ 0) false flags;
* ``driz_cr_grow`` (box side) and ``driz_cr_ctegrow`` (tail along the read-out direction) then
  grow the mask as AstroDrizzle does, without its reflection at chip edges.

``deriv`` here is the largest ``|blot - neighbour|`` over the 4 neighbours that exist in the
chip (AstroDrizzle's ``qderiv`` compares chip-edge pixels with 0, which blinds it on the chip's
last row and columns).

Regions: like :func:`hapdask.combine.crrej.driz_cr_mask`, pass ``origin`` and ``chip_shape``;
the result equals the whole-chip result at least :attr:`HysteresisParams.halo` pixels away from
region edges that are not chip edges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hapdask.combine.crrej import CRParams, _detector_inputs, check_growth_params, driz_cr_mask
from hapdask.combine.median import parse_pair
from hapdask.dqflags import good_pixel_mask

__all__ = ["CR_METHODS", "GROW_REACH", "MEDIAN_VARIANCE", "HysteresisParams", "cr_mask",
           "hysteresis_cr_mask"]

#: Values of the ``driz_cr_method`` parameter.
CR_METHODS = ("astrodrizzle", "hysteresis")

#: Variance of the blotted median relative to one exposure's pixel variance (mean of two).
MEDIAN_VARIANCE = 0.5

#: Longest chain (pixels, 8-connected steps) from a seed through which the mask grows.
GROW_REACH = 3


@dataclass(frozen=True)
class HysteresisParams:
    """Parameters of :func:`hysteresis_cr_mask`.

    Attributes
    ----------
    driz_cr_hyst_snr : str
        "seed grow" thresholds in sigma of the full noise model (module docstring).
    driz_cr_scale : str
        "scale1 scale2" multipliers of the blot derivative for seeds / grown pixels
        (AstroDrizzle's parameter, same role).
    driz_cr_grow : int
        Side of the final growth box, >= 1 (1 = none).
    driz_cr_ctegrow : int
        CTE tail length (pixels) along the read-out direction (0 = none).
    driz_cr_corr : bool
        Carried for the caller (``_crclean`` image), as :class:`CRParams`.
    """

    driz_cr_hyst_snr: str = "5.0 4.0"
    driz_cr_scale: str = "1.2 0.7"
    driz_cr_grow: int = 1
    driz_cr_ctegrow: int = 0
    driz_cr_corr: bool = False

    def __post_init__(self) -> None:
        seed, grow = parse_pair("driz_cr_hyst_snr", self.driz_cr_hyst_snr)
        if grow > seed:
            raise ValueError(f"driz_cr_hyst_snr: the grow threshold ({grow}) exceeds the seed "
                             f"threshold ({seed})")
        check_growth_params(self)

    @property
    def snr(self) -> tuple[float, float]:
        """(seed, grow) thresholds."""
        return parse_pair("driz_cr_hyst_snr", self.driz_cr_hyst_snr)

    @property
    def scale(self) -> tuple[float, float]:
        return parse_pair("driz_cr_scale", self.driz_cr_scale)

    @property
    def halo(self) -> int:
        """Pixels of context around a region: derivative, growth chain, box and CTE tail."""
        return 1 + GROW_REACH + max(self.driz_cr_grow // 2, self.driz_cr_ctegrow)


def hysteresis_cr_mask(sci: np.ndarray, blot: np.ndarray, *, sky: float, exptime: float,
                       gain: float, readnoise: float, params: HysteresisParams,
                       good: np.ndarray | None = None, suspect: np.ndarray | None = None,
                       cte_direction: int = 0,
                       rate: bool = False, origin: tuple[int, int] = (0, 0),
                       chip_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Cosmic-ray mask of a chip (region) by hysteresis: True = cosmic ray.

    Parameters
    ----------
    sci, blot : (ny, nx) arrays
        Chip data and blotted median in the chip's units, both with sky (as
        :func:`hapdask.combine.crrej.driz_cr_mask`).
    sky : float
        Subtracted sky, chip units (checked; the blot already holds it).
    exptime : float
        Exposure time (s); used only when ``rate``.
    gain : float
        Effective gain (1.0 for electrons data).
    readnoise : float
        Read noise, electrons.
    params : HysteresisParams
    good : (ny, nx) bool array, optional
        Pixels carrying information (finite, DQ accepted by the final drizzle); the others are
        never seeds, never grown into and never flagged. Default: finite SCI.
    suspect : (ny, nx) bool array, optional
        Good pixels carrying DQ bits (known defects): they seed at the grow threshold.
    cte_direction : int
        Read-out direction for ``driz_cr_ctegrow`` (+1, -1, 0 = none), as ``driz_cr_mask``.
    rate : bool
        The chip's units are per second.
    origin, chip_shape :
        Region placement (``driz_cr_mask``).

    Returns
    -------
    (ny, nx) bool
        Valid at least ``params.halo`` pixels away from region edges inside the chip.
    """
    from hapdask.combine import _crdetect_kernels as k  # numba: compiled on first use

    if not isinstance(params, HysteresisParams):
        raise TypeError(f"params: expected HysteresisParams, got {type(params).__name__}")
    s, b, (oy, ox, ny, nx), _, gain_f, rn_f, conv = _detector_inputs(
        sci, blot, sky, exptime, gain, readnoise, cte_direction, rate, origin, chip_shape)
    if good is None:
        g = np.isfinite(s)
    else:
        g = np.ascontiguousarray(good, dtype=bool)
        if g.shape != s.shape:
            raise ValueError(f"good: shape {g.shape} differs from sci {s.shape}")
    if suspect is None:
        sus = np.zeros(s.shape, np.bool_)
    else:
        sus = np.ascontiguousarray(suspect, dtype=bool)
        if sus.shape != s.shape:
            raise ValueError(f"suspect: shape {sus.shape} differs from sci {s.shape}")
    seed, grow = params.snr
    mult1, mult2 = params.scale
    out = np.empty(s.shape, np.bool_)
    k.hysteresis(s, b, g, sus, float(conv), float(gain_f), float(rn_f) ** 2,  # type: ignore[arg-type]
                MEDIAN_VARIANCE, seed, grow, mult1, mult2, GROW_REACH, params.driz_cr_grow,
                params.driz_cr_ctegrow, int(cte_direction), oy, ox, ny, nx, out)
    return out


def cr_mask(sci: np.ndarray, blot: np.ndarray, *, sky: float, exptime: float, gain: float,
            readnoise: float, params: CRParams | HysteresisParams, good: np.ndarray,
            dq: Callable[[], np.ndarray] | None = None, bits: int | None = None,
            cte_direction: int = 0, rate: bool = False, origin: tuple[int, int] = (0, 0),
            chip_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Cosmic-ray mask by the method ``params`` selects (``driz_cr_method``).

    :class:`~hapdask.combine.crrej.CRParams`: AstroDrizzle's driz_cr (``driz_cr_mask``, the
    derivative computed from the blot; flags restricted to ``good``);
    :class:`HysteresisParams`: :func:`hysteresis_cr_mask`; ``dq()`` (a callable returning the
    region's DQ array, read only for this method) restricts ``good`` to the pixels the final
    drizzle uses (DQ within ``bits``) and marks those with DQ bits as suspect. Other arguments
    as :func:`hapdask.combine.crrej.driz_cr_mask`.
    """
    common = dict(sky=sky, exptime=exptime, gain=gain, readnoise=readnoise, params=params,
                  cte_direction=cte_direction, rate=rate, origin=origin, chip_shape=chip_shape)
    if isinstance(params, HysteresisParams):
        g = np.asarray(good, dtype=bool)
        suspect = None
        if dq is not None:
            d = np.asarray(dq())
            g = g & good_pixel_mask(d, bits)
            suspect = g & (d != 0)
        return hysteresis_cr_mask(sci, blot, good=g, suspect=suspect, **common)
    return driz_cr_mask(sci, blot, None, good=good, **common)
