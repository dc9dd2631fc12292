"""AstroDrizzle's median and driz_cr numerics on plain arrays (no files, WCS or Dask).

Public interface (the mosaic engine codes against it)::

    from hapdask.combine import (CombineParams, combine_stack, weight_sums, exposure_noise,
                                 CRParams, blot_derivative, driz_cr_mask, DERIV_HALO)

    # --- median step, per output tile (hapdask.combine.median) ---
    CombineParams(combine_type="minmed", combine_nsigma="4 3", combine_nlow=0, combine_nhigh=0,
                  combine_lthresh=None, combine_hthresh=None, combine_grow=1,
                  combine_maskpt=0.3)           # AstroDrizzle names/defaults; ValueError names
                                                # the bad parameter; .nsigma, .halo
    weight_sums(weights (n,ny,nx)) -> (sums (n,), counts (n,))   # reduce over all tiles;
                                                # weight_means = sums / counts
    exposure_noise(chip_skies_e, chip_readnoise_e) -> (sky_e, readnoise_e)   # per exposure
    combine_stack(images (n,ny,nx) e-/s sky-removed, weights (n,ny,nx) EXP (0 = no data),
                  params, *, skies=(n,) e-/pixel, readnoise=(n,) e-, exptimes=(n,) s,
                  weight_means=(n,), n_inputs=None) -> (ny, nx) float32
        # tile given with params.halo pixels of context each side (minmed + combine_grow);
        # the result inside the halo equals the whole-frame result

    # --- driz_cr, per chip region (hapdask.combine.crrej) ---
    CRParams(driz_cr_snr="3.5 3.0", driz_cr_scale="1.2 0.7", driz_cr_grow=1,
             driz_cr_ctegrow=0, driz_cr_corr=False)   # .snr, .scale, .halo
    blot_derivative(blot, *, origin=(0, 0), chip_shape=None) -> float32   # quickDeriv.qderiv
    driz_cr_mask(sci, blot, deriv_or_None, *, sky, exptime, gain, readnoise, params,
                 good=None, cte_direction=0, rate=False, origin=(0, 0),
                 chip_shape=None) -> bool (True = cosmic ray)
        # chip units, sci and blot both WITH sky; region valid params.halo pixels from
        # inner edges

    # --- optional hysteresis detector (hapdask.combine.crdetect; driz_cr_method) ---
    HysteresisParams(driz_cr_hyst_snr="5.0 4.0", driz_cr_scale="1.2 0.7", driz_cr_grow=1,
                     driz_cr_ctegrow=0, driz_cr_corr=False)
    hysteresis_cr_mask(sci, blot, *, sky, exptime, gain, readnoise, params, good=None, ...)
    cr_mask(sci, blot, *, ..., params, good, dq=None, bits=None, ...)   # dispatch on the record

Numerics reproduce ``drizzlepac.createMedian``/``minmed.min_med``/``stsci.image.numcombine`` and
``drizzlepac.drizCR``/``quickDeriv`` bit for bit on the same inputs (tests/combine); the few
deliberate deviations are listed in the module docstrings and DEVELOPING.md. Names are imported
lazily; the numba kernels compile (cached) on first use.
"""

from __future__ import annotations

from hapdask._lazy import lazy_names

_LAZY = {
    "COMBINE_TYPES": "median",
    "CombineParams": "median",
    "combine_stack": "median",
    "exposure_noise": "median",
    "weight_sums": "median",
    "CRParams": "crrej",
    "DERIV_HALO": "crrej",
    "blot_derivative": "crrej",
    "driz_cr_mask": "crrej",
    "HysteresisParams": "crdetect",
    "cr_mask": "crdetect",
    "hysteresis_cr_mask": "crdetect",
}

__getattr__, __all__ = lazy_names(__name__, _LAZY)
