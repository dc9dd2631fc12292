"""``hapdask.mvm.runner``: plan, measure skies, drizzle and export a SkyCell, tile by tile.

Execution (all lazy until the final compute):

0. The arguments are checked (:func:`validate_arguments`, :func:`check_parallelism`) before any
   input is read, and the SkyCell's products in the output directory are locked for the run
   (:class:`hapdask.export.lock.OutputLock`).
1. The analyze rules (one task per input), then :func:`hapdask.mvm.plan` — inputs, layers,
   bounded grids, tiles x chips. With ``refcat`` the plan also holds the alignment graph and
   is drawn on the a-priori WCS grown by the alignment margin: nothing waits for alignment.
   On local threads the rules that read pixels (all-zero SCI, guiding trails) run in a thread
   of their own while the run plans on the header rules and drizzles; their verdicts are
   checked before any file is finalised, and an input they reject makes the run start again
   from its plan without it (:class:`LateRejection`).
2. Sky levels — one task per chip (:class:`hapdask.mvm.sky.ChipMedianSky`), in the same
   graph as the tiles (step 4): a tile waits for its own chips' skies only, so drizzling
   starts at once. Should a chip turn out unreadable or empty (all NaN, all flagged), the
   tiles using it are skipped, it is reported and dropped from the plan and the layers are
   written again (:func:`write_layers`). A run resuming into an existing zarr store measures
   the skies first: its tile fingerprints decide what is reused.
3. Exporters are prepared: each FITS layer file is laid out under ``<name>.part`` (headers
   written, data areas preallocated, sky cards as placeholders); the zarr store gets its
   groups, or is reopened to resume: a stored tile is reused only when its fingerprint
   (:func:`tile_fingerprint`: inputs' content identity, skies, grid) is unchanged. A failed
   run removes its ``.part`` files.
4. One write task per tile: drizzle (or, when the zarr store already holds the tile, read it
   back), write its rows into the FITS file and its shards into the zarr store (with the
   fingerprint, completed there from the chips' skies), and return a small statistics
   summary. Only these summaries, the skies (and the alignment's per-visit fits) travel back
   to the client. A tile's chips aligned in the graph are tasks applying their visit's update
   (:func:`hapdask.mvm.graph.aligned_chip`): the tile waits for those visits only.
5. The whole-layer keywords and the input cards (``D###SKY``, ``D###WKEY`` from the applied
   WCSNAMEs) are patched into each FITS primary header and HDRTAB is appended; the file is
   then renamed to its final name; trailers, the manifest and the zarr completion flags are
   written last.

Default scheduler: Dask's local threaded scheduler with one thread per core. The numba kernels
and the pixel-map code release the GIL, so threads share the work without the cost of
shipping tiles between processes; ``workers=N`` starts a ``distributed.LocalCluster`` of N
processes instead, and ``scheduler=ADDRESS`` uses a running cluster (its workers must see the
input and output paths).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import inspect
import os
import re
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from hapdask import profile
from hapdask.archive.sregion import format_s_region
from hapdask.export import fits as xfits
from hapdask.export import headers as xheaders
from hapdask.export import manifest as xmanifest
from hapdask.export import paths as xpaths
from hapdask.export import stats as xstats
from hapdask.export import zarr as xzarr
from hapdask.export.lock import OutputLock
from hapdask.mvm.graph import alignment_keys, build_graph, layer_polygons, sky_tasks
from hapdask.mvm.planning import LayerPlan, MvmPlan, analyze_one, analyze_tasks, header_wcs, plan
from hapdask.mvm.sky import ChipMedianSky, SkyLevel
from hapdask.scheduling import compute_context as _scheduler
from hapdask.scheduling import local_compute
from skycells import SkyCell

__all__ = ["LateRejection", "MvmResult", "fingerprint_parts", "hash_fingerprint", "measure_skies",
           "reject_unusable", "run", "store_name", "tile_fingerprint", "validate_arguments",
           "write_layers"]

#: Tile edges accepted (pixels): a tile task holds a few arrays of this size squared.
TILE_SIZE_RANGE = (16, 16384)
_LAYER_TEXT = re.compile(r"[a-z0-9_-]+")

STAT_KEYS = ("NPIXFRAC", "MEANEXPT", "MEDEXPT", "MEANNEXP", "MEDNEXP", "MEANWHT", "MEDWHT")


def store_name(skycell: str) -> str:
    """Name of the zarr store of a SkyCell: ``hst_skycell-p1889x07y19.zarr``."""
    name = skycell if skycell.startswith("skycell-") else f"skycell-{skycell}"
    return f"hst_{name}.zarr"


@dataclass
class MvmResult:
    """What a run produced."""

    skycell: str
    plan: MvmPlan
    outputs: list[Path]
    manifest: Path | None
    skies: dict
    keywords: dict[str, dict[str, float]]
    tiles_computed: int
    tiles_reused: int
    wall_time: float
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Human-readable end-of-run summary."""
        p = self.plan
        lines = [f"hapdask mvm {p.skycell}: {len(p.layers)} layer(s), "
                 f"{len(p.inputs)} input(s) used, {len(p.rejected)} rejected, "
                 f"{self.tiles_computed} tile(s) drizzled, {self.tiles_reused} reused, "
                 f"wall time {self.wall_time:.1f} s"]
        lines += [f"  note: {n}" for n in self.notes]
        for name, lay in p.layers.items():
            kw = self.keywords.get(name, {})
            lines.append(f"  layer {name}: {lay.shape[1]}x{lay.shape[0]} px, "
                         f"{len(lay.inputs)} exposure(s), {len(lay.chips)} chip(s), "
                         f"MEANNEXP {kw.get('MEANNEXP', 0):.2f}")
        for r in p.rejected:
            lines.append(f"  rejected: {r}")
        for o in self.outputs:
            lines.append(f"  wrote {o}")
        if self.manifest:
            lines.append(f"  manifest {self.manifest}")
        return "\n".join(lines)


