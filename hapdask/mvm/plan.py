"""The MVM plan of one SkyCell: layers, bounded output grids, tiles, and chips per tile.

:func:`plan` opens every input lazily (headers only), applies the MVM analyze rules, groups the
survivors into layers, bounds each scale's output array by the footprints of *all* inputs
(kept, rejected and ``OLD`` alike, as DrizzlePac does) and cuts the array into square tiles.
For every tile it lists the chips that touch it together with the box of input pixels whose
footprint can land in the tile: that list *is* the task graph of :func:`hapdask.mvm.layers`.

Nothing here reads pixels. Bad inputs are recorded in :attr:`MvmPlan.rejected` with a reason,
never raised: one unreadable exposure must not take the SkyCell down.

Pixel coordinates are 0-based everywhere in this module; windows and boxes are
``(y0, y1, x0, x1)``, half-open.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

import skycells
from hapdask.io import linear_pixel_scale
from skycells import SkyCell

__all__ = ["ChipRef", "InputInfo", "LayerPlan", "MvmPlan", "Rejection", "Tile", "plan",
           "serialize_wcs", "wcs_from_bytes"]

#: sampling step (input pixels) of the coarse per-chip pixel map used to find tile boxes
SAMPLE_STEP = 32

ChipKey = tuple[str, int]


# -- WCS transport: bytes in, a fresh private astropy WCS out (never shared across threads) ----
def serialize_wcs(w: WCS | fits.Header) -> bytes:
    """Serialise a WCS (SIP + lookup tables included) or a header to FITS bytes."""
    import io

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        if isinstance(w, fits.Header):
            w = WCS(w)
        hdul = w.to_fits(relax=True)
    if w.pixel_shape is not None:
        hdul[0].header["HDKNAXS1"] = w.pixel_shape[0]
        hdul[0].header["HDKNAXS2"] = w.pixel_shape[1]
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


_SIP_PREFIXES = ("A_", "B_", "AP_", "BP_")


def updated_wcs_bytes(chip, update: WCS | fits.Header) -> bytes:
    """Serialised WCS of a chip after an update (:func:`serialize_wcs` bytes).

    A WCS replaces the chip's WCS outright. A header is applied like a headerlet: its
    keywords replace the chip header's (all SIP terms go when it carries any), and the chip's
    own NPOL/D2IM lookup tables are kept.
    """
    import io

    if isinstance(update, WCS):
        return serialize_wcs(update)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        hdul = chip.wcs().to_fits(relax=True)
    hdr = hdul[0].header
    if any(k.startswith(_SIP_PREFIXES[:2]) for k in update):
        for k in [k for k in hdr if k.startswith(_SIP_PREFIXES)]:
            hdr.remove(k, ignore_missing=True, remove_all=True)
    if any(k[:2] in ("CD", "PC") and "_" in k for k in update):
        # a new linear transform: drop the old one in either convention (PC wins over CD)
        for k in [k for k in hdr if (k[:2] in ("CD", "PC") and "_" in k) or k.startswith("CDELT")]:
            hdr.remove(k, ignore_missing=True, remove_all=True)
    skip = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "XTENSION", "PCOUNT",
            "GCOUNT", "EXTNAME", "EXTVER", "COMMENT", "HISTORY", ""}
    for card in update.cards:
        if card.keyword not in skip:
            hdr[card.keyword] = (card.value, card.comment)
    hdr["HDKNAXS1"] = chip.shape[1]
    hdr["HDKNAXS2"] = chip.shape[0]
    buf = io.BytesIO()
    hdul.writeto(buf)
    return buf.getvalue()


def wcs_from_bytes(data: bytes) -> WCS:
    """A new astropy WCS from :func:`serialize_wcs` bytes (one private object per call)."""
    import io

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        with fits.open(io.BytesIO(data)) as hdul:
            hdr = hdul[0].header
            w = WCS(hdr, fobj=hdul)
            if "HDKNAXS1" in hdr:
                w.pixel_shape = (int(hdr["HDKNAXS1"]), int(hdr["HDKNAXS2"]))
    return w


_TLS = threading.local()
_TLS_SIZE = 64


def _thread_cached(kind: str, data: bytes | str, build):
    """Per-thread cache of WCS objects built from bytes/strings.

    Each thread builds and keeps its own objects, so no astropy WCS is ever shared between
    threads; a thread reuses its objects across the tasks it runs one after another.
    """
    cache = getattr(_TLS, "cache", None)
    if cache is None:
        cache = _TLS.cache = OrderedDict()
    raw = data.encode() if isinstance(data, str) else data
    key = (kind, hashlib.sha1(raw).digest())
    w = cache.get(key)
    if w is None:
        w = build(data)
        cache[key] = w
        while len(cache) > _TLS_SIZE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return w


def thread_wcs(data: bytes) -> WCS:
    """:func:`wcs_from_bytes`, cached per thread (the object is private to this thread)."""
    return _thread_cached("bytes", data, wcs_from_bytes)


def thread_header_wcs(header_str: str) -> WCS:
    """:func:`header_wcs`, cached per thread (the object is private to this thread)."""
    return _thread_cached("header", header_str, header_wcs)


def header_wcs(header_str: str) -> WCS:
    """A new pure-TAN WCS from a header string (the layer grids)."""
    hdr = fits.Header.fromstring(header_str)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        w = WCS(hdr)
    w.pixel_shape = (int(hdr["NAXIS1"]), int(hdr["NAXIS2"]))
    return w


# -- plan records --------------------------------------------------------------------------
@dataclass
class ChipRef:
    """One input chip as the graph sees it (picklable; shipped to the tasks that need it).

    Attributes
    ----------
    key : (rootname, extver)
    chip : hapdask.io.Chip
        Lazy chip (reads pixels on demand).
    exptime : float
        Exposure time (s): the drizzle weight per good pixel.
    is_rate : bool
        SCI already in electrons/s (else divided by ``exptime``).
    bits : int or None
        DQ bits treated as good (None: every pixel good).
    pscale : float
        Nominal input pixel scale (arcsec), :attr:`hapdask.io.Chip.pixel_scale` (``IDCSCALE``).
    wcs_bytes : bytes or None
        Replacement WCS (alignment result) serialised with :func:`serialize_wcs`.
    content : str
        Content identity of the chip's file (:func:`hapdask.io.content_identity`): resumed
        runs recompute every tile of a chip whose file changed.
    """

    key: ChipKey
    chip: object
    exptime: float
    is_rate: bool
    bits: int | None
    pscale: float
    wcs_bytes: bytes | None = None
    content: str = ""

    def wcs(self) -> WCS:
        """A new astropy WCS of this chip (the replacement one when given)."""
        if self.wcs_bytes is not None:
            w = wcs_from_bytes(self.wcs_bytes)
            ny, nx = self.shape
            w.pixel_shape = (nx, ny)
            return w
        return self.chip.wcs()

    def thread_wcs(self) -> WCS:
        """The chip's WCS, private to the calling thread (cached per thread: do not modify)."""
        if self.wcs_bytes is not None:
            return thread_wcs(self.wcs_bytes)
        return self.chip.wcs()

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.chip.shape)

    @property
    def label(self) -> str:
        return f"{os.path.basename(self.chip.path)}[sci,{self.key[1]}]"


