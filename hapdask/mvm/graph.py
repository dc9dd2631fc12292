"""The lazy MVM layers: one Dask task per output tile, wrapped as xarray Datasets.

The tasks are the mosaic engine's (:mod:`hapdask.mosaic.graph`); this module adds the SkyCell
rules: square kernel, pixfrac 1, EXPTIME weights, the layer's DQ bits, NaN fill. Graph of a plan
(keys carry the plan fingerprint, so they are deterministic)::

    ("align-sources-<token>", n)       sources of alignment chip n   } alignment inside the
    ("align-fit-<token>", v)           fits of visit v                } graph (plan with
    ("mvm-align-<fp>", v)              the fits, margin enforced      } ``refcat=``)
    ("mvm-<fp>-chip", i)               ChipRef of chip i (each chip enters the graph once;
                                       a task applying its visit's update when aligned here)
    ("mvm-<layer>-<fp>-poly", i)       outline of an aligned chip i on the layer grid
    ("mvm-<layer>-<fp>-boxes", i)      its per-tile input boxes on its aligned WCS
    ("mvm-sky-<method>-<fp>", i)       SkyLevel of chip i
    ("mvm-<fp>-crmask", i)             cosmic-ray mask of chip i (when it has a mask file)
    ("mvm-<layer>-<fp>-tile", ty, tx)  {"sci", "wht", "ctx"} of a tile
    ("mvm-sci-<layer>-<fp>", ty, tx)   the chunks of the dask arrays (getitem of the tile task)
    ("mvm-wht-<layer>-<fp>", ty, tx)
    ("mvm-ctx-<layer>-<fp>", 0, ty, tx)

With alignment inside the graph, a chip's key depends on its own visit's ``mvm-align`` key
only: a tile waits for the visits it uses, never for the whole alignment.

A tile task reads only the input box that maps onto the tile (plus a 1-pixel margin for the
kernel's corner interpolation) and adds the chips in the plan's fixed order: the result does
not depend on scheduling, tiling or worker count.

Pixel coordinates are 0-based; windows and boxes are ``(y0, y1, x0, x1)``, half-open.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

import skycells
from hapdask.mosaic.coverage import rasterize_polygon, tile_coverage
from hapdask.mosaic.graph import GridInputs, chip_tasks, drizzle_tasks
from hapdask.mosaic.inputs import ChipRef
from hapdask.mosaic.params import DrizzleParams
from hapdask.mosaic.products import chip_crmask
from hapdask.mosaic.stages import TileJob, drizzle_tile
from hapdask.mosaic.tiles import chip_tile_boxes, footprint_margin
from hapdask.mosaic.wcsio import updated_wcs_bytes
from hapdask.mvm.planning import LayerPlan, MvmPlan, header_wcs
from hapdask.mvm.sky import ChipMedianSky, SkyMethod

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["aligned_boxes", "aligned_chip", "alignment_keys", "build_graph", "chip_outline",
           "drizzle_aligned_tile", "layer_params", "layer_polygons", "layers", "radec",
           "rasterize_polygon", "sky_tasks", "tile_coverage"]


def layer_params(lay: LayerPlan) -> DrizzleParams:
    """The MVM drizzle of a layer: square, pixfrac 1, EXPTIME weights, the layer's DQ bits,
    NaN where nothing landed (inventory 4.2)."""
    return DrizzleParams(kernel="square", pixfrac=1.0, fillval=math.nan, wht_type="EXP",
                         bits=lay.bits, units="cps")


def _ctx_of(result: dict) -> np.ndarray:
    return result["ctx"]


# -- graph --------------------------------------------------------------------------------
def _global_chips(plan: MvmPlan) -> list[ChipRef]:
    seen: dict = {}
    for lay in plan.layers.values():
        for c in lay.chips:
            seen.setdefault(c.key, c)
    return list(seen.values())


def aligned_chip(chip: ChipRef, fits: list) -> ChipRef:
    """The chip with its visit's update applied (task of a chip aligned inside the graph).

    ``fits`` are the visit's :class:`hapdask.align.ExposureFit` after the margin check; a chip
    without an update (fit rejected, exposure kept) is returned as it is (a-priori WCS).
    """
    for f in fits:
        if f.rootname == chip.key[0]:
            for u in f.updates:
                if u.extver == chip.key[1]:
                    return dataclasses.replace(
                        chip, wcs_bytes=updated_wcs_bytes(chip.chip, u.header()))
    return chip


def chip_outline(chip: ChipRef, grid_header: str) -> np.ndarray:
    """Outline of a chip (its WCS as given, e.g. aligned) in 0-based pixels of a grid:
    ``(N, 2)`` x, y."""
    radec = skycells.wcs_outline(chip.wcs())
    x, y = header_wcs(grid_header).wcs_world2pix(radec[:, 0], radec[:, 1], 0)
    return np.column_stack([np.asarray(x), np.asarray(y)])


def aligned_boxes(chip: ChipRef, grid_header: str, tile_size: int, margin: float, step: int
                  ) -> dict[tuple[int, int], tuple[int, int, int, int]]:
    """Per tile, the input box of a chip on its aligned WCS (the sampled estimate of
    :func:`hapdask.mosaic.tiles.chip_tile_boxes` grown by the kernel's ``margin`` only, as a
    plan on that WCS has it): the tile tasks drizzle these instead of the plan's boxes grown
    by the alignment margin (the same pixels land, less work)."""
    grid = header_wcs(grid_header)
    shape = (int(grid.pixel_shape[1]), int(grid.pixel_shape[0]))
    return chip_tile_boxes(chip.wcs(), chip.shape, grid, shape, tile_size, margin, step)


def drizzle_aligned_tile(job: TileJob, chips: list, skies: list, statics: list, crmasks: list,
                         tight: list) -> dict[str, np.ndarray]:
    """:func:`hapdask.mosaic.stages.drizzle_tile` with the input boxes of chips aligned in the
    graph narrowed to their :func:`aligned_boxes` (``tight``: per chip, that mapping or None
    for a chip planned on its final WCS). A chip whose aligned boxes miss the tile gets an
    empty box: none of its pixels lands there."""
    boxes = []
    for box, t in zip(job.boxes, tight, strict=True):
        if t is not None:
            b = t.get(job.index)
            box = (max(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]),
                   min(box[3], b[3])) if b is not None else (0, 0, 0, 0)
            if box[0] >= box[1] or box[2] >= box[3]:
                box = (0, 0, 0, 0)
        boxes.append(box)
    return drizzle_tile(dataclasses.replace(job, boxes=tuple(boxes)), chips, skies, statics,
                        crmasks)


def alignment_keys(plan: MvmPlan) -> list:
    """Keys (one per fitted visit) of the checked alignment fits in :func:`build_graph`'s
    graph, in the order of the plan's :class:`~hapdask.align.AlignJob` keys ([] without
    alignment in the graph)."""
    if plan.alignment is None:
        return []
    return [(f"mvm-align-{plan.fingerprint}", v) for v in range(len(plan.alignment.job.keys))]


def layer_polygons(plan: MvmPlan, lay: LayerPlan) -> list:
    """Per chip of a layer, its outline on the layer grid (``(N, 2)`` x, y): the plan's own
    polygon, or the key of the task computing it from the aligned WCS (chips aligned inside
    the graph)."""
    fp = plan.fingerprint
    al = plan.alignment
    return [(f"mvm-{lay.name}-{fp}-poly", i)
            if al is not None and al.visit_of(c.key) is not None else lay.polygons[i]
            for i, c in enumerate(lay.chips)]


def sky_tasks(plan: MvmPlan, sky: SkyMethod) -> tuple[dict, dict]:
    """The tasks of a sky method on every chip of a plan (each chip once) and ``chip key ->
    task key`` (the keys :func:`build_graph` gives them, so a caller may ask for the levels
    computed with the tiles)."""
    chips = _global_chips(plan)
    graph, keys = sky.tasks(chips, f"mvm-sky-{getattr(sky, 'name', 'sky')}-{plan.fingerprint}")
    return graph, {c.key: k for c, k in zip(chips, keys, strict=True)}


def build_graph(plan: MvmPlan, sky: SkyMethod | Mapping | None = None
                ) -> tuple[dict, dict[str, dict[tuple[int, int], tuple]]]:
    """Low-level graph of a plan.

    Parameters
    ----------
    plan : MvmPlan
    sky : SkyMethod, mapping or None
        A sky method (default :class:`ChipMedianSky`) whose tasks become part of the graph, or
        an already measured mapping ``chip key -> SkyLevel``.

    Returns
    -------
    graph : dict
        Dask tasks (legacy tuple form).
    tile_keys : dict
        ``layer -> {(ty, tx): key}`` of the tile tasks (each returns ``{"sci", "wht", "ctx"}``).

    With :attr:`MvmPlan.alignment`, the graph also holds the alignment (:func:`alignment_keys`
    give its per-visit results) and the outlines of the aligned chips (:func:`layer_polygons`).
    """
    fp = plan.fingerprint
    chips = _global_chips(plan)
    graph, ckeys = chip_tasks(chips, f"mvm-{fp}")
    chip_key = {c.key: k for c, k in zip(chips, ckeys, strict=True)}
    al = plan.alignment
    if al is not None:
        graph.update(al.job.graph)
        g, vkeys = al.job.checked_tasks(f"mvm-align-{fp}")
        graph.update(g)
        for c, k in zip(chips, ckeys, strict=True):
            v = al.visit_of(c.key)
            if v is not None:
                graph[k] = (aligned_chip, c, vkeys[v])
        for lay in plan.layers.values():
            for i, poly in enumerate(layer_polygons(plan, lay)):
                if not isinstance(poly, np.ndarray):
                    graph[poly] = (chip_outline, chip_key[lay.chips[i].key],
                                   lay.wcs_header.tostring())
    sky = ChipMedianSky() if sky is None else sky
    if isinstance(sky, Mapping):
        sky_of = {c.key: sky[c.key] for c in chips}
    else:
        g, sky_of = sky_tasks(plan, sky)
        graph.update(g)
    masks: dict = {}
    for i, c in enumerate(chips):
        path = plan.crmasks.get(c.key)
        if path is not None:
            key = (f"mvm-{fp}-crmask", i)
            graph[key] = (chip_crmask, path, c.key[1], c.shape)
            masks[c.key] = [((0, c.shape[0], 0, c.shape[1]), key)]
    tile_keys: dict[str, dict] = {}
    for lay in plan.layers.values():
        inputs = GridInputs(lay.chips, [chip_key[c.key] for c in lay.chips],
                            [sky_of[c.key] for c in lay.chips], lay.wcs_header.tostring(),
                            lay.scale_arcsec)
        g, keys = drizzle_tasks(
            lay.tiles, inputs, layer_params(lay), lay.nplanes if plan.context else 0,
            f"mvm-{lay.name}-{fp}",
            cr_regions=[masks.get(c.key, []) for c in lay.chips] if masks else None)
        graph.update(g)
        if al is not None:  # tiles drizzle the aligned chips' own boxes (see aligned_boxes)
            tight: list = []
            for i, c in enumerate(lay.chips):
                if al.visit_of(c.key) is None:
                    tight.append(None)
                    continue
                bkey = (f"mvm-{lay.name}-{fp}-boxes", i)
                graph[bkey] = (aligned_boxes, chip_key[c.key], lay.wcs_header.tostring(),
                               lay.tile_size, footprint_margin(c.pscale / lay.scale_arcsec),
                               al.step)
                tight.append(bkey)
            for tile in lay.tiles:
                task = graph[keys[tile.index]]
                if tile.contribs and any(tight[i] is not None for i, _ in tile.contribs):
                    assert task[0] is drizzle_tile
                    graph[keys[tile.index]] = (drizzle_aligned_tile, *task[1:],
                                               [tight[i] for i, _ in tile.contribs])
        tile_keys[lay.name] = keys
    return graph, tile_keys


def _chunks(lay: LayerPlan) -> tuple[tuple[int, ...], tuple[int, ...]]:
    ny, nx = lay.shape
    t = lay.tile_size
    return (tuple(min(t, ny - y) for y in range(0, ny, t)),
            tuple(min(t, nx - x) for x in range(0, nx, t)))


def layers(plan: MvmPlan, *, sky: SkyMethod | Mapping | None = None) -> dict[str, xr.Dataset]:
    """The plan's layers as lazy xarray Datasets.

    Parameters
    ----------
    plan : MvmPlan
        From :func:`hapdask.mvm.plan`.
    sky : SkyMethod, mapping or None
        See :func:`build_graph`.

    Returns
    -------
    dict
        Layer name -> Dataset with ``sci`` and ``wht`` (y, x) float32 and, unless the plan has
        ``context=False``, ``ctx`` (plane, y, x) int32, chunked by tiles. ``attrs`` hold the WCS
        (``wcs``, FITS cards as a dict), ``skycell``, ``filename``, ``scale``, the plan
        fingerprint and the input chips. Use :func:`radec` for lazy RA/Dec.
    """
    # dask.array and xarray (~1 s of imports) only for the lazy arrays: a run that writes
    # files builds its graph with build_graph and never needs them
    import dask.array as da
    import xarray as xr

    from hapdask.export.zarr import header_to_attrs

    graph, tile_keys = build_graph(plan, sky)
    fp = plan.fingerprint
    out: dict[str, xr.Dataset] = {}
    for lay in plan.layers.values():
        chunks = _chunks(lay)
        names = {v: f"mvm-{v}-{lay.name}-{fp}" for v in ("sci", "wht", "ctx")}
        dsk = dict(graph)
        for index, key in tile_keys[lay.name].items():
            dsk[(names["sci"], *index)] = (operator.getitem, key, "sci")
            dsk[(names["wht"], *index)] = (operator.getitem, key, "wht")
            if plan.context:
                dsk[(names["ctx"], 0, *index)] = (_ctx_of, key)
        variables = {
            "sci": (("y", "x"), da.Array(dsk, names["sci"], chunks, dtype=np.float32,
                                         meta=np.empty((0, 0), np.float32))),
            "wht": (("y", "x"), da.Array(dsk, names["wht"], chunks, dtype=np.float32,
                                         meta=np.empty((0, 0), np.float32))),
        }
        if plan.context:
            variables["ctx"] = (("plane", "y", "x"),
                                da.Array(dsk, names["ctx"], ((lay.nplanes,), *chunks),
                                         dtype=np.int32, meta=np.empty((0, 0, 0), np.int32)))
        attrs = {
            "skycell": plan.skycell, "layer": lay.name, "filename": lay.filename,
            "instrument": lay.instrument, "detector": lay.detector, "filter": lay.filter,
            "scale": lay.scale, "scale_arcsec": lay.scale_arcsec, "bunit": "ELECTRONS/S",
            "wcs": header_to_attrs(lay.wcs_header), "hapdask_fingerprint": fp,
            "tile_size": lay.tile_size,
            "inputs": [f"{c.chip.path}[sci,{c.key[1]}]" for c in lay.chips],
        }
        out[lay.name] = xr.Dataset(variables, attrs=attrs)
    return out


def _radec_block(header: str, window: tuple[int, int, int, int], which: int) -> np.ndarray:
    w = header_wcs(header)
    y0, y1, x0, x1 = window
    yy, xx = np.mgrid[y0:y1, x0:x1]
    world = w.wcs_pix2world(xx.ravel().astype(np.float64), yy.ravel().astype(np.float64), 0)
    return np.asarray(world[which]).reshape(y1 - y0, x1 - x0)


def radec(ds: xr.Dataset) -> tuple[xr.DataArray, xr.DataArray]:
    """Lazy RA and Dec (degrees) of every pixel centre of a layer, chunked like ``sci``.

    Works on :func:`layers` output and on layers opened from the zarr store (WCS in attrs).
    """
    import dask.array as da  # costly, see layers()
    import xarray as xr
    from astropy.io import fits

    hdr = fits.Header()
    for k, v in ds.attrs["wcs"].items():
        hdr[k] = v
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    hdr["NAXIS1"], hdr["NAXIS2"] = nx, ny
    header = hdr.tostring()
    chunks = ds["sci"].chunks or ((ny,), (nx,))
    token = ds.attrs.get("hapdask_fingerprint", "") + ds.attrs.get("layer", "")
    arrays = []
    for which, label in ((0, "ra"), (1, "dec")):
        name = f"mvm-{label}-{token}"
        dsk = {}
        y = 0
        for ty, h in enumerate(chunks[0]):
            x = 0
            for tx, w in enumerate(chunks[1]):
                dsk[(name, ty, tx)] = (_radec_block, header, (y, y + h, x, x + w), which)
                x += w
            y += h
        arr = da.Array(dsk, name, chunks, dtype=np.float64, meta=np.empty((0, 0)))
        arrays.append(xr.DataArray(arr, dims=("y", "x"), name=label,
                                   attrs={"units": "deg"}))
    return arrays[0], arrays[1]
