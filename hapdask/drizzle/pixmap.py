"""Distortion-aware pixel maps between two WCSs (fast replacement of ``drizzle.utils.calc_pixmap``).

``calc_pixmap(wcs_from, wcs_to)`` returns, for every input pixel centre, its 0-based pixel
position in ``wcs_to``. For the common HST case (an astropy FITS WCS with TAN + SIP + NPOL +
D2IM on the input side, a pure TAN WCS on the output side) the whole chain is evaluated by a
numba kernel (:mod:`hapdask.drizzle._distortion`) that reproduces astropy's transform to about
1e-9 pixel and runs 10x+ faster than astropy. Anything else falls back to astropy.
"""

from __future__ import annotations

import copy
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._distortion import (
    ForwardModel,
    TanTarget,
    extract_forward,
    extract_target,
    fill_segments,
    grown_segments,
    pixmap_kernel,
    pixmap_points_kernel,
)

__all__ = ["FastModels", "calc_pixmap", "calc_pixmap_at", "fast_models", "fast_path_reason",
           "fill_segments", "grown_segments"]

log = logging.getLogger(__name__)

# The fast path is checked against astropy on a few points of the chip before use; beyond this
# difference (output pixels) it is not trusted and astropy is used instead.
_VERIFY_TOL = 1e-6
_DISABLE_BBOX = ("to", "from", "both", "none")
_MIN_BAND_ROWS = 64


def _copy_wcs(wcs: Any) -> Any:
    """Private copy of a WCS (astropy WCS objects are not thread-safe)."""
    deep = getattr(wcs, "deepcopy", None)
    if callable(deep):
        return deep()
    return copy.deepcopy(wcs)


def _bbox(wcs: Any):
    bbox = getattr(wcs, "bounding_box", None)
    if bbox is None:
        return None
    try:
        return bbox.bounding_box(order="F")
    except AttributeError:
        return tuple(bbox)


def _resolve_shape(wcs_from: Any, shape) -> tuple[int, int]:
    if shape is None:
        shape = getattr(wcs_from, "array_shape", None)
        bbox = _bbox(wcs_from)
        if shape is None and bbox is not None:
            if np.ndim(bbox) == 1:
                bbox = (bbox,)
            if np.ndim(bbox) > 1:
                shape = tuple(math.ceil(lim[1] + 0.5) for lim in bbox[::-1])
    if shape is None:
        raise ValueError(
            'calc_pixmap: the "from" WCS must have pixel_shape (array_shape) set, '
            "or pass shape=(ny, nx)"
        )
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"calc_pixmap: shape must be two positive integers (ny, nx), got {shape}")
    return shape