@dataclass
class InputInfo:
    """One input exposure that passed the rules."""

    path: str
    rootname: str
    instrument: str
    detector: str
    filter: str
    flc: bool
    exptime: float
    expstart: float
    expend: float
    primary: fits.Header
    sci_headers: list[fits.Header]
    chips: list[ChipRef]
    warnings: list[str] = field(default_factory=list)

    @property
    def group(self) -> tuple[str, str, str]:
        return (self.instrument, self.detector, self.filter)


@dataclass
class Rejection:
    """An input (or chip) left out of the layers, and why."""

    path: str
    rule: str
    reason: str

    def __str__(self) -> str:
        return f"{os.path.basename(self.path)}: {self.rule}: {self.reason}"


@dataclass
class Tile:
    """One output tile and the chips that touch it.

    Attributes
    ----------
    index : (ty, tx)
        0-based tile indices.
    window : (y0, y1, x0, x1)
        0-based, half-open pixel window in the layer array.
    contribs : list of (chip index, box)
        Chip index into :attr:`LayerPlan.chips` (also its context id) and the 0-based,
        half-open input box ``(y0, y1, x0, x1)`` of the pixels that can land in the tile;
        sorted by chip index (the fixed drizzle order).
    """

    index: tuple[int, int]
    window: tuple[int, int, int, int]
    contribs: list[tuple[int, tuple[int, int, int, int]]]