# -- tile write task ----------------------------------------------------------------------
@dataclass(frozen=True)
class WriteJob:
    """What the write task of one tile needs (picklable)."""

    layer: str
    index: tuple[int, int]
    window: tuple[int, int, int, int]
    fits: xfits.FitsLayout | None
    zarr: xzarr.ZarrLayout | None
    reuse: bool
    exptimes: tuple[float, ...]
    fingerprint: int = 0
    fingerprint_parts: tuple | None = None


#: What a tile task returns instead of pixels when one of its chips' sky (measured in the
#: same graph) says the chip is unusable: nothing is written, the run redoes its plan.
SKIPPED = "hapdask-mvm-tile-skipped"


def drizzle_if_usable(skies: list[SkyLevel], func: Callable, *args) -> dict | str:
    """``func(*args)`` (a tile's drizzle task) unless one of ``skies`` (the levels of the
    tile's chips) is not ``ok``: then :data:`SKIPPED`, and the chip's pixels are never read."""
    if any(not s.ok for s in skies):
        return SKIPPED
    return func(*args)


def write_tile(job: WriteJob, result: dict | str | None, polys: list[np.ndarray],
               skies: list[SkyLevel] | None = None) -> xstats.TileStats | None:
    """Write one tile to the FITS file and/or zarr store; return its statistics.

    ``result`` is the drizzled tile, or None when the zarr store already holds it (the tile is
    then read back from there and not recomputed), or :data:`SKIPPED` (nothing is written,
    None returned). ``polys`` are the outlines of the tile's chips on the layer grid
    (:func:`hapdask.mvm.graph.layer_polygons`: computed from the aligned WCS when the
    alignment is part of the graph). ``skies``: the levels of the tile's chips (in
    ``tile.contribs`` order) when they are measured in the same graph; the zarr fingerprint
    is then completed here from ``job.fingerprint_parts``.
    """
    if isinstance(result, str):
        return None
    if result is None:
        with profile.timed("zarr-read"):
            sci, wht, ctx = xzarr.read_zarr_tile(job.zarr, job.window)
    else:
        sci, wht, ctx = result["sci"], result["wht"], result["ctx"]
    if job.fits is not None:
        with profile.timed("fits"):
            xfits.write_fits_tile(job.fits, job.window, sci, wht, ctx)
    if job.zarr is not None and result is not None:
        with profile.timed("zarr"):
            fp = job.fingerprint or hash_fingerprint(job.fingerprint_parts, skies)
            xzarr.write_zarr_tile(job.zarr, job.index, job.window, sci, wht, ctx,
                                  fingerprint=fp)
    with profile.timed("stats"):
        return xstats.coverage_stats(wht, polys, job.exptimes, job.window)


def tile_fingerprint(p: MvmPlan, lay: LayerPlan, tile, skies: Mapping) -> int:
    """uint64 fingerprint of everything one tile's pixels come from.

    The layer grid, tile window, context option and, for every contributing chip, its context
    id, input box, identity (file, content identity, EXPTIME, DQ bits, scale, replacement WCS,
    or the alignment's catalog and margin when the graph aligns it, cosmic-ray mask file) and
    sky level. A resumed run reuses a stored tile only when this is unchanged
    (:func:`hapdask.export.zarr.reusable_tiles`). Never 0 (0 marks "not recorded").
    """
    return hash_fingerprint(fingerprint_parts(p, lay, tile),
                            [skies[lay.chips[i].key] for i, _ in tile.contribs])


def fingerprint_parts(p: MvmPlan, lay: LayerPlan, tile) -> tuple:
    """What :func:`tile_fingerprint` hashes, without the sky levels: byte strings, and at the
    place of each contributing chip's sky level its position in ``tile.contribs`` (an int).
    :func:`hash_fingerprint` completes it once the levels are known (in the write task when
    the skies are measured in the same graph)."""
    al = p.alignment
    parts: list = [f"{lay.name}|{tile.window}|{p.context}|{lay.nplanes}|".encode(),
                   lay.wcs_header.tostring().encode()]
    for n, (i, box) in enumerate(tile.contribs):
        c = lay.chips[i]
        parts.append(f"|{i}|{box}|{c.chip.path}|{c.key}|{c.content}|{c.exptime!r}|{c.bits}|"
                     f"{c.pscale!r}|".encode())
        parts.append(n)
        if c.wcs_bytes is not None:
            parts.append(hashlib.sha256(c.wcs_bytes).digest())
        if al is not None and c.key in al.chips:
            parts.append(f"|align|{al.identity}".encode())
        mask = p.crmasks.get(c.key)
        if mask is not None:  # a cosmic-ray mask file (hapdask drizzle) changes the weights
            st = os.stat(mask)
            parts.append(f"|crmask|{mask}|{st.st_size}|{st.st_mtime_ns}".encode())
    return tuple(parts)


