"""A ProjectionCell as one lazy array, backed by the SkyCell zarr stores of a run.

:func:`projection_cell` returns an ``xarray.DataArray`` over a projection cell's whole tangent
plane (450287 x 450287 at 0.04"/pix), chunked on the SkyCell lattice, whose values are read on
demand from the SkyCell products (``hst_skycell-pPPPPxXXyYY.zarr``) of a run.

Ownership rule (fixed): neighbouring SkyCells share a 512-px strip (``skycells.md`` section 3).
SkyCell index ``i`` (0-based, along x; the same along y) owns the pcell pixels
``256 + i*21442 <= X < 256 + (i+1)*21442``, i.e. its own pixels at least 256 px (the grid's
``SC_OLAP``) from its shared edges, so the boundary runs down the middle of every shared strip;
the first SkyCell also owns ``X < 256`` and the last one everything to the plane's edge. Each
chunk lies inside one owner's region and reads only that SkyCell's store; where the owner has
no product (not built, or outside its bounded array) the array is NaN.

Only the fine layers (0.04"/pix) can be assembled without resampling: the coarse SkyCell grids
are offset by 1/3 of a coarse pixel from one SkyCell to the next (CRPIX = fine CRPIX / 3).

Pixel coordinates ``x``/``y`` are 0-based pcell pixels; ``ra``/``dec`` are lazy 2-d coordinates.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
import zarr
from dask.base import tokenize

from skycells import ProjectionCell, SkyCell
from skycells._grid import grid

__all__ = ["StoreRef", "cutout", "find_stores", "projection_cell"]

_STORE_RE = re.compile(r"^hst_skycell-p(\d{4})x(\d{2})y(\d{2})\.zarr$")


@dataclass(frozen=True)
class StoreRef:
    """Where one SkyCell's product of a layer lives, and where it sits in the pcell plane."""

    store: str
    group: str
    x0: int  # pcell pixel (0-based) of the product's first column
    y0: int
    shape: tuple[int, int]


@functools.cache
def _layout() -> tuple[int, int, int, int]:
    """(step, overlap margin, skycells per side, pcell size)."""
    g = grid()
    pc = ProjectionCell(0)
    step = int(pc.shape[1] / g.sc_nxy + 0.5)
    return step, int(g.sc_olap), int(g.sc_nxy), int(pc.shape[1])


def owner_edges() -> np.ndarray:
    """Pcell pixel edges of the owned regions: ``[0, 256 + 21442, ..., 450287]`` (22 values)."""
    step, olap, nxy, n = _layout()
    return np.array([0] + [olap + k * step for k in range(1, nxy)] + [n], dtype=np.int64)


