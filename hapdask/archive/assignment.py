"""Exposure -> SkyCell assignment of a whole inventory, vectorised and parallel with Dask.

The inventory is cut into partitions of rows; each partition is one Dask task that parses its
``s_region`` strings (:func:`hapdask.archive.sregion.parse_s_regions`) and runs
:func:`skycells.bulk.cells_for_polygons` over all its chip polygons at once. A task returns
only small integer/float arrays (one entry per exposure-SkyCell overlap), so the driver holds
the inventory plus the assignments and nothing else.

Per overlap the task also keeps the chips' bounding box in the SkyCell (fine pixels, clipped
to the SkyCell): the planner's estimates of output and input pixels come from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from hapdask.archive.sregion import parse_s_regions
from skycells._grid import NPCELL, grid
from skycells.bulk import cells_for_polygons

__all__ = ["Assignments", "assign", "assign_partition"]

#: Rows per Dask task.
PARTITION = 50_000


@dataclass
class Assignments:
    """Exposure-SkyCell overlaps, one entry per pair (sorted by row, then SkyCell).

    Attributes
    ----------
    row : ndarray of int64
        Inventory row (0-based).
    code : ndarray of int64
        SkyCell code (:func:`skycells.bulk.skycell_code`).
    box : ndarray of float32, shape (n, 4)
        ``(x0, x1, y0, y1)`` bounding box of the exposure's chips in the SkyCell, 0-based fine
        pixels, clipped to the SkyCell.
    bad : dict[int, str]
        Rows skipped -> reason.
    """

    row: np.ndarray
    code: np.ndarray
    box: np.ndarray
    bad: dict[int, str]


def _ncells() -> int:
    n = grid().sc_nxy
    return NPCELL * n * n


def assign_partition(s_regions: list, first_row: int = 0) -> Assignments:
    """Assign one partition of rows (``s_region`` strings) to SkyCells.

    Parameters
    ----------
    s_regions : sequence of str
        The rows' ``s_region`` values.
    first_row : int
        Inventory row of ``s_regions[0]`` (the result uses inventory rows).
    """
    parsed = parse_s_regions(s_regions)
    bad = {first_row + r: why for r, why in parsed.bad.items()}
    if parsed.sizes.size == 0:
        e = np.zeros(0, np.int64)
        return Assignments(e, e, np.zeros((0, 4), np.float32), bad)
    hits = cells_for_polygons(parsed.radec, parsed.sizes)
    big = np.unique(parsed.owner[hits.bad])
    for r in big.tolist():
        bad[first_row + r] = "s_region polygon spans more than 40 deg (not an HST chip)"
    row = parsed.owner[hits.polygon]
    keep = ~np.isin(row, big)
    row, code, box = row[keep], hits.code[keep], hits.box[keep]
    key = row * _ncells() + code
    order = np.argsort(key, kind="stable")
    key, box = key[order], box[order]
    start = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if key.size else \
        np.zeros(0, np.int64)
    ukey = key[start]
    if key.size:
        ubox = np.column_stack([
            np.minimum.reduceat(box[:, 0], start), np.maximum.reduceat(box[:, 1], start),
            np.minimum.reduceat(box[:, 2], start), np.maximum.reduceat(box[:, 3], start)])
    else:
        ubox = np.zeros((0, 4))
    urow, ucode = np.divmod(ukey, _ncells())
    return Assignments(urow + first_row, ucode, ubox.astype(np.float32),
                       dict(sorted(bad.items())))


def _objects(items: list) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def assign(s_regions, *, rows: np.ndarray | None = None, num_workers: int | None = None,
           partition: int = PARTITION, scheduler: str | None = None) -> Assignments:
    """Assign every row of an inventory to the SkyCells its chips overlap.

    Parameters
    ----------
    s_regions : sequence of str
        The inventory's ``s_region`` column.
    rows : ndarray of int, optional
        Only these rows (others are left out silently; the caller reports why).
    num_workers : int, optional
        Worker processes (default: the number of cores). 1 runs in this process.
    partition : int
        Rows per task.
    scheduler : str, optional
        Dask scheduler name (default ``"processes"`` for several workers, else ``"sync"``).

    Returns
    -------
    Assignments
    """
    import dask

    s_regions = list(s_regions) if not isinstance(s_regions, list) else s_regions
    if rows is None:
        rows = np.arange(len(s_regions))
    rows = np.asarray(rows, np.int64)
    nw = num_workers or os.cpu_count() or 1
    tasks = []
    for a in range(0, len(rows), partition):
        sub = rows[a:a + partition]
        # an object array: Dask does not walk it element by element as it would a list
        if sub.size and sub[-1] - sub[0] + 1 == sub.size:  # contiguous: one slice
            texts = _objects(s_regions[int(sub[0]):int(sub[-1]) + 1])
            tasks.append((dask.delayed(assign_partition)(texts, int(sub[0])), None))
        else:
            texts = _objects([s_regions[i] for i in sub.tolist()])
            tasks.append((dask.delayed(assign_partition)(texts, 0), sub))
    sched = scheduler or ("processes" if nw > 1 and len(tasks) > 1 else "sync")
    results = dask.compute(*[t for t, _ in tasks], scheduler=sched, num_workers=nw)
    rows_out, codes, boxes = [], [], []
    bad: dict[int, str] = {}
    for res, (_, sub) in zip(results, tasks, strict=True):
        if sub is not None:  # map local row numbers back
            res.row = sub[res.row]
            res.bad = {int(sub[k]): v for k, v in res.bad.items()}
        rows_out.append(res.row)
        codes.append(res.code)
        boxes.append(res.box)
        bad.update(res.bad)
    if not rows_out:
        e = np.zeros(0, np.int64)
        return Assignments(e, e, np.zeros((0, 4), np.float32), bad)
    return Assignments(np.concatenate(rows_out), np.concatenate(codes), np.concatenate(boxes),
                       dict(sorted(bad.items())))

