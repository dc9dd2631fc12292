"""The work of one task of each mosaic stage (the graph wiring is :mod:`hapdask.mosaic.graph`).

* :func:`prepare_chip_region` — read a region of a chip; data in rate units minus sky, and the
  drizzle weight of :class:`~hapdask.mosaic.params.DrizzleParams` (EXP/ERR/IVM) times the DQ,
  static and cosmic-ray masks;
* :func:`drizzle_tile` — drizzle every contributing chip into one output tile (final drizzle);
* :func:`separate_tile` — drizzle each exposure separately into one tile of the median grid
  (in memory), keep the stack as a scratch file and return the tile's weight statistics for
  ``combine_maskpt`` (one pass: the drizzles are not redone for the median);
* :func:`median_tile` — combine a tile's stack once the grid's mean weights are known (the
  combine package's ``combine_stack``);
* :func:`blot_cr_region` — blot the median onto a region of a chip and find its cosmic rays
  (the combine package's ``blot_derivative`` and ``driz_cr_mask``);
* :func:`assemble_mask` — the cosmic-ray mask of a whole chip from its regions.

Units: SCI enters drizzles in electrons/s (or the input's rate units) after sky subtraction;
driz_cr works in the chip's own units, as AstroDrizzle does. Pixel coordinates are 0-based;
windows and boxes are ``(y0, y1, x0, x1)``, half-open. Each task computes the pixel maps of
the chip pixels it uses (:func:`chip_pixmap`, the numba map: ~4 ns per pixel for ACS/WFC),
where it uses them; only the chip's map models are kept for the process
(:func:`~hapdask.mosaic.tiles.chip_models`).
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from hapdask.dqflags import good_pixel_mask, interpret_bits
from hapdask.mosaic.inputs import ChipRef
from hapdask.mosaic.params import DrizzleParams
from hapdask.mosaic.scratch import (
    Scratch,
    aligned_empty,
    load_array,
    load_array_async,
    wait_saved,
)
from hapdask.mosaic.tiles import chip_models, footprint_margin, input_row_spans
from hapdask.mosaic.wcsio import thread_header_wcs
from hapdask.profile import timed
from hapdask.scheduling import waiting

__all__ = ["CrJob", "MedianJob", "PackedMask", "StackRead", "TileJob", "assemble_mask",
           "blot_cr_region", "chip_pixmap", "count_dtype", "cte_direction", "drizzle_tile",
           "exposure_noise", "median_tile",
           "prepare_chip_region", "read_flat", "reuse_tile", "separate_drizzles", "separate_tile",
           "weight_means"]

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class PackedMask:
    """A whole-chip boolean mask kept as bits (``numpy.packbits`` along rows): 1/8 of the
    memory of the bool array, for masks held by the graph for the whole run (static masks).

    Attributes
    ----------
    bits : (ny, ceil(nx / 8)) uint8
    shape : (ny, nx)
    """

    bits: np.ndarray
    shape: tuple[int, int]

    @classmethod
    def pack(cls, mask: np.ndarray) -> PackedMask:
        """Pack a 2-D bool array."""
        mask = np.asarray(mask, dtype=bool)
        return cls(np.packbits(mask, axis=1), (int(mask.shape[0]), int(mask.shape[1])))

    def region(self, region: Box) -> np.ndarray:
        """The bool mask of ``region`` ``(y0, y1, x0, x1)`` (0-based, half-open), a new array."""
        y0, y1, x0, x1 = region
        b0 = x0 // 8
        got = np.unpackbits(self.bits[y0:y1, b0:(x1 + 7) // 8], axis=1)
        return got[:, x0 - 8 * b0:x1 - 8 * b0].view(bool)

    def at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The mask at the pixels ``(rows[k], cols[k])`` (0-based): a new 1-D bool array."""
        cols = np.asarray(cols)
        bits = self.bits[rows, cols >> 3]
        return ((bits >> (7 - (cols & 7)).astype(np.uint8)) & 1).astype(bool)


def _sub(mask: np.ndarray | PackedMask | None, region: Box) -> np.ndarray | None:
    if mask is None:
        return None
    if isinstance(mask, PackedMask):
        return mask.region(region)
    y0, y1, x0, x1 = region
    return mask[y0:y1, x0:x1]


def region_mask(parts: Sequence[tuple[Box, np.ndarray | PackedMask]], region: Box
                ) -> np.ndarray:
    """OR of region masks (``(box, bool array or PackedMask)`` in chip pixels) over a region
    of the chip."""
    y0, y1, x0, x1 = region
    out = np.zeros((y1 - y0, x1 - x0), bool)
    for (b0, b1, a0, a1), m in parts:
        c0, c1, d0, d1 = max(b0, y0), min(b1, y1), max(a0, x0), min(a1, x1)
        if c0 < c1 and d0 < d1:
            out[c0 - y0:c1 - y0, d0 - x0:d1 - x0] |= _sub(m, (c0 - b0, c1 - b0, d0 - a0,
                                                              d1 - a0))
    return out


def _subtracted(sky) -> float:
    """The sky value subtracted from SCI (chip units): 0 when the level is only recorded."""
    return float(sky.value) if getattr(sky, "subtract", True) else 0.0


def read_flat(chip: ChipRef, region: Box) -> np.ndarray | None:
    """The region of the chip's flat field (``SCI,<extver>`` of :attr:`ChipRef.flatfile`), or
    None without a usable flat file (a flat of 1).

    As AstroDrizzle's ``getflat``, a flat of the chip's shape is used as is; a larger one
    (full-frame flat, sub-array chip) is cut at the chip's offset ``-LTV1``/``-LTV2``.
    """
    if chip.flatfile is None:
        return None
    y0, y1, x0, x1 = region
    with fits.open(chip.flatfile, memmap=True) as h:
        try:
            data = h["SCI", chip.key[1]].data
        except KeyError:
            return None
        if data is None:
            return None
        oy = ox = 0
        if tuple(data.shape) != tuple(chip.shape):
            hdr = chip.chip.header
            oy = -round(float(hdr.get("LTV2", 0.0)))
            ox = -round(float(hdr.get("LTV1", 0.0)))
            if oy < 0 or ox < 0 or oy + chip.shape[0] > data.shape[0] \
                    or ox + chip.shape[1] > data.shape[1]:
                return None
        return np.array(data[oy + y0:oy + y1, ox + x0:ox + x1], dtype=np.float32)