def _chunks(chunk: int) -> tuple[int, ...]:
    edges = owner_edges()
    out: list[int] = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        n = int(b - a)
        out += [chunk] * (n // chunk) + ([n % chunk] if n % chunk else [])
    return tuple(out)


def find_stores(outputs: str | os.PathLike | Iterable[str | os.PathLike], pcell: int
                ) -> dict[tuple[int, int], Path]:
    """Complete SkyCell zarr stores of projection cell ``pcell``: ``(x, y) -> store path``.

    ``outputs`` is a run's output directory (stores in it or one level down, as
    ``hapdask mvm --plan`` writes them) or a list of stores/directories. Incomplete stores
    (a run interrupted before the end) are ignored.
    """
    roots = [outputs] if isinstance(outputs, str | os.PathLike) else list(outputs)
    found: dict[tuple[int, int], Path] = {}
    for root in roots:
        root = Path(root)
        cands = [root] if _STORE_RE.match(root.name) else \
            [*root.glob("hst_skycell-p*.zarr"), *root.glob("*/hst_skycell-p*.zarr")]
        for s in cands:
            m = _STORE_RE.match(s.name)
            if m is None or int(m.group(1)) != pcell:
                continue
            try:
                attrs = zarr.open_group(str(s), mode="r").attrs
            except (OSError, ValueError, KeyError):
                continue
            if attrs.get("complete"):
                found[(int(m.group(2)), int(m.group(3)))] = s
    return found


def _store_ref(pcell: int, x: int, y: int, store: Path, layer: str) -> StoreRef | None:
    cell = SkyCell(pcell, x, y)
    group = f"hst_{cell.name}_{layer}"
    root = zarr.open_group(str(store), mode="r")
    if group not in root:
        return None
    g = root[group]
    wcs = g.attrs["wcs"]
    cd = float(wcs["CD1_1"]) if "CD1_1" in wcs else \
        float(wcs.get("PC1_1", 1.0)) * float(wcs.get("CDELT1", math.nan))
    if not math.isclose(abs(cd), cell.scale / 3600.0, rel_tol=1e-9):
        raise ValueError(f"{store}/{group}: pixel scale {abs(cd) * 3600:.4f}\"/px is not the "
                         "fine 0.04\"/px grid; coarse SkyCell grids are offset by 1/3 pixel from "
                         "one SkyCell to the next and cannot be assembled without resampling")
    dx = cell.crpix[0] - float(wcs["CRPIX1"])
    dy = cell.crpix[1] - float(wcs["CRPIX2"])
    if abs(dx - round(dx)) > 1e-6 or abs(dy - round(dy)) > 1e-6:
        raise ValueError(f"{store}/{group}: CRPIX is not an integer offset of the SkyCell grid")
    ox, oy = cell.pc_offset
    ny, nx = g["sci"].shape
    return StoreRef(str(store), group, ox + round(dx), oy + round(dy), (int(ny), int(nx)))


def _owner(v: int) -> int:
    step, olap, nxy, _ = _layout()
    return min(max((v - olap) // step, 0), nxy - 1)


def _read_window(ref: StoreRef, var: str, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Pcell window [y0, y1) x [x0, x1) from one product (NaN/0 outside it)."""
    fill = np.nan if var == "sci" else 0.0
    out = np.full((y1 - y0, x1 - x0), fill, dtype=np.float32)
    ny, nx = ref.shape
    a0, a1 = max(y0 - ref.y0, 0), min(y1 - ref.y0, ny)
    b0, b1 = max(x0 - ref.x0, 0), min(x1 - ref.x0, nx)
    if a1 <= a0 or b1 <= b0:
        return out
    arr = zarr.open_group(ref.store, mode="r")[ref.group][var]
    out[a0 + ref.y0 - y0:a1 + ref.y0 - y0, b0 + ref.x0 - x0:b1 + ref.x0 - x0] = \
        arr[a0:a1, b0:b1]
    return out


def _window(key, n: int) -> tuple[int, int]:
    if not isinstance(key, slice) or key.step not in (None, 1):
        raise IndexError("only contiguous slices are supported")
    a, b, _ = key.indices(n)
    return a, max(a, b)


class _PlaneSource:
    """Array-like (shape, dtype, slicing) over a pcell plane; what :func:`dask.array.from_array`
    wraps. Reads each owned region from its owner's product only."""

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, refs: dict, var: str, n: int) -> None:
        self.refs = refs
        self.var = var
        self.shape = (n, n)

    def __getitem__(self, key) -> np.ndarray:
        y0, y1 = _window(key[0], self.shape[0])
        x0, x1 = _window(key[1], self.shape[1])
        fill = np.nan if self.var == "sci" else 0.0
        out = np.full((y1 - y0, x1 - x0), fill, dtype=np.float32)
        edges = owner_edges()
        for j in range(_owner(y0), _owner(max(y1 - 1, y0)) + 1):
            for i in range(_owner(x0), _owner(max(x1 - 1, x0)) + 1):
                ref = self.refs.get((i + 1, j + 1))
                if ref is None:
                    continue
                a0, a1 = max(y0, edges[j]), min(y1, edges[j + 1])
                b0, b1 = max(x0, edges[i]), min(x1, edges[i + 1])
                if a1 > a0 and b1 > b0:
                    out[a0 - y0:a1 - y0, b0 - x0:b1 - x0] = _read_window(
                        ref, self.var, int(a0), int(a1), int(b0), int(b1))
        return out


class _RaDecSource:
    """Array-like RA (``which=0``) or Dec (1) of every pcell pixel, computed on slicing."""

    ndim = 2
    dtype = np.dtype(np.float64)

    def __init__(self, index: int, which: int) -> None:
        self.index = index
        self.which = which
        n = ProjectionCell(index).shape[0]
        self.shape = (n, n)

    def __getitem__(self, key) -> np.ndarray:
        y0, y1 = _window(key[0], self.shape[0])
        x0, x1 = _window(key[1], self.shape[1])
        w = ProjectionCell(self.index).wcs  # a new WCS object per call: thread safe
        yy, xx = np.mgrid[y0:y1, x0:x1]
        return w.wcs_pix2world(xx, yy, 0)[self.which]


def projection_cell(name: int | str | ProjectionCell, layer: str,
                    outputs: str | os.PathLike | Iterable[str | os.PathLike], *,
                    var: str = "sci", chunk: int = 2048) -> xr.DataArray:
    """One lazy array over a ProjectionCell, read from the SkyCell products of a run.

    Parameters
    ----------
    name : int, str or ProjectionCell
        ``1889``, ``"p1889"`` or a ProjectionCell.
    layer : str
        The layer without its SkyCell, e.g. ``"wfc3_ir_f160w_all_drz"`` (a full layer name
        ``hst_skycell-..._wfc3_ir_f160w_all_drz`` works too). Fine layers only.
    outputs : path or iterable of paths
        The run's output directory (see :func:`find_stores`).
    var : {"sci", "wht"}
        Which array.
    chunk : int
        Chunk edge inside each SkyCell's owned region (pixels).

    Returns
    -------
    xarray.DataArray
        Dims ``(y, x)``, 450287 x 450287 float32, NaN (``wht``: 0) where nothing was made;
        coords ``x``, ``y`` (0-based pcell pixels) and lazy 2-d ``ra``, ``dec``; attrs:
        ``projection_cell``, ``layer``, ``wcs`` (FITS cards of the pcell WCS), ``skycells``.

    Raises
    ------
    ValueError
        Bad name, a coarse layer, or no product of the layer in ``outputs``.
    """
    pc = name if isinstance(name, ProjectionCell) else ProjectionCell(
        int(str(name).lower().removeprefix("p")))
    layer = re.sub(r"^hst_skycell-p\d{4}x\d{2}y\d{2}_", "", layer)
    if var not in ("sci", "wht"):
        raise ValueError(f"var must be 'sci' or 'wht', got {var!r}")
    refs: dict[tuple[int, int], StoreRef] = {}
    for (x, y), store in sorted(find_stores(outputs, pc.index).items()):
        ref = _store_ref(pc.index, x, y, store, layer)
        if ref is not None:
            refs[(x, y)] = ref
    if not refs:
        raise ValueError(f"no complete SkyCell product of layer {layer!r} for {pc.name} in "
                         f"{outputs}")
    ch = _chunks(chunk)
    n = pc.shape[0]
    token = tokenize(sorted(refs.items()), var, chunk)
    data = da.from_array(_PlaneSource(refs, var, n), chunks=(ch, ch), asarray=False,
                         name=f"pcell-{pc.name}-{layer}-{var}-{token}",
                         meta=np.empty((0, 0), np.float32))
    coords = {}
    for i, cname in enumerate(("ra", "dec")):
        coords[cname] = (("y", "x"), da.from_array(
            _RaDecSource(pc.index, i), chunks=(ch, ch), asarray=False,
            name=f"pcell-{pc.name}-{cname}-{chunk}", meta=np.empty((0, 0), np.float64)))
    coords["y"] = np.arange(n)
    coords["x"] = np.arange(pc.shape[1])
    hdr = pc.wcs.to_header()
    attrs = {"projection_cell": pc.name, "layer": layer,
             "wcs": {k: hdr[k] for k in hdr if k},
             "skycells": [SkyCell(pc.index, x, y).name for x, y in refs],
             "ownership": "SkyCell i owns pcell pixels 256 + i*21442 <= X < 256 + (i+1)*21442"}
    return xr.DataArray(data, dims=("y", "x"), coords=coords, name=var, attrs=attrs)


def cutout(arr: xr.DataArray, ra: float, dec: float, size: int) -> xr.DataArray:
    """A ``size`` x ``size`` pixel window of a :func:`projection_cell` array around (RA, Dec).

    Lazy: computing it reads only the chunks it overlaps.
    """
    pc = ProjectionCell(int(str(arr.attrs["projection_cell"]).removeprefix("p")))
    x, y = pc.wcs.wcs_world2pix([[ra, dec]], 0)[0]
    x0 = int(round(float(x))) - size // 2
    y0 = int(round(float(y))) - size // 2
    return arr.isel(y=slice(max(y0, 0), y0 + size), x=slice(max(x0, 0), x0 + size))