def hash_fingerprint(parts: tuple, skies: list) -> int:
    """The uint64 fingerprint of :func:`fingerprint_parts` with ``skies`` (the
    :class:`SkyLevel` of each contributing chip, in ``tile.contribs`` order)."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(f"{skies[part].value!r}".encode() if isinstance(part, int) else part)
    return int.from_bytes(h.digest(), "little") or 1


def grid_fingerprint(p: MvmPlan, lay: LayerPlan) -> str:
    """Identity of a layer's geometry (grid, tile size, context planes): a zarr group made for
    another geometry is refused rather than mixed (contents are checked per tile)."""
    h = hashlib.sha256(f"{lay.name}|{lay.shape}|{lay.tile_size}|{p.context}|{lay.nplanes}|"
                       .encode())
    h.update(lay.wcs_header.tostring().encode())
    return h.hexdigest()[:16]


def validate_arguments(skycell: str, *, tile_size: int = 2048,
                       layers: Iterable[str] | None = None,
                       formats: Iterable[str] = ("fits", "zarr")) -> None:
    """Check the run's arguments before any input is read.

    Raises
    ------
    ValueError
        Naming the bad argument: SkyCell name, tile size (:data:`TILE_SIZE_RANGE`), a
        ``layers`` text that is not ``[a-z0-9_-]`` (layer names never hold anything else),
        or an unknown format.
    """
    SkyCell.from_name(str(skycell), scale="fine")
    lo, hi = TILE_SIZE_RANGE
    if isinstance(tile_size, bool) or not isinstance(tile_size, int | np.integer) \
            or not lo <= int(tile_size) <= hi:
        raise ValueError(f"tile size must be an integer in {lo}..{hi} pixels, got {tile_size!r}")
    for text in layers or ():
        if not _LAYER_TEXT.fullmatch(str(text).lower()):
            raise ValueError(f"layer selection {ascii(str(text))}: layer names hold only a-z, "
                             "0-9, '_' and '-' (e.g. f160w, wfc3_ir_f160w_coarse)")
    formats = [f.strip().lower() for f in formats if f.strip()]
    bad = [f for f in formats if f not in ("fits", "zarr")]
    if bad or not formats:
        raise ValueError(f"unknown output format(s) {bad or formats}: use fits, zarr")


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_parallelism(workers: int | None, threads_per_worker: int | None,
                      oversubscribe: bool = False) -> None:
    """Refuse worker processes x threads beyond the machine's cores (unless ``oversubscribe``).

    Raises
    ------
    ValueError
        For counts below 1, or above the available cores without ``oversubscribe``.
    """
    for what, n in (("workers", workers), ("threads per worker", threads_per_worker)):
        if n is not None and int(n) < 1:
            raise ValueError(f"{what} must be at least 1, got {n}")
    total = int(workers or 1) * int(threads_per_worker or 1)
    ncpu = _available_cpus()
    if total > ncpu and not oversubscribe:
        raise ValueError(f"{workers or 1} worker(s) x {threads_per_worker or 1} thread(s) = "
                         f"{total} exceeds the {ncpu} CPU core(s) available; lower them or "
                         "allow it explicitly (--oversubscribe)")


# -- headers --------------------------------------------------------------------------------
def _s_region(lay: LayerPlan) -> str:
    ny, nx = lay.shape
    w = header_wcs(lay.wcs_header.tostring())
    x = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5])
    y = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
    ra, dec = w.wcs_pix2world(x, y, 0)
    return format_s_region([np.column_stack([ra, dec])], digits=7)


def layer_headers(p: MvmPlan, lay: LayerPlan, skies: Mapping) -> dict:
    """PRIMARY/SCI/WHT/CTX headers and HDRTAB of one layer (statistics as placeholders)."""
    primaries = [i.primary for i in lay.inputs]
    primary = xheaders.combine_primary(primaries, filename=lay.filename, skycell=p.skycell,
                                       ndrizim=len(lay.chips))
    primary["BUNIT"] = ("ELECTRONS/S", "units of SCI")
    primary["ORIGIN"] = ("hapdask", "FITS file originator")
    primary["DATE"] = (_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                       "date this file was written (UTC)")
    for key in STAT_KEYS:
        primary[key] = (0.0, "set from the whole layer")
    primary["MEDWHTPR"] = (xstats.WHT_MEDIAN_RTOL, "relative precision of MEDWHT")
    primary["SKYMETH"] = ("chip-median", "per-chip sigma-clipped median sky subtracted")
    cards, table = input_cards(p, lay, skies)
    primary.extend(cards, end=True)
    wcs = lay.wcs_header.copy()
    for k in ("NAXIS1", "NAXIS2"):
        wcs.remove(k, ignore_missing=True)
    sci = wcs.copy()
    sci["BUNIT"] = ("ELECTRONS/S", "brightness units")
    sci["S_REGION"] = (_s_region(lay), "outline of the output array")
    sci.extend(xheaders.phot_cards([i.sci_headers[0] for i in lay.inputs], primaries),
               end=True)
    wht = wcs.copy()
    wht["BUNIT"] = ("UNITLESS", "exposure-time weight")
    return {"primary": primary, "sci": sci, "wht": wht, "ctx": wcs.copy(), "hdrtab": table}


def input_cards(p: MvmPlan, lay: LayerPlan, skies: Mapping) -> tuple[fits.Header, bytes]:
    """What a layer's files say about each input chip: the ``D###`` drizzle cards of the
    primary header and the HDRTAB extension, from the chips' SCI headers as drizzled
    (:attr:`InputInfo.sci_headers`: with alignment in the graph, known once it has run, see
    :meth:`MvmPlan.apply_alignment`)."""
    by_root = {i.rootname: i for i in lay.inputs}

    def sci_header(c):  # the chip's SCI header as drizzled (alignment update applied)
        info = by_root[c.key[0]]
        return info.sci_headers[[ch.key for ch in info.chips].index(c.key)]

    dcards = []
    rows = []
    for c in lay.chips:
        info = by_root[c.key[0]]
        sci_hdr = sci_header(c)
        dcards.append({"data": f"{os.path.basename(c.chip.path)}[sci,{c.key[1]}]",
                       "exptime": c.exptime, "sky": skies[c.key].value,
                       "in_scale": c.pscale, "scale": lay.scale_arcsec, "bits": c.bits,
                       "wcsname": str(sci_hdr.get("WCSNAME", "")),
                       "outname": lay.filename, "ctx": p.context})
        stem = os.path.basename(info.path).split(".fits")[0]
        lead = {"SVMROOTNAME": stem, "GENDATE": str(info.primary.get("DATE", "")),
                "HAPEXPNAME": f"{lay.name.rsplit('_', 1)[0]}-{info.rootname}_"
                              f"{'flc' if info.flc else 'flt'}",
                "MDRIZSKY": skies[c.key].value}
        rows.append(xheaders.header_row(info.primary, sci_hdr, lead))
    return xheaders.drizzle_cards(dcards), xheaders.hdrtab(rows)


# -- warm-up --------------------------------------------------------------------------------
def warm_up(lay: LayerPlan) -> None:
    """Load what the first tile tasks of a layer would otherwise load while the cores wait:
    the numba machine code of the pixel map (on the layer's first chip and grid, so the same
    distortion specialisation), of the square kernel and of the tile finalisation (from numba's
    on-disk cache: ~0.6 CPU-s), and the zarr package. Computes a 4 x 4 input pixel patch into
    private arrays; the products are not touched. Never raises (a failure only means the first
    tiles load these themselves, as without the warm-up)."""
    with contextlib.suppress(Exception):
        from hapdask.drizzle import add_to_tile, calc_pixmap, finalize_tile

        chip = lay.chips[0]
        ny, nx = chip.shape
        y0, x0 = max(ny // 2 - 2, 0), max(nx // 2 - 2, 0)
        y1, x1 = min(y0 + 4, ny), min(x0 + 4, nx)
        region = (y0, y1, x0, x1)
        lo = np.full(y1 - y0, x0, np.int64)
        hi = np.full(y1 - y0, x1, np.int64)
        pm = calc_pixmap(chip.thread_wcs(), lay.wcs(), chip.shape, region=region,
                         spans=(lo, hi))
        ratio = lay.scale_arcsec / chip.pscale
        oy = int(np.floor(np.nanmin(pm[..., 1]))) - 2
        ox = int(np.floor(np.nanmin(pm[..., 0]))) - 2
        n = 8 + int(np.ceil(4 / ratio))
        num = np.zeros((n, n))
        den = np.zeros((n, n))
        ctx = np.zeros((1, n, n), np.int32)
        data = np.ones((y1 - y0, x1 - x0), np.float32)
        add_to_tile(data, data.copy(), pm, num, den, ctx, origin=(oy, ox),
                    in_box=(0, y1 - y0, 0, x1 - x0), kernel="square", pixfrac=1.0,
                    iscale=ratio * ratio, pixel_scale_ratio=ratio, ctx_id=0,
                    in_origin=(y0, x0))
        finalize_tile(num, den, fillval=np.nan)
        xzarr._zarr()


def _start_warm_up(p: MvmPlan, local: bool) -> threading.Thread | None:
    """Run :func:`warm_up` on the plan's first layer in a background thread (local threads
    only: worker processes load their own), overlapping the preparation of the output files
    and the first tasks (the chips' skies)."""
    if not local or not p.layers:
        return None
    th = threading.Thread(target=warm_up, args=(next(iter(p.layers.values())),),
                          name="hapdask-warm-up", daemon=True)
    th.start()
    return th


def _import_zarr() -> None:
    with contextlib.suppress(Exception):  # a failure shows where zarr is first used
        xzarr._zarr()


def _start_zarr_import() -> None:
    """Import zarr in a background thread while the inputs are analysed (local threads):
    otherwise the first layer's store is created only after that import (~0.25 CPU-s, more
    on a busy machine), on the client between the analysis and the tiles, while a core
    waits."""
    threading.Thread(target=_import_zarr, name="hapdask-import-zarr", daemon=True).start()


# -- run ------------------------------------------------------------------------------------
class UnusableSky(Exception):
    """Raised by :func:`_write_layers` when a chip's sky, measured with the tiles, says the
    chip is unusable (its tiles were skipped); carries every chip's :class:`SkyLevel`."""

    def __init__(self, skies: dict):
        super().__init__("chips with an unusable sky")
        self.skies = skies


def measure_skies(p: MvmPlan, compute: Callable) -> dict:
    """The :class:`ChipMedianSky` of every chip of the plan on its own (before any tile):
    ``chip key -> SkyLevel``."""
    graph, keys = sky_tasks(p, ChipMedianSky())
    return dict(zip(keys, compute(graph, list(keys.values()), False), strict=True))


def reject_unusable(p: MvmPlan, skies: Mapping) -> None:
    """Drop the chips whose sky is not ``ok`` from the plan (:meth:`MvmPlan.reject_chips`).

    Raises
    ------
    ValueError
        When no layer is left.
    """
    p.reject_chips({k: s.reason for k, s in skies.items() if not s.ok})
    if not p.layers:
        raise ValueError(f"{p.skycell}: no usable input exposure (all chips unreadable or "
                         "empty)")


def write_layers(
    p: MvmPlan,
    outdir: str | os.PathLike,
    *,
    formats: Iterable[str] = ("fits", "zarr"),
    compute: Callable,
    skies: Mapping | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
    gate: Callable[[MvmPlan], None] | None = None,
    bands: bool = False,
) -> tuple[list[Path], dict, int, int, dict]:
    """Export every layer of a plan; see the module docstring. Returns (paths, keywords,
    tiles computed, tiles reused, skies).

    ``gate(p)``, when given, is called once the tiles are computed and before any file is
    finalised; an exception it raises leaves no ``.part`` file and no store made by this call
    behind (the run's analyze pixel tests: :class:`LateRejection`).

    ``skies`` (``chip key -> SkyLevel``) measured beforehand, or None: the chips' skies
    (:class:`ChipMedianSky`) are then tasks of the tiles' graph, so drizzling starts at once;
    the sky cards (``D###SKY``, HDRTAB's ``MDRIZSKY``) are written when the files are
    finalised and the zarr tile fingerprints in the write tasks. Should a chip turn out
    unusable, its tiles are skipped, the plan drops it (:func:`reject_unusable`) and the
    layers are written again from scratch. A zarr store already present (a run to resume)
    needs the fingerprints first: the skies are then measured before the tiles.

    With alignment in the plan's graph (:attr:`MvmPlan.alignment`), it is computed with the
    tiles; its result is recorded in the plan (:meth:`MvmPlan.apply_alignment`) and the input
    cards (``D###WKEY``, HDRTAB) are written when the files are finalised. The
    :class:`hapdask.align.AlignResult` is then ``p.alignment.result``.

    ``bands``: every tile task runs in this process (``compute`` is the local threaded
    scheduler): the FITS files are then written in full-width bands of rows with direct I/O
    (:func:`hapdask.export.fits.create_fits`)."""
    formats = {f.strip().lower() for f in formats}
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    store = xpaths.output_path(outdir, store_name(p.skycell))
    if skies is None and "zarr" in formats and store.exists():
        skies = measure_skies(p, compute)
    if skies is not None:
        reject_unusable(p, skies)
    while True:
        fits_layouts: dict[str, xfits.FitsLayout] = {}
        new_store = "zarr" in formats and not store.exists()
        try:
            return _write_layers(p, outdir, formats, compute, skies, progress, log,
                                 fits_layouts, gate, bands)
        except BaseException as exc:
            for layout in fits_layouts.values():  # a failed run leaves no .part file behind
                xfits.discard_fits(layout)
                with contextlib.suppress(OSError):
                    xpaths.remove_temporary(layout.final)
            if isinstance(exc, LateRejection) and new_store:  # made for a plan that changes
                shutil.rmtree(store, ignore_errors=True)
            if not isinstance(exc, UnusableSky) or skies is not None:
                raise
            if new_store:  # made by this attempt for a plan that changes: start afresh
                shutil.rmtree(store, ignore_errors=True)
            skies = exc.skies
            reject_unusable(p, skies)


def _write_layers(p, outdir, formats, compute, skies, progress, log, fits_layouts, gate=None,
                  bands=False):
    zarr_layouts: dict[str, xzarr.ZarrLayout] = {}
    store = xpaths.output_path(outdir, store_name(p.skycell))
    if "zarr" in formats and store.exists():
        xpaths.check_no_links(store)
    in_graph = skies is None  # skies measured with the tiles
    if in_graph:
        _, sky_key = sky_tasks(p, ChipMedianSky())
        placeholder = dict.fromkeys(sky_key, SkyLevel(0.0, 0.0, 0))  # cards patched at the end

    def create_store() -> dict[str, xzarr.ZarrLayout]:
        return {name: xzarr.create_zarr_layer(
                    store, name, lay.shape, lay.tile_size, wcs_header=lay.wcs_header,
                    fingerprint=grid_fingerprint(p, lay), nplanes=lay.nplanes if p.context else 0,
                    attrs={"filename": lay.filename, "skycell": p.skycell, "scale": lay.scale,
                           "plan_fingerprint": p.fingerprint,
                           "bunit": "ELECTRONS/S",
                           "inputs": [f"{c.chip.path}[sci,{c.key[1]}]" for c in lay.chips]})
                for name, lay in p.layers.items()}

    # the zarr groups and arrays are made in a thread (zarr's metadata writes mostly wait on
    # its event loop: ~0.25-0.7 s of wall on the acs4 benchmark, < 0.01 CPU-s here) while the
    # FITS headers are built and their files laid out
    with ThreadPoolExecutor(1, thread_name_prefix="hapdask-zarr-create") as pool:
        made = pool.submit(create_store) if "zarr" in formats else None
        for name, lay in p.layers.items():
            nplanes = lay.nplanes if p.context else 0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", VerifyWarning)  # long comments get truncated
                hdrs = layer_headers(p, lay, placeholder if in_graph else skies)
                if "fits" in formats:  # HDRTAB is appended when the alignment is known
                    fits_layouts[name] = xfits.create_fits(
                        xpaths.output_path(outdir, lay.filename), lay.shape,
                        primary=hdrs["primary"], sci=hdrs["sci"], wht=hdrs["wht"],
                        ctx=hdrs["ctx"], nplanes=nplanes, bands=bands)
        if made is not None:
            zarr_layouts.update(made.result())
    graph, tile_keys = build_graph(p, ChipMedianSky() if in_graph else skies)
    align_keys = alignment_keys(p)
    write_keys: list = []
    layer_of: list[str] = []
    computed = reused = 0
    for name, lay in p.layers.items():
        zl = zarr_layouts.get(name)
        fps = np.zeros(lay.ntiles, dtype=np.uint64)
        if not in_graph:
            for tile in lay.tiles:
                fps[tile.index] = tile_fingerprint(p, lay, tile, skies)
        done = xzarr.reusable_tiles(zl, fps) if zl is not None and not in_graph else None
        wname = f"mvm-write-{name}-{p.fingerprint}"
        polys = layer_polygons(p, lay)
        for tile in lay.tiles:
            reuse = bool(done is not None and done[tile.index])
            job = WriteJob(
                layer=name, index=tile.index, window=tile.window,
                fits=fits_layouts.get(name), zarr=zl, reuse=reuse,
                exptimes=tuple(lay.chips[i].exptime for i, _ in tile.contribs),
                fingerprint=int(fps[tile.index]),
                fingerprint_parts=fingerprint_parts(p, lay, tile) if in_graph else None)
            key = (wname, *tile.index)
            tkey = tile_keys[name][tile.index]
            tile_skies = [sky_key[lay.chips[i].key] for i, _ in tile.contribs] \
                if in_graph else None
            graph[key] = (write_tile, job, None if reuse else tkey,
                          [polys[i] for i, _ in tile.contribs], tile_skies)
            if reuse:
                graph.pop(tkey, None)
                reused += 1
            else:
                if in_graph:
                    graph[tkey] = (drizzle_if_usable, tile_skies, *graph[tkey])
                computed += 1
            write_keys.append(key)
            layer_of.append(name)
    if reused:
        log(f"resuming: {reused} tile(s) already in {store} are reused, {computed} to compute")
    sky_keys = list(sky_key.values()) if in_graph else []
    band_keys: list = []
    if bands and fits_layouts:
        # one small task per row of tiles, on its tiles' write tasks: Dask's ordering then
        # finishes a row's tiles together (a FITS band is written once its row is complete;
        # without these, the last tiles of every row came at the end of the run)
        rows: dict = {}
        for key, name in zip(write_keys, layer_of, strict=True):
            rows.setdefault(("mvm-band-" + name + "-" + p.fingerprint, key[1]), []).append(key)
        for bkey, members in rows.items():
            graph[bkey] = (len, members)
            band_keys.append(bkey)
    results = compute(graph, write_keys + align_keys + sky_keys + band_keys, progress)
    if band_keys:
        results = results[:len(results) - len(band_keys)]
    if gate is not None:
        gate(p)
    if in_graph:
        skies = dict(zip(sky_key, results[len(results) - len(sky_keys):], strict=True))
        results = results[:len(results) - len(sky_keys)]
        if any(not s.ok for s in skies.values()):
            raise UnusableSky(skies)
    if p.alignment is not None:  # (no fitted visit: every input kept, still reported)
        p.alignment.result = p.alignment.job.result(results[len(write_keys):])
        p.apply_alignment(p.alignment.result)
        results = results[:len(write_keys)]
    per_layer: dict[str, list] = {}
    for name, st in zip(layer_of, results, strict=True):
        per_layer.setdefault(name, []).append(st)
    keywords: dict[str, dict[str, float]] = {}
    finals: list[tuple] = []
    for name, lay in p.layers.items():
        kw = xstats.layer_keywords(xstats.merge(per_layer.get(name, [])), lay.full_cell_pixels)
        keywords[name] = kw
        if name in fits_layouts:
            cards, table = input_cards(p, lay, skies)
            # (the sky cards were placeholders when the skies were measured with the tiles)
            late = {k: v for k, v in cards.items() if k.endswith(("WKEY", "SKY"))}
            finals.append((fits_layouts[name], {**kw, **late}, table))
        if name in zarr_layouts:
            xzarr.finish_zarr_layer(zarr_layouts[name], dict(kw))
    with profile.step("finalize"):  # header patches, HDRTAB, fsync, rename
        outputs = _finalize_all(finals)
    if zarr_layouts:
        xzarr.mark_store_complete(store, {"skycell": p.skycell, "layers": list(p.layers),
                                          "hapdask_fingerprint": p.fingerprint})
        outputs.append(store)
    return outputs, keywords, computed, reused, skies


def _finalize_all(finals: list[tuple]) -> list[Path]:
    """:func:`hapdask.export.fits.finalize_fits` of every layer file (``(layout, updates,
    hdrtab)``), in threads: each ends with an ``fsync`` that waits for the disk to take the
    file's dirty pages (~0.2-0.9 s per 620 MB layer here), and those waits overlap. Returns
    the final paths in the order given."""
    if len(finals) <= 1:
        return [xfits.finalize_fits(lay, upd, hdrtab=tab) for lay, upd, tab in finals]
    with ThreadPoolExecutor(min(len(finals), 8), thread_name_prefix="hapdask-finalize") as pool:
        futures = [pool.submit(xfits.finalize_fits, lay, upd, hdrtab=tab)
                   for lay, upd, tab in finals]
        return [f.result() for f in futures]


def _demo_inputs(skycell: str, log) -> tuple[object, str, list[str]]:
    """The demo's MVM poller, its Gaia-like reference catalog (path) and notes."""
    from hapdask.simulate import demo_dataset

    t0 = time.perf_counter()
    demo = demo_dataset(skycell)
    notes = [f"no --input given: using the built-in simulated demo data for {skycell} "
             f"({demo.outdir}; {time.perf_counter() - t0:.1f} s)",
             f"aligning to the simulator's Gaia-like catalog {demo.refcat.name}"]
    for n in notes:
        log(n)
    return str(demo.mvm_poller), str(demo.refcat), notes


def _analyze(inputs, verdicts, compute) -> dict:
    """The analyze rules of every input (unless ``verdicts`` are given), in parallel on the
    run's scheduler: ``path -> Verdict``."""
    if verdicts is not None:
        return dict(verdicts)
    graph, keys, paths = analyze_tasks(inputs)
    return dict(zip(paths, compute(graph, keys, False) if keys else [], strict=True))


class LateRejection(Exception):
    """Raised by :func:`write_layers` (through its ``gate``) when the pixel tests of the analyze
    rules, run beside the tiles, reject an input the plan used; carries every input's full
    :class:`hapdask.analyze.Verdict` (``path -> Verdict``)."""

    def __init__(self, verdicts: dict):
        super().__init__("inputs rejected by the analyze pixel tests")
        self.verdicts = verdicts


class _BackgroundAnalysis:
    """The analyze rules of every input, computed in a thread of their own while the run plans
    and drizzles (local threads only).

    The rules that read pixels (Z, all-zero SCI; G, guiding trails) are most of the analysis
    (scikit-image and scipy imports, sampled SCI windows, Canny + Hough): waiting for them
    before planning left a core idle for ~0.6 s of an acs4 run. They can only reject an input,
    never keep one the header rules reject, and a rejected exposure still bounds the layer
    grids (:func:`hapdask.mvm.plan`), so the run plans on the header rules
    (:attr:`header_verdicts`: ``check_data=False``) and :meth:`check` compares with the full
    verdicts before any file is finalised: an input they reject makes the run start again
    from its plan (:class:`LateRejection`), exactly as if it had waited.
    """

    def __init__(self, inputs, nthreads: int | None = None) -> None:
        graph, keys, self.paths = analyze_tasks(inputs)
        self.header_verdicts = {p: analyze_one(p, check_data=False) for p in self.paths}
        self._result: list | None = None
        self._error: BaseException | None = None

        def work() -> None:
            try:
                self._result = local_compute(graph, keys, nthreads=nthreads,
                                             beside_client=True) if keys else []
            except BaseException as exc:  # re-raised by the caller in verdicts()
                self._error = exc

        self._thread = threading.Thread(target=work, name="hapdask-analyze", daemon=True)
        self._thread.start()

    def verdicts(self) -> dict:
        """The full verdicts (``path -> Verdict``), once computed."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return dict(zip(self.paths, self._result, strict=True))

    def check(self, p: MvmPlan) -> None:
        """Raise :class:`LateRejection` when a full verdict rejects an input of plan ``p``;
        otherwise record the full verdicts' warnings in the plan's inputs."""
        full = self.verdicts()
        if any(not full[i.path].keep for i in p.inputs if i.path in full):
            raise LateRejection(full)
        for info in p.inputs:
            if info.path in full:
                info.warnings = list(full[info.path].warnings or [])


def _alignment_notes(p: MvmPlan, log) -> list[str]:
    """What the alignment computed in the graph did (one line, then one per visit)."""
    al = p.alignment
    if al is None or al.result is None:
        return []
    res = al.result
    notes = [f"alignment to {res.catalog} inside the graph, margin {al.margin:g}\" (planned "
             "on the a-priori WCS)", *(f"alignment: {line}" for line in res.summary())]
    for n in notes:
        log(n)
    return notes


def _checked_and_locked(func: Callable) -> Callable:
    """Decorator of :func:`run`: validate the arguments before anything is read, then hold
    the output directory's lock (:class:`hapdask.export.lock.OutputLock`) for the call."""
    sig = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        validate_arguments(a["skycell"], tile_size=a["tile_size"], layers=a["layers"],
                           formats=a["formats"])
        if a["scheduler"] is None:
            check_parallelism(a["workers"], a["threads_per_worker"], a["oversubscribe"])
        key = SkyCell.from_name(str(a["skycell"]), scale="fine").name
        with OutputLock(a["output"], key=key, log=a["log"]):
            return func(*bound.args, **bound.kwargs)

    return wrapper


@_checked_and_locked
def run(
    skycell: str,
    inputs=None,
    *,
    output: str | os.PathLike = "hapdask_output",
    formats: Iterable[str] = ("fits", "zarr"),
    scheduler=None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    tile_size: int = 2048,
    context: bool = True,
    wcs_updates: Mapping | None = None,
    progress: bool = False,
    log: Callable[[str], None] = print,
    layers: Iterable[str] | None = None,
    verdicts: Mapping | None = None,
    refcat=None,
    scheduler_timeout: float = 30.0,
    oversubscribe: bool = False,
    temp_dir: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
) -> MvmResult:
    """Build the MVM layers of a SkyCell and write them (FITS and/or zarr).

    Parameters
    ----------
    skycell : str
        ``p1889x07y19`` or ``skycell-p1889x07y19``.
    inputs : poller, directory, list file, paths or URLs, optional
        None uses the built-in simulated demo data of the SkyCell (simulated once, cached),
        aligned to its Gaia-like reference catalog.
    output : path
        Output directory (created).
    formats : iterable of {"fits", "zarr"}
    scheduler : str or distributed.Client, optional
        Address of a running Dask scheduler (or a client).
    workers, threads_per_worker : int, optional
        Start a local cluster of ``workers`` processes. Neither: local threads (default).
    tile_size : int
        Output tile edge (pixels): task size, zarr shard size.
    context : bool
        Write the CTX arrays.
    wcs_updates : mapping, optional
        ``(rootname, extver) -> WCS/Header`` replacing chip WCSs (alignment results).
    progress : bool
        Show a progress bar.
    log : callable
        Receives progress messages.
    layers : iterable of str, optional
        Only the layers whose name contains one of these strings.
    verdicts : mapping, optional
        ``path -> Verdict`` of the analyze rules already computed (skips that step).
    refcat : RefCatalog or path, optional
        Align the inputs (per visit, then to this catalog) inside the run's graph: the plan
        is drawn on the a-priori WCS with :data:`hapdask.align.MVM_ALIGN_MARGIN` (larger
        corrections are rejected, the exposure keeps its a-priori WCS) and each tile waits
        only for the visits it uses. ``wcs_updates`` entries win. Inputs already holding a
        FIT_SVM WCS are used as they are.
    scheduler_timeout : float
        Seconds to wait for a ``scheduler`` address to answer.
    oversubscribe : bool
        Allow ``workers`` x ``threads_per_worker`` above the machine's cores.
    temp_dir : path, optional
        Where a local cluster keeps its scratch space (default: the output directory); a
        private sub-directory is made and removed at the end.

    The SkyCell's products in the output directory are locked for the run
    (:class:`hapdask.export.lock.OutputLock`): a second run of the same SkyCell into it fails
    at once with :class:`~hapdask.export.lock.OutputLocked`.
    masks : path, optional
        Directory of cosmic-ray masks (``<rootname>_crmask.fits`` of ``hapdask drizzle``);
        masks beside the inputs are used too. Flagged pixels get weight 0.

    Returns
    -------
    MvmResult

    Raises
    ------
    ValueError
        Bad SkyCell name, tile size, layer selection, formats or parallelism (all checked
        before any input is read), or no usable input at all.
    OSError
        The output directory is in use by another run, or the scheduler does not answer.
    """
    t0 = time.perf_counter()
    formats = [f.strip().lower() for f in formats if f.strip()]
    notes: list[str] = []
    if inputs is None:
        inputs, demo_refcat, notes = _demo_inputs(skycell, log)
        refcat = demo_refcat if refcat is None else refcat
    scratch = temp_dir if temp_dir is not None else output
    with _scheduler(scheduler, workers, threads_per_worker, log, timeout=scheduler_timeout,
                    scratch=scratch) as (compute, _client):
        if _client is None and "zarr" in formats:
            _start_zarr_import()
        pending = None
        if verdicts is None and _client is None:  # pixel tests beside the tiles
            pending = _BackgroundAnalysis(inputs, threads_per_worker)
            verdicts = pending.header_verdicts
        else:
            verdicts = _analyze(inputs, verdicts, compute)
        masks_noted = len(notes)
        while True:
            with profile.step("plan"):  # alignment (refcat) planned, computed with the tiles
                p = plan(skycell, inputs, tile_size=tile_size, wcs_updates=wcs_updates,
                         context=context, verdicts=verdicts, only=layers, masks=masks,
                         refcat=refcat)
            if not p.layers and pending is not None:  # the message names every rejection
                verdicts, pending = pending.verdicts(), None
                continue
            del notes[masks_noted:]
            for path in sorted(set(p.crmasks.values())):
                notes.append(f"cosmic-ray mask {path}")
                log(notes[-1])
            if not p.layers:
                reasons = "; ".join(str(r) for r in p.rejected[:5]) or "no inputs"
                if layers:
                    raise ValueError(f"{p.skycell}: no layer of the usable inputs has a name "
                                     f"containing any of {list(layers)} (names look like "
                                     f"hst_skycell-..._wfc3_ir_f160w_coarse-all_drz; "
                                     f"rejected: {reasons})")
                raise ValueError(f"{p.skycell}: no usable input exposure ({reasons})")
            _start_warm_up(p, local=_client is None)
            try:
                outputs, keywords, computed, reused, skies = write_layers(
                    p, output, formats=formats, compute=compute, progress=progress, log=log,
                    gate=pending.check if pending is not None else None,
                    bands=_client is None)
            except LateRejection as exc:  # plan again on the full verdicts
                verdicts, pending = exc.verdicts, None
                continue
            break
        notes += _alignment_notes(p, log)
    wall = time.perf_counter() - t0
    outdir = Path(output)
    products = list(outputs)
    for name, lay in p.layers.items():
        trl = outdir / f"{name}_trl.txt"
        xmanifest.write_trailer(trl, _trailer_lines(p, lay, skies, keywords[name], wall, notes))
        products.append(trl)
    man = xmanifest.write_manifest(outdir, p.skycell, products)
    return MvmResult(p.skycell, p, list(outputs) + [outdir / f"{n}_trl.txt" for n in p.layers],
                     man, skies, keywords, computed, reused, wall, notes)


def _trailer_lines(p: MvmPlan, lay: LayerPlan, skies, kw, wall, notes) -> list[str]:
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [f"{now} hapdask mvm {p.skycell}: layer {lay.filename}"]
    lines += [f"note: {n}" for n in notes]
    lines.append(f"grid {lay.scale} {lay.scale_arcsec:.4f} arcsec/px, {lay.shape[1]} x "
                 f"{lay.shape[0]} px, tiles of {lay.tile_size} px, plan {p.fingerprint}")
    lines.append(f"drizzle: square kernel, pixfrac 1.0, weight EXPTIME x DQ good "
                 f"(bits {lay.bits}), output electrons/s, fill NaN")
    for c in lay.chips:
        s = skies[c.key]
        lines.append(f"input {c.label}: EXPTIME {c.exptime:g} s, sky {s.value:.6g} "
                     f"({s.rate:.6g} e-/s, {s.ngood} px), iscale {lay.iscale(c):.6f}")
    for r in p.rejected:
        lines.append(f"rejected {r}")
    for k, v in kw.items():
        lines.append(f"{k} = {v:.8g}")
    lines.append(f"wall time of the run {wall:.2f} s")
    return lines