@dataclass
class LayerPlan:
    """One MVM layer (detector + filter at one scale)."""

    name: str
    filename: str
    instrument: str
    detector: str
    filter: str
    scale: str
    scale_arcsec: float
    flc: bool
    inputs: list[InputInfo]
    chips: list[ChipRef]
    wcs_header: fits.Header
    shape: tuple[int, int]
    tile_size: int
    tiles: list[Tile]
    full_cell_pixels: int
    polygons: list[np.ndarray]
    bits: int | None

    @property
    def nplanes(self) -> int:
        return max(1, math.ceil(len(self.chips) / 32))

    @property
    def ntiles(self) -> tuple[int, int]:
        return (-(-self.shape[0] // self.tile_size), -(-self.shape[1] // self.tile_size))

    def wcs(self) -> WCS:
        """A new pure-TAN WCS of the layer grid."""
        return header_wcs(self.wcs_header.tostring())

    def iscale(self, chip: ChipRef) -> float:
        """Flux scale of a chip: (output pixel scale / input pixel scale) ** 2."""
        return (self.scale_arcsec / chip.pscale) ** 2

    def task_memory(self, context: bool = True) -> int:
        """Estimated peak bytes of the largest tile task of this layer."""
        t = self.tile_size
        per_out = 8 + 8 + 4 + 4 + (4 * self.nplanes if context else 0)
        best = 0
        for tile in self.tiles:
            y0, y1, x0, x1 = tile.window
            region = 0
            for _, (a, b, c, d) in tile.contribs:
                region = max(region, (b - a + 2) * (d - c + 2))
            per_in = 4 + 4 + 2 + 16 + 4 + 4 + 1
            best = max(best, (y1 - y0) * (x1 - x0) * per_out + region * per_in)
        return best or t * t * per_out


@dataclass
class MvmPlan:
    """Everything :func:`hapdask.mvm.layers` and the exporters need.

    Attributes
    ----------
    skycell : str
        SkyCell name (``skycell-p1889x07y19``).
    layers : dict
        Layer name (product file stem) -> :class:`LayerPlan`, sorted by name.
    inputs : list of InputInfo
        Inputs used, in the fixed drizzle order (EXPSTART, rootname).
    rejected : list of Rejection
        Inputs left out, with the reason.
    tile_size : int
    context : bool
        Whether CTX is built.
    """

    skycell: str
    layers: dict[str, LayerPlan]
    inputs: list[InputInfo]
    rejected: list[Rejection]
    tile_size: int
    context: bool = True

    @property
    def fingerprint(self) -> str:
        """Hash of everything that determines the output pixels."""
        h = hashlib.sha256()
        h.update(f"{self.skycell}|{self.tile_size}|{self.context}".encode())
        for name, lay in self.layers.items():
            h.update(name.encode())
            h.update(lay.wcs_header.tostring().encode())
            for c in lay.chips:
                h.update(f"{c.chip.path}|{c.key}|{c.exptime}|{c.bits}|{c.pscale!r}|"
                         f"{c.content}".encode())
                if c.wcs_bytes is not None:
                    h.update(hashlib.sha256(c.wcs_bytes).digest())
        return h.hexdigest()[:16]

    def reject_chips(self, bad: Mapping[ChipKey, str]) -> None:
        """Drop chips found unusable while reading pixels (e.g. all NaN) from every layer.

        Tiles, context ids and polygons are rebuilt; the reasons go to :attr:`rejected`.
        """
        if not bad:
            return
        for key, reason in bad.items():
            path = next((c.chip.path for i in self.inputs for c in i.chips if c.key == key), "")
            self.rejected.append(Rejection(path, "DATA", f"SCI,{key[1]}: {reason}"))
        for name in list(self.layers):
            lay = self.layers[name]
            keep = [i for i, c in enumerate(lay.chips) if c.key not in bad]
            if not keep:
                del self.layers[name]
                continue
            if len(keep) == len(lay.chips):
                continue
            remap = {old: new for new, old in enumerate(keep)}
            lay.chips = [lay.chips[i] for i in keep]
            lay.polygons = [lay.polygons[i] for i in keep]
            for t in lay.tiles:
                t.contribs = [(remap[i], b) for i, b in t.contribs if i in remap]
            used = {c.key[0] for c in lay.chips}
            lay.inputs = [i for i in lay.inputs if i.rootname in used]
        used = {i.rootname for lay in self.layers.values() for i in lay.inputs}
        self.inputs = [i for i in self.inputs if i.rootname in used]

    def describe(self, context: bool | None = None) -> str:
        """Human-readable plan (what ``hapdask mvm --dry-run`` prints)."""
        context = self.context if context is None else context
        out = [f"SkyCell {self.skycell}: {len(self.layers)} layer(s) from "
               f"{len(self.inputs)} input exposure(s); tile size {self.tile_size}"]
        for lay in self.layers.values():
            ny, nx = lay.shape
            nty, ntx = lay.ntiles
            hdr = lay.wcs_header
            npt = [len(t.contribs) for t in lay.tiles]
            busy = sum(1 for n in npt if n)
            out.append(
                f"  {lay.filename}\n"
                f"    {lay.scale} {lay.scale_arcsec:.2f}\"/px, {nx} x {ny} px "
                f"(CRPIX {hdr['CRPIX1']:.1f}, {hdr['CRPIX2']:.1f}), {lay.nplanes} ctx plane(s)\n"
                f"    {len(lay.inputs)} exposure(s), {len(lay.chips)} chip(s), DQ good bits "
                f"{lay.bits}\n"
                f"    tiles {nty} x {ntx} = {nty * ntx} ({busy} with data); inputs per tile "
                f"min {min(npt)} / max {max(npt)} / mean {np.mean(npt):.1f}\n"
                f"    estimated memory per tile task {lay.task_memory(context) / 2**20:.0f} MiB")
            for t in lay.tiles:
                if t.contribs and len(lay.tiles) <= 64:
                    names = ", ".join(f"{lay.chips[i].key[0]}:{lay.chips[i].key[1]}"
                                      for i, _ in t.contribs)
                    out.append(f"      tile {t.index}: {names}")
        if self.rejected:
            out.append(f"  rejected ({len(self.rejected)}):")
            out.extend(f"    {r}" for r in self.rejected)
        return "\n".join(out)


# -- helpers ------------------------------------------------------------------------------
def _to_output_pixels(cell_wcs: WCS, radec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = cell_wcs.wcs_world2pix(radec[:, 0], radec[:, 1], 0)
    return np.asarray(x), np.asarray(y)


def _sample_grid(n: int, step: int) -> np.ndarray:
    g = np.arange(0, n, step, dtype=np.float64)
    if g[-1] != n - 1:
        g = np.append(g, n - 1)
    return g


def chip_tile_boxes(
    chip_wcs: WCS,
    shape: tuple[int, int],
    layer_wcs: WCS,
    layer_shape: tuple[int, int],
    tile: int,
    margin: float,
    step: int = SAMPLE_STEP,
) -> dict[tuple[int, int], tuple[int, int, int, int]]:
    """Conservative input boxes of one chip for every tile it touches.

    The chip is sampled every ``step`` pixels (edges included) through its full WCS into the
    layer grid; each cell of the sample grid is assigned to every tile its mapped bounding box
    (grown by ``margin`` output pixels) touches.

    Returns
    -------
    dict
        ``(ty, tx) -> (y0, y1, x0, x1)``: 0-based, half-open input pixel box (clipped to the
        chip).
    """
    ny, nx = shape
    gy = _sample_grid(ny, step)
    gx = _sample_grid(nx, step)
    xx, yy = np.meshgrid(gx, gy)
    ra, dec = chip_wcs.all_pix2world(xx.ravel(), yy.ravel(), 0)
    ox, oy = layer_wcs.wcs_world2pix(ra, dec, 0)
    ox = ox.reshape(xx.shape)
    oy = oy.reshape(xx.shape)
    quads_x = np.stack([ox[:-1, :-1], ox[1:, :-1], ox[:-1, 1:], ox[1:, 1:]])
    quads_y = np.stack([oy[:-1, :-1], oy[1:, :-1], oy[:-1, 1:], oy[1:, 1:]])
    qx0 = quads_x.min(0) - margin
    qx1 = quads_x.max(0) + margin
    qy0 = quads_y.min(0) - margin
    qy1 = quads_y.max(0) + margin
    # input range of each cell (half-open), 1 px beyond the samples on each side
    iy0 = np.repeat(gy[:-1, None], len(gx) - 1, axis=1)
    iy1 = np.repeat(gy[1:, None], len(gx) - 1, axis=1) + 1
    ix0 = np.repeat(gx[None, :-1], len(gy) - 1, axis=0)
    ix1 = np.repeat(gx[None, 1:], len(gy) - 1, axis=0) + 1
    lny, lnx = layer_shape
    ok = np.isfinite(qx0) & np.isfinite(qy0) & (qx1 >= -0.5) & (qy1 >= -0.5) \
        & (qx0 <= lnx - 0.5) & (qy0 <= lny - 0.5)
    if not ok.any():
        return {}
    nty, ntx = -(-lny // tile), -(-lnx // tile)
    t_x0 = np.clip(np.floor((qx0[ok] + 0.5) / tile), 0, ntx - 1).astype(int)
    t_x1 = np.clip(np.floor((qx1[ok] + 0.5) / tile), 0, ntx - 1).astype(int)
    t_y0 = np.clip(np.floor((qy0[ok] + 0.5) / tile), 0, nty - 1).astype(int)
    t_y1 = np.clip(np.floor((qy1[ok] + 0.5) / tile), 0, nty - 1).astype(int)
    cy0, cy1, cx0, cx1 = iy0[ok], iy1[ok], ix0[ok], ix1[ok]
    boxes: dict[tuple[int, int], list[int]] = {}
    for k in range(t_x0.size):
        for ty in range(t_y0[k], t_y1[k] + 1):
            for tx in range(t_x0[k], t_x1[k] + 1):
                b = boxes.get((ty, tx))
                if b is None:
                    boxes[(ty, tx)] = [cy0[k], cy1[k], cx0[k], cx1[k]]
                else:
                    b[0] = min(b[0], cy0[k])
                    b[1] = max(b[1], cy1[k])
                    b[2] = min(b[2], cx0[k])
                    b[3] = max(b[3], cx1[k])
    out = {}
    for key, (a, b, c, d) in boxes.items():
        out[key] = (max(int(a) - 1, 0), min(int(b) + 1, ny),
                    max(int(c) - 1, 0), min(int(d) + 1, nx))
    return out


def _tile_windows(shape: tuple[int, int], tile: int) -> list[tuple[tuple[int, int], tuple]]:
    ny, nx = shape
    out = []
    for ty, y0 in enumerate(range(0, ny, tile)):
        for tx, x0 in enumerate(range(0, nx, tile)):
            out.append(((ty, tx), (y0, min(y0 + tile, ny), x0, min(x0 + tile, nx))))
    return out


def _header_float(h: fits.Header, key: str, default: float = 0.0) -> float:
    try:
        return float(h.get(key, default))
    except (TypeError, ValueError):
        return default


def _old_rows(items: Sequence[str]) -> set[str]:
    """Basenames of MVM poller rows flagged OLD (they only bound the output array)."""
    from hapdask.io import read_poller

    old: set[str] = set()
    for item in items:
        p = str(item)
        if os.path.isfile(p) and not p.lower().endswith((".fits", ".fits.gz", ".fit")):
            try:
                table = read_poller(p)
            except (OSError, ValueError):
                continue
            cols = {c.lower(): c for c in table.colnames}
            new_col = next((cols[c] for c in ("skycell_new", "new", "status") if c in cols), None)
            name_col = cols.get("filename")
            if new_col is None or name_col is None:
                continue
            for row in table:
                if str(row[new_col]).strip().upper() == "OLD":
                    old.add(os.path.basename(str(row[name_col])))
    return old


# -- the planner ---------------------------------------------------------------------------
def analyze_one(path: str):
    """MVM analyze verdict of one input path; never raises (an unreadable file is rejected)."""
    from hapdask.analyze import Verdict, analyze_exposure

    try:
        return analyze_exposure(path, mode="mvm")
    except Exception as exc:
        return Verdict(False, "UNREADABLE", f"{type(exc).__name__}: {exc}")


def analyze_tasks(inputs) -> tuple[dict, list, list[str]]:
    """Dask tasks analysing every input in parallel: ``(graph, keys, paths)``.

    Compute the keys and pass ``dict(zip(paths, results))`` as ``verdicts`` to :func:`plan`.
    """
    from hapdask.io import resolve_inputs

    items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    paths = resolve_inputs(items)
    token = hashlib.sha256("|".join(paths).encode()).hexdigest()[:16]
    graph = {("mvm-analyze-" + token, i): (analyze_one, p) for i, p in enumerate(paths)}
    return graph, list(graph), paths


def plan(
    skycell: str | SkyCell,
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    tile_size: int = 2048,
    wcs_updates: Mapping[ChipKey, WCS | fits.Header] | None = None,
    context: bool = True,
    step: int = SAMPLE_STEP,
    verdicts: Mapping[str, object] | None = None,
    only: Iterable[str] | None = None,
) -> MvmPlan:
    """Plan the MVM layers of a SkyCell.

    Parameters
    ----------
    skycell : str or SkyCell
        ``p1889x07y19`` or ``skycell-p1889x07y19``.
    inputs : poller, directory, list file, path(s) or URL(s)
        Anything :func:`hapdask.io.resolve_inputs` accepts. MVM poller rows marked ``OLD`` only
        bound the output arrays.
    tile_size : int
        Edge of the square output tiles (pixels) = task granularity and zarr shard size.
    wcs_updates : mapping, optional
        ``(rootname, extver) -> WCS or Header`` replacing a chip's WCS (alignment results, or
        the simulator's true WCS). Rootnames are matched case-insensitively.
    context : bool
        Build the CTX arrays.
    step : int
        Sampling step (input pixels) of the coarse pixel maps that find each tile's inputs.
    verdicts : mapping, optional
        ``path -> Verdict`` already computed by :func:`analyze_inputs` (e.g. in parallel on a
        cluster: the MVM guiding test reads every SCI,1 array); missing paths are analysed here.
    only : iterable of str, optional
        Keep only the layers whose name contains one of these strings (e.g. ``"f160w"``,
        ``"ir_f125w_coarse"``). The output grids still come from every input.

    Returns
    -------
    MvmPlan

    Raises
    ------
    ValueError
        For a bad SkyCell name or tile size, or when no input overlaps the SkyCell at all.
    """
    from hapdask.analyze import (
        SANITY_RULES,
        analyze_exposure,
        exposure_identity,
        find_duplicates,
        wcs_problem,
    )
    from hapdask.dqflags import mvm_final_bits
    from hapdask.io import content_identity, open_exposure, resolve_inputs

    if int(tile_size) < 16:
        raise ValueError(f"tile size must be at least 16 pixels, got {tile_size}")
    tile_size = int(tile_size)
    if not isinstance(skycell, SkyCell):
        skycell = SkyCell.from_name(str(skycell), scale="fine")
    cells = {"fine": SkyCell.from_name(skycell.name, scale="fine"),
             "coarse": SkyCell.from_name(skycell.name, scale="coarse")}
    items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    paths = resolve_inputs(items)
    old = _old_rows([str(i) for i in items])
    updates = {(str(k[0]).lower(), int(k[1])): v for k, v in (wcs_updates or {}).items()}

    rejected: list[Rejection] = []
    kept: list[InputInfo] = []
    all_footprints: list[np.ndarray] = []
    for path in paths:
        try:
            exp = open_exposure(path)
        except (OSError, ValueError) as exc:
            rejected.append(Rejection(path, "UNREADABLE", str(exc)))
            continue
        except Exception as exc:
            rejected.append(Rejection(path, "UNREADABLE", f"{type(exc).__name__}: {exc}"))
            continue
        # per chip WCS (the update, when given) and footprint
        chip_wcs: dict[int, WCS] = {}
        chip_bytes: dict[int, bytes | None] = {}
        fps: list[np.ndarray] = []
        nominal = skycells.KNOWN_DETECTORS.get(exp.instrument.lower(), {}).get(
            exp.detector.lower())
        try:
            for chip in exp.chips:
                upd = updates.get((exp.rootname, chip.extver))
                if upd is not None:
                    b = updated_wcs_bytes(chip, upd)
                    w = wcs_from_bytes(b)
                    w.pixel_shape = (chip.shape[1], chip.shape[0])
                    chip_bytes[chip.extver] = b
                else:
                    w = chip.wcs()
                    chip_bytes[chip.extver] = None
                if nominal and upd is not None and (problem := wcs_problem(w, nominal)):
                    raise ValueError(f"SCI,{chip.extver} updated WCS: {problem}")
                chip_wcs[chip.extver] = w
                fps.append(skycells.wcs_outline(w))
        except Exception as exc:
            known = (verdicts or {}).get(path)  # the sanity rules may already say why
            if known is not None and not known.keep:
                rejected.append(Rejection(path, str(known.rule), str(known.reason)))
            else:
                rejected.append(Rejection(path, "WCS", f"{exc}"))
            continue
        is_old = os.path.basename(path) in old
        verdict = None
        if not is_old:
            try:
                verdict = (verdicts or {}).get(path) or analyze_exposure(exp, mode="mvm")
            except Exception as exc:
                rejected.append(Rejection(path, "ANALYZE", f"{type(exc).__name__}: {exc}"))
                continue
        if verdict is None or verdict.keep or verdict.rule not in SANITY_RULES:
            all_footprints.extend(fps)  # an insane WCS or header must not bound the grid
        if is_old:
            rejected.append(Rejection(path, "OLD", "poller row marked OLD (bounds the output "
                                      "array only)"))
            continue
        if not verdict.keep:
            rejected.append(Rejection(path, str(verdict.rule), str(verdict.reason)))
            continue
        if exp.kind not in ("flt", "flc"):
            rejected.append(Rejection(path, "KIND", f"{exp.kind.upper()} files are not MVM "
                                      "inputs (FLT/FLC expected)"))
            continue
        try:
            bits: int | None = mvm_final_bits(exp.instrument, exp.detector, 2, exp.filter)
        except ValueError:
            bits = 0
        try:
            content = content_identity(path)
        except OSError as exc:
            rejected.append(Rejection(path, "UNREADABLE", str(exc)))
            continue
        prim = exp.primary
        chips = []
        for chip in exp.chips:
            chips.append(ChipRef(
                key=(exp.rootname, chip.extver), chip=chip, exptime=float(exp.exptime),
                is_rate=bool(chip.is_rate), bits=bits,
                pscale=chip.pixel_scale,
                wcs_bytes=chip_bytes[chip.extver], content=content))
        expstart = _header_float(prim, "EXPSTART")
        kept.append(InputInfo(
            path=path, rootname=exp.rootname, instrument=exp.instrument, detector=exp.detector,
            filter=exp.filter, flc=exp.is_flc, exptime=float(exp.exptime), expstart=expstart,
            expend=_header_float(prim, "EXPEND", expstart), primary=prim,
            sci_headers=[c.header for c in exp.chips], chips=chips,
            warnings=list(getattr(verdict, "warnings", []) or [])))

    dups = find_duplicates((i.path, i.rootname, i.flc, exposure_identity(i.primary, i.sci_headers))
                           for i in kept)
    rejected.extend(Rejection(i.path, "D", dups[i.path]) for i in kept if i.path in dups)
    kept = [i for i in kept if i.path not in dups]
    kept.sort(key=lambda i: (i.expstart, i.rootname))
    groups: dict[tuple[str, str, str], list[InputInfo]] = {}
    for info in kept:
        groups.setdefault(info.group, []).append(info)

    bounded: dict[str, WCS] = {}
    layers: dict[str, LayerPlan] = {}
    for (instr, det, filt), members in groups.items():
        flc = any(m.flc for m in members)
        if flc:
            for m in members:
                if not m.flc:
                    rejected.append(Rejection(m.path, "FLT_WITH_FLC", "layer has FLC inputs; "
                                              "only FLC files are drizzled (drc)"))
            members = [m for m in members if m.flc]
        scales = ["fine"] + (["coarse"] if skycells.has_coarse_layer(instr, det) else [])
        for scale in scales:
            if scale not in bounded:
                try:
                    bounded[scale] = skycells.bounded_wcs(cells[scale], all_footprints)
                except ValueError as exc:
                    raise ValueError(f"{cells[scale].name}: no input overlaps the SkyCell "
                                     f"({exc})") from None
            filename = skycells.layer_filename(cells[scale], instr, det, filt, scale, flc)
            if only is not None and not any(str(o).lower() in filename.lower() for o in only):
                continue
            layers[filename[:-5]] = _layer(
                filename, instr, det, filt, scale, flc, members, bounded[scale], cells[scale],
                tile_size, step)
    # a layer whose chips all fall outside the bounded grid has nothing to drizzle
    wanted = [str(o).lower() for o in only] if only is not None else None
    for name in list(layers):
        if not layers[name].chips or (wanted is not None
                                      and not any(w in name.lower() for w in wanted)):
            del layers[name]
    layers = dict(sorted(layers.items()))
    used = {i.rootname for lay in layers.values() for i in lay.inputs}
    for info in kept:
        if wanted is not None:
            break
        if info.rootname not in used and not any(r.path == info.path for r in rejected):
            rejected.append(Rejection(info.path, "NO_OVERLAP", "does not overlap the SkyCell"))
    inputs_used = [i for i in kept if i.rootname in used]
    return MvmPlan(skycell=cells["fine"].name, layers=layers, inputs=inputs_used,
                   rejected=rejected, tile_size=tile_size, context=context)


def _layer(filename, instr, det, filt, scale, flc, members, bwcs, cell, tile_size, step
           ) -> LayerPlan:
    shape = (int(bwcs.pixel_shape[1]), int(bwcs.pixel_shape[0]))
    header = bwcs.to_header()
    header["NAXIS1"] = shape[1]
    header["NAXIS2"] = shape[0]
    scale_arcsec = linear_pixel_scale(bwcs)
    layer_wcs = header_wcs(header.tostring())
    chips: list[ChipRef] = []
    polys: list[np.ndarray] = []
    per_chip_boxes = []
    inputs: list[InputInfo] = []
    for m in members:
        used = False
        for c in m.chips:
            w = c.wcs()
            ratio = c.pscale / scale_arcsec
            margin = 0.5 * ratio * 1.5 + 2.0
            boxes = chip_tile_boxes(w, c.shape, layer_wcs, shape, tile_size, margin, step)
            if not boxes:
                continue
            outline = skycells.wcs_outline(w)
            px, py = _to_output_pixels(layer_wcs, outline)
            chips.append(c)
            polys.append(np.column_stack([px, py]))
            per_chip_boxes.append(boxes)
            used = True
        if used:
            inputs.append(m)
    tiles = []
    for index, window in _tile_windows(shape, tile_size):
        contribs = [(k, boxes[index]) for k, boxes in enumerate(per_chip_boxes) if index in boxes]
        tiles.append(Tile(index, window, contribs))
    bits = chips[0].bits if chips else None
    return LayerPlan(
        name=filename[:-5], filename=filename, instrument=instr, detector=det, filter=filt,
        scale=scale, scale_arcsec=scale_arcsec, flc=flc, inputs=inputs, chips=chips,
        wcs_header=header, shape=shape, tile_size=tile_size, tiles=tiles,
        full_cell_pixels=int(cell.shape[0]) * int(cell.shape[1]), polygons=polys, bits=bits)
