"""The archive plan on disk: ``PLAN/`` with Parquet tables, written under a temporary name.

``PLAN/exposures.parquet``
    The inventory's usable rows: ``exposure`` (inventory row, 0-based), ``obs_id``,
    ``instrument``, ``detector``, ``filter`` (HAP name), ``layer`` (``wfc3_ir_f160w``),
    ``t_exptime``, ``t_min``, ``proposal_id``, ``path``, ``filters`` (raw).
``PLAN/assignments.parquet``
    One row per exposure-SkyCell overlap: ``obs_id``, ``skycell`` (``skycell-p1889x07y19``),
    ``exposure``, ``overlap_pixels`` (fine pixels of the chips' bounding box in the SkyCell).
``PLAN/skycells.parquet``
    One row per SkyCell: ``skycell``, ``pcell``, ``x``, ``y``, ``exposures``, ``layers``
    (count), ``layer_names`` (``;``-joined), ``output_pixels``, ``input_pixels``, ``cost_s``
    (:class:`hapdask.archive.cost.CostModel`), sorted by cost, largest first.
``PLAN/rejected.csv``
    Skipped inventory rows: ``row`` (1-based data row), ``obs_id``, ``reason``.
``PLAN/plan.json``
    Summary: inventory, counts, timings, cost model.
``PLAN/pollers/skycell-..._input.out``
    MVM pollers (10 columns), only when asked for.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hapdask.archive.assignment import assign
from hapdask.archive.cost import CostModel
from hapdask.archive.inventory import layer_keys, split_instrument
from skycells._grid import grid
from skycells.bulk import skycell_names

__all__ = ["ArchivePlan", "plan_archive", "read_plan", "write_pollers"]

FORMAT = "hapdask-archive-plan-1"


@dataclass
class ArchivePlan:
    """A plan read back from ``PLAN/`` (see the module docstring)."""

    path: Path
    exposures: pd.DataFrame
    assignments: pd.DataFrame
    skycells: pd.DataFrame
    info: dict

    def inputs(self, skycell: str) -> list[str]:
        """Paths/URLs of the exposures assigned to a SkyCell, in inventory order.

        Raises
        ------
        KeyError
            If the SkyCell is not in the plan.
        ValueError
            If an assigned exposure has no path in the inventory.
        """
        name = skycell if skycell.startswith("skycell-") else f"skycell-{skycell}"
        sel = self.assignments["skycell"] == name
        if not sel.any():
            raise KeyError(f"{name} is not in the plan {self.path}")
        rows = np.sort(self.assignments.loc[sel, "exposure"].to_numpy())
        exp = self.exposures.set_index("exposure").loc[rows]
        empty = exp[exp["path"] == ""]
        if len(empty):
            raise ValueError(f"{name}: exposure(s) {', '.join(empty['obs_id'][:5])} have no "
                             "path/dataURL in the inventory")
        return exp["path"].tolist()


def _cell_columns(code: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = grid().sc_nxy
    p, rest = np.divmod(code, n * n)
    x, y = np.divmod(rest, n)
    return p, x + 1, y + 1


def _dict_strings(codes: np.ndarray) -> pa.DictionaryArray:
    """Dictionary-encoded SkyCell names (one Python string per distinct SkyCell only)."""
    uniq, inv = np.unique(codes, return_inverse=True)
    return pa.DictionaryArray.from_arrays(pa.array(inv.astype(np.int32)),
                                          pa.array(skycell_names(uniq).tolist()))


def plan_archive(
    inventory: pd.DataFrame,
    output: str | os.PathLike,
    *,
    num_workers: int | None = None,
    cost: CostModel | None = None,
    pollers: bool | Iterable[str] = False,
    source: str = "",
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> ArchivePlan:
    """Assign every exposure of an inventory to its SkyCells and write ``PLAN/``.

    Parameters
    ----------
    inventory : DataFrame
        Columns of :func:`hapdask.archive.inventory.read_inventory`.
    output : path
        The plan directory; built as ``<output>.part`` and renamed when complete.
    num_workers : int, optional
        Worker processes for the assignment (default: all cores). They are started with
        ``spawn``: a script calling this needs the ``if __name__ == "__main__":`` guard.
    cost : CostModel, optional
        Cost coefficients (default :class:`CostModel`).
    pollers : bool or iterable of str
        Also write MVM pollers: True for every SkyCell, or the SkyCells named.
    source : str
        Inventory description recorded in ``plan.json``.
    overwrite : bool
        Replace an existing plan directory (else it is an error).
    log : callable
        Progress messages.

    Returns
    -------
    ArchivePlan

    Raises
    ------
    FileExistsError
        If ``output`` exists and ``overwrite`` is False.
    ValueError
        If no row of the inventory is usable.
    """
    t0 = time.perf_counter()
    output = Path(output)
    if output.exists():
        if not overwrite:
            raise FileExistsError(f"{output}: plan directory exists (use --overwrite to "
                                  "replace it)")
        if not (output / "plan.json").is_file():
            raise FileExistsError(f"{output}: exists and is not a hapdask plan; not replacing it")
    cost = cost or CostModel()
    n = len(inventory)
    codes, layer_names, coarse = layer_keys(inventory)
    bad: dict[int, str] = {}
    for r in np.flatnonzero(codes < 0).tolist():
        bad[r] = f"unknown instrument_name {inventory['instrument_name'].iat[r]!r} " \
                 f"(known: WFC3/UVIS, WFC3/IR, ACS/WFC, ACS/HRC, ACS/SBC, WFPC2)"
    ok_rows = np.flatnonzero(codes >= 0)
    t1 = time.perf_counter()
    a = assign(inventory["s_region"].tolist(), rows=ok_rows, num_workers=num_workers)
    t2 = time.perf_counter()
    bad.update(a.bad)
    bad = dict(sorted(bad.items()))
    log(f"assigned {n - len(bad)} of {n} exposure(s) to SkyCells in {t2 - t1:.1f} s "
        f"({len(a.row)} exposure-SkyCell overlaps); {len(bad)} row(s) skipped")
    if len(a.row) == 0:
        raise ValueError(f"no usable inventory row ({len(bad)} rejected; first: "
                         f"{next(iter(bad.values()), 'none')})")

    good = np.setdiff1d(ok_rows, np.fromiter(bad, np.int64, len(bad)), assume_unique=True)
    obs_id = inventory["obs_id"].to_numpy(dtype=object)
    icode, iname = pd.factorize(inventory["instrument_name"].to_numpy(dtype=object)[good])
    dets = [split_instrument(v) for v in iname]
    det_i = np.array([d[0] for d in dets], dtype=object)[icode] if dets else []
    det_d = np.array([d[1] for d in dets], dtype=object)[icode] if dets else []
    exposures = pd.DataFrame({
        "exposure": good,
        "obs_id": obs_id[good],
        "instrument": det_i,
        "detector": det_d,
        "layer": np.array(layer_names, dtype=object)[codes[good]] if layer_names else [],
        "filter": [s.rsplit("_", 1)[-1] for s in np.array(layer_names, dtype=object)
                   [codes[good]]] if layer_names else [],
        "filters": inventory["filters"].to_numpy(dtype=object)[good],
        "t_exptime": inventory["t_exptime"].to_numpy()[good],
        "t_min": inventory["t_min"].to_numpy()[good],
        "proposal_id": inventory["proposal_id"].to_numpy()[good],
        "path": inventory["path"].to_numpy(dtype=object)[good],
    })

    # per-overlap and per-SkyCell numbers (all numpy; the assignments are sorted by row)
    box = a.box.astype(np.float64)
    area = np.maximum(box[:, 1] - box[:, 0], 0.0) * np.maximum(box[:, 3] - box[:, 2], 0.0)
    lay = codes[a.row]
    has_coarse = coarse[lay] if len(coarse) else np.zeros(len(lay), bool)
    in_pix = area * np.where(has_coarse, 1.0 + 1.0 / 9.0, 1.0)
    order = np.argsort(a.code, kind="stable")
    c_sorted = a.code[order]
    start = np.flatnonzero(np.concatenate([[True], c_sorted[1:] != c_sorted[:-1]]))
    cells = c_sorted[start]
    nexp = np.diff(np.append(start, len(c_sorted)))
    bx0 = np.minimum.reduceat(box[order, 0], start)
    bx1 = np.maximum.reduceat(box[order, 1], start)
    by0 = np.minimum.reduceat(box[order, 2], start)
    by1 = np.maximum.reduceat(box[order, 3], start)
    bounded = (np.floor(bx1 + 0.5) - np.floor(bx0 + 0.5) + 1) * \
              (np.floor(by1 + 0.5) - np.floor(by0 + 0.5) + 1)
    # layers per SkyCell: distinct (cell, layer) pairs
    nlay = max(len(layer_names), 1)
    pair = np.unique(a.code * nlay + lay)
    pc_cell, pc_lay = np.divmod(pair, nlay)
    cell_idx = np.searchsorted(cells, pc_cell)
    n_fine = np.bincount(cell_idx, minlength=len(cells))
    n_coarse = np.bincount(cell_idx, weights=coarse[pc_lay].astype(float) if len(coarse)
                           else None, minlength=len(cells))
    out_pix = bounded * (n_fine + n_coarse / 9.0)
    inp = np.bincount(np.searchsorted(cells, a.code), weights=in_pix, minlength=len(cells))
    names_by_cell: dict[int, list[str]] = {}
    for ci, li in zip(cell_idx.tolist(), pc_lay.tolist(), strict=True):
        names_by_cell.setdefault(ci, []).append(layer_names[li])
    p, x, y = _cell_columns(cells)
    sc = pd.DataFrame({
        "skycell": skycell_names(cells),
        "pcell": p, "x": x, "y": y,
        "exposures": nexp,
        "layers": n_fine + n_coarse.astype(np.int64),
        "layer_names": [";".join(names_by_cell.get(i, [])) for i in range(len(cells))],
        "output_pixels": out_pix.astype(np.int64),
        "input_pixels": inp.astype(np.int64),
        "cost_s": cost.seconds(out_pix, inp),
    }).sort_values(["cost_s", "skycell"], ascending=[False, True], kind="stable")
    sc = sc.reset_index(drop=True)
    t3 = time.perf_counter()

    tmp = output.with_name(output.name + ".part")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    exposures.to_parquet(tmp / "exposures.parquet", index=False)
    obs_codes, obs_uniq = pd.factorize(exposures["obs_id"].astype(str))
    obs_col = pa.DictionaryArray.from_arrays(
        pa.array(obs_codes[np.searchsorted(good, a.row)].astype(np.int32)),
        pa.array(list(obs_uniq)))
    table = pa.table({"obs_id": obs_col, "skycell": _dict_strings(a.code),
                      "exposure": pa.array(a.row),
                      "overlap_pixels": pa.array(area.astype(np.int64))})
    pq.write_table(table, tmp / "assignments.parquet")
    sc.to_parquet(tmp / "skycells.parquet", index=False)
    rej = pd.DataFrame({"row": [r + 1 for r in bad],
                        "obs_id": [str(obs_id[r]) for r in bad],
                        "reason": list(bad.values())})
    rej.to_csv(tmp / "rejected.csv", index=False)
    info = {"format": FORMAT, "source": source, "inventory_rows": n,
            "exposures": int(len(exposures)), "rejected": len(bad),
            "skycells": int(len(sc)), "assignments": int(len(a.row)),
            "projection_cells": int(np.unique(p).size),
            "layers": layer_names, "cost_model": dataclasses.asdict(cost),
            "total_cost_s": float(sc["cost_s"].sum()),
            "seconds": {"read_layers": round(t1 - t0, 3), "assign": round(t2 - t1, 3),
                        "tables": round(t3 - t2, 3)}}
    (tmp / "plan.json").write_text(json.dumps(info, indent=1) + "\n")
    if output.exists():
        shutil.rmtree(output)
    os.replace(tmp, output)
    info["seconds"]["write"] = round(time.perf_counter() - t3, 3)
    (output / "plan.json").write_text(json.dumps(info, indent=1) + "\n")
    result = ArchivePlan(output, exposures, table.to_pandas(), sc, info)
    result.assignments["skycell"] = result.assignments["skycell"].astype(str)
    result.assignments["obs_id"] = result.assignments["obs_id"].astype(str)
    if pollers:
        which = None if pollers is True else list(pollers)
        write_pollers(result, which)
    return result


def read_plan(path: str | os.PathLike) -> ArchivePlan:
    """Read a plan directory written by :func:`plan_archive`.

    Raises
    ------
    OSError
        If a plan file is missing.
    ValueError
        If the directory is not a hapdask archive plan.
    """
    path = Path(path)
    info_path = path / "plan.json"
    if not info_path.is_file():
        raise OSError(f"{path}: not a plan directory (no plan.json; make one with hapdask plan)")
    info = json.loads(info_path.read_text())
    if info.get("format") != FORMAT:
        raise ValueError(f"{info_path}: unknown plan format {info.get('format')!r}")
    try:
        exposures = pd.read_parquet(path / "exposures.parquet")
        assignments = pd.read_parquet(path / "assignments.parquet")
        cells = pd.read_parquet(path / "skycells.parquet")
    except FileNotFoundError as exc:
        raise OSError(f"{path}: incomplete plan ({exc})") from exc
    for c in ("skycell", "obs_id"):
        assignments[c] = assignments[c].astype(str)
    return ArchivePlan(path, exposures, assignments, cells, info)


def write_pollers(plan: ArchivePlan, skycells: Iterable[str] | None = None) -> list[Path]:
    """Write MVM pollers (``PLAN/pollers/<skycell>_input.out``, 10 columns) for SkyCells.

    Exposures without a path get ``<obs_id>_flt.fits`` as file and path name.
    """
    outdir = plan.path / "pollers"
    outdir.mkdir(exist_ok=True)
    exp = plan.exposures.set_index("exposure")
    asg = plan.assignments
    if skycells is not None:
        want = {s if s.startswith("skycell-") else f"skycell-{s}" for s in skycells}
        asg = asg[asg["skycell"].isin(want)]
    written = []
    for name, grp in asg.groupby("skycell", sort=True):
        lines = []
        for row in exp.loc[np.sort(grp["exposure"].to_numpy())].itertuples():
            path = row.path or f"{row.obs_id.lower()}_flt.fits"
            fname = path.rstrip("/").rsplit("/", 1)[-1]
            obs = row.obs_id.upper()
            expt = "0" if not np.isfinite(row.t_exptime) else f"{row.t_exptime:g}"
            lines.append(",".join([fname, str(row.proposal_id), obs[1:4], obs[4:6], expt,
                                   row.filters, row.detector, name, "NEW", path]))
        target = outdir / f"{name}_input.out"
        tmp = target.with_name(target.name + ".part")
        tmp.write_text("\n".join(lines) + "\n")
        os.replace(tmp, target)
        written.append(target)
    return written