def _resolve_region(region, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    if region is None:
        return 0, shape[0], 0, shape[1]
    try:
        y0, y1, x0, x1 = (int(v) for v in region)
    except (TypeError, ValueError):
        raise ValueError(
            f"calc_pixmap: region must be (y0, y1, x0, x1) integers, got {region!r}"
        ) from None
    if not (0 <= y0 < y1 <= shape[0] and 0 <= x0 < x1 <= shape[1]):
        raise ValueError(
            f"calc_pixmap: region {(y0, y1, x0, x1)} (0-based, half-open) is empty or outside "
            f"the input shape {shape}"
        )
    return y0, y1, x0, x1


def _astropy_map(
    wcs_from: Any, wcs_to: Any, x: np.ndarray, y: np.ndarray, disable_bbox: str, copied=False
):
    """Exact (slow) mapping through the WCS objects' own transforms (on private copies: made
    here unless ``copied`` says the objects already are the caller's private copies)."""
    wf = wcs_from if copied else _copy_wcs(wcs_from)
    wt = wcs_to if copied else _copy_wcs(wcs_to)
    if disable_bbox in ("from", "both") and getattr(wf, "bounding_box", None) is not None:
        wf.bounding_box = None
    if disable_bbox in ("to", "both") and getattr(wt, "bounding_box", None) is not None:
        wt.bounding_box = None
    xo, yo = wt.world_to_pixel_values(*wf.pixel_to_world_values(x, y))
    return np.asarray(xo, dtype=np.float64), np.asarray(yo, dtype=np.float64)


def _fast_models(wcs_from: Any, wcs_to: Any) -> tuple[ForwardModel, TanTarget] | str:
    """The numba models of two private WCS copies (``wcs.set()`` is called on them)."""
    fwd = extract_forward(wcs_from)
    if isinstance(fwd, str):
        return fwd
    tgt = extract_target(wcs_to)
    if isinstance(tgt, str):
        return tgt
    return fwd, tgt


def _kernel_args(fwd: ForwardModel, tgt: TanTarget) -> tuple:
    """The model arguments of :func:`pixmap_kernel` (after ``xs, ys, out, lo, hi``)."""
    rot = tgt.cel_to_native @ fwd.native_to_cel
    return (*fwd.tables, fwd.table_par, fwd.sip_a, fwd.sip_b, fwd.sip_par, fwd.lin, fwd.crpix,
            rot, tgt.lin_inv, tgt.crpix)  # fmt: skip


def _run_kernel(
    args: tuple,
    y0: int,
    y1: int,
    x0: int,
    x1: int,
    lo: np.ndarray | None = None,
    hi: np.ndarray | None = None,
    threads: int = 1,
) -> np.ndarray:
    """Map of input rows ``y0:y1``, columns ``x0:x1`` (``args``: :func:`_kernel_args`); only
    ``lo[r] <= x < hi[r]`` (chip columns) of row ``r`` when ``lo``/``hi`` are given, NaN
    elsewhere. ``threads > 1`` computes bands of rows in that many threads (the kernel
    releases the GIL; every value depends only on its input pixel, so the bands give the same
    bits)."""
    n = y1 - y0
    out = np.empty((n, x1 - x0, 2), dtype=np.float64)
    if lo is None:
        lo = np.zeros(n, dtype=np.int64)
        hi = np.full(n, x1 - x0, dtype=np.int64)
    else:
        lo = np.ascontiguousarray(lo - x0, dtype=np.int64)
        hi = np.ascontiguousarray(hi - x0, dtype=np.int64)
    xs = np.arange(x0, x1, dtype=np.int64)
    ys = np.arange(y0, y1, dtype=np.int64)

    def band(r0: int, r1: int) -> None:
        pixmap_kernel(xs, ys[r0:r1], out[r0:r1], lo[r0:r1], hi[r0:r1], *args)

    # bands of at least _MIN_BAND_ROWS rows: below that a thread costs more than it saves
    nb = max(1, min(int(threads), n // _MIN_BAND_ROWS))
    if nb == 1:
        band(0, n)
        return out
    edges = [n * k // nb for k in range(nb + 1)]
    with ThreadPoolExecutor(max_workers=nb) as pool:
        for f in [pool.submit(band, a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]:
            f.result()
    return out


def _verify_points(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Columns and rows (int64) of the 5 x 5 grid of check points of a chip."""
    ny, nx = shape
    gx = np.unique(np.linspace(0.0, nx - 1.0, 5).round()).astype(np.int64)
    gy = np.unique(np.linspace(0.0, ny - 1.0, 5).round()).astype(np.int64)
    return gx, gy


def _kernel_points(fwd: ForwardModel, tgt: TanTarget, gx: np.ndarray, gy: np.ndarray):
    """The kernel's map of the grid ``gx`` x ``gy`` (one call), ``(len(gy), len(gx), 2)``."""
    out = np.empty((gy.size, gx.size, 2))
    lo = np.zeros(gy.size, dtype=np.int64)
    hi = np.full(gy.size, gx.size, dtype=np.int64)
    pixmap_kernel(gx, gy, out, lo, hi, *_kernel_args(fwd, tgt))
    return out


def fast_path_reason(wcs_from: Any, wcs_to: Any, shape=None) -> str | None:
    """Say why :func:`calc_pixmap` would use astropy instead of its numba path.

    Parameters
    ----------
    wcs_from, wcs_to : WCS
        As for :func:`calc_pixmap`.
    shape : tuple of int, optional
        ``(ny, nx)`` of the input chip, as for :func:`calc_pixmap`.

    Returns
    -------
    str or None
        ``None`` if the fast numba path is used, else the reason for the fallback.
    """
    shape = _resolve_shape(wcs_from, shape)
    res = _select(wcs_from, wcs_to, shape, "none")
    return res if isinstance(res, str) else None


@dataclass(frozen=True)
class FastModels:
    """The numba path's models of a pair of WCSs, checked against astropy (:func:`fast_models`).

    Attributes
    ----------
    shape : (ny, nx)
        The input chip's shape (the check points' grid).
    args : tuple
        The model arrays (read-only use) of the map kernels.
    """

    shape: tuple[int, int]
    args: tuple


def fast_models(wcs_from: Any, wcs_to: Any, shape=None) -> FastModels | str:
    """The numba path's models of two WCSs, checked against astropy once, for many
    :func:`calc_pixmap_at` calls (``models=``) on the same pair.

    Parameters
    ----------
    wcs_from, wcs_to, shape
        As for :func:`calc_pixmap` (``disable_bbox`` is ``"to"``); the objects are not
        modified (private copies are used).

    Returns
    -------
    FastModels or str
        The models, or why the numba path does not apply (:func:`fast_path_reason`).
    """
    shape = _resolve_shape(wcs_from, shape)
    sel = _select(wcs_from, wcs_to, shape, "to")
    if isinstance(sel, str):
        return sel
    return FastModels(shape, _kernel_args(sel[0], sel[1]))


def _select(wcs_from: Any, wcs_to: Any, shape: tuple[int, int], disable_bbox: str):
    # one private copy of each WCS serves both the model extraction and the astropy check
    # (wcslib's set() done by the extraction is what any transform would do first)
    wf = _copy_wcs(wcs_from)
    wt = _copy_wcs(wcs_to)
    res = _fast_models(wf, wt)
    if isinstance(res, str):
        return res
    fwd, tgt = res
    # Explicit check of the fast path against astropy on a 5x5 grid of the *whole chip* (never
    # the region, so that the choice cannot differ between tiles of one chip): anything the
    # header carries that the kernel does not model (e.g. wcslib-native distortions) shows up.
    gx, gy = _verify_points(shape)
    x, y = (v.ravel().astype(np.float64) for v in np.meshgrid(gx, gy))
    try:
        xa, ya = _astropy_map(wf, wt, x, y, disable_bbox, copied=True)
    except Exception as exc:  # astropy itself fails: let the fallback path raise it
        return f"astropy check of the fast path failed: {exc}"
    mine = _kernel_points(fwd, tgt, gx, gy).reshape(-1, 2)
    err = np.hypot(mine[:, 0] - xa, mine[:, 1] - ya)
    both_nan = np.isnan(mine[:, 0]) & np.isnan(xa)
    err = np.where(both_nan, 0.0, err)
    if not np.all(err <= _VERIFY_TOL):
        return (
            f"fast path differs from astropy by up to {np.nanmax(err):.3g} px on check points "
            "(unsupported WCS feature)"
        )
    return fwd, tgt


def calc_pixmap(
    wcs_from: Any,
    wcs_to: Any,
    shape: tuple[int, int] | None = None,
    disable_bbox: str = "to",
    *,
    region: tuple[int, int, int, int] | None = None,
    spans: tuple[np.ndarray, np.ndarray] | None = None,
    threads: int = 1,
    models: FastModels | None = None,
) -> np.ndarray:
    """Map every input pixel centre to 0-based pixel coordinates of another WCS.

    Compatible with ``drizzle.utils.calc_pixmap`` (drizzle 3.0), plus ``region`` for tiles.
    ``pixmap[j, i] = (x, y)`` is the position, in **0-based** pixel coordinates of ``wcs_to``,
    of the centre of **0-based** input pixel ``(i, j)`` (column ``i``, row ``j``) of
    ``wcs_from``; it equals ``wcs_to.world_to_pixel_values(*wcs_from.pixel_to_world_values(i,
    j))``.

    Fast path: if ``wcs_from`` is an astropy FITS WCS with a TAN projection and any of SIP,
    NPOL (``CPDISj`` / ``WCSDVARR``) and D2IM (``D2IMDISj`` / ``D2IMARR``) distortions, as
    astropy loads them with ``WCS(header, fobj=hdulist)``, and ``wcs_to`` is a pure TAN astropy
    WCS, the exact transform is evaluated in numba (see :mod:`hapdask.drizzle._distortion`);
    it agrees with astropy to about 1e-9 pixel and is checked against astropy on a 5x5 grid of
    the chip (tolerance 1e-6 pixel) before use. Otherwise (other projections, distortion on
    ``wcs_to``, gwcs objects, wcslib-native distortions...) the WCS objects' own transforms
    are used, which is exact but slow. :func:`fast_path_reason` says which path is taken.

    Thread safety: the WCS objects passed in are never modified or used for transforms; each
    call works on private copies, so several threads may pass the same WCS objects at once.

    Parameters
    ----------
    wcs_from : astropy.wcs.WCS or gwcs-like
        WCS of the input image. Its ``array_shape`` gives the pixmap shape unless ``shape`` is
        given.
    wcs_to : astropy.wcs.WCS or gwcs-like
        WCS of the output frame.
    shape : tuple of int, optional
        ``(ny, nx)`` of the input image (numpy order); takes precedence over
        ``wcs_from.array_shape``.
    disable_bbox : {"to", "from", "both", "none"}, optional
        Which WCS's ``bounding_box`` to ignore (only meaningful for gwcs-like objects; astropy
        FITS WCSs have none). Default "to", as in drizzle.
    region : tuple of int, optional
        ``(y0, y1, x0, x1)``, 0-based, half-open, within ``shape``: compute only these input
        pixels. On the numba path the values are bit-identical to
        ``calc_pixmap(...)[y0:y1, x0:x1]`` (each value depends only on the absolute input
        pixel; the path choice is checked on the whole chip, never on the region). On the
        astropy path this holds for direct transforms, but not for a distorted ``wcs_to``:
        astropy's iterative inverse (tolerance 1e-4 pixel) iterates until the worst point of
        the batch converges, so values can differ below that tolerance.
    spans : (lo, hi), optional
        Two integer arrays of the region's (or chip's) height: compute only input columns
        ``lo[r] <= x < hi[r]`` (chip columns, inside the region) of its row ``r``; the other
        pixels are NaN. The values computed are those of the call without ``spans``.
    threads : int, optional
        On the numba path, compute bands of rows (at least 64 each) in up to this many
        threads; the values are those of ``threads=1``. For callers that map a whole chip
        while no other work runs (the client before a graph starts); leave it at 1 inside
        tasks that already keep every core busy. Ignored on the astropy path.
    models : FastModels, optional
        :func:`fast_models` of the same WCSs and shape, kept by the caller for many calls on
        the same pair: the numba path without repeating the WCS copies and the astropy check
        (the same values).

    Returns
    -------
    numpy.ndarray
        float64, C-contiguous, shape ``(ny, nx, 2)`` (or ``(y1 - y0, x1 - x0, 2)`` with
        ``region``); ``[..., 0]`` is x and ``[..., 1]`` is y. Points on the far side of the
        output TAN projection are NaN.

    Raises
    ------
    ValueError
        If the shape cannot be determined, or ``region``/``disable_bbox`` are invalid.
    """
    if disable_bbox not in _DISABLE_BBOX:
        raise ValueError(
            f"calc_pixmap: disable_bbox must be one of {_DISABLE_BBOX}, got {disable_bbox!r}"
        )
    if int(threads) < 1:
        raise ValueError(f"calc_pixmap: threads must be >= 1, got {threads!r}")
    shape = _resolve_shape(wcs_from, shape)
    y0, y1, x0, x1 = _resolve_region(region, shape)
    if models is not None:
        if models.shape != shape:
            raise ValueError(f"calc_pixmap: models of shape {models.shape}, not {shape}")
        sel = models.args
    else:
        sel = _select(wcs_from, wcs_to, shape, disable_bbox)
        if isinstance(sel, str):
            log.debug("calc_pixmap: using astropy (%s)", sel)
        else:
            sel = _kernel_args(*sel)

    def rect(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        if not isinstance(sel, str):
            return _run_kernel(sel, r0, r1, c0, c1, threads=threads)
        y, x = np.mgrid[r0:r1, c0:c1].astype(np.float64)
        xo, yo = _astropy_map(wcs_from, wcs_to, x, y, disable_bbox)
        return np.stack([xo, yo], axis=-1)

    if spans is None:
        return np.ascontiguousarray(rect(y0, y1, x0, x1))
    lo, hi = (np.asarray(v, dtype=np.int64) for v in spans)
    if lo.shape != (y1 - y0,) or hi.shape != (y1 - y0,):
        raise ValueError(
            f"calc_pixmap: spans must be two arrays of the region's height {y1 - y0}, got "
            f"shapes {lo.shape} and {hi.shape}"
        )
    used = hi > lo
    if np.any(used & ((lo < x0) | (hi > x1))):
        raise ValueError(f"calc_pixmap: spans leave the region's columns [{x0}, {x1})")
    if not isinstance(sel, str):  # one kernel call; it writes the NaN around the spans
        return _run_kernel(sel, y0, y1, x0, x1, np.where(used, lo, x0),
                           np.where(used, hi, x0), threads)  # fmt: skip
    # every value is written once: the spans from astropy, NaN only around them
    out = np.empty((y1 - y0, x1 - x0, 2))
    r = 0
    n = y1 - y0
    while r < n:
        e = r + 1
        while e < n and lo[e] == lo[r] and hi[e] == hi[r]:
            e += 1
        if used[r]:
            a, b = int(lo[r]) - x0, int(hi[r]) - x0
            out[r:e, :a] = np.nan
            out[r:e, b:] = np.nan
            out[r:e, a:b] = rect(y0 + r, y0 + e, int(lo[r]), int(hi[r]))
        else:
            out[r:e] = np.nan
        r = e
    return out


def calc_pixmap_at(
    wcs_from: Any,
    wcs_to: Any,
    need: np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray],
    shape: tuple[int, int] | None = None,
    *,
    region: tuple[int, int, int, int] | None = None,
    out: np.ndarray | None = None,
    models: FastModels | str | None = None,
) -> np.ndarray | None:
    """:func:`calc_pixmap` of a region at some of its pixels only, on the numba path.

    For a sparse set of pixels (e.g. the neighbourhoods of a chip's cosmic-ray pixels), whose
    map would otherwise be computed or read for the whole region. Each row's pixels go to the
    kernel together (:func:`~hapdask.drizzle._distortion.pixmap_segments_kernel`): the values
    are bit-identical to those of ``calc_pixmap(wcs_from, wcs_to, shape, region=region)`` at
    the same pixels.

    Parameters
    ----------
    wcs_from, wcs_to, shape, region
        As for :func:`calc_pixmap` (``disable_bbox`` is ``"to"``).
    need : bool array or (ptr, lo, hi)
        The region's shape: True where the map is wanted. Or the same as row segments, three
        int64 arrays: row ``r``'s wanted columns (0-based in the region) are ``lo[k] <= i <
        hi[k]`` for ``k`` in ``ptr[r]:ptr[r + 1]`` (``ptr``: the region's height + 1 entries;
        segments increasing, not overlapping), as
        :func:`~hapdask.drizzle._distortion.grown_segments` gives them.
    out : float64 array, optional
        The region's shape + ``(2,)``, C-contiguous: written at ``need`` only (and returned),
        the caller keeping it NaN elsewhere (e.g. a buffer reset there after each use, which
        spares writing the whole region).
    models : FastModels or str, optional
        :func:`fast_models` of the same WCSs and shape (e.g. kept for many calls): the check
        against astropy is not repeated, and the WCSs are not used (``wcs_from`` may be None
        when ``shape`` is given). A str (no numba path) returns None at once.

    Returns
    -------
    numpy.ndarray or None
        float64 ``(y1 - y0, x1 - x0, 2)``: the map where ``need``, NaN elsewhere; None when
        the numba path does not apply (:func:`fast_path_reason`): the caller then computes or
        reads the whole map instead.

    Raises
    ------
    ValueError
        If the shape cannot be determined, or ``region``/``need``/``models`` are invalid.
    """
    shape = _resolve_shape(wcs_from, shape)
    y0, y1, x0, x1 = _resolve_region(region, shape)
    ny, nx = y1 - y0, x1 - x0
    if isinstance(need, tuple):
        ptr, lo, hi = (np.ascontiguousarray(v, dtype=np.int64) for v in need)
        if (ptr.shape != (ny + 1,) or ptr[0] != 0 or np.any(np.diff(ptr) < 0)
                or lo.shape != hi.shape or lo.shape != (int(ptr[-1]),)
                or np.any(lo < 0) or np.any(hi > nx)):
            raise ValueError(f"calc_pixmap_at: need segments do not fit the region {(ny, nx)}")
        need = (ptr, lo, hi)
    else:
        need = np.ascontiguousarray(need, dtype=bool)
        if need.shape != (ny, nx):
            raise ValueError(f"calc_pixmap_at: need has shape {need.shape}, the region {(ny, nx)}")
    fill = out is None
    if not fill and (out.shape != (ny, nx, 2) or out.dtype != np.float64
                     or not out.flags.c_contiguous or not out.flags.writeable):
        raise ValueError("calc_pixmap_at: out must be a writeable C-contiguous float64 array "
                         f"of shape {(ny, nx, 2)}")
    if models is None:
        models = fast_models(wcs_from, wcs_to, shape)
    if isinstance(models, str):
        log.debug("calc_pixmap_at: no numba path (%s)", models)
        return None
    if models.shape != shape:
        raise ValueError(f"calc_pixmap_at: models of shape {models.shape}, not {shape}")
    if fill:
        out = np.empty((ny, nx, 2))
    pixmap_points_kernel(need, y0, x0, out, fill, *models.args)
    return out
