"""The lazy MVM layers: one Dask task per output tile, wrapped as xarray Datasets.

Graph of a plan (keys carry the plan fingerprint, so they are deterministic)::

    ("mvm-sky-<fp>", i)               SkyLevel of chip i            (one per input chip)
    ("mvm-tile-<layer>-<fp>", ty, tx) {"sci", "wht", "ctx"} of a tile (depends on its chips' skies)
    ("mvm-sci-<layer>-<fp>", ty, tx)  the chunks of the dask arrays (getitem of the tile task)
    ("mvm-wht-<layer>-<fp>", ty, tx)
    ("mvm-ctx-<layer>-<fp>", 0, ty, tx)

A tile task builds its own astropy WCS objects from header bytes (nothing shared between
threads, no locks), reads only the input box that maps onto the tile (plus a 1-pixel margin for
the kernel's corner interpolation), computes the pixel map of that box only, and adds the chips
in the plan's fixed order: the result does not depend on scheduling, tiling or worker count.

Pixel coordinates are 0-based; windows and boxes are ``(y0, y1, x0, x1)``, half-open.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass

import dask.array as da
import numpy as np
import xarray as xr

from hapdask.mvm.plan import ChipRef, LayerPlan, MvmPlan, header_wcs, thread_header_wcs
from hapdask.mvm.sky import ChipMedianSky, SkyLevel, SkyMethod

__all__ = ["TileJob", "build_graph", "drizzle_tile", "layers", "radec", "rasterize_polygon",
           "tile_coverage"]


@dataclass(frozen=True)
class TileJob:
    """Everything one tile task needs (picklable, small)."""

    layer: str
    index: tuple[int, int]
    window: tuple[int, int, int, int]
    header: str
    chips: tuple[ChipRef, ...]
    boxes: tuple[tuple[int, int, int, int], ...]
    ctx_ids: tuple[int, ...]
    iscales: tuple[float, ...]
    nplanes: int


def _prepare(chip: ChipRef, sky: SkyLevel, region: tuple[int, int, int, int]):
    """Read a region of a chip; return (data in e-/s minus sky, weight)."""
    from hapdask.dqflags import good_pixel_mask

    sci, _, dq = chip.chip.read(region)
    good = good_pixel_mask(dq, chip.bits) & np.isfinite(sci)
    data = sci.astype(np.float32, copy=False) - np.float32(sky.value)
    if not chip.is_rate:
        data = data / np.float32(chip.exptime)
    data[~good] = 0.0
    weight = np.where(good, np.float32(chip.exptime), np.float32(0.0)).astype(np.float32)
    return data, weight


def drizzle_tile(job: TileJob, skies: list[SkyLevel]) -> dict[str, np.ndarray]:
    """Drizzle every contributing chip into one output tile.

    Square kernel, pixfrac 1, weight = EXPTIME x DQ-good mask, output in electrons/s with
    ``iscale = (output scale / input scale) ** 2``; NaN where no input lands.

    Parameters
    ----------
    job : TileJob
    skies : list of SkyLevel
        One per chip of ``job`` (same order); chips with ``ok=False`` are skipped.

    Returns
    -------
    dict
        ``sci``, ``wht`` (float32, tile shape) and ``ctx`` ((nplanes, ty, tx) int32, or None).
    """
    from hapdask.drizzle import add_to_tile, calc_pixmap, finalize_tile

    y0, y1, x0, x1 = job.window
    th, tw = y1 - y0, x1 - x0
    num = np.zeros((th, tw), np.float64)
    den = np.zeros((th, tw), np.float64)
    ctx = np.zeros((job.nplanes, th, tw), np.int32) if job.nplanes else None
    out_wcs = None
    for chip, box, cid, iscale, sky in zip(job.chips, job.boxes, job.ctx_ids, job.iscales,
                                           skies, strict=True):
        if not sky.ok:
            continue
        if out_wcs is None:
            out_wcs = thread_header_wcs(job.header)
        ny, nx = chip.shape
        b0, b1, a0, a1 = box
        region = (max(b0 - 1, 0), min(b1 + 1, ny), max(a0 - 1, 0), min(a1 + 1, nx))
        if region[1] - region[0] < 2 or region[3] - region[2] < 2:
            continue
        data, weight = _prepare(chip, sky, region)
        pixmap = calc_pixmap(chip.thread_wcs(), out_wcs, chip.shape, region=region)
        in_box = (b0 - region[0], b1 - region[0], a0 - region[2], a1 - region[2])
        add_to_tile(data, weight, pixmap, num, den, ctx, origin=(y0, x0), in_box=in_box,
                    kernel="square", pixfrac=1.0, iscale=float(iscale), ctx_id=int(cid),
                    in_origin=(region[0], region[2]))
    sci, wht = finalize_tile(num, den, fillval=np.nan)
    return {"sci": sci, "wht": wht, "ctx": ctx}


def _ctx_of(result: dict) -> np.ndarray:
    return result["ctx"]


# -- coverage (C, T of inventory 4.5) -------------------------------------------------------
def rasterize_polygon(poly: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """Pixels of a window whose centre is inside a polygon (even-odd rule).

    Parameters
    ----------
    poly : (N, 2) array
        Vertices ``(x, y)`` in 0-based layer pixel coordinates (not closed).
    window : (y0, y1, x0, x1)
        0-based, half-open.

    Returns
    -------
    (y1-y0, x1-x0) bool array
    """
    y0, y1, x0, x1 = window
    th, tw = y1 - y0, x1 - x0
    px = np.asarray(poly[:, 0], np.float64)
    py = np.asarray(poly[:, 1], np.float64)
    if py.max() < y0 - 1 or py.min() > y1 or px.max() < x0 - 1 or px.min() > x1:
        return np.zeros((th, tw), bool)
    ax, ay = px, py
    bx, by = np.roll(px, -1), np.roll(py, -1)
    ys = np.arange(y0, y1, dtype=np.float64)[:, None]
    # edge k crosses the centre line of row y when lo_k <= y < hi_k (half-open: no double count)
    cross = (np.minimum(ay, by) <= ys) & (ys < np.maximum(ay, by))
    rows, edges = np.nonzero(cross)
    if rows.size == 0:
        return np.zeros((th, tw), bool)
    t = (ys[rows, 0] - ay[edges]) / (by[edges] - ay[edges])
    xs = ax[edges] + t * (bx[edges] - ax[edges])
    # pixel centre c is right of a crossing at xs when c >= ceil(xs): toggle from that column
    cols = np.clip(np.ceil(xs) - x0, 0, tw).astype(np.int64)
    toggles = np.zeros((th, tw + 1), np.int32)
    np.add.at(toggles, (rows, cols), 1)
    return (np.cumsum(toggles[:, :tw], axis=1) & 1).astype(bool)


def tile_coverage(polys: list[np.ndarray], exptimes: list[float],
                  window: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """C(p) (chips covering each pixel) and T(p) (their summed EXPTIME) on a window."""
    y0, y1, x0, x1 = window
    count = np.zeros((y1 - y0, x1 - x0), np.int32)
    expt = np.zeros((y1 - y0, x1 - x0), np.float64)
    for poly, t in zip(polys, exptimes, strict=True):
        m = rasterize_polygon(poly, window)
        count += m
        expt[m] += t
    return count, expt


# -- graph --------------------------------------------------------------------------------
def _global_chips(plan: MvmPlan) -> list[ChipRef]:
    seen: dict = {}
    for lay in plan.layers.values():
        for c in lay.chips:
            seen.setdefault(c.key, c)
    return list(seen.values())


def tile_job(plan: MvmPlan, lay: LayerPlan, tile) -> TileJob:
    """The :class:`TileJob` of one tile of a layer."""
    chips = tuple(lay.chips[i] for i, _ in tile.contribs)
    return TileJob(
        layer=lay.name, index=tile.index, window=tile.window,
        header=lay.wcs_header.tostring(), chips=chips,
        boxes=tuple(b for _, b in tile.contribs),
        ctx_ids=tuple(i for i, _ in tile.contribs),
        iscales=tuple(lay.iscale(c) for c in chips),
        nplanes=lay.nplanes if plan.context else 0)


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
    """
    fp = plan.fingerprint
    graph: dict = {}
    chips = _global_chips(plan)
    sky = ChipMedianSky() if sky is None else sky
    if isinstance(sky, Mapping):
        sky_of = {c.key: sky[c.key] for c in chips}
        sky_keys = None
    else:
        g, keys = sky.tasks(chips, f"mvm-sky-{getattr(sky, 'name', 'sky')}-{fp}")
        graph.update(g)
        sky_keys = {c.key: k for c, k in zip(chips, keys, strict=True)}
    tile_keys: dict[str, dict] = {}
    for lay in plan.layers.values():
        tname = f"mvm-tile-{lay.name}-{fp}"
        tile_keys[lay.name] = {}
        for tile in lay.tiles:
            job = tile_job(plan, lay, tile)
            if sky_keys is None:
                skies = [sky_of[c.key] for c in job.chips]
            else:
                skies = [sky_keys[c.key] for c in job.chips]
            key = (tname, *tile.index)
            graph[key] = (drizzle_tile, job, skies)
            tile_keys[lay.name][tile.index] = key
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
