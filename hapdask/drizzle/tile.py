"""Tile mode: drizzle (part of) an input image into a window of a large output frame.

The MVM pipeline drizzles every chip into every output tile it overlaps with::

    num = np.zeros((th, tw)); den = np.zeros((th, tw))          # float64 accumulators
    ctx = np.zeros((nplanes, th, tw), np.int32)
    box = input_bbox(pixmap_chip, (y0, y0 + th, x0, x0 + tw))
    if box is not None:
        j0, j1, i0, i1 = box                                      # grow by 1 px, clip to the chip
        a0, a1, b0, b1 = max(j0 - 1, 0), min(j1 + 1, ny), max(i0 - 1, 0), min(i1 + 1, nx)
        add_to_tile(sci[a0:a1, b0:b1], wht[a0:a1, b0:b1], pixmap_chip[a0:a1, b0:b1], num, den, ctx,
                    origin=(y0, x0), in_box=(j0 - a0, j1 - a0, i0 - b0, i1 - b0), ctx_id=k,
                    in_origin=(a0, b0))
    sci_tile, wht_tile = finalize_tile(num, den)

All coordinates are 0-based pixel indices (numpy order ``(y, x)`` for shapes, windows and boxes;
the pixmap's last axis is ``(x, y)``). Whatever the tiling, the result equals one whole-frame call
to float32 rounding in ``sci``/``wht`` and exactly in ``ctx`` -- and bit for bit in ``num``/``den``
when ``in_origin`` gives the sub-array's position in the chip -- provided the arrays passed hold a
one-pixel margin around ``in_box`` wherever the chip has one: only the array edges are treated as
true input edges, where the pixel-corner positions are extrapolated.
"""

from __future__ import annotations

import math

import numpy as np

from hapdask.drizzle import _kernels as K

KERNELS = ("square", "point", "turbo", "gaussian", "lanczos2", "lanczos3")

_LUTS: dict[int, np.ndarray] = {}
_COUNT_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.uint32))



def context_mask(ctx_id: int) -> np.int32:
    """The bit of context id ``ctx_id`` in its 32-bit context plane (plane ``ctx_id // 32``),
    as the int32 value the kernels OR into that plane (bit 31 gives a negative int32)."""
    return np.array([1 << (int(ctx_id) % 32)], dtype=np.uint32).view(np.int32)[0]

def _lut(order: int) -> np.ndarray:
    lut = _LUTS.get(order)
    if lut is None:
        lut = K.lanczos_lut(order)
        _LUTS[order] = lut
    return lut


def kernel_radius(kernel: str, pixfrac: float = 1.0, pixel_scale_ratio: float = 1.0) -> float:
    """Half-size in output pixels of the footprint of the fixed-size kernels (0 for square).

    Parameters
    ----------
    kernel : str
        One of ``square``, ``point``, ``turbo``, ``gaussian``, ``lanczos2``, ``lanczos3``.
    pixfrac, pixel_scale_ratio : float
        As in :func:`add_to_tile`.
    """
    s = float(pixel_scale_ratio)
    if kernel == "square":
        return 0.0
    if kernel == "point":
        return 0.5
    if kernel == "turbo":
        return 0.5 * pixfrac / s
    if kernel == "gaussian":
        return max(2.5 * pixfrac / 2.3548 / s, 1.2 / s)
    if kernel.startswith("lanczos"):
        return int(kernel[7:]) / s
    raise ValueError(f"unknown drizzle kernel {kernel!r}; expected one of {', '.join(KERNELS)}")


def _check_kernel_args(kernel: str, pixfrac: float, pixel_scale_ratio: float) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"unknown drizzle kernel {kernel!r}; expected one of {', '.join(KERNELS)}")
    if not (math.isfinite(pixfrac) and 0.0 < pixfrac <= 1e3):
        raise ValueError(f"pixfrac must be a positive finite number, got {pixfrac!r}")
    if not (math.isfinite(pixel_scale_ratio) and pixel_scale_ratio > 0.0):
        raise ValueError(
            f"pixel_scale_ratio must be a positive finite number, got {pixel_scale_ratio!r}"
        )


