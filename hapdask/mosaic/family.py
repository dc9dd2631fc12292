"""Product families: several drizzle products on one grid from one drizzle pass per chip.

Products drizzled onto the same grid with the same kernel, pixfrac and weight (e.g. an SVM
visit's exposure, filter and total products: square, pixfrac 1, EXP weights) differ only in
which pixels of a chip they take (DQ bits, static and cosmic-ray masks) and in the sky they
subtract. A drizzle deposit is linear in the input value::

    num += dow * (x - s) * iscale        den += dow        ctx |= bit where dow > 0

so, for a chip ``c`` and a product ``P`` with sky ``s_P`` (in the drizzled units),
``num_P = N_c - s_P * iscale * D_c`` over any set of pixels, where ``N_c``/``D_c`` are the
sums of the sky-free values. The family's tile task (:func:`family_write`) drizzles, per chip,
the pixels *every* member takes (``A_c``) once, and adds to each member its ``N_c - s_P
iscale D_c``, ``D_c`` and the chip's context bit; then it drizzles, for each member, the
pixels that member takes beyond ``A_c`` (its complement: e.g. an exposure product's DQ-,
static- or cosmic-ray-flagged pixels, a total's static-flagged pixels) directly into that
member's sums. Nothing is ever subtracted from a sum: a pixel no member deposit reaches
keeps ``den == 0`` exactly, and the context is the OR of exact deposits.

Sums are formed in another order than each product's own drizzle
(:func:`hapdask.mosaic.stages.drizzle_tile`), so SCI and WHT agree with it to float32
rounding (the sky term is applied in float64 instead of to each float32 input value), CTX
exactly; the order is fixed (chips in the family's order, each chip's common part then the
members' complements), so the products do not depend on tiling, workers or input order.

:func:`family_tasks` replaces the final-tile and tile-write tasks of the members' graphs
(:class:`~hapdask.mosaic.job.DrizzleGraph` ``tiles``, ``writes``) by one family task per
tile position, which makes and writes every member's tile (:func:`family_write`: a task
holds one tile of each member while it runs, and returns only counts, so the scheduler never
keeps finished tiles); the members' write keys pick their counts from it, every other task
is left as it is.
:func:`family_groups` says which products can share a family from their parameters; members
that differ in grid, tiling, kernel, pixfrac or weights keep their own drizzle.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hapdask.mosaic.job import write_product_tile
from hapdask.mosaic.params import DrizzleParams
from hapdask.mosaic.stages import (
    TileJob,
    _chip_inputs,
    _grown_box,
    _kernel,
    _subtracted,
    drizzle_tile,
    prepare_chip_region,
    region_mask,
    reuse_tile,
)
from hapdask.mosaic.wcsio import thread_header_wcs
from hapdask.profile import timed
from hapdask.sky.level import SkyLevel

__all__ = ["FamilyJob", "family_groups", "family_key", "family_tasks", "family_write"]

#: the sky of the family's common pass (nothing subtracted)
_NO_SKY = SkyLevel(0.0, 0.0, 0)


def family_key(params: DrizzleParams) -> tuple:
    """What the members of a family share besides the grid and tiling: kernel, pixfrac and
    weights (IVM weights depend on the sky each product subtracts: never shared)."""
    if params.wht_type == "IVM":
        return ("IVM", id(params))
    return (params.kernel, float(params.pixfrac), params.wht_type, params.wt_scl)


def family_groups(params: Sequence[DrizzleParams]) -> list[list[int]]:
    """Indices of the products (by their final drizzle parameters) that can form families:
    groups of two or more with the same :func:`family_key`, in the given order."""
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(params):
        groups.setdefault(family_key(p), []).append(i)
    return [g for g in groups.values() if len(g) >= 2]


@dataclass(frozen=True)
class FamilyJob:
    """What one family tile task needs besides its members' inputs.

    Attributes
    ----------
    index : (ty, tx)
    window : (y0, y1, x0, x1)
        The output tile (the same for every member).
    members : tuple of TileJob
        Each member's own tile job (its chips in its order, context ids, parameters).
    order : tuple of tuple of (int, int)
        The family's chips in drizzle order: per chip, the ``(member, position)`` pairs of
        the members holding it (position in that member's ``TileJob``).
    """

    index: tuple[int, int]
    window: tuple[int, int, int, int]
    members: tuple[TileJob, ...]
    order: tuple[tuple[tuple[int, int], ...], ...]


def _chip_identity(chip) -> tuple:
    return (chip.chip.path, chip.key, chip.wcs_bytes)


def _bbox(mask: np.ndarray) -> tuple[slice, slice] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if not rows.size:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def family_write(job: FamilyJob, inputs: list, outputs: list) -> list[float]:
    """Every member's tile from one drizzle of each chip's common pixels, each written as soon
    as it is finalized (its sums then freed): the task's result is small, so the scheduler
    never holds finished tiles.

    ``inputs``: per member ``[chips, skies, statics, crmasks]`` as
    :func:`~hapdask.mosaic.stages.drizzle_tile` takes them (``statics``/``crmasks`` may be
    empty lists).

    ``outputs``: per member ``[layout, scale]`` or ``[layout, scale, summary]`` as the
    engine's write task takes them (the product file's
    :class:`~hapdask.export.fits.FitsLayout`, or where a banded product keeps its tiles,
    ``drizzle_graph(banded_product=True)``; the SCI scale and its ``tile_summary``). Returns
    per member the write task's result (its tile's count of pixels with weight, with a
    summary the pair ``(count, summary)``).
    """
    accs = _sums(job, inputs)
    out = []
    for q, (m, (layout, scale, *summary)) in enumerate(zip(job.members, outputs, strict=True)):
        result = _finalize(m, accs[q])
        accs[q] = None
        with timed("write"):  # the product file's rows (most of the task's system time)
            out.append(write_product_tile(layout, job.window, scale, result, *summary))
    return out


def _finalize(m: TileJob, acc: tuple) -> dict[str, np.ndarray]:
    from hapdask.drizzle import finalize_tile

    num, den, ctx = acc
    with timed("finalize"):
        sci, wht = finalize_tile(num, den, fillval=m.params.fillval)
    return {"sci": sci, "wht": wht, "ctx": ctx}


def _sums(job: FamilyJob, inputs: list) -> list[tuple]:
    """Every member's ``(num, den, ctx)`` of the tile (see the module docstring)."""
    from hapdask.drizzle.tile import context_mask  # numba module: loaded when a tile runs

    y0, y1, x0, x1 = job.window
    th, tw = y1 - y0, x1 - x0
    accs = []
    for m in job.members:
        ctx = np.zeros((m.nplanes, th, tw), np.int32) if m.nplanes else None
        accs.append((np.zeros((th, tw)), np.zeros((th, tw)), ctx))
    n_c = np.zeros((th, tw))
    d_c = np.zeros((th, tw))
    t_c = np.zeros((1, th, tw), np.int32)
    out_wcs = thread_header_wcs(job.members[0].header)
    # each chip's pixel map is computed once, for its first member (all members map the chip
    # onto the same grid with the same footprint: the same boxes and maps)
    for chip_members in job.order:
        members = [(q, k) for q, k in chip_members if inputs[q][1][k].ok]
        if not members:
            continue
        q0, k0 = members[0]
        m0 = job.members[q0]
        chips0, skies0, statics0, crs0 = inputs[q0]
        chip = chips0[k0]

        def parts(q: int, k: int) -> list | None:
            crs = inputs[q][3]
            return list(zip(job.members[q].cr_boxes[k], crs[k], strict=True)) if crs else None

        # the region's pixels, read once for every member (each gets its own copy of SCI)
        with timed("read"):
            sci, err, dq = chip.chip.read(_grown_box(chip.shape, m0.boxes[k0]), err=any(
                job.members[q].params.wht_type == "ERR" for q, _ in members))
        # the first member's pixels through the engine's own reader (in the row spans), which
        # also gives the region, the map and the input box
        got = _chip_inputs(chip, skies0[k0], m0.boxes[k0], job.window, m0.params,
                           m0.ratios[k0], out_wcs, static=statics0[k0] if statics0 else None,
                           crparts=parts(q0, k0), pixels=(sci.copy(), err, dq),
                           grid=job.members[0].header)
        if got is None:
            continue
        region, data0, weight0, pm, in_box = got
        datas, weights = [data0], [weight0]
        # the sky-free values: a member subtracting no sky has them (0 off its pixels, all of
        # which hold the common ones), else they are made from the pixels once more
        free = next((j for j, (q, k) in enumerate(members)
                     if _subtracted(inputs[q][1][k]) == 0.0), None)
        with timed("read"):
            for q, k in members[1:]:
                st = inputs[q][2]
                pp = parts(q, k)
                d, w = prepare_chip_region(
                    chip, inputs[q][1][k], region, job.members[q].params,
                    static=st[k] if st else None,
                    crmask=region_mask(pp, region) if pp else None,
                    pix_ratio=job.members[q].ratios[k], pixels=(sci.copy(), err, dq))
                datas.append(d)
                weights.append(w)
            common = weights[0] > 0
            for w in weights[1:]:
                common &= w > 0
            if free is not None:
                x = datas[free]
            else:
                x, _ = prepare_chip_region(chip, _NO_SKY, region, m0.params,
                                           pix_ratio=m0.ratios[k0], pixels=(sci, err, dq))
        iscale = float(m0.iscales[k0])
        ratio = float(m0.ratios[k0])
        n_c.fill(0.0)
        d_c.fill(0.0)
        t_c.fill(0)
        _kernel(x, np.where(common, weights[0], np.float32(0)), pm, n_c, d_c, t_c, job.window,
                in_box, m0.params, iscale, ratio, 0, region)
        with timed("family"):
            box = _bbox(t_c[0] != 0)
            if box is not None:
                touched = t_c[0][box] != 0
                nb, db = n_c[box], d_c[box]
            for q, k in members:
                num, den, ctx = accs[q]
                if box is not None:
                    sky = inputs[q][1][k]
                    s = (_subtracted(sky) * chip.gain / (1.0 if chip.is_rate else chip.exptime)
                         * iscale)
                    if s == 0.0:
                        num[box] += nb
                    else:
                        num[box] += nb - s * db
                    den[box] += db
                    if ctx is not None:
                        cid = job.members[q].ctx_ids[k]
                        bit = context_mask(cid)
                        ctx[cid // 32][box] |= np.where(touched, bit, np.int32(0))
        for j, (q, k) in enumerate(members):
            extra = (weights[j] > 0) & ~common
            if not extra.any():
                continue
            num, den, ctx = accs[q]
            mq = job.members[q]
            _kernel(datas[j], np.where(extra, weights[j], np.float32(0)), pm, num, den, ctx,
                    job.window, in_box, mq.params, mq.iscales[k], mq.ratios[k], mq.ctx_ids[k],
                    region)
    return accs


def _tile_parts(task) -> tuple | None:
    """``(job, chip keys, sky keys, static keys, cr keys)`` of an engine final-tile task
    (:func:`~hapdask.mosaic.graph.drizzle_tasks`), or None for anything else."""
    if not isinstance(task, tuple) or task[0] not in (drizzle_tile, reuse_tile):
        return None
    return task[1:6]


def family_tasks(members: Sequence, graphs: Sequence[dict], prefix: str) -> bool:
    """Make and write the members' final tiles in one family task per tile position.

    Parameters
    ----------
    members : sequence of DrizzleGraph
        The products (their ``tiles`` and ``writes``: tile index -> key of the final-tile
        task and of the task writing it).
    graphs : sequence of dict
        Per member, the graph holding its tasks (updated in place: the final-tile tasks are
        removed and each write task becomes a pick of its count from the family task
        (:func:`family_write`), which goes into ``graphs[0]``).
    prefix : str
        Unique prefix of the family's task keys.

    Returns
    -------
    bool
        False (nothing changed) when the members do not share the grid, tiling, tile
        windows, kernel, pixfrac, weights and each chip's input box: they keep their own
        drizzles.
    """
    indexes = [set(m.tiles) for m in members]
    if len(members) < 2 or any(ix != indexes[0] for ix in indexes[1:]):
        return False
    planned = {}
    seen: dict[int, dict] = {}
    for t in sorted(indexes[0]):
        parts = []
        for m, g in zip(members, graphs, strict=True):
            got = _tile_parts(g.get(m.tiles[t]))
            write = g.get(m.writes.get(t))
            if got is None or not (isinstance(write, tuple) and write[0] is write_product_tile
                                   and write[4] == m.tiles[t]):
                return False
            parts.append(got)
        jobs = [p[0] for p in parts]
        j0 = jobs[0]
        if any(j.header != j0.header or j.window != j0.window
               or family_key(j.params) != family_key(j0.params) for j in jobs[1:]):
            return False
        order: dict[tuple, list] = {}
        where: dict[tuple, tuple] = {}
        for q, (job, ckeys, *_rest) in enumerate(parts):
            for k, ck in enumerate(ckeys):
                ident = _chip_identity(graphs[q][ck])
                seen.setdefault(q, {})[ck] = ident
                same = (job.boxes[k], job.iscales[k], job.ratios[k])
                if where.setdefault(ident, same) != same:
                    return False
                order.setdefault(ident, []).append((q, k))
        planned[t] = (jobs, parts, order)
    # the chips in a fixed order: every member's chips in its own plan (time) order, merged
    # (not from the tiles: the order must not depend on the tiling)
    rank: dict[tuple, int] = {}
    for q in sorted(seen):
        for _, ident in sorted(seen[q].items(), key=lambda kv: kv[0][1:]):
            rank.setdefault(ident, len(rank))
    for t, (jobs, parts, order) in planned.items():
        fjob = FamilyJob(index=t, window=jobs[0].window, members=tuple(jobs),
                         order=tuple(tuple(order[i]) for i in sorted(order, key=rank.get)))
        key = (f"{prefix}-tile", *t)
        outputs = [[g[m.writes[t]][1], g[m.writes[t]][3], *g[m.writes[t]][5:]]
                   for m, g in zip(members, graphs, strict=True)]
        graphs[0][key] = (family_write, fjob, [[list(p[1]), list(p[2]), list(p[3]),
                                                [list(c) for c in p[4]]] for p in parts],
                          outputs)
        for q, (m, g) in enumerate(zip(members, graphs, strict=True)):
            del g[m.tiles[t]]
            g[m.writes[t]] = (operator.getitem, key, q)  # member q's count
    return True
