"""``hapdask drizzle``: AstroDrizzle's job (static mask, sky, separate drizzle, median, blot,
driz_cr, final drizzle) on a tiled Dask graph.

:func:`drizzle` is the Python entry point::

    from hapdask.mosaic import drizzle
    result = drizzle(["j1_flc.fits", "j2_flc.fits"], "out/mosaic",
                     params={"final_pixfrac": 0.8, "combine_type": "median"})

Parameters are AstroDrizzle's, by name and with its defaults
(:class:`~hapdask.mosaic.params.AstroDrizzleParams`). Products: ``<output>_drz.fits`` (or
``_drc.fits`` for FLC inputs) and, when cosmic rays were searched for, one
``<rootname>_crmask.fits`` per exposure beside it. Inputs are read only, unless
``update_dq=True`` ORs ``crbit`` into their DQ arrays (atomically).
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning
from astropy.wcs import WCS
from dask.threaded import get as threaded_get

from hapdask import profile
from hapdask.combine.median import CombineParams
from hapdask.export import fits as xfits
from hapdask.export.paths import remove_temporary
from hapdask.io import open_exposure, resolve_inputs
from hapdask.mosaic import products
from hapdask.mosaic.graph import (
    GridInputs,
    chip_tasks,
    cr_tasks,
    drizzle_tasks,
    median_tasks,
    release_scratch,
    scratch_readers,
    separate_priority,
    stack_prefetch,
    static_tasks,
)
from hapdask.mosaic.grid import OutputGrid, astrodrizzle_grid
from hapdask.mosaic.inputs import ChipRef, chip_refs
from hapdask.mosaic.params import AstroDrizzleParams, ParameterError, load_config
from hapdask.mosaic.scratch import Scratch, aligned_empty, load_array, remove_stale
from hapdask.mosaic.stages import assemble_mask
from hapdask.mosaic.tiles import place_chips, plan_tiles
from hapdask.scheduling import compute_context, waiting

__all__ = ["DrizzleGraph", "DrizzleResult", "EarlyWork", "drizzle", "drizzle_graph",
           "reuses_separate", "wait_product_rows", "write_product_tile"]

#: output pixels blot may read around a position (poly5 reads 3, lanczos5 5)
BLOT_REACH = 6


@dataclass
class DrizzleResult:
    """What :func:`drizzle` produced."""

    output: Path
    crmasks: list[Path]
    skies: dict
    params: AstroDrizzleParams
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    wall_time: float = 0.0

    def summary(self) -> str:
        took = f" ({self.wall_time:.1f} s)" if self.wall_time else ""  # 0: part of a bigger graph
        lines = [f"hapdask drizzle: wrote {self.output}{took}"]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  cosmic-ray mask {p}" for p in self.crmasks]
        lines += [f"  {k}: {v:.2f} s" for k, v in self.timings.items()]
        return "\n".join(lines)


@dataclass
class DrizzleGraph:
    """One :func:`drizzle` job as a Dask graph (:func:`drizzle_graph`)."""

    graph: dict
    keys: list          # what to compute: ``done`` first, then the cosmic-ray mask tasks
    done: tuple         # key of the DrizzleResult (the product renamed to its final name)
    output: Path        # the product's final path
    scratch: Scratch    # separate-drizzle stacks and sums; remove after the compute
    crmask_keys: dict = field(default_factory=dict)  # rootname -> key writing its crmask file
    early: tuple = ()   # (task keys, result keys) of the work given to ``early``, if it applies
    tiles: dict = field(default_factory=dict)  # (ty, tx) -> key of the final-tile task
    writes: dict = field(default_factory=dict)  # (ty, tx) -> key of the task writing it
    # key -> priority of the tasks to start first on local threads (graph.separate_priority)
    priority: dict = field(default_factory=dict)
    # key -> callable started ahead of its task on local threads (graph.stack_prefetch)
    prefetch: dict = field(default_factory=dict)


def _open_inputs(inputs) -> list:

    items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    if not items:
        raise ValueError("no input given")
    paths = resolve_inputs(items)
    if not paths:
        raise ValueError(f"no input file found in {items}")
    exps = []
    seen = set()
    for p in paths:
        try:
            exp = open_exposure(p)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{p}: cannot be drizzled: {exc}") from None
        if exp.rootname in seen:
            raise ValueError(f"{p}: exposure {exp.rootname} is given twice")
        seen.add(exp.rootname)
        if exp.kind not in ("flt", "flc"):
            raise ValueError(f"{p}: {exp.kind.upper()} files are not drizzle inputs (FLT/FLC)")
        if not any(c.has_data for c in exp.chips):
            raise ValueError(f"{p}: no SCI extension holds pixel data")
        exps.append(exp)
    # a fixed drizzle order (start time, rootname), whatever order the inputs came in
    exps.sort(key=lambda e: (e.expstart if e.expstart is not None else 0.0, e.rootname))
    base = {e.path: e.bunit.upper().replace(" ", "").removesuffix("/S") for e in exps}
    kinds = sorted(set(base.values()))
    if len(kinds) > 1:
        detail = ", ".join(f"{os.path.basename(p)}: {b}" for p, b in base.items())
        raise ValueError(f"inputs in different units cannot be combined ({detail})")
    return exps


def _sky_method(p: AstroDrizzleParams, static_keys: dict | None):
    # hapdask.sky loads numba code: deferred so importing the engine (e.g. for --dry-run) does not
    from hapdask.sky import AstroDrizzleSky, SkyParams

    names = {f.name for f in fields(SkyParams)}
    values = {k: p[k] for k in names if k in p.values}
    values["sky_bits"] = p.good_bits("sky_bits")
    return AstroDrizzleSky(SkyParams.from_dict(values), static_keys=static_keys)


def _reference_wcs(path: str):

    with fits.open(path) as hdul:
        for h in hdul:
            if h.header.get("NAXIS", 0) == 2 and ("CTYPE1" in h.header):
                w = WCS(h.header, fobj=hdul)
                w.pixel_shape = (h.header["NAXIS1"], h.header["NAXIS2"])
                return w
    raise ValueError(f"{path}: final_refimage has no 2-D image with a WCS")


def _grid(prefix: str, p: AstroDrizzleParams, chips: list[ChipRef], first) -> OutputGrid:
    """The ``final`` or ``driz_sep`` grid; ``first`` is the exposure of ``chips[0]`` (the
    reference chip of AstroDrizzle's default grid: its first input's first chip; here the
    earliest exposure's, so the grid does not depend on the order the inputs are given in)."""
    args = p.grid_args(prefix)
    ref = p[f"{prefix}_refimage"] if p[f"{prefix}_wcs"] else ""
    refimage = _reference_wcs(ref) if ref else None
    try:
        return astrodrizzle_grid([c.wcs() for c in chips], refimage=refimage,
                                 ref_scale=chips[0].pscale, sci_header=chips[0].chip.header,
                                 pa_v3=first.primary.get("PA_V3"),
                                 detector=(first.instrument, first.detector), **args)
    except ValueError as exc:
        raise ParameterError(f"{prefix}_* parameters: {exc}") from None


@dataclass(frozen=True)
class _Staged:
    """Where a final tile of a banded product is kept (``drizzle_graph(banded_product=True)``):
    the write task saves it there (:func:`_stage_tile`) instead of writing it into the product,
    whose rows are then written from the kept tiles (:func:`_write_rows`)."""

    scratch: Scratch
    name: str
    nplanes: int


def write_product_tile(target: xfits.FitsLayout | _Staged, window, scale: float, result: dict,
                       summary: Callable | None = None) -> float | tuple[float, object]:
    """Write a final tile into the product (``target``: its layout), or keep it for the
    product's rows (``target``: a :class:`_Staged`, ``banded_product``); returns its count of
    pixels with weight, and with ``summary`` (``drizzle_graph(tile_summary=)``) the pair
    ``(count, summary(window, sci, wht))`` of the values as written."""
    sci = result["sci"] if scale == 1.0 else result["sci"] * np.float32(scale)
    if isinstance(target, _Staged):
        _stage_tile(target, sci, result)
    else:
        xfits.write_fits_tile(target, window, sci, result["wht"], result["ctx"])
    count = float(np.count_nonzero(result["wht"]))
    if summary is None:
        return count
    return count, summary(window, sci, result["wht"])


#: bytes per data plane of the bands of rows :func:`_write_rows` writes at once
_ROWS_BYTES = 2 << 20


#: tiles whose saves (:func:`_stage_tile`) may be under way at once; a tile task beyond them
#: waits for the oldest (memory: each holds its tile until saved)
_STAGING = 2
_STAGED: list[Future] = []
_STAGED_LOCK = threading.Lock()


_SAVES: dict[str, Future] = {}  # kept tile's path -> its save, until its rows are written


def _stage_tile(target: _Staged, sci: np.ndarray, result: dict) -> None:
    """Keep a final tile for :func:`_write_rows`: its SCI (in the product's units), WHT and
    ``target.nplanes`` CTX planes, as the file has them (float32, float32, int32), saved as the
    bits of one ``(ty, 2 + nplanes, tx)`` uint32 array (direct I/O): a band of its rows is one
    run of the file. Saved by the scratch I/O threads
    (:meth:`~hapdask.mosaic.scratch.Scratch.save_async`: the task does not wait for the disk;
    at most :data:`_STAGING` tiles at once); the save's future is kept in :data:`_SAVES` for
    the rows' writing (:func:`_put_rows`)."""
    planes = [np.asarray(sci, np.float32), np.asarray(result["wht"], np.float32)]
    ctx = result["ctx"]
    if target.nplanes:
        cube = ctx if ctx.ndim == 3 else ctx[None]
        if len(cube) != target.nplanes:
            raise ValueError(f"tile {target.name}: {len(cube)} CTX planes, the product has "
                             f"{target.nplanes}")
        if cube.dtype == np.uint32:  # as write_fits_tile: the bits, as int32
            cube = cube.view(np.int32)
        planes += list(np.asarray(cube, np.int32))
    ty, tx = planes[0].shape
    # block-aligned: the direct save writes it without a copy
    staged = np.stack([p.view(np.uint32) for p in planes], axis=1,
                      out=aligned_empty((ty, len(planes), tx), np.uint32))
    future = target.scratch.save_async(target.name, staged, direct=True)
    with _STAGED_LOCK:
        _SAVES[target.scratch.path(target.name)] = future
        _STAGED[:] = [f for f in _STAGED if not f.done()] + [future]
        wait = _STAGED[:-_STAGING]
    if wait:
        with waiting():  # another task may use the core meanwhile
            for f in wait:
                f.exception()


_ROWS_POOL: ThreadPoolExecutor | None = None
_ROWS_LOCK = threading.Lock()
_ROWS_PENDING: set[Future] = set()  # product-rows jobs handed over and not done
#: threads of the product rows, and parts a row of tiles is written in: the last row is
#: written by all of them (with a row of tiles per thread, the bench's product waited
#: 0.35-0.6 s for its rows after the last tile at load 8-12, vs 0.08-0.18 s of finalize)
_ROWS_THREADS = 2


def _rows_pool() -> ThreadPoolExecutor:
    """This process's product-rows threads (started on first use): :func:`_put_rows` runs
    there, so that the waits of its direct I/O overlap the tasks instead of holding a task
    thread (a core) idle."""
    global _ROWS_POOL
    if _ROWS_POOL is None:
        with _ROWS_LOCK:
            if _ROWS_POOL is None:
                _ROWS_POOL = ThreadPoolExecutor(_ROWS_THREADS,
                                                thread_name_prefix="hapdask-product-rows")
    return _ROWS_POOL


def wait_product_rows() -> None:
    """Wait until every product-rows job handed over so far is done: a failed run waits for
    them before it removes the product's temporary file."""
    with _ROWS_LOCK:
        pending = list(_ROWS_PENDING)
    for future in pending:
        future.exception()


def _write_rows(layout: xfits.FitsLayout, y0: int, y1: int, parts: list, scratch: Scratch,
                *_kept: object) -> list[Future]:
    """Hand the writing of the product's rows ``y0:y1`` (:func:`_put_rows`) to this process's
    product-rows threads, in :data:`_ROWS_THREADS` parts (the last row of tiles is written by
    all of them), once the tasks keeping its tiles are done (``_kept``: their values); returns
    their futures, which :func:`_finish_product` waits for (so the graph is for a compute on
    local threads: a future is an object of this process). ``scratch`` holds the tiles' files,
    deleted once the rows are written."""
    with _STAGED_LOCK:
        tiles = tuple(_SAVES[path] for path, _ in parts)
    cuts = sorted({y0 + (y1 - y0) * k // _ROWS_THREADS for k in range(_ROWS_THREADS + 1)})
    shared = _RowsJob(parts, scratch, tiles, len(cuts) - 1)
    futures = [_rows_pool().submit(_put_rows, layout, a, b, shared)
               for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    for future in futures:
        with _ROWS_LOCK:
            _ROWS_PENDING.add(future)
        future.add_done_callback(_rows_done)
    return futures


class _RowsJob:
    """What the parts of a row of tiles' writing share: the tiles (``parts``), the futures of
    their saves, and how many parts are left before the tiles' files can be deleted."""

    def __init__(self, parts: list, scratch: Scratch, tiles: tuple, n: int) -> None:
        self.parts, self.scratch, self.tiles, self.left = parts, scratch, tiles, n


def _rows_done(future: Future) -> None:
    with _ROWS_LOCK:
        _ROWS_PENDING.discard(future)


def _put_rows(layout: xfits.FitsLayout, y0: int, y1: int, job: _RowsJob) -> None:
    """Write the product's rows ``y0:y1`` (of a row of tiles) from the tiles
    :func:`_stage_tile` kept (``job.parts``: ``(scratch file, window)`` of each; columns of no
    tile are zeros, as :func:`~hapdask.export.fits.create_fits` made them) in bands of
    :data:`_ROWS_BYTES` per plane (:class:`~hapdask.export.fits.FitsRows`: direct I/O; the
    tiles are read with direct I/O too, band by band), once their saves (``job.tiles``:
    futures) are done. After the job's last part the tiles' files are deleted (by
    ``job.scratch``'s :meth:`~hapdask.mosaic.scratch.Scratch.discard`)."""
    try:
        for saved in job.tiles:
            saved.result()
        _rows_from_tiles(layout, y0, y1, job.parts)
    finally:
        with _ROWS_LOCK:
            job.left -= 1
            last = job.left == 0
        if last:
            with _STAGED_LOCK:
                for path, _ in job.parts:
                    _SAVES.pop(path, None)
            job.scratch.discard(*[path for path, _ in job.parts])


def _rows_from_tiles(layout: xfits.FitsLayout, y0: int, y1: int, parts: list) -> None:
    nx = layout.shape[1]
    nplanes = 2 + layout.nplanes
    covered = np.zeros(nx, bool)
    for _, (_, _, x0, x1) in parts:
        covered[x0:x1] = True
    step = max(1, _ROWS_BYTES // (nx * 4))
    for r0 in range(y0, y1, step):
        r1 = min(r0 + step, y1)
        rows = xfits.FitsRows(layout, r0, r1)
        for plane in rows.planes if not covered.all() else ():
            plane[:, ~covered] = 0
        for path, (t0, _, x0, x1) in parts:
            bits = load_array(path, (r0 - t0, r1 - t0, 0, nplanes), direct=True)
            for k, plane in enumerate(rows.planes):
                plane.view(">u4")[:, x0:x1] = bits[:, k]  # to the file's byte order
        rows.write()


def _crmask_file(path, rootname, shapes, extvers, boxes_per_chip, keep, *parts):
    """Write ``<rootname>_crmask.fits``; returns ``(path, {extver: mask})`` with ``keep`` (the
    ``update_dq`` task needs them), else ``(path, None)``: the whole-chip masks are not held
    in memory until the end of the run."""
    masks = []
    k = 0
    for shape, boxes in zip(shapes, boxes_per_chip, strict=True):
        masks.append(assemble_mask(shape, boxes, parts[k:k + len(boxes)]))
        k += len(boxes)
    written = products.write_crmask(path, rootname, extvers, masks)
    return written, dict(zip(extvers, masks, strict=True)) if keep else None


def _read_crmask(path: str, extver: int, shape, *_after) -> np.ndarray:
    return products.chip_crmask(path, extver, shape)


def _given_masks(chips: list[ChipRef], crmasks: Mapping, crbit: int, prefix: str,
                 graph: dict, after: tuple = ()) -> list[list]:
    """Whole-chip mask tasks of the given ``<rootname>_crmask.fits`` files (graph updated in
    place; read after the tasks ``after``); chips whose good bits include ``crbit`` (or that
    have no file) get none."""
    masks = {str(k).lower(): v for k, v in crmasks.items()}
    regions: list[list] = []
    for i, c in enumerate(chips):
        path = masks.get(c.rootname)
        if path is None or (c.bits is None or c.bits & crbit):
            regions.append([])
            continue
        key = (f"{prefix}-crmask-in", i)
        graph[key] = (_read_crmask, str(path), c.key[1], c.shape, *after)
        regions.append([((0, c.shape[0], 0, c.shape[1]), key)])
    return regions


def _update_dq_after(written, path, crbit, reset):
    _, masks = written
    products.update_dq(path, {e: m.astype(bool) for e, m in masks.items()}, crbit, reset)
    return path


def drizzle_graph(
    inputs,
    output: str | os.PathLike,
    *,
    params: Mapping | AstroDrizzleParams | None = None,
    config: str | os.PathLike | None = None,
    tile_size: int = 1024,
    region_size: int = 1024,
    update_dq: bool = False,
    wcs_updates: Mapping | None = None,
    crmasks: Mapping | None = None,
    after: Iterable = (),
    scratch: Scratch | None = None,
    placed: dict | None = None,
    reserve_cards: int = 0,
    reuse_separate: bool = True,
    early: Callable[[dict, list], None] | None = None,
    pool: Executor | None = None,
    grid: OutputGrid | None = None,
    discard: bool = False,
    tile_summary: Callable | None = None,
    banded_product: bool = False,
    save_behind: bool = False,
) -> DrizzleGraph:
    """The Dask graph of one :func:`drizzle` job, to be computed alone or merged into a bigger
    graph (``hapdask svm`` computes a visit's products as one graph).

    Parameters are those of :func:`drizzle`, plus:

    after : keys
        Keys of the enclosing graph that must be computed before the given ``crmasks`` files
        are read (the tasks that write them).
    scratch : Scratch, optional
        Where separate-drizzle stacks and sums go (default: a new one beside the output,
        :attr:`DrizzleGraph.scratch`); the caller removes it after the compute.
    placed : dict, optional
        Placement cache shared by the jobs of one run (:func:`~hapdask.mosaic.tiles.place_chips`):
        a chip's placement on a grid with drizzle parameters another job already used is
        copied, not made again.
    reserve_cards : int
        Blank cards left at the end of the primary and SCI headers, for keywords a caller adds
        to the finished product (astropy fills them in place instead of rewriting the file).
    reuse_separate : bool
        When the final drizzle is the separate one but for the cosmic-ray masks
        (:func:`reuses_separate`), make the final tiles from the separate pass's sums minus
        the cosmic-ray pixels (:func:`~hapdask.mosaic.stages.reuse_tile`) instead of drizzling
        every pixel again (default). SCI and WHT then agree with the full drizzle to float64
        rounding (a float32 ulp where they differ), CTX exactly.
    early : callable, optional
        ``early(graph, keys)`` is handed the static-mask and sky tasks (they need only the
        chips) before the chips are placed, to start computing ``keys`` (the packed static
        masks and sky levels) meanwhile; :attr:`DrizzleGraph.early` then names them, or is
        empty when the results do not apply (a chip missed the grid).
    pool : Executor, optional
        Threads that place the chips (default: new ones, one per core); ``drizzle`` shares
        its pool between the placements and the ``early`` compute, so that both keep the cores
        busy without running more tasks at once than there are threads.
    grid : OutputGrid, optional
        The final grid itself, used as given instead of the one the ``final_*`` parameters
        build from the job's first chip (``hapdask svm`` puts every product of a detector on
        one visit grid: the same WCS object, so the products share their chip placements).
    discard : bool
        Delete every scratch file (separate-drizzle stacks and sums) once the
        tasks reading it are done (:func:`~hapdask.mosaic.graph.release_scratch`), so that the
        file system's deletion waits overlap the run instead of following it. Only with the
        job's own scratch (no ``scratch``), and only for a
        graph computed once on local threads: a task recomputed after the deletion (e.g. when
        a ``distributed`` worker is lost) would miss its file.
    tile_summary : callable, optional
        ``tile_summary(window, sci, wht)`` of each final tile as it is written (the values
        written, ``window`` = ``(y0, y1, x0, x1)``), for what a caller reduces from the
        product's pixels without reading the file back (``hapdask svm``: S_REGION's data
        mask); each write task's value is then ``(count, summary)``
        (:attr:`DrizzleGraph.writes`). Keep it small: the scheduler holds it until read.
        Picklable for a ``distributed`` scheduler.
    banded_product : bool
        Write the product in full-width bands of rows with direct I/O (:func:`_write_rows`)
        from its tiles kept in the scratch directory (:func:`_stage_tile`), instead of each
        tile's rows through the page cache (:func:`hapdask.export.fits.write_fits_tile`): the
        same bytes. ``writes`` then names the tasks keeping the tiles (their values as
        without it: counts, or pairs with ``tile_summary``); the rows are written by a thread
        of this process, and are in the file once ``done`` is: only for a graph computed once
        on local threads (as ``discard``). Each kept tile is deleted once its rows are
        written.
    save_behind : bool
        The separate-drizzle tasks hand the saves of their stacks and sums to the scratch's
        saving thread and return, instead of waiting for the disk
        (:meth:`~hapdask.mosaic.scratch.Scratch.save_behind`; the median and final tile tasks
        wait for the files they read, at most
        :data:`~hapdask.mosaic.stages.SAVES_BEHIND` tiles' saves under way at once): only
        for a graph computed on local threads (as ``discard``). The median tasks then also
        take reads of their stacks that the scheduler may start ahead of them
        (:attr:`DrizzleGraph.prefetch`, :func:`~hapdask.mosaic.graph.stack_prefetch`: pass
        it as ``local_compute(prefetch=)``).

    Returns
    -------
    DrizzleGraph
        ``graph``; ``keys`` to compute; ``done``, the key whose value is the
        :class:`DrizzleResult` (the product then has its final name). The chips are placed
        (their pixel maps computed, reduced to boxes and windows) while the graph is built;
        the tasks compute the maps of the pixels they use.
    """
    t_start = time.perf_counter()
    given = dict(load_config(config)) if config else {}
    if isinstance(params, AstroDrizzleParams):
        p = AstroDrizzleParams.from_mapping({**given, **params.changed()})
    else:
        p = AstroDrizzleParams.from_mapping({**given, **dict(params or {})})
    notes: list[str] = []
    exps = _open_inputs(inputs)
    updates = {(str(k[0]).lower(), int(k[1])): v for k, v in (wcs_updates or {}).items()}
    chips: list[ChipRef] = []
    for e in exps:
        chips += [c for c in chip_refs(e, p.good_bits("final_bits"), updates)
                  if c.chip.has_data]
    flc = all(e.is_flc for e in exps)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    filename = f"{out.name}_{'drc' if flc else 'drz'}.fits"
    final_path = out.parent / filename
    # the product's path is part of the keys: two products of one graph never share a task
    fp = _fingerprint(chips, p, tile_size, region_size, str(final_path.resolve()))
    first = next(e for e in exps if e.rootname == chips[0].rootname)
    final_grid = grid if grid is not None else _grid("final", p, chips, first)
    final = p.final
    want_cr = p["driz_cr"]
    combine = CombineParams(
        combine_type=p["combine_type"], combine_nsigma=" ".join(map(str, p["combine_nsigma"])),
        combine_nlow=p["combine_nlow"], combine_nhigh=p["combine_nhigh"],
        combine_lthresh=p["combine_lthresh"], combine_hthresh=p["combine_hthresh"],
        combine_grow=p["combine_grow"], combine_maskpt=p["combine_maskpt"])
    cr = p.cr()
    sep = p.separate
    final_cfg = {"kernel": final.kernel, "pixfrac": final.pixfrac}
    sep_cfg = {"kernel": sep.kernel, "pixfrac": sep.pixfrac, "grow": combine.halo,
               "region_size": region_size, "halo": cr.halo, "reach": BLOT_REACH}
    sep_grid = _grid("driz_sep", p, chips, first) if want_cr else None
    # separate-drizzle stacks and sums are kept here until the caller removes it
    own_scratch = scratch is None
    if scratch is None:
        # scratch left by killed runs (owner dead on this host) goes first
        for stale in remove_stale(out.parent):
            notes.append(f"removed the scratch directory {stale} of a run that did not finish")
        scratch = Scratch.create(out.parent, out.name)
    early_keys: tuple = ()
    try:
        if early is not None:
            # the static masks and sky levels need only the chips: they are computed while the
            # chips are placed (the client's serial planning would leave a core idle)
            g, sky_keys, packed_static = _sky_graph(chips, p, fp)
            early_keys = (*dict.fromkeys([*(packed_static or ()), *sky_keys]),)
            early(g, list(early_keys))
            early_keys = (tuple(g), early_keys)

        sep_place = None
        if sep_grid is not None and sep_grid.header == final_grid.header:
            both = place_chips(chips, final_grid, tile_size, configs=[final_cfg, sep_cfg],
                               placed=placed, pool=pool)
            placements = [b[0] for b in both]
            sep_place = [b[1] for b in both]
        else:
            placements = place_chips(chips, final_grid, tile_size, placed=placed, pool=pool,
                                     **final_cfg)
        keep = [i for i, pl in enumerate(placements) if pl.boxes]
        for i in range(len(chips)):
            if i not in keep:
                notes.append(f"{chips[i].label}: does not overlap the output grid (skipped)")
        if not keep:
            raise ValueError("no input chip overlaps the output grid")
        if len(keep) < len(chips):
            early_keys = ()  # chip indices changed: the early results do not apply
        chips = [chips[i] for i in keep]
        placements = [placements[i] for i in keep]
        if sep_place is not None:
            sep_place = [sep_place[i] for i in keep]
        tiles = plan_tiles(final_grid, tile_size, placements)
        n_exp = len({c.rootname for c in chips})
        do_cr = want_cr and n_exp >= 2
        if want_cr and not do_cr:
            notes.append("one exposure: separate drizzle, median, blot and driz_cr skipped "
                         "(as AstroDrizzle)")
        graph, ckeys = chip_tasks(chips, f"drz-{fp}")
        g, sky_keys, packed_static = _sky_graph(chips, p, fp)
        graph.update(g)
        cr_regions = None
        sums = None
        cr_layout: list[tuple] = []
        if do_cr:
            if sep_place is None:
                sep_place = place_chips(chips, sep_grid, tile_size, placed=placed, pool=pool,
                                        **sep_cfg)
            sep_inputs = GridInputs(chips, ckeys, sky_keys, sep_grid.header,
                                    sep_grid.scale_arcsec, static_keys=packed_static)
            reuse = reuse_separate and reuses_separate(p, sep_grid, final_grid)
            g, med_keys, sums = median_tasks(
                plan_tiles(sep_grid, tile_size, sep_place), sep_grid.shape, sep_inputs, sep,
                combine, [pl.boxes for pl in sep_place], f"drz-{fp}", scratch,
                keep_sums=reuse, save_behind=save_behind, prefetch=save_behind)
            graph.update(g)
            # a final tile is made from the sums only when every chip landing on it was in its
            # separate drizzle (the grown separate tiles' boxes hold the final ones)
            for t in tiles:
                if t.index in sums and not all(t.index in sep_place[i].boxes
                                               for i, _ in t.contribs):
                    del sums[t.index]
            windows = dict(sep_grid.windows(tile_size))
            g, cr_regions = cr_tasks(sep_place, sep_inputs, windows, med_keys, cr.halo,
                                     {"interp": p["blot_interp"], "sinscl": p["blot_sinscl"],
                                      "addsky": p["blot_addsky"], "skyval": p["blot_skyval"]},
                                     cr, f"drz-{fp}")
            graph.update(g)
        elif crmasks:
            cr_regions = _given_masks(chips, crmasks, p["crbit"], f"drz-{fp}", graph,
                                      tuple(after))
        nplanes = max(1, math.ceil(len(chips) / 32)) if p["context"] else 0
        final_inputs = GridInputs(chips, ckeys, sky_keys, final_grid.header,
                                  final_grid.scale_arcsec, static_keys=packed_static)
        g, tile_keys = drizzle_tasks(tiles, final_inputs, final, nplanes, f"drz-{fp}",
                                     cr_regions=cr_regions, sums=sums)
        graph.update(g)
        primaries = {e.rootname: e.primary for e in exps}
        sci_headers = {(e.rootname, c.extver): c.header for e in exps for c in e.chips}
        texptime = float(sum(e.exptime for e in exps
                             if any(c.rootname == e.rootname for c in chips)))
        # the product file is created once the sky levels (its header keywords) are known
        head_key = (f"drz-header-{fp}",)
        graph[head_key] = (_create_product, final_path, filename, final_grid, chips, primaries,
                           sci_headers, final, nplanes, p.changed(), int(reserve_cards),
                           *sky_keys)
        scale = 1.0 if final.units == "cps" else texptime
        keys = []
        bands: dict[tuple[int, int], list] = {}  # (y0, y1) -> [(staged file, window)]
        for t in tiles:
            key = (f"drz-write-{fp}", *t.index)
            target = head_key
            if banded_product:
                name = f"final-{fp}-{t.index[0]}-{t.index[1]}"
                target = _Staged(scratch, name, nplanes)
                bands.setdefault(tuple(t.window[:2]), []).append((scratch.path(name), t.window))
            graph[key] = (write_product_tile, target, t.window, scale, tile_keys[t.index],
                          *([tile_summary] if tile_summary is not None else []))
            keys.append(key)
        writes = {t.index: k for t, k in zip(tiles, keys, strict=True)}
        if banded_product:
            keys = []
            for (y0, y1), parts in bands.items():
                key = (f"drz-rows-{fp}", y0)
                graph[key] = (_write_rows, head_key, y0, y1, parts, scratch,
                              *[writes[t.index] for t in tiles if tuple(t.window[:2]) == (y0, y1)])
                keys.append(key)
        mask_keys = []
        if do_cr:
            by_exp: dict[str, list[int]] = {}
            for i, c in enumerate(chips):
                by_exp.setdefault(c.rootname, []).append(i)
            for root, idx in by_exp.items():
                path = out.parent / products.crmask_name(root)
                key = (f"drz-crmask-{fp}", root)
                graph[key] = (_crmask_file, str(path), root, [chips[i].shape for i in idx],
                              [chips[i].key[1] for i in idx],
                              [[b for b, _ in cr_regions[i]] for i in idx], bool(update_dq),
                              *[k for i in idx for _, k in cr_regions[i]])
                mask_keys.append(key)
                cr_layout.append((root, path))
                if update_dq:
                    dkey = (f"drz-dq-{fp}", root)
                    graph[dkey] = (_update_dq_after, key, chips[idx[0]].chip.path, p["crbit"],
                                   p["resetbits"] or 0)
                    mask_keys.append(dkey)
        priority = separate_priority(graph)
        # the mask files (and DQ updates) after every ready final tile (-2): the last product
        # rows' writes (by the product-rows threads, once the last tiles are done) then
        # overlap their work instead of the run's end waiting for them on one core
        priority.update(dict.fromkeys(mask_keys, -2))
        if len(bands) > 1:
            # the tiles of the band with the fewest rows after the other tiles (-1): the rows
            # written after the last tile are the fewest (the rows of the bands before are
            # written while they compute)
            last = min(bands, key=lambda b: (b[1] - b[0], -b[0]))
            priority.update(dict.fromkeys([tile_keys[t.index] for t in tiles
                                           if tuple(t.window[:2]) == last], -1))
        prefetch = stack_prefetch(graph)
        if discard and own_scratch:
            graph = release_scratch(graph, scratch_readers(graph), scratch)
        done = (f"drz-done-{fp}",)
        graph[done] = (_finish_product, head_key, [c.key for c in chips], [c.label for c in chips],
                       p, notes, {"plan": time.perf_counter() - t_start},
                       [pth for _, pth in cr_layout], len(sky_keys), *sky_keys, *keys,
                       *mask_keys)
    except BaseException:
        if own_scratch:
            scratch.remove()
        raise
    masks_written = {root: (f"drz-crmask-{fp}", root) for root, _ in cr_layout}
    return DrizzleGraph(graph, [done, *mask_keys], done, final_path, scratch, masks_written,
                        early_keys, dict(tile_keys), writes, priority, prefetch)


def _sky_graph(chips: list[ChipRef], p: AstroDrizzleParams, fp: str
               ) -> tuple[dict, list, list | None]:
    """The static-mask and sky tasks of ``chips`` (keys marked with the plan fingerprint
    ``fp``): ``(graph, sky keys, packed static-mask keys or None)``, one per chip."""
    graph: dict = {}
    static_keys = packed_static = None
    if p["static"]:
        g, static_keys, packed_static = static_tasks(chips, p["static_sig"], f"drz-{fp}")
        graph.update(g)
    sky = _sky_method(p, {c.key: k for c, k in zip(chips, static_keys, strict=True)}
                      if static_keys is not None and p["use_static"] else None)
    g, sky_keys = sky.tasks(chips, f"drz-sky-{fp}")
    graph.update(g)
    return graph, sky_keys, packed_static


class EarlyWork:
    """Computes the static masks and sky levels of a :func:`drizzle_graph` in a background
    thread while the client places the chips (the ``early`` hook), on the same thread pool as
    the placements (:attr:`pool`: as many tasks at once as threads, so no more memory than
    either alone); :meth:`apply` then puts the results into the graph in place of their
    tasks. Several jobs may share one (``hapdask svm``'s products): their tasks are computed
    one hand-over after the other."""

    def __init__(self, nthreads: int | None) -> None:
        self.nthreads = nthreads or os.cpu_count() or 1
        self.pool = ThreadPoolExecutor(self.nthreads, thread_name_prefix="hapdask-plan")
        self.thread: threading.Thread | None = None
        self.values: dict = {}
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def __call__(self, graph: dict, keys: list) -> None:
        def run(before: threading.Thread | None) -> None:
            if before is not None:
                before.join()  # one compute at a time (the profile records them in turn)
            if self.error is not None:
                return
            try:
                prof = profile.active()
                if prof is None:
                    got = threaded_get(graph, keys, pool=self.pool)
                else:
                    got = profile.profiled_local(prof, threaded_get, graph, keys,
                                                 self.nthreads, pool=self.pool,
                                                 beside_client=True)
                self.values.update(zip(keys, got, strict=True))
            except BaseException as exc:  # re-raised by apply()
                self.error = exc

        with self._lock:  # the hand-overs of jobs planned in several threads, in turn
            thread = threading.Thread(target=run, args=(self.thread,),
                                      name="hapdask-drizzle-sky", daemon=True)
            thread.start()  # started before the next hand-over can wait for it
            self.thread = thread

    def join(self) -> None:
        """Wait for the background compute (if one was started) and stop the pool."""
        if self.thread is not None:
            self.thread.join()
        self.pool.shutdown()

    def apply(self, job: DrizzleGraph) -> dict:
        """The job's graph with the early tasks replaced by their results (the graph as it is
        when nothing was computed early or the results do not apply)."""
        self.join()
        if not job.early:
            return job.graph
        if self.error is not None:
            raise self.error
        tasks, keys = job.early
        drop = set(tasks)
        graph = {k: v for k, v in job.graph.items() if k not in drop}
        graph.update({k: self.values[k] for k in keys})
        return graph


def reuses_separate(p: AstroDrizzleParams, sep_grid: OutputGrid | None,
                    final_grid: OutputGrid) -> bool:
    """Whether the final drizzle is the separate one but for the cosmic-ray masks: same grid,
    square kernel with pixfrac 1 for both (HAP's ACS/WFC, WFC3/UVIS and WFC3/IR settings), EXP
    weights of the same scale and the same good DQ bits. Static masks and sky are shared by
    construction; units only scale the written SCI."""
    if sep_grid is None or sep_grid.header != final_grid.header:
        return False
    sep, final = p.separate, p.final
    return (sep.kernel == final.kernel == "square" and sep.pixfrac == final.pixfrac == 1.0
            and sep.wht_type == final.wht_type == "EXP" and sep.wt_scl == final.wt_scl
            and sep.bits == final.bits)


def _create_product(final_path, filename, grid, chips, primaries, sci_headers, final, nplanes,
                    changed, reserve, *skies) -> xfits.FitsLayout:
    """The product's temporary file with every header (they hold the sky levels)."""
    sky = {c.key: s for c, s in zip(chips, skies, strict=True)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        hdrs = products.product_headers(filename, grid, chips, primaries, sci_headers, sky,
                                        final, bool(nplanes), changed)
        for name in ("primary", "sci"):
            for _ in range(reserve):
                hdrs[name].append(fits.Card(), useblanks=False, bottom=True)
        return xfits.create_fits(final_path, grid.shape, primary=hdrs["primary"],
                                 sci=hdrs["sci"], wht=hdrs["wht"], ctx=hdrs["ctx"],
                                 nplanes=nplanes, hdrtab=hdrs["hdrtab"])


def _finish_product(layout, chip_keys, labels, p, notes, timings, crmasks, n_sky, *rest
                    ) -> DrizzleResult:
    """Rename the product to its final name once every tile is written."""
    t0 = time.perf_counter()
    rows = [f for r in rest if isinstance(r, list) and r and isinstance(r[0], Future)
            for f in r]  # banded_product
    if rows and not all(f.done() for f in rows):
        # the rest is a rename: with a spare thread, another task gets this core meanwhile
        with waiting(resume=False):
            for future in rows:
                future.result()
    for future in rows:
        future.result()
    skies = dict(zip(chip_keys, rest[:n_sky], strict=True))
    notes = list(notes)
    for key, label in zip(chip_keys, labels, strict=True):
        if not skies[key].ok:
            notes.append(f"{label}: {skies[key].reason} (skipped)")
    path = xfits.finalize_fits(layout, {})
    timings = {**timings, "finalize": time.perf_counter() - t0}
    return DrizzleResult(Path(path), list(crmasks), skies, p, notes, timings, 0.0)


def drizzle(
    inputs,
    output: str | os.PathLike,
    *,
    params: Mapping | AstroDrizzleParams | None = None,
    config: str | os.PathLike | None = None,
    tile_size: int = 1024,
    region_size: int = 1024,
    scheduler=None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    update_dq: bool = False,
    wcs_updates: Mapping | None = None,
    crmasks: Mapping | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
    reuse_separate: bool = True,
) -> DrizzleResult:
    """Run AstroDrizzle's steps on a set of exposures and write the drizzled product.

    Parameters
    ----------
    inputs : path(s), list file, directory or URL(s)
        FLT/FLC exposures (anything :func:`hapdask.io.resolve_inputs` accepts); drizzled in
        the order of their start times (then rootnames), whatever order they are given in.
    output : path
        Product name without suffix: writes ``<output>_drz.fits`` (``_drc`` for FLC inputs);
        cosmic-ray masks go to the same directory.
    params : mapping or AstroDrizzleParams, optional
        AstroDrizzle parameters by name (override ``config``).
    config : path, optional
        JSON file of AstroDrizzle parameters (:func:`~hapdask.mosaic.params.load_config`).
    tile_size, region_size : int
        Output tile edge and chip region edge (pixels) of the tasks.
    scheduler, workers, threads_per_worker
        As :func:`hapdask.mvm.run`.
    update_dq : bool
        Clear ``resetbits`` in the inputs' DQ and OR ``crbit`` where cosmic rays were found
        (atomically per file), as AstroDrizzle leaves its inputs. Otherwise the inputs are
        not touched; ``resetbits`` are then treated as good DQ bits.
    wcs_updates : mapping, optional
        ``(rootname, extver) -> WCS or Header`` replacing chip WCSs.
    crmasks : mapping, optional
        ``rootname -> <rootname>_crmask.fits`` of an earlier run (e.g. the filter product of an
        SVM visit): when this job does not search cosmic rays itself, their flagged pixels get
        weight 0 like a DQ flag ``crbit`` would, i.e. only where ``crbit`` is not a good bit of
        ``final_bits``. The files are read, never written.
    progress : bool
    log : callable
    reuse_separate : bool
        As :func:`drizzle_graph`.

    Returns
    -------
    DrizzleResult

    Raises
    ------
    ParameterError
        Unknown parameter name or bad value (named).
    ValueError
        Unreadable input, mixed units, no input.
    """
    t_start = time.perf_counter()
    # on local threads, the static masks and sky levels are computed while the chips are placed
    early = EarlyWork(threads_per_worker) if scheduler is None and not workers else None
    try:
        job = drizzle_graph(inputs, output, params=params, config=config, tile_size=tile_size,
                            region_size=region_size, update_dq=update_dq,
                            wcs_updates=wcs_updates, crmasks=crmasks,
                            reuse_separate=reuse_separate, early=early,
                            discard=early is not None, banded_product=early is not None,
                            save_behind=early is not None,
                            pool=early.pool if early is not None else None)
    finally:
        if early is not None:
            early.join()
    try:
        graph = early.apply(job) if early is not None else job.graph
        with compute_context(scheduler, workers, threads_per_worker, log,
                             scratch=job.scratch.directory) as (compute, _client):
            t0 = time.perf_counter()
            try:
                # no spare thread (hapdask.scheduling.SPARE_THREADS, as hapdask svm has): its
                # third task's buffers raised the bench's peak RSS by 80-110 MiB (to ~1/2 of
                # AstroDrizzle's) for ~0.6 s of its ~13 s
                # the separate drizzles largest first (graph.separate_priority)
                # the medians' stacks read ahead of them (graph.stack_prefetch)
                result = compute(graph, job.keys, progress, priority=job.priority,
                                 prefetch=job.prefetch)[0]
            except BaseException:
                wait_product_rows()
                remove_temporary(job.output)
                raise
        result.timings["compute"] = time.perf_counter() - t0
        result.wall_time = time.perf_counter() - t_start
        return result
    finally:
        job.scratch.remove()


def _fingerprint(chips: Iterable[ChipRef], p: AstroDrizzleParams, tile: int, region: int,
                 output: str = "") -> str:
    h = hashlib.sha256(f"{tile}|{region}|{output}|{sorted(p.values.items(), key=str)}"
                       .encode())
    for c in chips:
        h.update(f"{c.chip.path}|{c.key}|{c.exptime}".encode())
        if c.wcs_bytes is not None:
            h.update(c.wcs_bytes)
    return h.hexdigest()[:16]


__all__ += ["ParameterError"]