def prepare_chip_region(chip: ChipRef, sky, region: Box, params: DrizzleParams, *,
                        static: np.ndarray | PackedMask | None = None,
                        crmask: np.ndarray | None = None,
                        pix_ratio: float = 1.0, pixels: tuple | None = None,
                        spans: tuple[np.ndarray, np.ndarray] | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Read a region of a chip: ``(data, weight)`` ready for :func:`hapdask.drizzle.add_to_tile`.

    ``data`` = (SCI - sky) x effective gain in rate units (over EXPTIME for non-rate data), 0
    where bad; ``weight`` = the ``wht_type`` weight where the pixel is good: DQ good per
    ``params.bits``, finite, in the static mask (``static``: whole chip, True = good; a bool
    array or a :class:`PackedMask`) and not in
    the cosmic-ray mask (``crmask``: the region's shape, True = cosmic ray); 0 elsewhere.
    ``pixels``: the region's ``(sci, err, dq)`` as ``chip.chip.read`` gives them, when the
    caller has read them already (``sci`` is then used as this call's own copy: modified).
    ``spans``: per region row, the chip columns ``[lo, hi)`` whose weight is kept (0 outside
    them: the pixels that cannot land on the caller's window, :func:`_tile_spans`).

    Weights are AstroDrizzle's (``buildEXPmask``, ``buildERRmask``, ``buildIVMmask`` times the
    ``wt_scl`` it sets; ``pix_ratio`` = output / input pixel scale):

    * ``EXP``: ``wt_scl`` (the exposure time by default);
    * ``ERR``: ``(EXPTIME / ERR)**2 / pix_ratio**4``, ERR as stored (0 where ERR <= 0 or not
      finite);
    * ``IVM``: ``flat**2 / (dark + sky x flat + readnoise**2) x EXPTIME**2 / pix_ratio**4``
      with dark = ``MEANDARK`` (:attr:`ChipRef.meandark`), sky = the subtracted sky in SCI
      units, the read noise in electrons and the flat from ``PFLTFILE`` when the reference file
      is on this machine, else 1 (AstroDrizzle's fallback). User IVM files and WFC3/IR dark
      images are not read.
    """
    sci, err, dq = pixels if pixels is not None else chip.chip.read(
        region, err=params.wht_type == "ERR")
    st = _sub(static, region)
    if params.wht_type == "EXP":
        got = _prepare_exp(chip, sky, region, params, sci, dq, st, crmask, spans)
        if got is not None:
            return got
    good = good_pixel_mask(dq, params.bits) & np.isfinite(sci)
    if st is not None:
        good &= st
    if crmask is not None:
        good &= ~crmask
    # in place: ``sci`` is this call's own float32 copy (the same float32 operations)
    data = sci.astype(np.float32, copy=False)
    data -= np.float32(_subtracted(sky))
    if chip.gain != 1.0:
        data *= np.float32(chip.gain)
    if not chip.is_rate:
        data /= np.float32(chip.exptime)
    data[~good] = 0.0
    ratio4 = float(pix_ratio) ** 4
    if params.wht_type == "EXP":
        weight = np.where(good, np.float32(params.exp_weight(chip.exptime)), np.float32(0.0))
    elif params.wht_type == "ERR":
        e = err.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(good & np.isfinite(e) & (e > 0), (chip.exptime / e) ** 2 / ratio4, 0.0)
        weight = w.astype(np.float32)
    else:  # IVM
        flat = read_flat(chip, region)
        f = np.float64(1.0) if flat is None else flat.astype(np.float64)
        var = chip.meandark + _subtracted(sky) * f + chip.readnoise ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            ivm = np.where(var > 0, f * f / var, 0.0) * (chip.exptime ** 2 / ratio4)
        ivm = np.broadcast_to(ivm, good.shape)
        weight = np.where(good & np.isfinite(ivm), ivm, 0.0).astype(np.float32)
    if spans is not None:
        lo, hi = spans
        cols = np.arange(region[2], region[3])
        weight[(cols < lo[:, None]) | (cols >= hi[:, None])] = 0.0
    return data, weight


def _prepare_exp(chip: ChipRef, sky, region: Box, params: DrizzleParams, sci: np.ndarray,
                 dq: np.ndarray, static: np.ndarray | None, crmask: np.ndarray | None,
                 spans: tuple[np.ndarray, np.ndarray] | None
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`prepare_chip_region` with EXP weights in one compiled pass over the region (the
    same values as its numpy operations, :mod:`hapdask.mosaic._prepare`); None when the inputs
    are not what the kernel takes (then the numpy path runs)."""
    from hapdask.mosaic._prepare import prepare_exp  # numba: compiled on first use

    data = sci.astype(np.float32, copy=False)
    dq = np.asarray(dq)
    if (data.ndim != 2 or not data.flags.writeable or dq.shape != data.shape
            or dq.dtype.kind not in "iu" or not dq.dtype.isnative
            or (static is not None and (static.dtype != bool or static.shape != data.shape))
            or (crmask is not None and (crmask.dtype != bool or crmask.shape != data.shape))):
        return None
    if dq.dtype.kind == "i":  # same bytes, as good_pixel_mask reads them
        dq = dq.view(dq.dtype.str.replace("i", "u"))
    bits = interpret_bits(params.bits)
    bad = 0 if bits is None else ~bits & int(np.iinfo(dq.dtype).max)
    ny, nx = data.shape
    if spans is not None:
        lo = np.asarray(spans[0], np.int64)
        hi = np.asarray(spans[1], np.int64)
        if lo.shape != (ny,) or hi.shape != (ny,):
            return None
    else:  # every column of every row
        lo = np.array([region[2]], np.int64)
        hi = np.array([region[3]], np.int64)
    weight = np.empty(data.shape, np.float32)
    f = np.float32
    prepare_exp(data, dq, dq.dtype.type(bad),
                np.ones((1, nx), bool) if static is None else static,
                np.zeros((1, nx), bool) if crmask is None else crmask,
                f(_subtracted(sky)), f(chip.gain),
                f(1.0) if chip.is_rate else f(chip.exptime),
                f(params.exp_weight(chip.exptime)), lo, hi, int(region[2]), weight)
    return data, weight


def chip_pixmap(chip: ChipRef, out_wcs, region: Box,
                spans: tuple[np.ndarray, np.ndarray] | None = None,
                grid: str | None = None) -> np.ndarray:
    """Pixel map of a region of a chip on an output grid (0-based output ``(x, y)`` per
    input pixel; :func:`hapdask.drizzle.calc_pixmap`), only in the row ``spans`` when given
    (NaN elsewhere). ``grid``: the header string of ``out_wcs``, to use the chip's numba
    models kept for the process (:func:`~hapdask.mosaic.tiles.chip_models`) instead of
    checking them again."""
    from hapdask.drizzle import calc_pixmap

    models = chip_models(chip, out_wcs, grid) if grid is not None else None
    return calc_pixmap(chip.thread_wcs(), out_wcs, chip.shape, region=region, spans=spans,
                       models=models)


def _tile_spans(chip: ChipRef, box: Box, region: Box, window: Box, out_wcs, params,
                ratio: float) -> tuple[tuple[np.ndarray, np.ndarray],
                                       tuple[np.ndarray, np.ndarray]] | None:
    """Where a tile's input pixels are, within its (axis-aligned) input box.

    Returns ``(drizzled, mapped)``: per row of ``region`` (= the box grown by one pixel), the
    chip columns ``[lo, hi)`` of the pixels that can land in the window
    (:func:`hapdask.mosaic.tiles.input_row_spans`), and those grown by one pixel each way (and
    to the rows above and below), whose pixel map the kernel's corner interpolation reads. None
    when nothing lands."""
    margin = footprint_margin(1.0 / ratio, params.kernel, params.pixfrac)
    got = input_row_spans(chip.thread_wcs(), box, out_wcs, window, margin)
    if got is None:
        return None
    n = region[1] - region[0]
    lo = np.full(n, region[3], np.int64)
    hi = np.full(n, region[2], np.int64)
    r0 = box[0] - region[0]
    lo[r0:r0 + len(got[0])], hi[r0:r0 + len(got[1])] = got
    used = hi > lo
    lo[~used] = region[3]
    hi[~used] = region[2]
    # the map is read one pixel around every drizzled pixel (bilinear corners)
    mlo = np.minimum(lo, np.minimum(np.r_[lo[1:], region[3]], np.r_[region[3], lo[:-1]])) - 1
    mhi = np.maximum(hi, np.maximum(np.r_[hi[1:], region[2]], np.r_[region[2], hi[:-1]])) + 1
    mlo = np.clip(mlo, region[2], region[3])
    mhi = np.clip(mhi, region[2], region[3])
    empty = mhi <= mlo
    mlo[empty] = mhi[empty] = region[2]
    lo[~used] = hi[~used] = region[2]
    return (lo, hi), (mlo, mhi)


def _grown_box(shape: tuple[int, int], box: Box) -> Box:
    """The input box grown by one pixel (clipped to the chip): the region whose map the
    kernel reads for the box's pixels (bilinear corners)."""
    ny, nx = shape
    b0, b1, a0, a1 = box
    return (max(b0 - 1, 0), min(b1 + 1, ny), max(a0 - 1, 0), min(a1 + 1, nx))


def _chip_inputs(chip, sky, box, window, params, ratio, out_wcs, static=None, crparts=None,
                 pixels=None, grid: str | None = None):
    """What the kernel needs to drizzle a chip's input box onto a window: ``(region, data,
    weight, pixmap, in_box)`` (:func:`prepare_chip_region` over the box grown by one pixel), or
    None when nothing of the box lands. ``pixels``: the region's pixels already read
    (:func:`prepare_chip_region`). The map is computed only where the window's pixels can be
    (:func:`_tile_spans`: the box around a rotated footprint piece holds up to ~2x the pixels
    that land), NaN elsewhere; the weight is 0 outside those spans. ``grid``: the header
    string of ``out_wcs`` (:func:`chip_pixmap`'s models kept for the process)."""
    b0, b1, a0, a1 = box
    region = _grown_box(chip.shape, box)
    if region[1] - region[0] < 2 or region[3] - region[2] < 2:
        return None
    with timed("spans"):
        spans = _tile_spans(chip, box, region, window, out_wcs, params, ratio)
    if spans is None:
        return None
    with timed("read"):
        cr = region_mask(crparts, region) if crparts else None
        # weight 0 outside the spans: the kernel skips these pixels before anything else
        # (add_to_tile)
        data, weight = prepare_chip_region(chip, sky, region, params, static=static, crmask=cr,
                                           pix_ratio=ratio, pixels=pixels, spans=spans[0])
    (lo, hi), mapped = spans
    rows = np.nonzero(hi > lo)[0]
    in_box = (max(b0 - region[0], int(rows[0])), min(b1 - region[0], int(rows[-1]) + 1),
              max(a0 - region[2], int(lo[rows].min()) - region[2]),
              min(a1 - region[2], int(hi[rows].max()) - region[2]))
    with timed("pixmap"):
        pm = chip_pixmap(chip, out_wcs, region, mapped, grid=grid)
    return region, data, weight, pm, in_box


def _drizzle_chip(chip, sky, box, window, params, num, den, ctx, ctx_id, iscale, ratio, out_wcs,
                  static=None, crparts=None, count=None, grid: str | None = None) -> None:
    got = _chip_inputs(chip, sky, box, window, params, ratio, out_wcs, static=static,
                       crparts=crparts, grid=grid)
    if got is None:
        return
    region, data, weight, pm, in_box = got
    _kernel(data, weight, pm, num, den, ctx, window, in_box, params, iscale, ratio, ctx_id,
            region, count=count)


def _kernel(data, weight, pm, num, den, ctx, window, in_box, params, iscale, ratio, ctx_id,
            region, pixfrac=None, count=None) -> None:
    from hapdask.drizzle import add_to_tile

    with timed("kernel"):
        add_to_tile(data, weight, pm, num, den, ctx, origin=(window[0], window[2]),
                    in_box=in_box, kernel=params.kernel,
                    pixfrac=params.pixfrac if pixfrac is None else pixfrac,
                    iscale=float(iscale), pixel_scale_ratio=float(ratio), ctx_id=int(ctx_id),
                    in_origin=(region[0], region[2]), count=count)


@dataclass(frozen=True)
class TileJob:
    """What a final-drizzle tile task needs besides its chips (picklable, small).

    ``boxes``, ``ctx_ids``, ``iscales``, ``ratios`` are per contributing chip (same order as
    the chips passed to :func:`drizzle_tile`); ``cr_boxes`` lists, per chip, the boxes of the
    cosmic-ray mask regions passed with it.
    ``sums``: the scratch files of the tile's summed separate drizzles and their per-chip
    contribution counts (:func:`separate_tile`), when :func:`reuse_tile` makes the tile from
    them; ``sums_ids``: the context ids (chips) of the count planes, in order.
    """

    index: tuple[int, int]
    window: Box
    header: str
    boxes: tuple[Box, ...]
    ctx_ids: tuple[int, ...]
    iscales: tuple[float, ...]
    ratios: tuple[float, ...]
    nplanes: int
    params: DrizzleParams
    cr_boxes: tuple[tuple[Box, ...], ...] = ()
    sums: tuple[str, str] | None = None
    sums_ids: tuple[int, ...] = ()


def drizzle_tile(job: TileJob, chips: Sequence[ChipRef], skies: Sequence, statics: Sequence = (),
                 crmasks: Sequence[Sequence[np.ndarray]] = ()) -> dict[str, np.ndarray]:
    """Drizzle every contributing chip into one output tile.

    Parameters
    ----------
    job : TileJob
    chips, skies : sequences
        Per contributing chip: its :class:`ChipRef` and :class:`~hapdask.mvm.sky.SkyLevel`
        (chips with ``ok=False`` are skipped).
    statics : sequence of (bool array, PackedMask or None), optional
        Per chip, its whole-chip static mask (True = good).
    crmasks : sequence of sequences of bool arrays or PackedMask, optional
        Per chip, the cosmic-ray masks of the regions ``job.cr_boxes``.

    Returns
    -------
    dict
        ``sci``, ``wht`` (float32, tile shape; SCI ``fillval`` where nothing landed) and
        ``ctx`` ((nplanes, ty, tx) int32, or None).
    """
    from hapdask.drizzle import finalize_tile

    y0, y1, x0, x1 = job.window
    th, tw = y1 - y0, x1 - x0
    num = np.zeros((th, tw), np.float64)
    den = np.zeros((th, tw), np.float64)
    ctx = np.zeros((job.nplanes, th, tw), np.int32) if job.nplanes else None
    out_wcs = thread_header_wcs(job.header) if any(s.ok for s in skies) else None
    for k, (chip, sky) in enumerate(zip(chips, skies, strict=True)):
        if not sky.ok:
            continue
        crparts = None
        if crmasks:
            crparts = list(zip(job.cr_boxes[k], crmasks[k], strict=True))
        _drizzle_chip(chip, sky, job.boxes[k], job.window, job.params, num, den, ctx,
                      job.ctx_ids[k], job.iscales[k], job.ratios[k], out_wcs,
                      static=statics[k] if statics else None, crparts=crparts,
                      grid=job.header)
    with timed("finalize"):
        sci, wht = finalize_tile(num, den, fillval=job.params.fillval)
    return {"sci": sci, "wht": wht, "ctx": ctx}


def count_dtype(ratios: Sequence[float]) -> np.dtype:
    """The unsigned integer type of the per-chip contribution counts (:func:`separate_tile`)
    of chips drizzled with these output / input pixel-scale ratios: wide enough for every
    pixel of one chip that can overlap one output pixel.

    A square-kernel footprint (pixfrac <= 1) spans at most about one input pixel, and an output
    pixel ``ratio`` input pixels on a side, so at most ``(ratio x sqrt(2) + 2)**2`` pixels of a
    chip overlap it (any rotation); the bound used, ``(ceil(1.5 ratio) + 2)**2``, leaves 6 %
    for distortion (uint8 up to ratio 8.6; HAP's grids have ratios of about 1 or less).
    """
    worst = max([float(r) for r in ratios], default=1.0)
    n = (math.ceil(1.5 * worst) + 2) ** 2
    for dt in (np.uint8, np.uint16):
        if n <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.uint32)


def _cosmic_ray_inputs(chip, sky, box, params, ratio, parts, static):
    """:func:`_chip_inputs` for the cosmic-ray pixels of a chip's input box only: ``(region,
    data, weight, in_box, points)`` with the data and weight of :func:`prepare_chip_region` at
    the good pixels of the cosmic-ray masks ``parts`` and 0 elsewhere, and ``points`` the flat
    indices (increasing, int64) of the region's pixels with a weight, or None when the box has
    none. Only those pixels are read (:meth:`hapdask.io.Chip.read_at`: ~1 % of the region)
    and prepared: the same float32 operations on each pixel, so the same values."""
    b0, b1, a0, a1 = box
    region = _grown_box(chip.shape, box)
    if not parts or region[1] - region[0] < 2 or region[3] - region[2] < 2:
        return None
    with timed("read"):
        idx = np.flatnonzero(region_mask(parts, region))
        if idx.size == 0:
            return None
        if params.wht_type == "IVM":  # read_flat would need the region, not the gathered row
            raise ValueError("IVM weights: the final drizzle never reuses the separate one")
        shape = (region[1] - region[0], region[3] - region[2])
        rows, cols = np.divmod(idx, shape[1])
        rows += region[0]
        cols += region[2]
        sci, err, dq = chip.chip.read_at(rows, cols, err=params.wht_type == "ERR")
        st = None
        if isinstance(static, PackedMask):
            st = static.at(rows, cols)[None]
        elif static is not None:
            st = np.asarray(static)[rows, cols][None]
        d, w = prepare_chip_region(
            chip, sky, (0, 1, 0, idx.size), params, static=st, pix_ratio=ratio,
            pixels=(sci[None], err[None] if err is not None else None, dq[None]))
        data = np.zeros(shape, np.float32)
        weight = np.zeros(shape, np.float32)
        data.ravel()[idx] = d[0]
        weight.ravel()[idx] = w[0]
        points = idx[w[0] != 0]
    return (region, data, weight, (b0 - region[0], b1 - region[0], a0 - region[2], a1 - region[2]),
            points)


# the cosmic-ray pixels' map is computed at their neighbourhoods (calc_pixmap_at) while these
# are under this fraction of the region, else the whole map is read (or computed)
_SPARSE_MAP = 0.25


class _NanMap:
    """One task's buffer for :func:`_cosmic_ray_pixmap`'s maps: kept NaN except at the row
    segments of the map last handed out (valid until the next :meth:`get`), which are reset
    to NaN then, instead of filling a whole region for each chip."""

    def __init__(self) -> None:
        self.flat: np.ndarray | None = None
        self.last: tuple | None = None

    def get(self, shape: tuple[int, int], segments: tuple) -> np.ndarray:
        """An all-NaN ``shape + (2,)`` float64 map whose ``segments`` (``(ptr, lo, hi)``,
        :func:`hapdask.drizzle.grown_segments`) the caller fills."""
        from hapdask.drizzle import fill_segments

        size = 2 * shape[0] * shape[1]
        if self.flat is None or self.flat.size < size:
            self.flat = np.full(size, np.nan)
        elif self.last is not None:
            last_shape, last_segments = self.last
            fill_segments(self.flat[:2 * last_shape[0] * last_shape[1]].reshape(
                last_shape[0], last_shape[1], 2), *last_segments, np.nan)
        self.last = (shape, segments)
        return self.flat[:size].reshape(shape[0], shape[1], 2)


def _cosmic_ray_pixmap(chip: ChipRef, out_wcs, grid: str, region: Box, points: np.ndarray,
                       buffer: _NanMap | None = None) -> np.ndarray:
    """Pixel map of a chip region for redrizzling its weighted (cosmic-ray) pixels only.

    The square kernel reads the map of a weighted pixel (``points``: flat indices in the
    region, increasing) and of its 8 neighbours (corner interpolation, footprint reach;
    :func:`hapdask.drizzle.add_to_tile`): while those are under ``_SPARSE_MAP`` of the
    region, the map is computed there only (their row segments,
    :func:`hapdask.drizzle.grown_segments`, to :func:`hapdask.drizzle.calc_pixmap_at`: the
    same bits as the whole map; NaN elsewhere, where no weighted pixel's result depends on it;
    into ``buffer`` when given; the numba models of the chip on the grid of header ``grid``
    kept for the process, :func:`~hapdask.mosaic.tiles.chip_models`). Otherwise, or when its
    numba path does not apply, the whole region's map (:func:`chip_pixmap`).
    """
    from hapdask.drizzle import calc_pixmap_at, grown_segments

    shape = (region[1] - region[0], region[3] - region[2])
    segments = grown_segments(points, shape[0], shape[1])
    if int(np.sum(segments[2] - segments[1])) < _SPARSE_MAP * shape[0] * shape[1]:
        models = chip_models(chip, out_wcs, grid)
        if models is not None:
            out = buffer.get(shape, segments) if buffer is not None else None
            return calc_pixmap_at(None, out_wcs, segments, chip.shape, region=region, out=out,
                                  models=models)
    return chip_pixmap(chip, out_wcs, region, grid=grid)


def reuse_tile(job: TileJob, chips: Sequence[ChipRef], skies: Sequence, statics: Sequence = (),
               crmasks: Sequence[Sequence[np.ndarray]] = (), _separate: object = None
               ) -> dict[str, np.ndarray]:
    """The final tile from the separate drizzles' sums minus the cosmic-ray pixels.

    When the final drizzle is the separate one (same grid, kernel ``square`` with pixfrac 1,
    EXP weights, bits) apart from the cosmic-ray masks, the final ``num``/``den`` are the
    separate pass's sums over all exposures (:func:`separate_tile`, ``job.sums``) minus the
    contributions of the cosmic-ray pixels, which are drizzled again (about 1 % of the
    pixels) instead of every pixel. Sums in another order: SCI and WHT agree with
    :func:`drizzle_tile` to float64 rounding (a float32 ulp at most where they differ).

    The context is exact: the separate pass counted, per chip and output pixel, the chip's
    pixels landing there (``dow > 0``, the rule of the context bit); the cosmic-ray pixels'
    own counts are taken off, and a chip keeps its bit where some of its pixels are left
    (integers: no rounding). A pixel left without any bit has no weight (as in
    :func:`drizzle_tile`, not a rounding residue). Where a sum cancels to less than 1e-6 of
    itself, or a count would go below 0 (the two passes disagree: never expected), the tile is
    drizzled in full (:func:`drizzle_tile`), so the result never depends on a residue.

    ``_separate`` is the tile's :func:`separate_tile` result (the task waits for it).
    """
    from hapdask.drizzle.tile import context_mask  # numba module: loaded when a tile runs
    from hapdask.mosaic._finalize import reuse_finish, take_counts

    y0, y1, x0, x1 = job.window
    th, tw = y1 - y0, x1 - x0
    # the sums' reads are started first (scratch I/O threads): their waits overlap the work on
    # the chips' cosmic-ray pixels (once their saves by separate_tile are done: save_behind)
    with timed("read"), waiting():
        for path in job.sums:
            wait_saved(path)
    counts_read = load_array_async(job.sums[1], direct=True)
    sums_read = load_array_async(job.sums[0], direct=True)
    counts = None
    nan_map = _NanMap()
    plane_of = {cid: n for n, cid in enumerate(job.sums_ids)}
    num_c = np.zeros((th, tw))
    den_c = np.zeros((th, tw))
    touched = np.zeros((th, tw), bool)
    cnt_c = None
    out_wcs = None
    p = job.params
    for k, (chip, sky) in enumerate(zip(chips, skies, strict=True)):
        if not sky.ok or not crmasks:
            continue
        got = _cosmic_ray_inputs(chip, sky, job.boxes[k], p, job.ratios[k],
                                 list(zip(job.cr_boxes[k], crmasks[k], strict=True)),
                                 statics[k] if statics else None)
        if got is None:
            continue
        region, data, weight, in_box, points = got
        if out_wcs is None:
            out_wcs = thread_header_wcs(job.header)
        with timed("pixmap"):
            pm = _cosmic_ray_pixmap(chip, out_wcs, job.header, region, points, nan_map)
        if counts is None:
            with timed("read"):
                counts = counts_read.result()
        if cnt_c is None:  # zeros: take_counts resets it after each chip
            cnt_c = np.zeros((th, tw), counts.dtype)
        _kernel(data, weight, pm, num_c, den_c, None, job.window, in_box, p, job.iscales[k],
                job.ratios[k], job.ctx_ids[k], region, count=cnt_c)
        with timed("finalize"):
            # counts[plane] -= cnt_c, touched |= cnt_c > 0; a count below 0: drizzled in full
            if not take_counts(counts[plane_of[job.ctx_ids[k]]], cnt_c, touched):
                return drizzle_tile(job, chips, skies, statics, crmasks)
    with timed("read"):
        counts = counts_read.result()
        sums = sums_read.result()
    num, den = sums[0], sums[1]
    with timed("finalize"):
        # per chip plane (counts[n] > 0) its context bit, the pixels "covered" by some chip;
        # touched and not covered: "empty" (no weight); left = den - den_c; a touched pixel
        # left with < 1e-6 of its weight: drizzled in full; then finalize_tile(num - num_c,
        # left, fillval) (0 and 0 where empty), in one pass (hapdask.mosaic._finalize)
        ctx = np.zeros((job.nplanes, th, tw), np.int32) if job.nplanes else None
        cids = np.array(job.sums_ids, np.int64)
        masks = np.array([context_mask(c) for c in job.sums_ids], np.int32)
        sci = np.empty((th, tw), np.float32)
        wht = np.empty((th, tw), np.float32)
        if not reuse_finish(counts, cids, masks,
                            ctx if ctx is not None else np.zeros((0, 1, 1), np.int32),
                            num, den, num_c, den_c, touched, p.fillval, sci, wht):
            return drizzle_tile(job, chips, skies, statics, crmasks)
    return {"sci": sci, "wht": wht, "ctx": ctx}


@dataclass(frozen=True)
class MedianJob:
    """What a separate-drizzle tile task needs besides its chips.

    The tile's ``window`` is grown by ``halo`` pixels (clipped to the grid) into ``grown``;
    ``boxes`` are the input boxes of the chips for ``grown``. ``groups`` lists, per exposure
    (fixed order), the positions of its chips among the chips passed; ``exposures`` the
    exposure's index in the whole stack (for the weight means and minmed's noise terms).
    ``final_ctx``: per chip, its context id in the final drizzle, when the task keeps the sums
    and contribution counts :func:`reuse_tile` makes the final tile from (empty: it does not).
    ``save_behind``: the separate-drizzle task hands the saves of its stack and sums to the
    scratch's saving thread and returns (:meth:`~hapdask.mosaic.scratch.Scratch.save_behind`;
    their readers wait for them): only for a graph computed on local threads.
    """

    index: tuple[int, int]
    window: Box
    grown: Box
    header: str
    boxes: tuple[Box, ...]
    iscales: tuple[float, ...]
    ratios: tuple[float, ...]
    groups: tuple[tuple[int, ...], ...]
    exposures: tuple[int, ...]
    n_inputs: int
    params: DrizzleParams
    combine: object
    scratch: Scratch
    final_ctx: tuple[int, ...] = ()
    save_behind: bool = False

    @property
    def stack_name(self) -> str:
        """Scratch name of this tile's separate-drizzle stack."""
        return f"sep-{self.index[0]}-{self.index[1]}"

    @property
    def sums_name(self) -> str:
        """Scratch name of this tile's summed separate drizzles (kept when ``final_ctx`` is
        given: :func:`reuse_tile` makes the final tile from them)."""
        return f"sum-{self.index[0]}-{self.index[1]}"


def separate_drizzles(job: MedianJob, chips: Sequence[ChipRef], skies: Sequence,
                      statics: Sequence = (), sums: tuple | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Drizzle each exposure separately onto the grown tile (in memory).

    ``sums``: optional ``(num, den, counts)`` accumulators of the grown tile (float64,
    float64, ``(len(chips), gy, gx)`` unsigned integers of :func:`count_dtype`), to which every
    exposure's sums are added in the order of ``job.groups``, and each chip's number of pixels
    landing on each output pixel (``dow > 0``: those that set its context bit) into its plane.

    Returns
    -------
    images, weights : (n, gy, gx) float32
        Per exposure of ``job.groups``: science in electrons/s, sky removed (0 where nothing
        landed) and its weights.
    """
    stack = _separate_stack(job, chips, skies, statics, sums)
    return stack[0], stack[1]


def _separate_stack(job: MedianJob, chips: Sequence[ChipRef], skies: Sequence,
                    statics: Sequence = (), sums: Sequence | None = None,
                    before: Callable[[], None] | None = None,
                    wsums: tuple[Box, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """:func:`separate_drizzles` as the one ``(2, n, gy, gx)`` float32 array (images,
    weights) that :func:`separate_tile` keeps: no stacking copy.

    With ``before``, the stack is allocated once the first exposure is drizzled, after a call
    of ``before``, and so are the sums' num and den when ``sums`` holds None for them (a
    list: filled in): :func:`separate_tile` waits there for the saves of earlier tiles
    (:func:`_save_behind`), whose memory the allocator then reuses. Without, at once.

    ``wsums``: ``(box, sums, counts)`` with ``box`` a window of the grown tile and ``sums``
    (float64) and ``counts`` (int64) of ``len(job.groups)``: filled with
    :func:`hapdask.combine.weight_sums` of the weights in ``box`` (the same values: made in
    the pass that writes each exposure's planes, :mod:`hapdask.mosaic._finalize`)."""
    from hapdask.combine.median import WEIGHT_MEAN_LOWER
    from hapdask.mosaic._finalize import finalize_exposure  # numba: loaded when a tile runs

    g0, g1, h0, h1 = job.grown
    th, tw = g1 - g0, h1 - h0
    out_wcs = thread_header_wcs(job.header)

    def allocate() -> np.ndarray:
        if before is not None:
            before()
        if sums is not None and sums[0] is None:
            sums[0] = np.zeros((th, tw))
            sums[1] = np.zeros((th, tw))
        # block-aligned: separate_tile's direct save writes it without a copy; not zeroed
        # (calloc clears reused heap memory): every plane is written by finalize_exposure
        return aligned_empty((2, len(job.groups), th, tw), np.float32)

    stack = None if before is not None else allocate()
    counts = sums[2] if sums is not None else None
    for e, members in enumerate(job.groups):
        # fresh zeros (calloc): pages nothing lands on are never touched (a reused, refilled
        # pair measured ~50 MB more peak RSS)
        num = np.zeros((th, tw), np.float64)
        den = np.zeros((th, tw), np.float64)
        for k in members:
            chip, sky = chips[k], skies[k]
            if not sky.ok:
                continue
            _drizzle_chip(chip, sky, job.boxes[k], job.grown, job.params, num, den, None, 0,
                          job.iscales[k], job.ratios[k], out_wcs,
                          static=statics[k] if statics else None,
                          count=counts[k] if counts is not None else None, grid=job.header)
        if stack is None:
            stack = allocate()
        with timed("finalize"):
            # finalize_tile(num, den, fillval=0.0, out=stack planes), the tile sums added and
            # the weight sums, in one pass
            add = sums is not None
            got = finalize_exposure(num, den, 0.0, stack[0, e], stack[1, e],
                                    sums[0] if add else num, sums[1] if add else den, add,
                                    wsums[0] if wsums is not None else (0, 0, 0, 0),
                                    WEIGHT_MEAN_LOWER)
            if wsums is not None:
                wsums[1][e], wsums[2][e] = got
    return stack if stack is not None else allocate()


def separate_tile(job: MedianJob, chips: Sequence[ChipRef], skies: Sequence,
                  statics: Sequence = ()) -> tuple[np.ndarray, np.ndarray]:
    """The one separate-drizzle pass of a median tile.

    Drizzles each exposure separately onto the grown tile (:func:`separate_drizzles`), keeps
    the stack in the job's scratch directory for :func:`median_tile`, and returns, per
    exposure of the whole stack, the sum and count of the positive weights inside the tile
    (not its halo), to reduce into the weight means of ``combine_maskpt``
    (:func:`weight_means`). With ``job.final_ctx``, the tile's (not the halo's) sums of all
    exposures and each chip's contribution counts are kept too (``job.sums_name``: float64
    ``(2, ty, tx)`` num and den; ``job.sums_name + "-count"``: ``(n chips, ty, tx)`` counts,
    chip order, :func:`separate_drizzles`), for :func:`reuse_tile`. With ``job.save_behind``
    these are saved by the scratch's saving thread while the task returns
    (:func:`_save_behind`).
    """
    g0, g1, h0, h1 = job.grown
    y0, y1, x0, x1 = job.window
    acc = None
    if job.final_ctx:  # with save_behind, num and den made with the stack (_separate_stack)
        shape = (g1 - g0, h1 - h0)
        acc = [None if job.save_behind else np.zeros(shape),
               None if job.save_behind else np.zeros(shape),
               np.zeros((len(chips), *shape), count_dtype(job.ratios))]
    # before the stack is made: the saves of the tiles handed over before this one started
    before = functools.partial(_wait_saves, _saves_under_way()) if job.save_behind else None
    # the weights' sums and counts in the tile (not its halo): weight_sums of its planes,
    # made as they are written
    sums = np.zeros(len(job.groups), np.float64)
    counts = np.zeros(len(job.groups), np.int64)
    inner = (y0 - g0, y1 - g0, x0 - h0, x1 - h0)
    stack = _separate_stack(job, chips, skies, statics, acc, before, (inner, sums, counts))
    items: list[tuple[str, object]] = [(job.stack_name, stack)]
    cnt_items = []
    if acc is not None:
        part = (slice(y0 - g0, y1 - g0), slice(x0 - h0, x1 - h0))
        items.append((job.sums_name, [acc[0][part], acc[1][part]]))
        cnt_items.append((job.sums_name + "-count", acc[2][(slice(None), *part)]))
    del stack, acc
    if job.save_behind:
        # everything behind, the counts first: the task's core does not wait for the disk (no
        # spare thread in hapdask drizzle). A pending save holds its counts, made when the next
        # task starts (before it waits for the earlier saves): at most SAVES_BEHIND tiles'
        # counts more in memory, in the separate pass (not the run's peak)
        _save_behind(job.scratch, cnt_items + items)
    else:
        with timed("save"), waiting():  # direct I/O: another task may use the core meanwhile
            for name, array in items + cnt_items:
                job.scratch.save(name, array, direct=True)
    del items, cnt_items
    all_sums = np.zeros(job.n_inputs, np.float64)
    all_counts = np.zeros(job.n_inputs, np.int64)
    all_sums[list(job.exposures)] = sums
    all_counts[list(job.exposures)] = counts
    return all_sums, all_counts


#: separate-drizzle tiles whose saves (:func:`_save_behind`) may be under way at once; a task
#: beyond them waits for the oldest (memory: each keeps its stack and sums until saved)
SAVES_BEHIND = 2
_TILES_SAVING: list[Future] = []
_TILES_SAVING_LOCK = threading.Lock()


def _save_behind(scratch: Scratch, items: list[tuple[str, object]]) -> None:
    """Hand a separate-drizzle tile's arrays to the scratch's saving thread
    (:meth:`~hapdask.mosaic.scratch.Scratch.save_behind`: their readers wait for them) and
    return; with more than :data:`SAVES_BEHIND` tiles' saves under way, wait for the oldest
    first. A failed save is raised to the file's reader
    (:func:`~hapdask.mosaic.scratch.wait_saved`)."""
    future = scratch.save_behind(items, direct=True)
    with _TILES_SAVING_LOCK:
        _TILES_SAVING[:] = [f for f in _TILES_SAVING if not f.done()] + [future]
        wait = _TILES_SAVING[:-SAVES_BEHIND]
    _wait_saves(wait)


def _saves_under_way() -> list[Future]:
    """The separate-drizzle saves handed over (:func:`_save_behind`) and not done yet."""
    with _TILES_SAVING_LOCK:
        return [f for f in _TILES_SAVING if not f.done()]


def _wait_saves(futures: Sequence[Future]) -> None:
    """Wait for these saves (without the core, :func:`~hapdask.scheduling.waiting`); their
    errors are their readers' to raise."""
    if any(not f.done() for f in futures):
        with timed("save"), waiting():
            for f in futures:
                f.exception()


def weight_means(*parts: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Mean positive weight of every exposure over the whole grid (0 where none), from the
    :func:`separate_tile` results of every tile (added in a fixed order)."""
    sums = np.zeros_like(parts[0][0]) if parts else np.zeros(0)
    counts = np.zeros_like(parts[0][1]) if parts else np.zeros(0, np.int64)
    for s, c in parts:
        sums = sums + s
        counts = counts + c
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)


class StackRead:
    """The read of a median tile's separate-drizzle stack, which the scheduler may start
    before the tile's :func:`median_tile` task (:meth:`start`, by
    :func:`hapdask.scheduling.prefetch_callback`, see :func:`hapdask.mosaic.graph.stack_prefetch`):
    the task then takes the array read meanwhile (:meth:`take`) instead of waiting for the
    disk on its core. A plain object (Dask passes it to the task untouched), of one compute on
    local threads (the read is a future of this process)."""

    __slots__ = ("_future", "_lock", "_taken", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self._future: Future | None = None
        self._taken = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the read in the scratch I/O threads (once it is saved: ``save_behind``);
        nothing once started or taken."""
        with self._lock:
            if self._future is None and not self._taken:
                self._future = load_array_async(self.path, direct=True)

    def take(self) -> Future | None:
        """The started read (None if it was not started; it never will be after this)."""
        with self._lock:
            self._taken = True
            future, self._future = self._future, None
        return future


def median_tile(job: MedianJob, chips: Sequence[ChipRef], separated: object,
                means: np.ndarray, noise: np.ndarray, read: StackRead | None = None
                ) -> np.ndarray:
    """Separate drizzles of one tile combined (the combine package's ``combine_stack``).

    Parameters
    ----------
    job : MedianJob
    chips : sequence of ChipRef
        The tile's chips (their exposure times).
    separated : object
        The tile's :func:`separate_tile` result (the task this one waits for: its stack is in
        the scratch directory).
    means : (n_inputs,) array
        Mean positive weight of every exposure over the grid (:func:`weight_means`).
    noise : (n_inputs, 2) array
        Per exposure, minmed's sky (electrons per input pixel) and read noise (electrons)
        (:func:`exposure_noise`).
    read : StackRead, optional
        The stack's read, maybe started before the task (then taken over).

    Returns
    -------
    (ty, tx) float32
        The combined image in electrons/s (0 where no input is valid, as AstroDrizzle).
    """
    from hapdask.combine.median import combine_stack

    path = job.scratch.path(job.stack_name)
    started = read.take() if read is not None else None
    with timed("load"), waiting():  # direct I/O: another task may use the core meanwhile
        if started is not None:
            images, weights = started.result()
        else:
            wait_saved(path)  # a save handed over by separate_tile (job.save_behind) is done
            images, weights = load_array(path, direct=True)
    del started
    ex = list(job.exposures)
    expt = np.array([chips[m[0]].exptime for m in job.groups], np.float64)
    with timed("combine"):
        med = combine_stack(images, weights, job.combine, skies=noise[ex, 0],
                            readnoise=noise[ex, 1], exptimes=expt, weight_means=means[ex],
                            n_inputs=job.n_inputs)
    y0, y1, x0, x1 = job.window
    g0, _, h0, _ = job.grown
    return np.ascontiguousarray(med[y0 - g0:y1 - g0, x0 - h0:x1 - h0], dtype=np.float32)


def exposure_noise(chips: Sequence[ChipRef], groups: Sequence[Sequence[int]], *skies
                   ) -> np.ndarray:
    """minmed's noise terms of every exposure: ``(n, 2)`` of (sky in electrons per input pixel,
    read noise in electrons), as AstroDrizzle's createMedian (smallest chip sky, rms read
    noise; :func:`hapdask.combine.median.exposure_noise`)."""
    from hapdask.combine.median import exposure_noise as one

    out = np.zeros((len(groups), 2), np.float64)
    for e, members in enumerate(groups):
        sk = []
        for k in members:
            c, s = chips[k], skies[k]
            if not s.ok:
                continue
            sk.append(_subtracted(s) * c.gain * (c.exptime if c.is_rate else 1.0))
        out[e] = one(sk, [chips[k].readnoise for k in members])
    return out


@dataclass(frozen=True)
class CrJob:
    """What a blot + driz_cr task of one chip region needs besides its inputs.

    ``box`` is the region; ``grown`` the region grown by the halo driz_cr needs (clipped to
    the chip); ``window`` the median-grid window the blot reads; ``parts`` the windows of the
    median tiles passed with it.
    """

    box: Box
    grown: Box
    window: Box
    parts: tuple[Box, ...]
    header: str
    ratio: float
    interp: str
    sinscl: float
    addsky: bool
    skyval: float
    cr: object


def cte_direction(chip: ChipRef) -> int:
    """Read-out direction of ``driz_cr_ctegrow``: ACS/WFC SCI,1 +1, SCI,2 -1, otherwise 0."""
    sig = chip.signature
    if len(sig) >= 2 and sig[0] == "ACS" and sig[1] == "WFC":
        return 1 if chip.key[1] == 1 else -1
    return 0


def _median_window(window: Box, parts: Sequence[Box], medians: Sequence[np.ndarray]
                   ) -> np.ndarray:
    """The median image in ``window`` (float32, 0 where no median tile covers it) from the
    median tiles ``medians`` of windows ``parts``. Not zeroed first when the tiles' pieces
    cover the window without overlapping (the graph's tiles: the usual case)."""
    w0, w1, v0, v1 = window
    pieces = []
    for (p0, p1, q0, q1), arr in zip(parts, medians, strict=True):
        c0, c1, d0, d1 = max(p0, w0), min(p1, w1), max(q0, v0), min(q1, v1)
        if c0 < c1 and d0 < d1:
            pieces.append(((c0, c1, d0, d1), arr[c0 - p0:c1 - p0, d0 - q0:d1 - q0]))
    area = sum((c1 - c0) * (d1 - d0) for (c0, c1, d0, d1), _ in pieces)
    apart = all(a[1] <= b[0] or b[1] <= a[0] or a[3] <= b[2] or b[3] <= a[2]
                for k, (a, _) in enumerate(pieces) for b, _ in pieces[k + 1:])
    whole = apart and area == (w1 - w0) * (v1 - v0)
    mosaic = (np.empty if whole else np.zeros)((w1 - w0, v1 - v0), np.float32)
    for (c0, c1, d0, d1), piece in pieces:
        mosaic[c0 - w0:c1 - w0, d0 - v0:d1 - v0] = piece
    return mosaic


def blot_cr_region(job: CrJob, chip: ChipRef, sky, medians: Sequence[np.ndarray]) -> np.ndarray:
    """Blot the median onto a region of a chip and flag its cosmic rays.

    The median (electrons/s per output pixel) is interpolated at the region's pixel positions
    on the median grid (:func:`hapdask.drizzle.calc_pixmap` chip -> grid is exactly the map
    blot needs), scaled back to the chip's units (per input pixel; times EXPTIME for non-rate
    data, over the effective gain) with the sky added back (``blot_addsky``), then compared
    with the chip by the combine package's ``cr_mask`` (the ``driz_cr_method``'s detector).

    Returns
    -------
    PackedMask of the region's shape (``job.box``)
        True = cosmic ray (never on non-finite SCI pixels, nor on chips whose sky is not ok).
        Packed: the graph holds every region's mask until the final tiles and the mask files
        are made (1/8 of the bool arrays' memory).
    """
    from hapdask.combine.crdetect import HysteresisParams, cr_mask
    from hapdask.drizzle import blot_image

    y0, y1, x0, x1 = job.box
    if not sky.ok:  # an unusable chip (e.g. all NaN) is not drizzled: nothing to flag
        return PackedMask.pack(np.zeros((y1 - y0, x1 - x0), bool))
    w0, w1, v0, v1 = job.window
    mosaic = _median_window(job.window, job.parts, medians)
    g0, g1, h0, h1 = job.grown
    with timed("pixmap"):
        pixmap = chip_pixmap(chip, thread_header_wcs(job.header), job.grown, grid=job.header)
    to_units = (1.0 if chip.is_rate else chip.exptime) / chip.gain
    sky_units = _subtracted(sky) if job.addsky else float(job.skyval)
    with timed("blot"):
        # the map is on the median grid, the mosaic starts at its pixel (v0, w0); the sky
        # is added to the float32 blot in the kernel (as ``blot += float32(sky)`` would be)
        blot = blot_image(mosaic, pixmap, interp=job.interp, sinscl=job.sinscl,
                          iscale=to_units / (job.ratio * job.ratio), fillval=0.0,
                          offset=(v0, w0), addend=sky_units)
    with timed("read"):
        # the hysteresis detector also uses the region's DQ: read with SCI in one go
        if isinstance(job.cr, HysteresisParams):
            sci, _, dq = chip.chip.read(job.grown, err=False)
        else:
            sci, dq = chip.chip.read_sci(job.grown), None
    with timed("detect"):
        mask = cr_mask(sci, blot, sky=sky_units, exptime=chip.exptime, gain=chip.gain,
                       readnoise=chip.readnoise, params=job.cr,
                       cte_direction=cte_direction(chip) if job.cr.driz_cr_ctegrow else 0,
                       rate=chip.is_rate, origin=(g0, h0), chip_shape=chip.shape,
                       good=np.isfinite(sci), bits=chip.bits,
                       dq=None if dq is None else (lambda: dq))
    return PackedMask.pack(mask[y0 - g0:y1 - g0, x0 - h0:x1 - h0])


def assemble_mask(shape: tuple[int, int], boxes: Sequence[Box],
                  parts: Sequence[np.ndarray | PackedMask]) -> np.ndarray:
    """Whole-chip uint8 mask (1 = cosmic ray) from its region masks (bool arrays or
    PackedMask)."""
    out = np.zeros(shape, np.uint8)
    for (y0, y1, x0, x1), m in zip(boxes, parts, strict=True):
        out[y0:y1, x0:x1] = _sub(m, (0, y1 - y0, 0, x1 - x0))
    return out
