"""Zarr v3 store of a SkyCell: one group per layer, one shard per tile, resumable.

Layout of ``hst_skycell-p1889x07y19.zarr``::

    /                           attrs: skycell, hapdask version, layers, complete
    /<layer>/                   attrs: wcs (FITS cards as a dict), plan fingerprint, tile size,
                                       primary keywords once the layer is complete
    /<layer>/sci   (y, x)       float32, NaN where no data
    /<layer>/wht   (y, x)       float32
    /<layer>/ctx   (plane, y, x) int32 (context bits), unless disabled
    /<layer>/_hapdask/tiles_done (tile_y, tile_x) uint8, one chunk per tile: the completion
                                marker of a tile, written after its shards
    /<layer>/_hapdask/tile_fp   (tile_y, tile_x) uint64: fingerprint of what the tile was
                                drizzled from (inputs' content, skies, grid), written with
                                the marker

Every array has ``shards == (tile, tile)`` and inner chunks that divide the tile (512 when they
can; Blosc LZ4 + byte shuffle, see :func:`_compressors`), so a tile task
writes whole shards and never touches another task's shard: tasks may run in any order, in
parallel, and be repeated. A tile counts as written only once its marker exists, so a re-run
after an interruption skips exactly the finished tiles -- and only those whose recorded
fingerprint equals the new one (:func:`reusable_tiles`): a changed input recomputes every
tile it touches. Opens with ``xarray.open_zarr(store,
group=<layer>)``; the WCS is in the group attrs (``wcs``).
"""

from __future__ import annotations

import json
import os
import threading
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np
from astropy.io import fits
from numcodecs import Blosc

__all__ = ["ZarrLayout", "create_zarr_layer", "finish_zarr_layer", "header_to_attrs",
           "reusable_tiles", "tile_done", "tiles_done", "write_zarr_tile",
           "mark_store_complete"]

MARKERS = "_hapdask"


def header_to_attrs(header: fits.Header) -> dict[str, object]:
    """FITS cards -> a JSON-able dict (keyword -> value), for zarr/xarray attrs."""
    out: dict[str, object] = {}
    for card in header.cards:
        key = card.keyword
        if not key or key in ("COMMENT", "HISTORY") or key in out:
            continue
        value = card.value
        if isinstance(value, (bool, np.bool_)):
            out[key] = bool(value)
        elif isinstance(value, (int, np.integer)):
            out[key] = int(value)
        elif isinstance(value, (float, np.floating)):
            v = float(value)
            out[key] = v if np.isfinite(v) else str(v)
        elif isinstance(value, str):
            out[key] = value
    return out


def _zarr():
    """The zarr package, imported on first use: its import (~0.25 s CPU) is not needed by a
    ``--dry-run`` or an import of :mod:`hapdask.mvm`."""
    import zarr

    return zarr


def _compressors() -> list:
    """Codec of every array: Blosc LZ4 with byte shuffle. On MVM layers (float32 SCI/WHT with
    NaN outside the footprint, int32 CTX) it encodes ~20 % faster than Zstd level 1 and is
    ~10 % smaller (measured on the acs4 benchmark's layers)."""
    return [_zarr().codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]


def _inner_chunk(tile: int) -> int:
    """Largest of 512, 256 dividing the tile (read granularity inside a shard)."""
    for c in (512, 256, 128):
        if tile % c == 0 and tile > c:
            return c
    return tile


