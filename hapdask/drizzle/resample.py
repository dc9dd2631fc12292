"""``Drizzle``: drop-in replacement for ``drizzle.resample.Drizzle`` (3.0) on numba kernels.

Switching is a one-line change::

    from hapdask.drizzle import Drizzle        # instead of: from drizzle.resample import Drizzle

Outputs follow the C code's running weighted mean: after each :meth:`Drizzle.add_image`,
``out_img = sum(w d) / sum(w)`` and ``out_wht = sum(w)`` over everything added so far, so a caller
who passes existing ``out_img``/``out_wht`` (from the C package or from us) continues them exactly
as the C code would. Each contribution updates the float32 outputs in place with the C formula
(no scratch accumulators, no merge pass), so ``out_img`` differs from the C result only by the
order of the contributions (input column strips; ~1e-7 relative). The exception is lanczos
without ``data2``/``dq``: its weighted sums are formed in float64 per image and divided once.

``data2`` (variance-like images, drizzled with squared weights into ``out_img2``) and ``dq`` (bit
fields OR-ed into ``out_dq``) follow drizzle C 3.0: ``out_img2 = sum(w**2 d2) / sum(w)**2`` in
the same running form, ``d2`` scaled by ``iscale**2`` (``/ exptime**2`` for counts).

The deliberate deviations from the C code are listed in the :class:`Drizzle` docstring.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from hapdask.drizzle import _kernels as K
from hapdask.drizzle.tile import (
    KERNELS,
    _check_kernel_args,
    _reach_params,
    _run_kernel,
    context_mask,
)

CTX_PLANE_BITS = 32
_DEPRECATED = object()


def _process_fillval(out_img, fillval) -> str:
    """Return the fill value as the C code keeps it: a number as text, "INDEF" or "NaN"."""
    if fillval is None:
        fv = "INDEF"
    elif isinstance(fillval, str):
        fv = fillval.strip()
        if fv.upper() in ("", "INDEF"):
            fv = "INDEF"
        else:
            try:
                float(fv)
            except ValueError:
                raise ValueError(f"fillval {fillval!r} is neither a number nor 'INDEF'") from None
    else:
        fv = str(float(fillval))
    if out_img is None and fv == "INDEF":
        fv = "NaN"
    return fv


def _window(ymn: float, ymx: float, xmn: float, xmx: float, oh: int, ow: int) -> tuple:
    """Output slices holding a footprint extent (one pixel of margin), clipped to the output."""
    wy0 = max(int(math.floor(ymn + 0.5)) - 1, 0)
    wy1 = min(int(math.floor(ymx + 0.5)) + 2, oh)
    wx0 = max(int(math.floor(xmn + 0.5)) - 1, 0)
    wx1 = min(int(math.floor(xmx + 0.5)) + 2, ow)
    return slice(wy0, wy1), slice(wx0, wx1)


def _point_width(pixmap: np.ndarray, box: tuple[int, int, int, int]) -> int:
    """Strip width for the point kernel (0: whole input rows, C's raster order).

    In raster order the output lines an input row touches stay cached until the next row
    reuses them only if they fit in the cache: about ``ncols * |dy/di|`` lines in each of the 3
    outputs (image, weight, context). Above ~2700 such lines per row (~512 KiB) the kernel scans
    ``POINT_STRIP``-column strips instead: on the bench_kernels chip (4096 columns,
    ``|dy/di|`` = 0.88) 1.3-1.45x faster; below, strips were 0.5-0.75x as fast as rows (input
    rows no longer streamed; synthetic maps rotated by 0-15 deg), so rows stay. ``|dy/di|`` is
    the median over the middle row of the box.
    """
    y0, y1, x0, x1 = box
    if x1 - x0 < 2 * K.POINT_STRIP:
        return 0
    row = pixmap[(y0 + y1) // 2, x0:x1, 1]
    with np.errstate(invalid="ignore"):
        step = np.abs(np.diff(row[:: max((x1 - x0) // 256, 1)])) / max((x1 - x0) // 256, 1)
    step = step[np.isfinite(step)]
    if step.size == 0 or (x1 - x0) * float(np.median(step)) <= 2700.0:
        return 0
    return K.POINT_STRIP


def estimate_pixel_scale_ratio(pixmap: np.ndarray) -> float:
    """Estimate the pixel scale ratio at the valid pixel nearest the centre of the valid region.

    Parameters
    ----------
    pixmap : (ny, nx, 2) array
        0-based output ``(x, y)`` of every input pixel centre.

    Returns
    -------
    float
        The pixel scale ratio, output pixel size / input pixel size: ``1 / sqrt(|det J|)`` where
        ``J`` is the pixmap's Jacobian (input pixel area in output pixels is ``|det J|``).
    """
    ok = np.isfinite(pixmap).all(axis=2)
    ok[-1, :] = False
    ok[:, -1] = False
    ok[:-1, :-1] &= ok[1:, :-1] & ok[:-1, 1:]
    jj, ii = np.nonzero(ok)
    if jj.size == 0:
        raise ValueError("cannot estimate pixel_scale_ratio: no valid 2x2 block in the pixmap")
    k = np.argmin((jj - jj.mean()) ** 2 + (ii - ii.mean()) ** 2)
    j, i = jj[k], ii[k]
    dx = pixmap[j, i + 1] - pixmap[j, i]
    dy = pixmap[j + 1, i] - pixmap[j, i]
    det = abs(dx[0] * dy[1] - dx[1] * dy[0])
    if det == 0.0:
        raise ValueError("cannot estimate pixel_scale_ratio: the pixmap is degenerate")
    # input pixel area in output pixels is det; the C ratio is output size / input size
    return float(1.0 / math.sqrt(det))


class Drizzle:
    """Resample and co-add images onto one output grid (API of ``drizzle.resample.Drizzle`` 3.0).

    Parameters
    ----------
    kernel : str
        ``square`` (default), ``point``, ``turbo``, ``gaussian``, ``lanczos2`` or ``lanczos3``.
    fillval : float, str or None
        Output value where nothing contributed. None or "INDEF" leaves a supplied ``out_img``
        untouched there (a new ``out_img`` starts as NaN); otherwise such pixels are set to it
        after every :meth:`add_image`.
    out_shape : (ny, nx), optional
        Output shape, when no output arrays are given.
    out_img, out_wht : (ny, nx) float32 arrays, optional
        Running mean and weight to continue (updated in place when float32 and C-contiguous,
        otherwise copied; read them back from the properties).
    out_ctx : (ny, nx) or (nplanes, ny, nx) int32 array, optional
        Context bit planes to continue.
    exptime : float
        Total exposure time already in ``out_img``/``out_wht`` (0 for a new output).
    begin_ctx_id : int
        0-based context id of the first image added.
    max_ctx_id : int, optional
        Largest expected context id (pre-allocates planes); planes are added as needed anyway.
    disable_ctx : bool
        Do not keep a context image.
    fillval2 : float, str or None
        As ``fillval``, for ``out_img2``.
    out_img2 : (ny, nx) float32 array or list of them (items may be None), optional
        Images co-added with squared weights to continue (one per ``data2`` array of
        :meth:`add_image`); created on the first ``add_image`` with ``data2`` otherwise.
    out_dq : (ny, nx) unsigned integer array, optional
        Output DQ to continue (OR of the contributing input DQ bit fields).

    Notes
    -----
    Deliberate deviations from the C code (drizzle_kernels.md section 8), each covered by a test in
    ``tests/drizzle/test_drizzle_resample.py``:

    * **NaN in the pixmap** only removes the pixel(s) whose own centre is NaN. Square-kernel
      neighbours, whose corners the C code interpolates through the NaN (leaving a 3x3 hole), get
      their corners from a local Jacobian of their valid neighbours instead; and a NaN never turns
      the whole call into a silent no-op (the C scanner's failure mode).
    * **Pixels whose centre maps just off the output** still add the part of their footprint that
      lands on it (the C scanner drops them), so edge output pixels get their full weight.
    * **lanczos2/lanczos3 weights are normalised** per input pixel to sum to the pixel weight (the
      C weights sum to about ``1 / pixel_scale_ratio**2``), so ``out_wht`` is comparable between
      kernels and scales. ``out_img`` changes only at the 1e-3 level (sub-pixel variation of the
      sum).
    * **Negative lanczos lobes**: within one image the weighted sums are formed in float64 and
      divided once, so ``out_img`` stays exact where the C float32 running mean loses all its
      digits because the partial weight sum passes near 0 (seen on real data: 0.4 % off at one
      pixel in 10^6). Across images the running mean is C's, so this holds per image only.
    * **Degenerate square footprints** (zero area, e.g. a collapsed pixmap) are skipped instead of
      adding infinite weight.
    * ``pixel_scale_ratio=None`` is estimated as ``1 / sqrt|det J|`` of the pixmap (output pixel
      size over input pixel size, the documented meaning). The C code uses ``sqrt|det J|``, the
      inverse, which sizes turbo/gaussian/lanczos kernels wrongly whenever the scales differ.
    * A running weight sum that cancels to exactly 0 (negative lanczos lobes, ``data2``/``dq``
      given) leaves NaN, then the fill value; the C code divides by 0 there.
    * ``out_shape`` inferred from the pixmap (no output shape given at all) is ``(ny, nx)``; the C
      code returns it transposed.
    * :meth:`Drizzle.add_image` returns ``(nmiss, nskip)`` defined as: input pixels of the box that
      contribute nothing (zero weight, NaN pixmap, footprint off the output, degenerate square
      footprint), and rows of the box with no contributing pixel (the C counts are unreliable,
      even negative). The kernels count them as they go.
    """

    def __init__(
        self,
        kernel: str = "square",
        fillval: float | str | None = None,
        out_shape: tuple[int, int] | None = None,
        out_img: np.ndarray | None = None,
        out_wht: np.ndarray | None = None,
        out_ctx: np.ndarray | None = None,
        exptime: float = 0.0,
        begin_ctx_id: int = 0,
        max_ctx_id: int | None = None,
        disable_ctx: bool = False,
        fillval2: float | str | None = None,
        out_img2: np.ndarray | list | None = None,
        out_dq: np.ndarray | None = None,
    ) -> None:
        if kernel.lower() not in KERNELS:
            raise ValueError(f"Kernel '{kernel}' is not supported; use one of {', '.join(KERNELS)}")
        self._kernel = kernel.lower()
        self._disable_ctx = bool(disable_ctx)
        if self._disable_ctx:
            self._ctx_id = None
            self._max_ctx_id = None
        else:
            if begin_ctx_id < 0:
                raise ValueError(f"Invalid context image ID begin_ctx_id={begin_ctx_id} (< 0)")
            if max_ctx_id is None:
                max_ctx_id = begin_ctx_id
            elif max_ctx_id < begin_ctx_id:
                raise ValueError("'max_ctx_id' cannot be smaller than 'begin_ctx_id'.")
            self._ctx_id = int(begin_ctx_id)
            self._max_ctx_id = int(max_ctx_id)
        if exptime < 0.0:
            raise ValueError(f"Exposure time must be non-negative, got {exptime}")
        if exptime > 0.0 and out_img is None and out_ctx is None and out_wht is None:
            raise ValueError(
                "Exposure time must be 0.0 for the first resampling "
                "(when no output resampled images have been provided)."
            )
        if exptime == 0.0 and (
            (out_ctx is not None and np.any(out_ctx))
            or (out_wht is not None and np.sum(out_wht) > 0)
        ):
            raise ValueError(
                "Inconsistent exposure time and context and/or weight images: exposure time "
                "cannot be 0 when context and/or weight arrays are non-zero."
            )
        self._texptime = float(exptime)
        self._fillval = _process_fillval(out_img, fillval)
        self._fillval2 = _process_fillval(out_img2, fillval2)
        # True while "out_wht == 0 implies out_img == fillval" holds everywhere (always, for an
        # out_img we created); until then the first add_image fills the whole output
        self._filled_once = out_img is None
        self._filled2_once = out_img2 is None
        self._ncoadds = 0
        self._out_dq = None
        if out_dq is not None:
            out_dq = np.asarray(out_dq)
            if out_dq.dtype.kind not in "iu" or out_dq.dtype.itemsize > 4:
                raise TypeError(
                    "'out_dq' must be of an unsigned integer type with itemsize of 4 bytes or less"
                )
            self._out_dq = np.asarray(out_dq, dtype=np.uint32)

        shapes = set()
        if out_img is not None:
            out_img = np.asarray(out_img, dtype=np.float32)
            shapes.add(out_img.shape)
        if out_wht is not None:
            out_wht = np.asarray(out_wht, dtype=np.float32)
            shapes.add(out_wht.shape)
        if out_ctx is not None:
            out_ctx = np.asarray(out_ctx, dtype=np.int32)
            if out_ctx.ndim == 2:
                out_ctx = out_ctx[None, :, :]
            elif out_ctx.ndim != 3:
                raise ValueError(f"'out_ctx' must be a 2D or 3D array, got {out_ctx.ndim}D")
            shapes.add(out_ctx.shape[1:])
        if self._out_dq is not None:
            shapes.add(self._out_dq.shape)
        if out_shape is not None:
            shapes.add(tuple(int(v) for v in out_shape))
        if out_img2 is not None:
            out_img2 = [out_img2] if isinstance(out_img2, np.ndarray) else list(out_img2)
            for k, img in enumerate(out_img2):
                if img is not None:
                    out_img2[k] = np.asarray(img, dtype=np.float32)
                    shapes.add(out_img2[k].shape)
        for s in shapes:
            if len(s) != 2:
                raise ValueError(f"output arrays must be 2-D, got shape {s}")
        if len(shapes) > 1:
            raise ValueError(
                "Inconsistent data shapes specified: 'out_shape' and/or out_img, out_img2, "
                f"out_wht, out_ctx, out_dq have different shapes: {sorted(shapes)}"
            )
        self._out_shape = shapes.pop() if shapes else None
        self._out_img = self._out_wht = self._out_ctx = None
        if self._out_shape is not None:
            self._alloc(out_img, out_wht, out_ctx)
        # out_img2: a list (None items are created with the output shape when it is known)
        self._out_img2 = out_img2
        if out_img2 is not None and self._out_shape is not None:
            self._alloc2(len(out_img2))

    def _alloc(self, out_img, out_wht, out_ctx) -> None:
        shape = self._out_shape
        self._out_wht = np.zeros(shape, np.float32) if out_wht is None else out_wht
        if self._disable_ctx:
            self._out_ctx = None
        else:
            if out_ctx is None:
                nplanes = self._max_ctx_id // CTX_PLANE_BITS + 1
                self._out_ctx = np.zeros((nplanes,) + shape, np.int32)
            else:
                self._out_ctx = out_ctx
                if out_wht is not None and np.any(
                    (self._out_wht > 0) != (np.bitwise_or.reduce(self._out_ctx, axis=0) != 0)
                ):
                    raise ValueError(
                        "Inconsistent values of supplied 'out_wht' and 'out_ctx' arrays. Pixels "
                        "with non-zero context values must have positive weights and vice-versa."
                    )
        if out_img is None:
            fv = np.nan if self._fillval.upper() in ("INDEF", "NAN") else float(self._fillval)
            self._out_img = np.full(shape, fv, np.float32)
        else:
            self._out_img = out_img

    # --- properties (same names as drizzle.resample.Drizzle) ---------------------------------
    @property
    def fillval(self) -> str:
        """Fill value for output pixels without contributions (as text, like the C package)."""
        return self._fillval

    @property
    def kernel(self) -> str:
        """Resampling kernel."""
        return self._kernel

    @property
    def ctx_id(self) -> int | None:
        """Context id (0-based) of the next image to be added."""
        return self._ctx_id

    @property
    def out_img(self) -> np.ndarray | None:
        """Output resampled image (running weighted mean), float32."""
        return self._out_img

    @property
    def out_wht(self) -> np.ndarray | None:
        """Output weight image, float32."""
        return self._out_wht

    @property
    def out_ctx(self) -> np.ndarray | None:
        """Output context bit planes, int32 ``(nplanes, ny, nx)``."""
        return self._out_ctx

    @property
    def fillval2(self) -> str:
        """Fill value of ``out_img2`` where nothing contributed (as text)."""
        return self._fillval2

    @property
    def out_img2(self) -> list[np.ndarray] | None:
        """Images drizzled with squared weights (list, one per ``data2`` array), float32."""
        return self._out_img2

    @property
    def out_dq(self) -> np.ndarray | None:
        """OR of the DQ bit fields of the input pixels contributing to each output pixel."""
        return self._out_dq

    @property
    def total_exptime(self) -> float:
        """Total exposure time of all resampled images."""
        return self._texptime

    def _fv2(self) -> np.float32:
        return np.float32(
            np.nan if self._fillval2.upper() in ("INDEF", "NAN") else float(self._fillval2)
        )

    def _alloc2(self, ninputs2: int | None) -> None:
        """Create or check ``out_img2`` for ``ninputs2`` data2 arrays (drizzle C's rules)."""
        if self._out_img2 is None:
            if ninputs2 is None or ninputs2 < 1:
                return
            if self._ncoadds > 0:
                raise ValueError(
                    "Mismatch between the number of 'out_img2' images and the number of inputs."
                )
            self._out_img2 = [None] * ninputs2
        for k, img in enumerate(self._out_img2):
            if img is None:
                self._out_img2[k] = np.full(self._out_shape, self._fv2(), np.float32)
            elif img.shape != self._out_shape:
                raise ValueError(
                    f"'out_img2'[{k}] shape {img.shape} differs from the output shape "
                    f"{self._out_shape}"
                )
        nimg2 = len(self._out_img2)
        if (ninputs2 is not None and ninputs2 != nimg2) or (ninputs2 is None and nimg2 > 0):
            raise ValueError(
                "Mismatch between the number of 'out_img2' images previously set and the "
                "number of inputs."
            )

    def _next_ctx(self) -> tuple[int, int] | tuple[None, int]:
        if self._disable_ctx:
            return None, 0
        plane = self._ctx_id // CTX_PLANE_BITS
        if plane >= self._out_ctx.shape[0]:
            extra = np.zeros((plane + 1 - self._out_ctx.shape[0],) + self._out_shape, np.int32)
            self._out_ctx = np.concatenate([self._out_ctx, extra], axis=0)
        ctx_id = self._ctx_id
        self._ctx_id += 1
        return plane, ctx_id

    def add_image(
        self,
        data: np.ndarray,
        exptime: float,
        pixmap: np.ndarray,
        data2=None,
        dq=None,
        scale=_DEPRECATED,
        iscale: float = 1.0,
        pixel_scale_ratio: float | None = 1.0,
        weight_map: np.ndarray | None = None,
        wht_scale: float = 1.0,
        pixfrac: float = 1.0,
        in_units: str = "cps",
        xmin: int | None = None,
        xmax: int | None = None,
        ymin: int | None = None,
        ymax: int | None = None,
    ) -> tuple[int, int]:
        """Resample ``data`` onto the output and fold it into the running mean.

        Parameters
        ----------
        data : (ny, nx) array
            Input image (cast to float32). Give NaN or bad pixels weight 0.
        exptime : float
            Exposure time (> 0); added to ``total_exptime``; divides the data if
            ``in_units == "counts"``.
        pixmap : (ny, nx, 2) array
            0-based output ``(x, y)`` of every input pixel centre; NaN for pixels to ignore.
        data2 : (ny, nx) array or list of them (items may be None), optional
            Variance-like image(s) resampled with squared weights into ``out_img2`` (one output
            per item; a None item counts as zeros, as in drizzle C): ``out_img2 = sum(w**2 d2) /
            sum(w)**2``, ``d2`` multiplied by ``iscale**2`` (divided by ``exptime**2`` for
            counts). Once used, every call needs the same number of items (as drizzle C).
        dq : (ny, nx) unsigned integer array (<= 32 bits), optional
            DQ bit fields OR-ed into ``out_dq`` over the input pixels that contribute to each
            output pixel.
        scale : float, deprecated
            Sets ``iscale = scale**2`` and ``pixel_scale_ratio = scale``.
        iscale : float
            Multiplies the data.
        pixel_scale_ratio : float or None
            Output / input pixel size (kernel size of turbo, gaussian, lanczos); None estimates it
            from the pixmap.
        weight_map : (ny, nx) array, optional
            Per-pixel weights (1 if None), multiplied by ``wht_scale``.
        wht_scale : float
            Weight multiplier.
        pixfrac : float
            Linear shrink factor of input pixels; ``<= 0.001`` switches to the point kernel.
        in_units : {"cps", "counts"}
            Units of ``data``; counts are divided by ``exptime``.
        xmin, xmax, ymin, ymax : int, optional
            Inclusive, 0-based input box to drizzle (None: the full image).

        Returns
        -------
        nmiss, nskip : int
            Input pixels of the box that contribute nothing (zero weight, NaN pixmap, footprint
            off the output) and rows of the box with no contributing pixel.
        """
        if scale is not _DEPRECATED:
            warnings.warn(
                "Argument 'scale' is deprecated: use iscale=scale**2 and pixel_scale_ratio=scale",
                DeprecationWarning,
                stacklevel=2,
            )
            iscale = scale * scale
            pixel_scale_ratio = scale
        if not exptime > 0.0:
            raise ValueError(f"'exptime' must be a strictly positive number, got {exptime}")
        if in_units not in ("cps", "counts"):
            raise ValueError(f"in_units must be 'cps' or 'counts', got {in_units!r}")
        data = np.asarray(data, dtype=np.float32)
        if data.ndim != 2:
            raise ValueError(f"'data' must be 2-D, got shape {data.shape}")
        pixmap = np.asarray(pixmap, dtype=np.float64)
        if pixmap.shape != data.shape + (2,):
            raise ValueError(
                f"'pixmap' shape {pixmap.shape} is not consistent with 'data' shape {data.shape}"
            )
        if weight_map is None:
            weight = np.full(data.shape, wht_scale, np.float32)
        else:
            weight = np.asarray(weight_map, dtype=np.float32)
            if weight.shape != data.shape:
                raise ValueError(
                    f"'weight_map' shape {weight.shape} is not consistent with 'data' shape "
                    f"{data.shape}"
                )
            if wht_scale != 1.0:
                weight = weight * np.float32(wht_scale)
        if data2 is None:
            ninputs2 = None
        else:
            data2 = [data2] if isinstance(data2, np.ndarray) else list(data2)
            ninputs2 = len(data2)
            for k, d2 in enumerate(data2):
                if d2 is None or np.size(d2) == 0:
                    data2[k] = None
                elif np.shape(d2) != data.shape:
                    raise ValueError(
                        f"'data2'[{k}] shape {np.shape(d2)} is not consistent with 'data' shape "
                        f"{data.shape}"
                    )
        if dq is not None:
            dq = np.asarray(dq)
            if dq.dtype.kind not in "iu" or dq.dtype.itemsize > 4:
                raise TypeError(
                    "'dq' must be of an unsigned integer type with itemsize of 4 bytes or less, "
                    f"got {dq.dtype.name}"
                )
            if dq.shape != data.shape:
                raise ValueError(
                    f"'dq' shape {dq.shape} is not consistent with 'data' shape {data.shape}"
                )
        kernel = self._kernel
        if pixfrac <= 0.001 and kernel != "point":
            warnings.warn(
                f"pixfrac={pixfrac} <= 0.001: using the 'point' kernel",
                RuntimeWarning,
                stacklevel=2,
            )
            kernel = "point"
        if kernel.startswith("lanczos") and pixfrac != 1.0:
            warnings.warn("lanczos kernels ignore pixfrac", RuntimeWarning, stacklevel=2)
            pixfrac = 1.0
        if kernel == "point":
            pixfrac = 1.0
        if pixel_scale_ratio is None:
            pixel_scale_ratio = estimate_pixel_scale_ratio(pixmap)
        _check_kernel_args(kernel, float(pixfrac), float(pixel_scale_ratio))

        ny, nx = data.shape
        x0 = 0 if xmin is None or xmin < 0 else int(xmin)
        y0 = 0 if ymin is None or ymin < 0 else int(ymin)
        x1 = nx - 1 if xmax is None or xmax > nx - 1 else int(xmax)
        y1 = ny - 1 if ymax is None or ymax > ny - 1 else int(ymax)
        if x1 < x0 or y1 < y0:
            raise ValueError(f"empty input box x=[{xmin}, {xmax}], y=[{ymin}, {ymax}]")

        if self._out_shape is None:
            # infer the output from the pixmap range, (ny, nx) order (the C code transposes it)
            valid = pixmap[y0 : y1 + 1, x0 : x1 + 1]
            pxmin = math.floor(np.nanmin(valid[..., 0]))
            pxmax = math.ceil(np.nanmax(valid[..., 0]))
            pymin = math.floor(np.nanmin(valid[..., 1]))
            pymax = math.ceil(np.nanmax(valid[..., 1]))
            pixmap = pixmap.copy()
            pixmap[..., 0] -= pxmin
            pixmap[..., 1] -= pymin
            self._out_shape = (pymax - pymin + 1, pxmax - pxmin + 1)
            self._alloc(None, None, None)

        self._alloc2(ninputs2)
        if dq is not None and self._out_dq is None:
            self._out_dq = np.zeros(self._out_shape, np.uint32)
        plane, ctx_id = self._next_ctx()
        self._texptime += float(exptime)
        self._ncoadds += 1
        if in_units == "counts":
            iscale = iscale / exptime

        if self._out_img.shape != self._out_shape or self._out_wht.shape != self._out_shape:
            raise ValueError("out_img and out_wht do not have the output shape")
        oh, ow = self._out_shape
        pixmap = np.ascontiguousarray(pixmap)
        kind, radius = _reach_params(kernel, pixfrac, pixel_scale_ratio)
        for name in ("_out_img", "_out_wht"):
            arr = getattr(self, name)
            if not (arr.flags.c_contiguous and arr.flags.writeable):
                setattr(self, name, np.ascontiguousarray(arr).copy())
        octx = self._out_ctx[plane] if plane is not None else np.zeros((0, 0), np.int32)
        bit = 0 if plane is None else ctx_id % CTX_PLANE_BITS
        ctxmask = context_mask(bit)
        # every out_img2 plane takes part; a None data2 item contributes zeros (its weights
        # still enter the running mean), as in drizzle C 3.0
        sel = [] if data2 is None else list(range(len(data2)))
        if data2 is not None:
            data2 = [np.zeros(data.shape, np.float32) if d2 is None else d2 for d2 in data2]
        for k in sel:
            img = self._out_img2[k]
            if not (img.flags.c_contiguous and img.flags.writeable):
                self._out_img2[k] = np.ascontiguousarray(img).copy()
        if self._out_dq is not None and not (
            self._out_dq.flags.c_contiguous and self._out_dq.flags.writeable
        ):
            self._out_dq = np.ascontiguousarray(self._out_dq).copy()
        if kernel.startswith("lanczos") and not sel and dq is None:
            nmiss, nskip, window = self._add_lanczos(
                data,
                weight,
                pixmap,
                (y0, y1 + 1, x0, x1 + 1),
                octx,
                plane is not None,
                kernel,
                pixfrac,
                iscale,
                pixel_scale_ratio,
                bit,
                kind,
                radius,
            )
        else:
            # the C code's running mean, contribution by contribution, straight into the outputs
            lanczos = kernel.startswith("lanczos")
            # the kernel counts: [pixels contributing nothing, flags of rows with a hit]
            stats = np.zeros(y1 - y0 + 2, np.int64)
            window = None
            if lanczos:
                # the window where a weight sum can return to exactly 0 (negative lobes) and
                # then needs the fill value again
                ymn, ymx, xmn, xmx, _, _ = K.footprint_extent(
                    pixmap, y0, y1 + 1, x0, x1 + 1, kind, radius, oh, ow
                )
                if not math.isnan(ymn):
                    window = _window(ymn, ymx, xmn, xmx, oh, ow)
            if len(sel) == 1:
                d2 = np.ascontiguousarray(data2[sel[0]], dtype=np.float32)[None]
                out2 = self._out_img2[sel[0]][None]
            elif sel:
                d2 = np.stack([np.asarray(data2[k], dtype=np.float32) for k in sel])
                out2 = np.stack([self._out_img2[k] for k in sel])
            else:
                d2 = out2 = None
            if dq is None:
                dqi = dqo = None
            else:
                dqi = np.ascontiguousarray(dq, dtype=np.uint32)
                dqo = self._out_dq
            _run_kernel(
                kernel,
                data,
                weight,
                pixmap,
                (y0, y1 + 1, x0, x1 + 1),
                self._out_img,
                self._out_wht,
                octx,
                ctxmask,
                (0, 0),
                0,
                float(pixfrac),
                float(iscale),
                float(pixel_scale_ratio),
                True,
                (out2, d2, float(iscale) ** 2, dqi, dqo, True, stats, None),
                _point_width(pixmap, (y0, y1 + 1, x0, x1 + 1)) if kernel == "point" else 0,
            )
            if len(sel) > 1:
                for n, k in enumerate(sel):
                    self._out_img2[k][...] = out2[n]
            nmiss = int(stats[0])
            nskip = int(y1 - y0 + 1 - np.count_nonzero(stats[1:]))
        self._apply_fill(window)
        return nmiss, nskip

    def _add_lanczos(
        self,
        data,
        weight,
        pixmap,
        box,
        octx,
        use_ctx,
        kernel,
        pixfrac,
        iscale,
        pscale,
        bit,
        kind,
        radius,
    ):
        """lanczos without data2/dq: the weighted sums of the image are formed in float64 and
        divided once (negative lobes make the float32 running mean lose its digits)."""
        y0, y1, x0, x1 = box
        oh, ow = self._out_shape
        stats = np.zeros(y1 - y0 + 1, np.int64)
        ymn, ymx, xmn, xmx, _, _ = K.footprint_extent(pixmap, y0, y1, x0, x1, kind, radius, oh, ow)
        window = None if math.isnan(ymn) else _window(ymn, ymx, xmn, xmx, oh, ow)
        if window is None or window[0].stop <= window[0].start or window[1].stop <= window[1].start:
            # nothing lands on the output: every pixel misses (NaN or off the output)
            return (y1 - y0) * (x1 - x0), y1 - y0, None
        wy0, wy1 = window[0].start, window[0].stop
        wx0, wx1 = window[1].start, window[1].stop
        shape = (wy1 - wy0, wx1 - wx0)
        num = np.zeros(shape)
        den = np.zeros(shape)
        ctx = np.zeros(shape, np.int32) if use_ctx else np.zeros((0, 0), np.int32)
        ctxmask = context_mask(bit)
        _run_kernel(
            kernel,
            data,
            weight,
            pixmap,
            box,
            num,
            den,
            ctx,
            ctxmask,
            (wy0, wx0),
            0,
            float(pixfrac),
            float(iscale),
            float(pscale),
            True,
            (None, None, 1.0, None, None, None, stats, None),
        )
        K.merge_and_clear(
            self._out_img,
            self._out_wht,
            octx if use_ctx else np.zeros((1, 1), np.int32),
            num,
            den,
            ctx if use_ctx else np.zeros((1, 1), np.int32),
            wy0,
            wx0,
            use_ctx,
        )
        return int(stats[0]), int(y1 - y0 - np.count_nonzero(stats[1:])), window

    def _apply_fill(self, window) -> None:
        """Set ``out_img = fillval`` (``out_img2 = fillval2``) where ``out_wht == 0``.

        The C code does this over the whole output after every image. Here the whole output is
        filled once (unless we created ``out_img`` with the fill value); after that pixels with
        no weight keep it, so only a ``window`` where a weight sum can have returned to 0
        (lanczos) needs the pass again.
        """
        if self._fillval.upper() != "INDEF":
            fv = np.float32(float(self._fillval))
            win = window
            if not self._filled_once:
                win = (slice(None), slice(None))
                self._filled_once = True
            if win is not None:
                out = self._out_img[win]
                out[self._out_wht[win] == 0] = fv
        if self._out_img2 is not None and self._fillval2.upper() != "INDEF":
            fv2 = self._fv2()
            win = window
            if not self._filled2_once:
                win = (slice(None), slice(None))
                self._filled2_once = True
            if win is not None:
                empty = self._out_wht[win] == 0
                for img in self._out_img2:
                    img[win][empty] = fv2
