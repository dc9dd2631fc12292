"""AstroDrizzle's static mask: pixels far below the sky in any exposure, per detector chip.

For every input chip AstroDrizzle (``staticMask.py``) computes ImageStats over all its pixels
(no DQ; range = the data range; 3 clipping passes at 3 sigma; ``mode`` with bin width 0.1
sigma) and flags the pixels below ``mode - static_sig * stddev``. Chips sharing a *signature*
share one mask: the AND of their "not low" maps. A chip whose clipped data fall in fewer than
two histogram bins contributes nothing.

Which chips share a signature: the documentation (and hap_pipeline_inventory.md 4.3) says
(instrument/detector, shape, chip), i.e. one mask per detector chip combined over all
exposures; drizzlepac 3.11's code (``acsData``/``wfc3Data._assignSignature``) actually uses
``(outroot, shape, extver)`` with ``outroot`` the *exposure's* root name, so every exposure
gets its own mask and nothing is combined. ``across_exposures=False`` (default) reproduces
drizzlepac 3.11; ``across_exposures=True`` gives the documented behaviour.

Here: :func:`static_part` is that per-chip numerics (one chip in memory), :func:`combine`
ANDs them, and :func:`static_mask_tasks` builds the Dask tasks (one part per chip, a chain of
ANDs per signature) and returns, per chip key, the key of its combined mask
(``ndarray`` of bool, chip shape, **True = good**). Feed it to

* the sky (``hapdask.sky.AstroDrizzleSky(params, static_keys=...)``, used when
  ``params.static and params.use_static``), and
* the drizzle weights (AstroDrizzle multiplies the final and single drizzle weights by it:
  weight = EXPTIME x DQ-good(final_bits) x static x CR mask), reading the chip's region of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numba import njit

from hapdask.profile import timed
from hapdask.sky.stats import clipped_stats, finite_range

__all__ = ["combine", "signature", "static_mask_tasks", "static_part"]


def signature(ref, across_exposures: bool = False, detector: str | None = None) -> tuple:
    """Static-mask signature of a chip (module docstring): ``(group, shape, extver)``.

    ``group`` is the exposure's root name (drizzlepac 3.11) or, ``across_exposures``, the
    detector: ``detector`` if given, else ``INSTRUME``/``DETECTOR`` of the SCI header ("" when
    absent).
    """
    if not across_exposures:
        group = str(ref.key[0])
    elif detector is not None:
        group = detector
    else:
        hdr = ref.chip.header
        group = f"{hdr.get('INSTRUME', '')}{hdr.get('DETECTOR', '')}".strip()
    return (group, tuple(ref.shape), int(ref.key[1]))


def static_part(sci: np.ndarray, static_sig: float) -> np.ndarray | None:
    """One chip's contribution: True where ``sci`` is not below ``mode - static_sig*stddev``.

    ``sci`` in the chip's SCI units (as AstroDrizzle reads it). Non-finite pixels are left
    out of the statistics and never flagged. Returns None when the chip cannot contribute (no
    finite pixel, or clipped data within one histogram bin), as AstroDrizzle skips it.
    """
    # the finite values in row order: the chip itself (no copy) when all are finite (their
    # range found in the same pass)
    vals = np.ascontiguousarray(sci).ravel()
    data_range = finite_range(vals)
    if data_range is None:
        vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return None
    try:
        # range: the data range (clipped_stats' default)
        st = clipped_stats(vals, nclip=3, lsig=3.0, usig=3.0, binwidth=0.1, mode=True,
                           data_range=data_range)
    except ValueError:
        return None
    if st.nbins < 2:
        return None
    return _not_below(sci, np.float32(st.mode - static_sig * st.stddev))


@njit(nogil=True, cache=True)
def _not_below_kernel(a, t, out):  # pragma: no cover - numba
    for i in range(a.size):
        out[i] = not a[i] < t


def _not_below(sci: np.ndarray, t: np.float32) -> np.ndarray:
    """``~(sci < t)`` (True also where ``sci`` is NaN) in one pass instead of numpy's two."""
    a = np.ascontiguousarray(sci)
    out = np.empty(a.shape, dtype=bool)
    _not_below_kernel(a.ravel(), t, out.ravel())
    return out


def _read_part(ref, static_sig: float) -> np.ndarray | None:
    try:
        with timed("read"):
            sci = ref.chip.read_sci()
    except Exception:  # an unreadable chip contributes nothing (its sky task reports it)
        return None
    with timed("stats"):
        return static_part(sci, static_sig)


def combine(a: np.ndarray | None, b: np.ndarray | None, shape: tuple[int, int]
            ) -> np.ndarray:
    """AND of two contributions (None = no contribution); all good if both are None."""
    if a is None and b is None:
        return np.ones(shape, dtype=bool)
    if a is None:
        return b
    if b is None:
        return a
    return a & b


def static_mask_tasks(chips: Sequence, prefix: str, static_sig: float = 4.0,
                      across_exposures: bool = False, detectors: Mapping | None = None
                      ) -> tuple[dict, dict]:
    """Dask tasks of the static masks of ``chips`` (:class:`hapdask.mosaic.inputs.ChipRef`).

    Parameters
    ----------
    chips : sequence of ChipRef
    prefix : str
        Key prefix: parts are ``(prefix + "-part", i)``, masks ``(prefix, s, k)``.
    static_sig : float
        AstroDrizzle's ``static_sig``.
    across_exposures : bool
        Combine the chips of all exposures per detector chip (documented AstroDrizzle) instead
        of one mask per exposure chip (drizzlepac 3.11's code, default).
    detectors : mapping chip key -> str, optional
        Detector name per chip for ``across_exposures`` (default: from the SCI header).

    Returns
    -------
    graph : dict
    keys : dict
        Chip key ``(rootname, extver)`` -> Dask key of its combined mask (bool, chip shape,
        True = good). Chips with the same signature share one key.
    """
    graph: dict = {}
    groups: dict[tuple, list[int]] = {}
    for i, ref in enumerate(chips):
        det = None if detectors is None else detectors.get(ref.key)
        groups.setdefault(signature(ref, across_exposures, det), []).append(i)
        graph[(f"{prefix}-part", i)] = (_read_part, ref, float(static_sig))
    keys: dict = {}
    for s, (sig, members) in enumerate(sorted(groups.items(), key=lambda kv: kv[1][0])):
        shape = sig[1]
        acc = None
        for k, i in enumerate(members):  # a chain of ANDs: one part held at a time
            key = (prefix, s, k)
            graph[key] = (combine, acc, (f"{prefix}-part", i), shape)
            acc = key
        for i in members:
            keys[chips[i].key] = acc
    return graph, keys