@dataclass(frozen=True)
class ZarrLayout:
    """Where one layer lives in the store (picklable; shipped to every tile task)."""

    store: str
    group: str
    shape: tuple[int, int]
    tile: int
    nplanes: int

    @property
    def path(self) -> Path:
        return Path(self.store) / self.group

    @property
    def ntiles(self) -> tuple[int, int]:
        return (-(-self.shape[0] // self.tile), -(-self.shape[1] // self.tile))

    def _markers(self, mode: str = "r"):
        g = _zarr().open_group(self.store, mode=mode, zarr_format=3, use_consolidated=False)
        return g[f"{self.group}/{MARKERS}/tiles_done"]


def create_zarr_layer(
    store: str | os.PathLike,
    group: str,
    shape: tuple[int, int],
    tile: int,
    *,
    wcs_header: fits.Header,
    fingerprint: str,
    nplanes: int = 0,
    attrs: dict[str, object] | None = None,
) -> ZarrLayout:
    """Create (or reopen, to resume) the arrays of one layer in a SkyCell store.

    Parameters
    ----------
    store : path
        The ``.zarr`` directory (created if missing).
    group : str
        Layer name (group path inside the store).
    shape : (ny, nx)
        Layer shape.
    tile : int
        Tile edge in pixels = shard edge.
    wcs_header : Header
        The layer's WCS (stored as the ``wcs`` attribute).
    fingerprint : str
        Identifies the plan (inputs, WCS, options). Reopening a group written with a different
        fingerprint, shape or tile size raises ValueError instead of mixing two products.
    nplanes : int
        CTX planes; 0 for no ``ctx`` array.
    attrs : dict, optional
        More group attributes.

    Returns
    -------
    ZarrLayout
    """
    store = str(store)
    ny, nx = int(shape[0]), int(shape[1])
    root = _zarr().open_group(store, mode="a", zarr_format=3, use_consolidated=False)
    layout = ZarrLayout(store, group, (ny, nx), int(tile), int(nplanes))
    if group in root:
        g = root[group]
        old = g.attrs.get("hapdask_fingerprint")
        if old == fingerprint and tuple(g["sci"].shape) == (ny, nx) \
                and int(g.attrs.get("tile_size", -1)) == tile:
            if "tile_fp" not in g[MARKERS]:
                _create_fp(g[MARKERS], layout.ntiles)
            if attrs:
                g.attrs.update(json.loads(json.dumps({**attrs, "complete": False},
                                                     default=str)))
            return layout
        raise ValueError(
            f"{store}: layer {group!r} already exists and was made from a different plan "
            f"(inputs, grid or tile size); remove it or choose another output directory")
    g = root.create_group(group)
    chunk = _inner_chunk(tile)
    t = (min(tile, ny), min(tile, nx))
    c = (min(chunk, ny), min(chunk, nx))
    if t[0] % c[0] or t[1] % c[1]:
        c = t
    common = dict(shards=t, chunks=c, compressors=_compressors())
    g.create_array("sci", shape=(ny, nx), dtype="float32", fill_value=np.nan,
                   dimension_names=("y", "x"), **common)
    g.create_array("wht", shape=(ny, nx), dtype="float32", fill_value=0.0,
                   dimension_names=("y", "x"), **common)
    if nplanes > 0:
        g.create_array("ctx", shape=(nplanes, ny, nx), dtype="int32", fill_value=0,
                       dimension_names=("plane", "y", "x"), shards=(nplanes, *t),
                       chunks=(nplanes, *c), compressors=_compressors())
    meta = {"wcs": header_to_attrs(wcs_header), "hapdask_fingerprint": fingerprint,
            "tile_size": int(tile), "complete": False}
    meta.update(attrs or {})
    g.attrs.update(json.loads(json.dumps(meta, default=str)))
    markers = g.create_group(MARKERS)
    markers.create_array(
        "tiles_done", shape=layout.ntiles, chunks=(1, 1), dtype="uint8", fill_value=0,
        dimension_names=("tile_y", "tile_x"))
    _create_fp(markers, layout.ntiles)
    return layout


def _create_fp(markers, ntiles: tuple[int, int]) -> None:
    markers.create_array("tile_fp", shape=ntiles, chunks=(1, 1), dtype="uint64", fill_value=0,
                         dimension_names=("tile_y", "tile_x"))


def tile_done(layout: ZarrLayout, ty: int, tx: int) -> bool:
    """True when tile (ty, tx) has been completely written by an earlier task or run."""
    return bool(layout._markers()[ty, tx])


def tiles_done(layout: ZarrLayout) -> np.ndarray:
    """(tile_y, tile_x) boolean array of the finished tiles."""
    return np.asarray(layout._markers()[...]).astype(bool)


def reusable_tiles(layout: ZarrLayout, fingerprints: np.ndarray) -> np.ndarray:
    """(tile_y, tile_x) booleans: finished tiles whose recorded fingerprint is ``fingerprints``.

    ``fingerprints`` holds the uint64 fingerprint each tile would be written with now; a tile
    written from other inputs (or before fingerprints were recorded) is not reusable.
    """
    g = _zarr().open_group(layout.store, mode="r", zarr_format=3, use_consolidated=False)
    markers = g[f"{layout.group}/{MARKERS}"]
    done = np.asarray(markers["tiles_done"][...]).astype(bool)
    if "tile_fp" not in markers:
        return np.zeros_like(done)
    recorded = np.asarray(markers["tile_fp"][...], dtype=np.uint64)
    return done & (recorded == np.asarray(fingerprints, dtype=np.uint64))


_TLS = threading.local()


def _arrays(layout: ZarrLayout) -> dict:
    """The layer's zarr arrays, opened once per thread and store (metadata read once)."""
    cache = getattr(_TLS, "arrays", None)
    if cache is None:
        cache = _TLS.arrays = {}
    key = (layout.store, layout.group)
    arrs = cache.get(key)
    if arrs is None:
        if len(cache) > 64:
            cache.clear()
        g = _zarr().open_group(layout.store, mode="r+", zarr_format=3, use_consolidated=False)
        g = g[layout.group]
        arrs = {n: g[n] for n in ("sci", "wht", "ctx") if n in g}
        for n in ("sci", "wht", "ctx"):  # no emptiness checks: see _has_fill_chunk
            if n in arrs:
                arrs[f"{n}/all"] = arrs[n].with_config({"write_empty_chunks": True})
                arrs[f"{n}/shards"] = _shard_writer(arrs[n], Path(layout.store) / layout.group / n)
        arrs["done"] = g[f"{MARKERS}/tiles_done"]
        if "tile_fp" in g[MARKERS]:
            arrs["fp"] = g[f"{MARKERS}/tile_fp"]
        cache[key] = arrs
    return arrs


#: A shard's index entry for a chunk it does not hold (sharding specification).
_NO_CHUNK = np.uint64(2**64 - 1)


@dataclass(frozen=True)
class _ShardWriter:
    """Encodes whole shards of one sharded array as zarr does and writes them as files.

    zarr's own write of a tile (one shard) goes through its asyncio pipeline: per inner chunk
    tasks, buffers, thread hand-offs and fill checks, ~3x the CPU of the Blosc compression
    itself (acs4 benchmark, both layers: 1.2-2.0 CPU-s against 0.4). This writes the same
    bytes directly, for the one layout :func:`create_zarr_layer` makes (checked by
    :func:`_shard_writer`, else zarr's path is used): inner chunks C-order little-endian
    bytes, Blosc-compressed with the array's codec settings, in zarr's Morton order, chunks
    holding only the fill value left out (as zarr with ``write_empty_chunks`` False; chunks
    outside the array are never written), then the index (offset, length as little-endian
    uint64 per chunk, 2**64-1 for none) and its CRC32C; a shard without any chunk is removed.
    Written to a temporary name and renamed, as zarr's local store does."""

    directory: Path
    chunks: tuple[int, ...]
    shard: tuple[int, ...]
    dtype: np.dtype
    nan_fill: bool
    blosc: Blosc
    order: tuple[tuple[int, ...], ...]
    encode_key: object

    def write(self, coords: tuple[int, ...], data: np.ndarray) -> None:
        """Write shard ``coords`` from ``data``: the part of the shard inside the array
        (shape ``shard`` clipped at the array's edges)."""
        data = np.asarray(data, dtype=self.dtype)
        cps = tuple(s // c for s, c in zip(self.shard, self.chunks, strict=True))
        index = np.full((*cps, 2), _NO_CHUNK, dtype="<u8")
        parts: list[bytes] = []
        pos = 0
        for cc in self.order:
            lo = [c * k for c, k in zip(cc, self.chunks, strict=True)]
            if any(a >= n for a, n in zip(lo, data.shape, strict=True)):
                continue  # outside the array: never written
            block = data[tuple(slice(a, a + k) for a, k in zip(lo, self.chunks, strict=True))]
            if _is_fill(block, self.nan_fill):
                continue
            if block.shape != self.chunks:  # at the array's edge: padded with the fill value
                full = np.full(self.chunks, np.nan if self.nan_fill else 0, dtype=self.dtype)
                full[tuple(slice(0, n) for n in block.shape)] = block
                block = full
            raw = np.ascontiguousarray(block, dtype=self.dtype.newbyteorder("<"))
            enc = self.blosc.encode(raw.view(np.uint8).reshape(-1))
            index[cc] = (pos, len(enc))
            pos += len(enc)
            parts.append(enc)
        path = self.directory / self.encode_key(coords)
        if not parts:
            path.unlink(missing_ok=True)
            return
        raw = index.tobytes()
        parts.append(raw + np.uint32(google_crc32c.value(raw)).astype("<u4").tobytes())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.partial")
        try:
            with open(tmp, "wb") as fh:
                for part in parts:
                    fh.write(part)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise



def _shard_writer(arr, directory: Path) -> _ShardWriter | None:
    """A :class:`_ShardWriter` for a zarr array made by :func:`create_zarr_layer` (sharding
    with inner Bytes little-endian + Blosc codecs, index Bytes little-endian + CRC32C at the
    end, fill NaN or 0); None for anything else (zarr's own write is used then)."""
    zc = _zarr().codecs
    try:
        meta = arr.metadata
        (sharding,) = meta.codecs
        if not isinstance(sharding, zc.ShardingCodec):
            return None
        inner_bytes, blosc = sharding.codecs
        ib, crc = sharding.index_codecs
        dtype = np.dtype(arr.dtype)
        fill = np.asarray(meta.fill_value, dtype=dtype)
        nan_fill = bool(dtype.kind == "f" and np.isnan(fill))
        ok = (isinstance(inner_bytes, zc.BytesCodec) and inner_bytes.endian.value == "little"
              and isinstance(blosc, zc.BloscCodec) and blosc.typesize == dtype.itemsize
              and isinstance(ib, zc.BytesCodec) and ib.endian.value == "little"
              and isinstance(crc, zc.Crc32cCodec)
              and sharding.index_location.value == "end"
              and dtype.kind in "fiu" and dtype.isnative
              and (nan_fill or not fill.view(f"u{dtype.itemsize}").item()))
        shard = tuple(int(v) for v in meta.chunk_grid.chunk_shape)
        chunks = tuple(int(v) for v in sharding.chunk_shape)
    except (AttributeError, TypeError, ValueError):
        return None
    if not ok or any(s % c for s, c in zip(shard, chunks, strict=True)):
        return None
    shuffle = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE,
               "bitshuffle": Blosc.BITSHUFFLE}[blosc.shuffle.value]
    from zarr.core.indexing import morton_order_iter  # zarr's chunk order inside a shard

    cps = tuple(s // c for s, c in zip(shard, chunks, strict=True))
    codec = Blosc(cname=blosc.cname.value, clevel=int(blosc.clevel), shuffle=shuffle,
                  blocksize=int(blosc.blocksize), typesize=int(blosc.typesize))
    return _ShardWriter(directory, chunks, shard, dtype, nan_fill, codec,
                        tuple(morton_order_iter(cps)), meta.encode_chunk_key)


def _is_fill(block: np.ndarray, nan_fill: bool) -> bool:
    """zarr's test of a chunk against the fill value: all NaN (``nan_fill``), else all bytes 0
    (so ``-0.0`` is data). A few elements are looked at first: a chunk with data mostly shows
    it there, and the whole chunk is read only when they are all fill."""
    if nan_fill:
        if not np.isnan(block[..., ::97, ::89]).all():
            return False
        return bool(np.isnan(block).all())
    view = block.view(f"u{block.dtype.itemsize}")
    if view[..., ::97, ::89].any():
        return False
    return not view.any()


def _has_fill_chunk(data: np.ndarray, chunks: tuple[int, ...], nan_fill: bool) -> bool:
    """Whether any chunk of a tile (a whole shard; chunk grid from its origin) holds only the
    fill value: NaN (``nan_fill``) or bytes all 0 (so ``-0.0`` is not fill, as zarr's test).

    zarr leaves such chunks out of a shard (``write_empty_chunks`` False); to find them it
    compares the whole shard, then every chunk, with the fill value (``np.array_equal``,
    with NaNs: several passes and temporaries each), which cost more than compressing them
    (acs4 benchmark layer: ~0.5 of 1.1 CPU-s). A tile without such a chunk is written with
    the checks off (:func:`_arrays`' ``<name>/all`` arrays): every chunk is stored either way,
    so the shard's bytes are the same. At most one pass over the tile here (:func:`_is_fill`).
    """
    if data.size == 0:
        return True
    lead = tuple(slice(None) for _ in range(data.ndim - 2))  # plane axis: one chunk (ctx)
    cy, cx = chunks[-2:]
    for y in range(0, data.shape[-2], cy):
        for x in range(0, data.shape[-1], cx):
            if _is_fill(data[(*lead, slice(y, y + cy), slice(x, x + cx))], nan_fill):
                return True
    return False


def _put(arrays: dict, name: str, selection: tuple, data: np.ndarray, nan_fill: bool,
         shard: tuple[int, ...] | None = None) -> None:
    """``arrays[name][selection] = data``: by :class:`_ShardWriter` when ``shard`` (the
    coordinates of the one whole shard ``selection`` is) is given and the array's layout is
    the known one, else by zarr, skipping its fill checks when no chunk is fill."""
    writer = arrays.get(f"{name}/shards")
    if shard is not None and writer is not None:
        writer.write(shard, data)
        return
    arr = arrays[name]
    fast = arrays.get(f"{name}/all")
    if fast is not None and not _has_fill_chunk(data, arr.chunks[-data.ndim:], nan_fill):
        arr = fast
    arr[selection] = data


def write_zarr_tile(
    layout: ZarrLayout,
    index: tuple[int, int],
    window: tuple[int, int, int, int],
    sci: np.ndarray,
    wht: np.ndarray,
    ctx: np.ndarray | None = None,
    fingerprint: int = 0,
) -> None:
    """Write one tile (whole shards) and then its fingerprint and completion marker.

    Parameters
    ----------
    layout : ZarrLayout
    index : (ty, tx)
        0-based tile indices.
    window : (y0, y1, x0, x1)
        0-based, half-open pixel window of the tile; must be the tile grid's window so that it
        covers whole shards.
    sci, wht, ctx : arrays
        Tile data; ``ctx`` is (plane, y, x) and required when the layer has a ctx array.
    fingerprint : int
        uint64 fingerprint of what the tile was made from (see :func:`reusable_tiles`).
    """
    y0, y1, x0, x1 = window
    g = _arrays(layout)
    if "fp" in g and g["fp"][index[0], index[1]] not in (0, fingerprint):
        g["done"][index[0], index[1]] = 0  # a tile of other inputs: never half-overwritten
    t = layout.tile
    ty, tx = int(index[0]), int(index[1])
    whole = (y0, x0) == (ty * t, tx * t) and (y1, x1) == (min(y0 + t, layout.shape[0]),
                                                         min(x0 + t, layout.shape[1]))
    shard = (ty, tx) if whole else None  # the window is exactly shard (ty, tx)
    _put(g, "sci", (slice(y0, y1), slice(x0, x1)), np.asarray(sci, dtype=np.float32), True,
         shard)
    _put(g, "wht", (slice(y0, y1), slice(x0, x1)), np.asarray(wht, dtype=np.float32), False,
         shard)
    if layout.nplanes > 0:
        if ctx is None:
            raise ValueError(f"{layout.store}/{layout.group}: tile {index} has no context array")
        c = ctx if ctx.ndim == 3 else ctx[None]
        c = np.asarray(c).view(np.int32) if c.dtype == np.uint32 \
            else np.asarray(c, dtype=np.int32)
        _put(g, "ctx", (slice(None), slice(y0, y1), slice(x0, x1)), c, False,
             None if shard is None else (0, *shard))
    if "fp" in g:
        g["fp"][index[0], index[1]] = np.uint64(fingerprint)
    g["done"][index[0], index[1]] = 1


def read_zarr_tile(layout: ZarrLayout, window: tuple[int, int, int, int]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read a finished tile back: (sci, wht, ctx or None); window 0-based, half-open."""
    y0, y1, x0, x1 = window
    g = _zarr().open_group(layout.store, mode="r", zarr_format=3,
                        use_consolidated=False)[layout.group]
    ctx = g["ctx"][:, y0:y1, x0:x1] if layout.nplanes > 0 else None
    return g["sci"][y0:y1, x0:x1], g["wht"][y0:y1, x0:x1], ctx


def finish_zarr_layer(layout: ZarrLayout, attrs: dict[str, object]) -> None:
    """Record whole-layer keywords in the group attrs and flag the layer complete."""
    g = _zarr().open_group(layout.store, mode="r+", zarr_format=3,
                        use_consolidated=False)[layout.group]
    meta = json.loads(json.dumps(attrs, default=str))
    meta["complete"] = True
    g.attrs.update(meta)


def mark_store_complete(store: str | os.PathLike, attrs: dict[str, object]) -> None:
    """Write the store-level attributes (skycell, layers, ...) and ``complete = True``."""
    root = _zarr().open_group(str(store), mode="a", zarr_format=3, use_consolidated=False)
    meta = json.loads(json.dumps(attrs, default=str))
    meta["complete"] = True
    root.attrs.update(meta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # consolidated metadata is not in the v3 spec yet
        _zarr().consolidate_metadata(str(store))
