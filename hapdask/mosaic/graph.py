"""The mosaic graph: AstroDrizzle's steps as Dask stages over tiles and chip regions.

Keys (``<p>`` is a caller-given prefix carrying a plan fingerprint, so keys are
deterministic)::

    (<p>-chip, i)               ChipRef of input chip i (every chip enters the graph once)
    (<p>-sky..., i)             SkyLevel of chip i (from a sky method's own tasks)
    (<p>-static...)             static masks (bool, True = good), one per chip signature,
                                and each packed (PackedMask) for the drizzle stages
    (<p>-sep, ty, tx)           separate drizzles of a median tile (stack kept as a scratch
                                file) -> per-exposure weight sums of the tile
    (<p>-wmean,), (<p>-noise,)  mean weights and minmed noise terms of the exposures
    (<p>-median, ty, tx)        median tile of the separate-drizzle grid
    (<p>-cr, i, r)              cosmic-ray mask (PackedMask) of region r of chip i
    (<p>-tile, ty, tx)          {"sci", "wht", "ctx"} of a final output tile (drizzled, or
                                made from the separate drizzles' sums when the final
                                drizzle is the separate one but for the cosmic rays)

Each task holds one tile (or one chip region) and the input pixels that map onto it; the order
in which chips are added is fixed by the plan, so results do not depend on scheduling, tiling
or worker count. Pixel coordinates are 0-based; boxes and windows are ``(y0, y1, x0, x1)``,
half-open.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hapdask.mosaic.inputs import ChipRef
from hapdask.mosaic.params import DrizzleParams
from hapdask.mosaic.scratch import Scratch
from hapdask.mosaic.stages import (
    CrJob,
    MedianJob,
    PackedMask,
    StackRead,
    TileJob,
    blot_cr_region,
    drizzle_tile,
    exposure_noise,
    median_tile,
    reuse_tile,
    separate_tile,
    weight_means,
)
from hapdask.mosaic.tiles import ChipPlacement, Tile

__all__ = ["GridInputs", "chip_tasks", "cr_tasks", "drizzle_tasks", "median_tasks",
           "release_scratch", "scratch_readers", "separate_priority", "stack_prefetch",
           "static_tasks"]

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class GridInputs:
    """The inputs of one output grid, as the stage builders take them.

    Attributes
    ----------
    chips : sequence of ChipRef
        Plan order (a tile's ``contribs`` index it; also the context ids).
    chip_keys : sequence
        Graph keys holding the chips (:func:`chip_tasks`).
    sky_keys : sequence
        Per chip, the key (or value) of its SkyLevel.
    header : str
        The grid's WCS header string (with NAXISn).
    scale_arcsec : float
        Its pixel scale.
    static_keys : sequence, optional
        Per chip, the key of its static mask (True = good).
    """

    chips: Sequence[ChipRef]
    chip_keys: Sequence
    sky_keys: Sequence
    header: str
    scale_arcsec: float
    static_keys: Sequence | None = None

    def statics(self, idx: Sequence[int]) -> list:
        """Static-mask keys of chips ``idx`` ([] without static masks)."""
        return [self.static_keys[i] for i in idx] if self.static_keys is not None else []


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def chip_tasks(chips: Sequence[ChipRef], prefix: str) -> tuple[dict, list]:
    """Put every chip into a graph once: ``({(<prefix>-chip, i): chip}, keys)``."""
    graph = {(f"{prefix}-chip", i): c for i, c in enumerate(chips)}
    return graph, list(graph)


def static_tasks(chips: Sequence[ChipRef], static_sig: float, prefix: str
                 ) -> tuple[dict, list, list]:
    """Static masks (the sky package's ``static_mask_tasks``, grouped as drizzlepac 3.11 does).

    Returns ``(graph, keys, packed)``: per chip, the key of its mask (bool, chip shape, True =
    good), for the sky step, and the key of the same mask as a :class:`PackedMask`, for the
    drizzle stages (the graph holds masks until the last final tile: packed, 1/8 of the
    memory; the bool masks are released once the sky step and the packing are done).
    """
    from hapdask.sky import static_mask_tasks

    graph, by_chip = static_mask_tasks(list(chips), f"{prefix}-static", static_sig)
    packed: dict = {}
    for key in by_chip.values():
        if key not in packed:
            pkey = (f"{prefix}-static-packed", *key[1:])
            graph[pkey] = (PackedMask.pack, key)
            packed[key] = pkey
    return graph, [by_chip[c.key] for c in chips], [packed[by_chip[c.key]] for c in chips]


def drizzle_tasks(
    tiles: Sequence[Tile],
    grid: GridInputs,
    params: DrizzleParams,
    nplanes: int,
    prefix: str,
    *,
    cr_regions: Sequence[Sequence[tuple[Box, object]]] | None = None,
    sums: dict[tuple[int, int], tuple] | None = None,
) -> tuple[dict, dict[tuple[int, int], tuple]]:
    """Final drizzle: one task per output tile.

    Parameters
    ----------
    tiles : sequence of Tile
        ``contribs`` index ``grid.chips`` (and are the context ids).
    grid : GridInputs
    params : DrizzleParams
    nplanes : int
        Context planes (0: no CTX).
    prefix : str
    cr_regions : sequence, optional
        Per chip, ``(region box, key of its cosmic-ray mask)`` pairs.
    sums : dict, optional
        Tile index -> ``(key of its separate-drizzle task, scratch files of its sums and
        counts, context ids of the count planes)`` (:func:`median_tasks` with ``keep_sums``):
        those tiles are made from the separate pass's sums
        (:func:`~hapdask.mosaic.stages.reuse_tile`) instead of drizzled again.

    Returns
    -------
    graph, {(ty, tx): key}
    """
    graph: dict = {}
    keys: dict = {}
    for tile in tiles:
        idx = [i for i, _ in tile.contribs]
        boxes = tuple(b for _, b in tile.contribs)
        ratios = tuple(grid.scale_arcsec / grid.chips[i].pscale for i in idx)
        cr_boxes: list[tuple[Box, ...]] = []
        cr_keys: list[list] = []
        if cr_regions is not None:
            for i, box in tile.contribs:
                grown = (box[0] - 1, box[1] + 1, box[2] - 1, box[3] + 1)
                sel = [(b, k) for b, k in cr_regions[i] if _overlaps(b, grown)]
                cr_boxes.append(tuple(b for b, _ in sel))
                cr_keys.append([k for _, k in sel])
        sep_key, files, ids = (sums or {}).get(tile.index, (None, None, ()))
        job = TileJob(index=tile.index, window=tile.window, header=grid.header, boxes=boxes,
                      ctx_ids=tuple(idx), iscales=tuple(r * r for r in ratios), ratios=ratios,
                      nplanes=nplanes, params=params, cr_boxes=tuple(cr_boxes),
                      sums=files, sums_ids=ids)
        key = (f"{prefix}-tile", *tile.index)
        args = (job, [grid.chip_keys[i] for i in idx], [grid.sky_keys[i] for i in idx],
                grid.statics(idx), cr_keys)
        graph[key] = (drizzle_tile, *args) if files is None else (reuse_tile, *args, sep_key)
        keys[tile.index] = key
    return graph, keys


def median_tasks(
    tiles: Sequence[Tile],
    grid_shape: tuple[int, int],
    grid: GridInputs,
    params: DrizzleParams,
    combine,
    tile_boxes: Sequence[dict],
    prefix: str,
    scratch: Scratch,
    keep_sums: bool = False,
    save_behind: bool = False,
    prefetch: bool = False,
) -> tuple[dict, dict[tuple[int, int], tuple], dict[tuple[int, int], tuple]]:
    """Separate drizzles + median: one separate-drizzle and one median task per tile.

    The separate-drizzle task of a tile keeps its stack in ``scratch`` and returns the tile's
    weight sums; their reduction (each exposure's mean weight over the whole grid, for
    ``combine_maskpt``) gates the median tasks, which read the stacks back. Exposures are the
    chips' rootnames in chip order. ``tile_boxes[i]`` maps tile index -> input box of chip
    ``i`` for the tile grown by ``combine.halo`` (see :func:`hapdask.mosaic.tiles.place_chip`).
    With ``keep_sums``, each separate-drizzle task also keeps the sums of all exposures over its
    tile and each chip's contribution counts (chip ``i`` = context id ``i``), from which
    :func:`drizzle_tasks` makes the final tiles when the final drizzle is the separate one.
    With ``save_behind``, a separate-drizzle task hands these saves to the scratch's saving
    thread and returns (:attr:`~hapdask.mosaic.stages.MedianJob.save_behind`; the tasks reading
    the files wait for them): only for a graph computed on local threads.
    With ``prefetch``, each median task is given a :class:`~hapdask.mosaic.stages.StackRead`
    of its stack, which the scheduler may start before the task (:func:`stack_prefetch`): also
    only for a graph computed on local threads.

    Returns
    -------
    graph, {(ty, tx): key of the median tile}, {(ty, tx): (key of the separate-drizzle task,
    scratch files of its sums and counts, context ids of the count planes)} (empty without
    ``keep_sums``)
    """
    halo = int(combine.halo)
    ny, nx = grid_shape
    chips = grid.chips
    exposures: dict[str, list[int]] = {}
    for i, c in enumerate(chips):
        exposures.setdefault(c.rootname, []).append(i)
    exp_index = {r: e for e, r in enumerate(exposures)}
    n_inputs = len(exposures)
    graph: dict = {}
    noise_key = (f"{prefix}-noise",)
    graph[noise_key] = (exposure_noise, list(grid.chip_keys),
                        [list(v) for v in exposures.values()], *grid.sky_keys)
    jobs = []
    sums: dict = {}
    for tile in tiles:
        y0, y1, x0, x1 = tile.window
        grown = (max(y0 - halo, 0), min(y1 + halo, ny), max(x0 - halo, 0), min(x1 + halo, nx))
        idx = [i for i in range(len(chips)) if tile.index in tile_boxes[i]]
        if not idx:
            continue
        groups: dict[str, list[int]] = {}
        for pos, i in enumerate(idx):
            groups.setdefault(chips[i].rootname, []).append(pos)
        ratios = tuple(grid.scale_arcsec / chips[i].pscale for i in idx)
        job = MedianJob(index=tile.index, window=tile.window, grown=grown, header=grid.header,
                        boxes=tuple(tile_boxes[i][tile.index] for i in idx),
                        iscales=tuple(r * r for r in ratios), ratios=ratios,
                        groups=tuple(tuple(v) for v in groups.values()),
                        exposures=tuple(exp_index[r] for r in groups), n_inputs=n_inputs,
                        params=params, combine=combine, scratch=scratch,
                        final_ctx=tuple(idx) if keep_sums else (),
                        save_behind=save_behind)
        ckeys = [grid.chip_keys[i] for i in idx]
        skey = (f"{prefix}-sep", *tile.index)
        if keep_sums:
            sums[tile.index] = (skey, (scratch.path(job.sums_name),
                                       scratch.path(job.sums_name + "-count")), tuple(idx))
        graph[skey] = (separate_tile, job, ckeys, [grid.sky_keys[i] for i in idx],
                       grid.statics(idx))
        jobs.append((job, ckeys, skey))
    means_key = (f"{prefix}-wmean",)
    graph[means_key] = (weight_means, *[k for _, _, k in jobs])
    keys: dict = {}
    for job, ckeys, skey in jobs:
        key = (f"{prefix}-median", *job.index)
        read = (StackRead(scratch.path(job.stack_name)),) if prefetch else ()
        graph[key] = (median_tile, job, ckeys, skey, means_key, noise_key, *read)
        keys[job.index] = key
    return graph, keys, sums


def separate_priority(graph: Mapping) -> dict:
    """Priorities (``key -> int``, :func:`hapdask.scheduling.local_compute`) that start the
    separate-drizzle tasks of ``graph`` (:func:`median_tasks`) largest first, by the input
    pixels of their chips' boxes (ties in key order), before any task without one.

    Every median task waits for all of them (the grid's mean weights): in Dask's own order the
    last ones were among the largest, one core computing while the other had nothing left to
    do (the drizzle bench: ~2 s of a 2.5 s task at load 10, the ~0.4 s dip of the quiet
    timeline); largest first, the last ones are the smallest, and the tasks that need no
    median fill the other core meanwhile."""
    cost = {}
    for key, task in graph.items():
        if isinstance(task, tuple) and task and task[0] is separate_tile:
            job = task[1]
            cost[key] = sum((b1 - b0) * (a1 - a0) for b0, b1, a0, a1 in job.boxes)
    ranked = sorted(cost, key=lambda k: (cost[k], str(k)))
    return {key: n + 1 for n, key in enumerate(ranked)}


def stack_prefetch(graph: Mapping) -> dict:
    """``key -> callable`` (:func:`hapdask.scheduling.local_compute`'s ``prefetch``) starting
    the stack reads of the median tasks of ``graph`` that have one (:func:`median_tasks` with
    ``prefetch``): the scheduler starts the next median's read as the one before starts (the
    median tasks are ready at once, after the grid's mean weights, and started in a fixed
    order), so that the read's wait overlaps the tasks instead of idling a core."""
    out = {}
    for key, task in graph.items():
        if (isinstance(task, tuple) and len(task) == 7 and task[0] is median_tile
                and isinstance(task[6], StackRead)):
            out[key] = task[6].start
    return out


def cr_tasks(
    placements: Sequence[ChipPlacement],
    grid: GridInputs,
    tile_windows: dict[tuple[int, int], Box],
    median_keys: dict[tuple[int, int], tuple],
    halo: int,
    blot: dict,
    cr,
    prefix: str,
) -> tuple[dict, list[list[tuple[Box, object]]]]:
    """Blot + driz_cr: one task per chip region.

    ``grid`` is the median grid; ``blot`` holds ``interp``, ``sinscl``, ``addsky``,
    ``skyval``. Regions mapping outside the median grid, or onto tiles without a median, get
    no task (no cosmic ray flagged).

    Returns
    -------
    graph, per chip: list of (region box, key of its PackedMask)
    """
    graph: dict = {}
    out: list[list] = []
    for i, (chip, place) in enumerate(zip(grid.chips, placements, strict=True)):
        cy, cx = chip.shape
        mine = []
        for r, region in enumerate(place.regions):
            if region.window is None:
                continue
            parts = [(w, median_keys[t]) for t, w in tile_windows.items()
                     if t in median_keys and _overlaps(w, region.window)]
            if not parts:
                continue
            y0, y1, x0, x1 = region.box
            grown = (max(y0 - halo, 0), min(y1 + halo, cy), max(x0 - halo, 0),
                     min(x1 + halo, cx))
            job = CrJob(box=region.box, grown=grown, window=region.window,
                        parts=tuple(w for w, _ in parts), header=grid.header,
                        ratio=grid.scale_arcsec / chip.pscale, interp=blot["interp"],
                        sinscl=blot["sinscl"], addsky=blot["addsky"], skyval=blot["skyval"],
                        cr=cr)
            key = (f"{prefix}-cr", i, r)
            graph[key] = (blot_cr_region, job, grid.chip_keys[i], grid.sky_keys[i],
                          [k for _, k in parts])
            mine.append((region.box, key))
        out.append(mine)
    return graph, out


class _Reads:
    """What a wrapped task (:func:`_then_release`) read: its scratch files and the counter
    they are released to. A plain object (not a tuple or string), so Dask passes it through
    untouched."""

    __slots__ = ("paths", "release")

    def __init__(self, release: _Release, paths: tuple[str, ...]) -> None:
        self.release = release
        self.paths = paths


class _Release:
    """Readers left per scratch file; a file is handed to
    :meth:`~hapdask.mosaic.scratch.Scratch.discard` when its last reader is done."""

    def __init__(self, scratch: Scratch, readers: Mapping[str, Sequence]) -> None:
        self.scratch = scratch
        self.left = {path: len(set(keys)) for path, keys in readers.items()}
        self.lock = threading.Lock()

    def read(self, paths: Sequence[str]) -> None:
        done = []
        with self.lock:
            for path in paths:
                self.left[path] -= 1
                if self.left[path] == 0:
                    done.append(path)
        if done:
            self.scratch.discard(*done)


def _then_release(reads: _Reads, func, *args):
    out = func(*args)
    reads.release.read(reads.paths)
    return out


def scratch_readers(graph: Mapping) -> dict[str, list]:
    """Scratch file -> keys of the tasks of ``graph`` that may read or write it, for
    :func:`release_scratch`: every task given a job naming the file (a
    :class:`~hapdask.mosaic.stages.MedianJob`: its stack and sums in its scratch; a
    :class:`~hapdask.mosaic.stages.TileJob`: the sums it reads; a job of member tile jobs,
    :class:`hapdask.mosaic.family.FamilyJob`: theirs), whatever function runs it. A graph
    merging several jobs (``hapdask svm``) gets the files of all their scratches."""
    readers: dict[str, list] = {}

    def add(key, *paths) -> None:
        for path in paths:
            if path is not None:
                readers.setdefault(path, []).append(key)

    for key, task in graph.items():
        if not (isinstance(task, tuple) and task and callable(task[0])):
            continue
        for arg in task[1:]:
            members = getattr(arg, "members", None)
            for job in members if isinstance(members, tuple) else (arg,):
                if isinstance(job, MedianJob):
                    add(key, job.scratch.path(job.stack_name))
                    if job.final_ctx:
                        add(key, job.scratch.path(job.sums_name),
                            job.scratch.path(job.sums_name + "-count"))
                elif isinstance(job, TileJob):
                    add(key, *(job.sums or ()))
    return readers


def release_scratch(graph: Mapping, readers: Mapping[str, Sequence], scratch: Scratch) -> dict:
    """``graph`` with every task that reads (or writes) scratch files wrapped so that a file is
    deleted as soon as its last such task is done (:meth:`~hapdask.mosaic.scratch.Scratch.discard`:
    by the scratch's deleting thread), instead of all of them when the run ends.

    The graph keeps its tasks and dependencies (so Dask orders it as before); the counts live
    in this process, so the graph is for one compute on local threads (a task recomputed after
    the deletion, as ``distributed`` does when a worker is lost, would miss its file).

    Parameters
    ----------
    graph : mapping
    readers : mapping
        Scratch file path -> keys of every task of ``graph`` that reads or writes it.
    scratch : Scratch

    Returns
    -------
    dict
        The new graph.
    """
    release = _Release(scratch, readers)
    paths_of: dict = {}
    for path, keys in readers.items():
        for key in dict.fromkeys(keys):
            paths_of.setdefault(key, []).append(path)
    out = dict(graph)
    for key, paths in paths_of.items():
        out[key] = (_then_release, _Reads(release, tuple(paths)), *graph[key])
    return out
