"""AstroDrizzle's ``driz_cr`` step: cosmic-ray mask of one chip (or chip region) against its blot.

Numerics of ``drizzlepac.drizCR._driz_cr`` and ``drizzlepac.quickDeriv.qderiv`` (same float32
arithmetic, same image-edge rules), on plain arrays: no files, WCS or Dask here.

Units (as AstroDrizzle)
-----------------------
Everything is in the **chip's own units** (BUNIT: electrons for ACS/WFC3-UVIS FLC/FLT, electrons/s
for WFC3/IR):

* ``sci``  the chip's SCI data as read from the file (sky **not** removed);
* ``blot`` the median image blotted back onto the chip, converted to the chip's units **with the
  subtracted sky added back** (AstroDrizzle's ``blot_addsky``);
* ``sky``  the subtracted sky (MDRIZSKY) in the chip's units;
* ``rate=True`` for per-second units: then ``sci``, ``blot`` and ``sky`` are multiplied by
  ``exptime`` first (AstroDrizzle's ``_conversionFactor``); otherwise ``exptime`` is unused;
* ``gain`` AstroDrizzle's *effective* gain, 1.0 for data already in electrons (ACS, WFC3) -- not
  the header's ATODGAIN;
* ``readnoise`` electrons.

The noise AstroDrizzle uses is ``sqrt(gain * |blot + sky| + readnoise**2)`` -- with the sky counted
twice since the blot already holds it; kept as is for parity.

A pixel is a cosmic ray when ``|sci - blot| > scale2 * deriv + snr2 * noise / gain`` and some pixel
of its 3x3 neighbourhood fails the first test ``|sci - blot| > scale1 * deriv + snr1 * noise /
gain``; the mask then grows by ``driz_cr_grow`` (a grow x grow box: 1 = no growth, as
AstroDrizzle) and ``driz_cr_ctegrow`` pixels along the read-out direction.

Deviations from AstroDrizzle: ``driz_cr_ctegrow`` > 0 with ``cte_direction`` 0 (WFC3) is ignored
(AstroDrizzle's all-zero tail kernel flags every pixel of the chip); ``driz_cr_grow`` must be >= 1
(AstroDrizzle's convolution fails for 0).

Regions: pass ``origin`` (chip position of the region's [0, 0]) and ``chip_shape``. The result
equals the whole-chip result for every pixel at least :attr:`CRParams.halo` pixels away from a
region edge that is not a chip edge (at chip edges AstroDrizzle's own boundary rules apply).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hapdask.combine.median import _as_float, _as_int, parse_pair

__all__ = ["DERIV_HALO", "CRParams", "blot_derivative", "driz_cr_mask"]

#: Context the derivative needs (one pixel each way).
DERIV_HALO = 1


@dataclass(frozen=True)
class CRParams:
    """AstroDrizzle's driz_cr parameters, names and defaults (astrodrizzle.cfg).

    Attributes
    ----------
    driz_cr_snr : str
        "snr1 snr2" signal-to-noise thresholds (first: seed test on the 3x3 neighbourhood).
    driz_cr_scale : str
        "scale1 scale2" multipliers of the blot derivative.
    driz_cr_grow : int
        Side of the growth box, >= 1 (1 = no growth).
    driz_cr_ctegrow : int
        CTE tail length in pixels along the read-out direction (0 = none).
    driz_cr_corr : bool
        Write a ``_crclean`` image (handled by the caller; carried here for completeness).
    """

    driz_cr_snr: str = "3.5 3.0"
    driz_cr_scale: str = "1.2 0.7"
    driz_cr_grow: int = 1
    driz_cr_ctegrow: int = 0
    driz_cr_corr: bool = False

    def __post_init__(self) -> None:
        parse_pair("driz_cr_snr", self.driz_cr_snr)
        check_growth_params(self)

    @property
    def snr(self) -> tuple[float, float]:
        return parse_pair("driz_cr_snr", self.driz_cr_snr)

    @property
    def scale(self) -> tuple[float, float]:
        return parse_pair("driz_cr_scale", self.driz_cr_scale)

    @property
    def halo(self) -> int:
        """Pixels of context :func:`driz_cr_mask` needs around a region (derivative, 3x3 test,
        growth box and CTE tail)."""
        return DERIV_HALO + 1 + max(self.driz_cr_grow // 2, self.driz_cr_ctegrow)


def check_growth_params(params) -> None:
    """Validate (and normalise in place) the parameters every cosmic-ray detector shares:
    ``driz_cr_scale``, ``driz_cr_grow``, ``driz_cr_ctegrow`` and ``driz_cr_corr`` of a frozen
    dataclass."""
    parse_pair("driz_cr_scale", params.driz_cr_scale)
    set_ = object.__setattr__
    set_(params, "driz_cr_grow", _as_int("driz_cr_grow", params.driz_cr_grow, 1))
    set_(params, "driz_cr_ctegrow", _as_int("driz_cr_ctegrow", params.driz_cr_ctegrow, 0))
    if not isinstance(params.driz_cr_corr, bool | np.bool_):
        raise ValueError(f"driz_cr_corr: must be True or False, got {params.driz_cr_corr!r}")


def _chip_geometry(shape: tuple[int, int], origin: tuple[int, int],
                   chip_shape: tuple[int, int] | None) -> tuple[int, int, int, int]:
    oy, ox = (int(v) for v in origin)
    ny, nx = (int(v) for v in (chip_shape if chip_shape is not None else shape))
    if oy < 0 or ox < 0 or oy + shape[0] > ny or ox + shape[1] > nx:
        raise ValueError(f"origin/chip_shape: region {shape} at {(oy, ox)} does not fit in a chip "
                         f"of shape {(ny, nx)}")
    return oy, ox, ny, nx


def _detector_inputs(sci, blot, sky, exptime, gain, readnoise, cte_direction, rate, origin,
                     chip_shape):
    """Checked inputs shared by the cosmic-ray detectors: contiguous float32 ``sci``/``blot``, the
    region's ``(oy, ox, ny, nx)``, ``sky``, ``gain``, ``readnoise`` and the units factor ``conv``
    (``exptime`` for per-second units, else 1); errors name the bad argument."""
    s = np.ascontiguousarray(sci, dtype=np.float32)
    b = np.ascontiguousarray(blot, dtype=np.float32)
    if s.ndim != 2:
        raise ValueError(f"sci: expected a 2-D array, got shape {s.shape}")
    if b.shape != s.shape:
        raise ValueError(f"blot: shape {b.shape} differs from sci {s.shape}")
    oy, ox, ny, nx = _chip_geometry(s.shape, origin, chip_shape)
    sky_f = _as_float("sky", sky)
    gain_f = _as_float("gain", gain)
    rn_f = _as_float("readnoise", readnoise, minimum=0.0)
    if gain_f <= 0:  # type: ignore[operator]
        raise ValueError(f"gain: must be > 0, got {gain!r}")
    conv = 1.0
    if rate:
        conv = _as_float("exptime", exptime)  # type: ignore[assignment]
        if conv <= 0:
            raise ValueError(f"exptime: must be > 0 for per-second units, got {exptime!r}")
    if cte_direction not in (-1, 0, 1):
        raise ValueError(f"cte_direction: must be -1, 0 or +1, got {cte_direction!r}")
    return s, b, (oy, ox, ny, nx), sky_f, gain_f, rn_f, conv


def blot_derivative(blot: np.ndarray, *, origin: tuple[int, int] = (0, 0),
                    chip_shape: tuple[int, int] | None = None) -> np.ndarray:
    """AstroDrizzle's quick absolute derivative (``quickDeriv.qderiv``) of a blotted image.

    deriv = max over the four neighbours of |blot - neighbour|; at the chip's last row, its last
    one or two columns and (for the row above) its first row, where AstroDrizzle's shifted copies
    hold zeros, the "neighbour" is 0.

    Parameters
    ----------
    blot : (ny, nx) array
        The blot (a whole chip, or a region of it).
    origin : (int, int)
        0-based chip (row, column) of ``blot[0, 0]``.
    chip_shape : (int, int), optional
        Shape of the whole chip; default ``blot.shape``.

    Returns
    -------
    (ny, nx) float32
        Valid at least :data:`DERIV_HALO` pixels away from region edges inside the chip.
    """
    from hapdask.combine import _kernels as k  # numba: compiled on first use, not on import

    a = np.ascontiguousarray(blot, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"blot: expected a 2-D array, got shape {a.shape}")
    oy, ox, ny, nx = _chip_geometry(a.shape, origin, chip_shape)
    out = np.empty(a.shape, np.float32)
    k.qderiv(a, oy, ox, ny, nx, out)
    return out


def driz_cr_mask(sci: np.ndarray, blot: np.ndarray, deriv: np.ndarray | None, *, sky: float,
                 exptime: float, gain: float, readnoise: float, params: CRParams,
                 good: np.ndarray | None = None, cte_direction: int = 0, rate: bool = False,
                 origin: tuple[int, int] = (0, 0),
                 chip_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Cosmic-ray mask of a chip (region): True = cosmic ray.

    Parameters
    ----------
    sci, blot : (ny, nx) arrays
        Chip data and blotted median in the chip's units, both with sky (module docstring).
    deriv : (ny, nx) array or None
        :func:`blot_derivative` of the blot *after* the unit conversion (identical to the blot
        itself unless ``rate``); None computes it here (same halo).
    sky : float
        Subtracted sky (MDRIZSKY), chip units.
    exptime : float
        Exposure time (s); used only when ``rate``.
    gain : float
        Effective gain (1.0 for electrons data).
    readnoise : float
        Read noise, electrons.
    params : CRParams
    good : (ny, nx) bool array, optional
        Pixels that may be reported (e.g. DQ-good and covered by the blot); elsewhere the result
        is False. Detection and growth are computed as AstroDrizzle, before this restriction.
    cte_direction : int
        Read-out direction for ``driz_cr_ctegrow``: +1 (ACS/WFC chip SCI,1, HRC amps C/D, WFPC2:
        the tail covers the ``ctegrow`` rows below a CR), -1 (WFC SCI,2, HRC amps A/B: rows
        above), 0 (none: WFC3; AstroDrizzle would then flag every pixel if ctegrow > 0, we
        ignore ctegrow).
    rate : bool
        The chip's units are per second (BUNIT ends with ``/S``).
    origin, chip_shape :
        Region placement (see :func:`blot_derivative`).

    Returns
    -------
    (ny, nx) bool
        Valid at least ``params.halo`` pixels away from region edges inside the chip.
    """
    from hapdask.combine import _kernels as k  # numba: compiled on first use, not on import

    if not isinstance(params, CRParams):
        raise TypeError(f"params: expected CRParams, got {type(params).__name__}")
    s, b, (oy, ox, ny, nx), sky_f, gain_f, rn_f, conv = _detector_inputs(
        sci, blot, sky, exptime, gain, readnoise, cte_direction, rate, origin, chip_shape)
    conv32 = np.float32(conv)
    if deriv is None:
        bc = b if conv == 1.0 else b * conv32
        d = np.empty(s.shape, np.float32)
        k.qderiv(np.ascontiguousarray(bc), oy, ox, ny, nx, d)
    else:
        d = np.ascontiguousarray(deriv, dtype=np.float32)
        if d.shape != s.shape:
            raise ValueError(f"deriv: shape {d.shape} differs from sci {s.shape}")
    snr1, snr2 = params.snr
    mult1, mult2 = params.scale
    f = np.float32
    out = np.empty(s.shape, np.bool_)
    k.crmask(s, b, d, conv32, f(sky_f * conv), f(gain_f), f(rn_f ** 2),  # type: ignore[operator]
             f(snr1), f(snr2), f(mult1), f(mult2), params.driz_cr_grow, params.driz_cr_ctegrow,
             int(cte_direction), oy, ox, ny, nx, out)
    if good is not None:
        g = np.asarray(good, dtype=bool)
        if g.shape != s.shape:
            raise ValueError(f"good: shape {g.shape} differs from sci {s.shape}")
        out &= g
    return out