def add_to_tile(
    data: np.ndarray,
    weight: np.ndarray | None,
    pixmap: np.ndarray,
    num: np.ndarray,
    den: np.ndarray,
    ctx: np.ndarray | None,
    *,
    origin: tuple[int, int],
    in_box: tuple[int, int, int, int] | None = None,
    kernel: str = "square",
    pixfrac: float = 1.0,
    iscale: float = 1.0,
    pixel_scale_ratio: float = 1.0,
    ctx_id: int = 0,
    in_origin: tuple[int, int] = (0, 0),
    lanczos_normalize: bool = True,
    data2: np.ndarray | None = None,
    num2: np.ndarray | None = None,
    dq: np.ndarray | None = None,
    out_dq: np.ndarray | None = None,
    count: np.ndarray | None = None,
) -> None:
    """Drizzle input pixels into the accumulators of one output tile (in place).

    Parameters
    ----------
    data : (ny, nx) array
        Input pixel values (cast to float32; may be a sub-region of a chip). Pixels with weight 0
        are skipped entirely, so NaN data must carry weight 0.
    weight : (ny, nx) array or None
        Input pixel weights (cast to float32); None means 1 everywhere.
    pixmap : (ny, nx, 2) float64 array
        ``pixmap[j, i] = (x, y)``: 0-based position of the centre of input pixel ``(i, j)`` in the
        big output frame. NaN marks a pixel that cannot be placed.
    num, den : (th, tw) float64 arrays
        Tile accumulators, updated in place: ``num += sum(dow * data * iscale)`` and
        ``den += sum(dow)`` where ``dow`` is the kernel weight times the pixel weight.
    ctx : (nplanes, th, tw) int32 array or None
        Context planes; bit ``ctx_id % 32`` of plane ``ctx_id // 32`` is set where ``dow > 0``.
    origin : (y0, x0)
        0-based position of the tile's pixel ``[0, 0]`` in the big output frame.
    in_box : (j0, j1, i0, i1), optional
        Half-open, 0-based box (in the indices of ``data``) of the input pixels to drizzle; None
        means all. Pixels just outside it (inside the arrays) are read to interpolate corners.
    kernel : str
        ``square`` (default), ``point``, ``turbo``, ``gaussian``, ``lanczos2`` or ``lanczos3``.
    pixfrac : float
        Linear shrink factor of the input pixel (square, turbo, gaussian; ignored by point and
        lanczos).
    iscale : float
        Multiplies the data.
    pixel_scale_ratio : float
        Output pixel size over input pixel size; sets the kernel size of turbo, gaussian, lanczos.
    ctx_id : int
        0-based context id of this input.
    in_origin : (cy0, cx0)
        0-based position of ``data[0, 0]`` in the whole chip. The input is scanned in column
        strips anchored to chip columns (for cache locality); passing the true origin of a
        sub-array keeps the order of the contributions, hence ``num``/``den``, bit-identical to
        a whole-chip call. With the default, results agree to float64 rounding only.
    lanczos_normalize : bool
        Normalise each input pixel's lanczos weights to sum to its weight (default; the C code
        does not). Only for comparisons with the C code should this be False.
    data2 : (ny, nx) array or sequence of them, optional
        Variance-like input(s) to propagate with squared weights (cast to float32; multiplied by
        ``iscale**2``). Needs ``num2``.
    num2 : (th, tw) or (n2, th, tw) float64 array, optional
        Accumulator(s) of ``data2``, updated in place: ``num2 += sum(dow**2 * data2 * iscale**2)``
        (one plane per ``data2`` array); :func:`finalize_tile` turns it into
        ``num2 / den**2``, the variance of the weighted mean (drizzle C's ``out_img2``).
    dq : (ny, nx) unsigned integer array, optional
        Input DQ bit fields (at most 32 bits). Needs ``out_dq``.
    out_dq : (th, tw) uint32 array, optional
        Output DQ, updated in place: OR of the ``dq`` of every input pixel contributing a
        non-zero weight (drizzle C's ``out_dq``).
    count : (th, tw) uint8, uint16 or uint32 array, optional
        Updated in place: +1 per input pixel giving the output pixel ``dow > 0`` (the rule of
        the context bit), i.e. how many input pixels set its context bit. The caller picks a
        dtype wide enough (no saturation: a count past its maximum wraps).

    Raises
    ------
    ValueError
        On inconsistent shapes/dtypes or bad parameters, naming the argument.
    """
    _check_kernel_args(kernel, pixfrac, pixel_scale_ratio)
    data = np.ascontiguousarray(data, dtype=np.float32)
    if data.ndim != 2:
        raise ValueError(f"data must be 2-D, got shape {data.shape}")
    ny, nx = data.shape
    if weight is None:
        weight = np.ones_like(data)
    else:
        weight = np.ascontiguousarray(weight, dtype=np.float32)
        if weight.shape != data.shape:
            raise ValueError(f"weight shape {weight.shape} differs from data shape {data.shape}")
    pixmap = np.ascontiguousarray(pixmap, dtype=np.float64)
    if pixmap.shape != (ny, nx, 2):
        raise ValueError(f"pixmap shape {pixmap.shape} must be {(ny, nx, 2)} (data shape + (2,))")
    for name, arr in (("num", num), ("den", den)):
        if not isinstance(arr, np.ndarray) or arr.dtype != np.float64 or arr.ndim != 2:
            raise ValueError(f"{name} must be a 2-D float64 array")
        if not arr.flags.c_contiguous or not arr.flags.writeable:
            raise ValueError(f"{name} must be C-contiguous and writeable (it is updated in place)")
    if num.shape != den.shape:
        raise ValueError(f"num shape {num.shape} differs from den shape {den.shape}")
    if ctx is None:
        plane = np.zeros((0, 0), np.int32)
    else:
        if not isinstance(ctx, np.ndarray) or ctx.dtype != np.int32 or ctx.ndim != 3:
            raise ValueError("ctx must be a 3-D int32 array (nplanes, th, tw) or None")
        if ctx.shape[1:] != num.shape:
            raise ValueError(f"ctx shape {ctx.shape} does not match the tile shape {num.shape}")
        if ctx_id < 0 or ctx_id // 32 >= ctx.shape[0]:
            raise ValueError(
                f"ctx_id {ctx_id} needs plane {ctx_id // 32} but ctx has {ctx.shape[0]} plane(s)"
            )
        plane = ctx[ctx_id // 32]
        if not plane.flags.c_contiguous:
            raise ValueError("ctx must be C-contiguous (it is updated in place)")
    ctxmask = context_mask(ctx_id)
    if in_box is None:
        j0, j1, i0, i1 = 0, ny, 0, nx
    else:
        j0, j1, i0, i1 = (int(v) for v in in_box)
        if not (0 <= j0 <= j1 <= ny and 0 <= i0 <= i1 <= nx):
            raise ValueError(f"in_box {in_box} is not inside the input arrays of shape {(ny, nx)}")
    if j0 == j1 or i0 == i1:
        return
    oy, ox = (int(v) for v in origin)
    d2, n2, dqi, dqo = _check_var_dq(data2, num2, dq, out_dq, (ny, nx), num.shape, np.float64)
    if count is not None:
        if not isinstance(count, np.ndarray) or count.dtype not in _COUNT_DTYPES:
            raise ValueError("count must be a uint8, uint16 or uint32 array")
        if count.shape != num.shape or not count.flags.c_contiguous \
                or not count.flags.writeable:
            raise ValueError(f"count must be C-contiguous, writeable and of the tile shape "
                             f"{num.shape}")
    _run_kernel(
        kernel,
        data,
        weight,
        pixmap,
        (j0, j1, i0, i1),
        num,
        den,
        plane,
        ctxmask,
        (oy, ox),
        int(in_origin[1]),
        float(pixfrac),
        float(iscale),
        float(pixel_scale_ratio),
        bool(lanczos_normalize),
        (n2, d2, float(iscale) ** 2, dqi, dqo, None, None, count),
    )


def _check_var_dq(data2, num2, dq, out_dq, in_shape, acc_shape, acc_dtype):
    """Validate the optional variance/DQ arrays; return them in the kernels' form.

    ``data2`` is one (ny, nx) array or a sequence of them (or None); ``num2`` one or as many
    accumulator planes of ``acc_shape``; both or neither. ``dq``/``out_dq`` likewise.
    """
    if (data2 is None) != (num2 is None):
        raise ValueError("data2 and num2 must be given together (or neither)")
    if data2 is None:
        d2 = n2 = None
    else:
        d2 = np.asarray(data2, dtype=np.float32)
        if d2.ndim == 2:
            d2 = d2[None]
        if d2.shape[1:] != tuple(in_shape):
            raise ValueError(f"data2 shape {d2.shape} is not consistent with data shape {in_shape}")
        d2 = np.ascontiguousarray(d2)
        if not isinstance(num2, np.ndarray) or num2.dtype != acc_dtype:
            raise ValueError(f"num2 must be a {np.dtype(acc_dtype).name} array")
        n2 = num2 if num2.ndim == 3 else num2[None]
        if n2.shape != (d2.shape[0],) + tuple(acc_shape):
            raise ValueError(
                f"num2 shape {num2.shape} does not match {d2.shape[0]} data2 plane(s) of the "
                f"tile shape {tuple(acc_shape)}"
            )
        if not n2.flags.c_contiguous or not n2.flags.writeable:
            raise ValueError("num2 must be C-contiguous and writeable (it is updated in place)")
    if (dq is None) != (out_dq is None):
        raise ValueError("dq and out_dq must be given together (or neither)")
    if dq is None:
        dqi = dqo = None
    else:
        dq = np.asarray(dq)
        if dq.dtype.kind not in "iu" or dq.dtype.itemsize > 4:
            raise TypeError(
                f"dq must be of an integer type of at most 4 bytes, got {dq.dtype.name}"
            )
        dqi = np.ascontiguousarray(dq, dtype=np.uint32)
        if dqi.shape != tuple(in_shape):
            raise ValueError(f"dq shape {dqi.shape} is not consistent with data shape {in_shape}")
        dqo = out_dq
        if not isinstance(dqo, np.ndarray) or dqo.dtype != np.uint32:
            raise ValueError("out_dq must be a uint32 array")
        if dqo.shape != tuple(acc_shape) or not dqo.flags.c_contiguous or not dqo.flags.writeable:
            raise ValueError(
                f"out_dq must be C-contiguous, writeable and of the tile shape {tuple(acc_shape)}"
            )
    return d2, n2, dqi, dqo


def _run_kernel(
    kernel,
    data,
    weight,
    pixmap,
    box,
    num,
    den,
    plane,
    ctxmask,
    origin,
    sx,
    pixfrac,
    iscale,
    pscale,
    lanczos_normalize,
    ext,
    point_width=0,
):
    """Call the numba kernel of ``kernel`` on the checked arrays (see ``_kernels``);
    ``point_width``: the point kernel's strip width (0: whole rows)."""
    ny, nx = data.shape
    j0, j1, i0, i1 = box
    oy, ox = origin
    args = (data, weight, pixmap, j0, j1, i0, i1, num, den, plane, ctxmask, oy, ox, sx)
    if kernel == "square":
        if ny < 2 or nx < 2:
            raise ValueError(
                f"the square kernel needs input arrays of at least 2x2 pixels, got {(ny, nx)}"
            )
        K.drizzle_square(*args, pixfrac, iscale, ext)
    elif kernel == "point":
        K.drizzle_point(*args, iscale, ext, point_width)
    elif kernel == "turbo":
        K.drizzle_turbo(*args, pixfrac, iscale, pscale, ext)
    elif kernel == "gaussian":
        K.drizzle_gaussian(*args, pixfrac, iscale, pscale, ext)
    else:
        order = int(kernel[7:])
        K.drizzle_lanczos(*args, iscale, pscale, _lut(order), order, lanczos_normalize, ext)


def finalize_tile(
    num: np.ndarray,
    den: np.ndarray,
    fillval: float = np.nan,
    num2: np.ndarray | None = None,
    fillval2: float | None = None,
    out: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn tile accumulators into science and weight images (and the propagated variance).

    Parameters
    ----------
    num, den : (th, tw) arrays
        Accumulators filled by :func:`add_to_tile` (sum of ``dow * d`` and of ``dow``).
    fillval : float
        Science value where no input contributed (``den == 0``).
    num2 : (th, tw) or (n2, th, tw) array, optional
        ``data2`` accumulator(s) of :func:`add_to_tile` (sum of ``dow**2 * d2``).
    fillval2 : float, optional
        Value of the propagated image(s) where ``den == 0`` (default: ``fillval``).
    out : (sci, wht), optional
        Writable float32 arrays of the tile shape (e.g. planes of a stack) to fill and return
        instead of new ones (without ``num2``): the same values, no allocation or copy.

    Returns
    -------
    sci, wht : (th, tw) float32 arrays
        ``sci = num / den`` (the weighted mean) and ``wht = den``.
    var : float32 array, only when ``num2`` is given
        ``num2 / den**2`` (shape of ``num2``): the variance of the weighted mean when ``data2``
        held the input variances, as drizzle C's ``out_img2``.
    """
    num = np.asarray(num)
    den = np.asarray(den)
    if num.shape != den.shape:
        raise ValueError(f"num shape {num.shape} differs from den shape {den.shape}")
    hit = den != 0
    if out is not None:
        if num2 is not None:
            raise ValueError("finalize_tile: out is not supported with num2")
        sci, wht = out
        for a in out:
            if a.shape != num.shape or a.dtype != np.float32:
                raise ValueError(f"finalize_tile: out arrays must be float32 of shape "
                                 f"{num.shape}, got {a.dtype} {a.shape}")
        sci.fill(fillval)
        np.divide(num, den, out=sci, where=hit, casting="unsafe")
        np.copyto(wht, den, casting="unsafe")
        return sci, wht
    sci = np.full(num.shape, fillval, dtype=np.float32)
    np.divide(num, den, out=sci, where=hit, casting="unsafe")
    if num2 is None:
        return sci, den.astype(np.float32)
    num2 = np.asarray(num2)
    if num2.shape[-2:] != den.shape or num2.ndim not in (2, 3):
        raise ValueError(f"num2 shape {num2.shape} does not match the tile shape {den.shape}")
    fv2 = fillval if fillval2 is None else fillval2
    var = np.full(num2.shape, fv2, dtype=np.float32)
    den = den.astype(np.float64)
    np.divide(num2, den * den, out=var, where=np.broadcast_to(hit, num2.shape), casting="unsafe")
    return sci, den.astype(np.float32), var


def input_bbox(
    pixmap: np.ndarray,
    window: tuple[int, int, int, int],
    *,
    kernel: str = "square",
    pixfrac: float = 1.0,
    pixel_scale_ratio: float = 1.0,
) -> tuple[int, int, int, int] | None:
    """Box of the input pixels whose kernel footprint can land in an output window.

    Parameters
    ----------
    pixmap : (ny, nx, 2) float64 array
        0-based output-frame ``(x, y)`` of every input pixel centre (the whole chip, or the part
        of it considered; the box is then in that part's indices).
    window : (y0, y1, x0, x1)
        Half-open, 0-based output pixel window in the big frame.
    kernel, pixfrac, pixel_scale_ratio
        The drizzle parameters that will be used (they set the footprint size).

    Returns
    -------
    (j0, j1, i0, i1) or None
        Half-open, 0-based input pixel box, or None if no input pixel touches the window.
        Conservative (no contributing pixel is left out; square footprints are bounded by twice
        the largest step of the pixmap to any of the 8 neighbours) and tight to a pixel or two.
    """
    _check_kernel_args(kernel, pixfrac, pixel_scale_ratio)
    pixmap = np.ascontiguousarray(pixmap, dtype=np.float64)
    if pixmap.ndim != 3 or pixmap.shape[2] != 2:
        raise ValueError(f"pixmap must have shape (ny, nx, 2), got {pixmap.shape}")
    y0, y1, x0, x1 = (int(v) for v in window)
    if y1 <= y0 or x1 <= x0:
        return None
    kind, radius = _reach_params(kernel, pixfrac, pixel_scale_ratio)
    ny, nx = pixmap.shape[:2]
    j0, j1, i0, i1 = K.footprint_bbox(pixmap, 0, ny, 0, nx, y0, y1, x0, x1, kind, radius)
    if j1 == 0:
        return None
    return int(j0), int(j1), int(i0), int(i1)


def _reach_params(kernel: str, pixfrac: float, pixel_scale_ratio: float) -> tuple[int, float]:
    """(kind, radius) of the footprint bound used by the numba helpers."""
    if kernel == "square":
        return 0, K.square_reach_radius(0.5 * pixfrac)
    return 1, kernel_radius(kernel, pixfrac, pixel_scale_ratio)


class FootprintIndex:
    """Answer many :func:`input_bbox` queries on one pixmap quickly.

    One pass over the pixmap records the footprint extent of every ``block x block`` group of
    input pixels; a query then scans only the blocks that can reach the window. ``bbox(window)``
    returns exactly what ``input_bbox(pixmap, window, ...)`` returns.

    Parameters
    ----------
    pixmap : (ny, nx, 2) float64 array
        0-based output-frame ``(x, y)`` of every input pixel centre.
    kernel, pixfrac, pixel_scale_ratio
        The drizzle parameters that will be used.
    block : int
        Block size in input pixels.
    """

    def __init__(
        self,
        pixmap: np.ndarray,
        *,
        kernel: str = "square",
        pixfrac: float = 1.0,
        pixel_scale_ratio: float = 1.0,
        block: int = 64,
    ) -> None:
        _check_kernel_args(kernel, pixfrac, pixel_scale_ratio)
        self.pixmap = np.ascontiguousarray(pixmap, dtype=np.float64)
        if self.pixmap.ndim != 3 or self.pixmap.shape[2] != 2:
            raise ValueError(f"pixmap must have shape (ny, nx, 2), got {self.pixmap.shape}")
        self.block = int(block)
        self.kind, self.radius = _reach_params(kernel, pixfrac, pixel_scale_ratio)
        self.extents = K.block_extents(self.pixmap, self.block, self.kind, self.radius)

    def bbox(self, window: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
        """Same as :func:`input_bbox` for output window ``(y0, y1, x0, x1)`` (half-open)."""
        y0, y1, x0, x1 = (int(v) for v in window)
        if y1 <= y0 or x1 <= x0:
            return None
        e = self.extents
        hit = (e[..., 1] > x0 - 0.5) & (e[..., 0] < x1 - 0.5)
        hit &= (e[..., 3] > y0 - 0.5) & (e[..., 2] < y1 - 0.5)
        bj, bi = np.nonzero(hit)
        if bj.size == 0:
            return None
        ny, nx = self.pixmap.shape[:2]
        b = self.block
        sj0, sj1 = int(bj.min()) * b, min((int(bj.max()) + 1) * b, ny)
        si0, si1 = int(bi.min()) * b, min((int(bi.max()) + 1) * b, nx)
        j0, j1, i0, i1 = K.footprint_bbox(
            self.pixmap, sj0, sj1, si0, si1, y0, y1, x0, x1, self.kind, self.radius
        )
        if j1 == 0:
            return None
        return int(j0), int(j1), int(i0), int(i1)

    def covering_bbox(self, window: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
        """A box of input pixels holding every pixel that lands in ``window``, fast.

        Blocks whose whole footprint extent lies inside the window contribute their full pixel
        range; blocks straddling its edge are scanned pixel by pixel, as :meth:`bbox` does (each
        pixel's reach from its true neighbours in the whole pixmap). The result equals
        :meth:`bbox` except that it may also hold pixels with no position (NaN) inside fully
        covered blocks, which drizzling skips anyway. Much faster than :meth:`bbox` for
        windows that cover many blocks (the mosaic engine's tiles).
        """
        y0, y1, x0, x1 = (int(v) for v in window)
        if y1 <= y0 or x1 <= x0:
            return None
        e = self.extents
        b = self.block
        lo_x, hi_x, lo_y, hi_y = x0 - 0.5, x1 - 0.5, y0 - 0.5, y1 - 0.5
        hit = (e[..., 1] > lo_x) & (e[..., 0] < hi_x) & (e[..., 3] > lo_y) & (e[..., 2] < hi_y)
        if not hit.any():
            return None
        inside = (hit & (e[..., 0] >= lo_x) & (e[..., 1] <= hi_x) & (e[..., 2] >= lo_y)
                  & (e[..., 3] <= hi_y))
        ny, nx = self.pixmap.shape[:2]
        out = [ny, 0, nx, 0]

        def grow(j0: int, j1: int, i0: int, i1: int) -> None:
            out[0], out[1] = min(out[0], j0), max(out[1], j1)
            out[2], out[3] = min(out[2], i0), max(out[3], i1)

        for bj, bi in zip(*np.nonzero(inside), strict=True):
            grow(bj * b, min((bj + 1) * b, ny), bi * b, min((bi + 1) * b, nx))
        for bj, bi in zip(*np.nonzero(hit & ~inside), strict=True):
            j0, j1 = int(bj) * b, min((int(bj) + 1) * b, ny)
            i0, i1 = int(bi) * b, min((int(bi) + 1) * b, nx)
            if out[0] <= j0 and j1 <= out[1] and out[2] <= i0 and i1 <= out[3]:
                continue  # already inside the box found so far
            c0, c1, c2, c3 = K.footprint_bbox(self.pixmap, j0, j1, i0, i1, y0, y1, x0, x1,
                                              self.kind, self.radius)
            if c1 > 0:
                grow(int(c0), int(c1), int(c2), int(c3))
        if out[1] <= out[0] or out[3] <= out[2]:
            return None
        return out[0], out[1], out[2], out[3]
