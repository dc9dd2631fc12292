"""``hapdask.svm.run``: a visit's Single-Visit Mosaics as two Dask computes.

1. The alignment graph (:func:`alignment_graph`)::

    ("align-sources-<t>", i) / ("align-fit-<t>", v)   alignment (hapdask.align.align_graph)
    ("svm-align-state", det)    alignment records of the detector -> WCS updates + north-up grid

2. The product graph (:func:`products_graph`), built once the grid is known, computed at once::

    ("drz-...-<fp>", ...)       every drizzle product's AstroDrizzle graph (hapdask.mosaic
                                drizzle_graph: static, sky, separate drizzles, medians, blot +
                                driz_cr, final tiles, writes) with HAP's SVM parameters of its
                                level, on the detector's grid; a chip is placed on that grid
                                once for all products (while the graph is built,
                                the products of a detector planned side by side in threads,
                                their static masks and sky levels computed meanwhile)
    ("svm-keywords-footprint", name), ("svm-keywords-sregion", name), ("svm-preview", name)
                                the footprint keywords, S_REGION and the JPEG preview +
                                thumbnail (hapdask.preview) of a finished product, side by
                                side (they only read it; S_REGION reads nothing: its data
                                mask is made by the tile writes, from the values written,
                                and merged from the tiles' parts)
    ("svm-keywords", name)      HAP's keywords written into the product, after those
    ("svm-catalogs-...", name)  point + segment catalogs (hapdask.catalogs' steps) as tasks,
                                from when the total and filter products are written (beside
                                the other products' previews and keywords): each filter's
                                background, the total's detection inputs, its point sources,
                                its segmentation (one after the other: each holds whole
                                images), then the filters' photometry side by side (their
                                saturation maps made from the alignment, while the products
                                are drizzled); the keywords of a product are written after
                                the catalog tasks reading its file. Among ready tasks
                                (local threads, scheduling.local_compute(priority=)) the
                                total and filter products' tile writes and ends start first,
                                then the catalog tasks, then those products' readers and
                                keywords; a task waiting (a product's end for its rows'
                                writes, a tile's direct I/O) hands its core to another
                                (hapdask.scheduling.SPARE_THREADS and waiting)
    ("svm-catalogs", det)       the catalogs assembled and written as ECSV, after the products'
                                keywords (the catalogs' metadata)
    ("svm-color", det)          colour preview of the total from up to three filters (from
                                their previews' block averages)
    ("svm-headerlets", poller)  a headerlet per exposure (needs only the alignment)

Exposure, filter and total products run side by side on the graph's threads; only the total's
reading of its filter products' cosmic-ray masks waits for them. ``--profile`` shows the time
per stage (``hapdask.profile``; ``keywords``, ``catalogs`` and ``preview`` are SVM's stages).
Everything is written
into a private staging directory inside the output directory and moved to its final name only at
the end, after checking that no file of the same name exists: nothing the user had is
overwritten. Then ``wcs_updates.fits`` (merged with an existing one), headerlets, trailers and
the manifest are written. Inputs are never modified;
``update_inputs=True`` writes HAP's renamed copies ``hst_..._fl[ct].fits`` with the aligned WCS
and the cosmic-ray flags (DQ 4096) instead.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

import skycells
from hapdask._memory import drop_file_pages, give_back_free_memory
from hapdask.align import AlignResult, FileCatalog, read_wcs_updates
from hapdask.align.headerlet import write_headerlets
from hapdask.align.pipeline import align_graph, visit_key
from hapdask.align.updates import WcsUpdate, apply_update, write_wcs_updates
from hapdask.catalogs import (
    Background,
    CatalogParams,
    Detection,
    FilterCatalogs,
    Segmentation,
    assemble_catalogs,
    catalog_meta,
    detect_points,
    detect_segmentation,
    filter_background,
    measure_filter,
    prepare_detection,
    read_product,
)
from hapdask.dqflags import DQ_FLAGS
from hapdask.export.lock import OutputLock
from hapdask.export.manifest import write_atomic
from hapdask.export.stats import coverage_stats, layer_keywords, merge
from hapdask.io import linear_pixel_scale
from hapdask.mosaic import OutputGrid, chip_refs
from hapdask.mosaic.family import family_groups, family_tasks
from hapdask.mosaic.graph import release_scratch, scratch_readers
from hapdask.mosaic.grid import hap_visit_grid
from hapdask.mosaic.job import (
    DrizzleGraph,
    DrizzleResult,
    EarlyWork,
    drizzle_graph,
    wait_product_rows,
)
from hapdask.mosaic.params import AstroDrizzleParams
from hapdask.mosaic.products import crmask_name, read_crmask, update_dq
from hapdask.preview import preview_planes, write_color_preview, write_previews
from hapdask.profile import step, timed
from hapdask.scheduling import SPARE_THREADS, compute_context
from hapdask.svm.keywords import (
    MaskPart,
    add_hapexpname,
    mask_part,
    merge_mask,
    region_of_mask,
)
from hapdask.svm.params import level_key, svm_drizzle_params
from hapdask.svm.planning import SvmPlan, plan
from hapdask.svm.products import DetectorProducts, output_names, sort_key

__all__ = ["ProductRecord", "SvmResult", "run"]

#: blank header cards a drizzle product gets for HAP's keywords (:func:`_refine_headers`): one
#: FITS block; with them astropy updates the headers in place instead of rewriting the file
RESERVE_CARDS = 36

#: threads planning a detector's drizzle products (:func:`_plan_products`); each product maps
#: its chips in up to one thread per core besides
PLAN_THREADS = 2


@dataclass
class DetectorState:
    """Alignment outcome of one detector: per-chip WCS updates and the visit's grid."""

    updates: dict  # (rootname, extver) -> header text
    fits_: list
    grid: OutputGrid

    def headers(self) -> dict:
        return {k: fits.Header.fromstring(v) for k, v in self.updates.items()}


@dataclass(frozen=True)
class DrizzleJob:
    """One drizzle product of the visit."""

    name: str
    level: str          # exposure | filter | total
    inputs: tuple       # input paths
    params: tuple       # sorted (name, value) pairs (hashable)
    param_set: str
    filter_value: str   # FILTER keyword
    coverage: tuple     # paths of the exposures counted in the footprint keywords
    rootname: str = ""  # exposure level
    hapexpnames: tuple = ()  # (ipppssoo, exposure product stem) of the detector (HDRTAB)


@dataclass
class ProductRecord:
    """What a drizzle task made."""

    name: str
    path: Path
    level: str
    crmasks: dict = field(default_factory=dict)  # rootname -> path
    lines: list = field(default_factory=list)


@dataclass
class SvmResult:
    """Outcome of :func:`run`."""

    outdir: Path
    plan: SvmPlan
    files: list[Path]
    alignment: AlignResult
    notes: list[str] = field(default_factory=list)
    wall_time: float = 0.0

    @property
    def products(self) -> list[Path]:
        return [p for p in self.files if p.name.endswith(("_drz.fits", "_drc.fits"))]

    def summary(self) -> str:
        lines = [f"hapdask svm: {self.plan.poller.name}: {len(self.products)} drizzle product(s),"
                 f" {len(self.files)} file(s) in {self.outdir} ({self.wall_time:.1f} s)"]
        lines += [f"  alignment: {s}" for s in self.alignment.summary()]
        lines += [f"  rejected {f}: {r}" for f, r in self.plan.rejected]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# -- tasks -----------------------------------------------------------------------------------
def _state_task(exps: list, kept_updates: dict, *fit_results) -> DetectorState:
    """Collect a detector's alignment records and build its north-up grid (HAP's metawcs,
    recomputed after the fit, over every chip of every exposure of the detector in HAP's order,
    :func:`hapdask.mosaic.grid.hap_visit_grid`)."""
    fits_ = [f for res in fit_results for f in res]
    updates = dict(kept_updates)
    for f in fits_:
        for u in f.updates:
            updates[u.key] = u.header_text
    heads = {k: fits.Header.fromstring(v) for k, v in updates.items()}
    refs = [c for e in exps for c in chip_refs(e, None, heads) if c.chip.has_data]
    first = refs[0]
    w0 = first.wcs()
    hdr = first.chip.header
    scale = float(hdr["IDCSCALE"]) if "IDCSCALE" in hdr else linear_pixel_scale(w0)
    with timed("grid"):
        grid = hap_visit_grid([w0] + [c.wcs() for c in refs[1:]], scale, sci_header=hdr,
                              pa_v3=exps[0].primary.get("PA_V3"),
                              detector=(exps[0].instrument, exps[0].detector))
    return DetectorState(updates, fits_, grid)


def _grid_params(grid: OutputGrid) -> dict:
    """The grid as AstroDrizzle ``final_*`` parameters (HAP passes the filter products' grid
    this way). They are recorded with each product; the drizzle itself is given the grid
    (``drizzle_graph(grid=)``), so every product of a detector is on exactly one WCS."""
    h = grid.fits_header()
    scale = grid.scale_arcsec
    return {"final_wcs": True, "final_ra": float(h["CRVAL1"]), "final_dec": float(h["CRVAL2"]),
            "final_crpix1": float(h["CRPIX1"]), "final_crpix2": float(h["CRPIX2"]),
            "final_outnx": int(h["NAXIS1"]), "final_outny": int(h["NAXIS2"]),
            "final_scale": scale, "final_rot": 0.0}


def _chip_polygons(grid: OutputGrid, exps: list, heads: dict
                   ) -> tuple[list[np.ndarray], list[float]]:
    """Outlines of the exposures' chips in 0-based grid pixels, and each chip's EXPTIME."""
    w = grid.wcs()
    polys, times = [], []
    for e in exps:
        for c in chip_refs(e, None, heads):
            if not c.chip.has_data:
                continue
            radec = skycells.wcs_outline(c.wcs())
            x, y = w.wcs_world2pix(radec[:, 0], radec[:, 1], 0)
            polys.append(np.column_stack([x, y]))
            times.append(float(e.exptime))
    return polys, times


def _footprint(path: Path, grid: OutputGrid, polys: list[np.ndarray], times: list[float]
               ) -> dict:
    """HAP's footprint keywords of a product (inventory 4.5), band by band
    (:func:`~hapdask.export.stats.coverage_stats`, as the MVM write tasks)."""
    ny, nx = grid.shape
    parts = []
    with fits.open(path, memmap=True) as hdul:
        wht = hdul["WHT"].data
        for y0 in range(0, ny, 1024):
            win = (y0, min(ny, y0 + 1024), 0, nx)
            band = np.asarray(wht[win[0]:win[1]], dtype=np.float32)
            drop_file_pages(wht)  # the mapped pages read so far (hapdask._memory)
            parts.append(coverage_stats(band, polys, times, win, covered_only=True))
    return layer_keywords(merge(parts), ny * nx)


def _footprint_task(job: DrizzleJob, exps: dict, state: DetectorState, res: DrizzleResult
                    ) -> dict:
    """The footprint keywords of a finished filter or total product (from its WHT; exposure
    products have none, inventory 4.5). Reads the product only, beside its preview
    (:func:`_preview_task`)."""
    if job.level == "exposure":
        return {}
    with timed("footprint"):
        polys, times = _chip_polygons(state.grid, [exps[p] for p in job.coverage],
                                      state.headers())
        return _footprint(res.output, state.grid, polys, times)


def _tile_mask(window: tuple[int, int, int, int], sci: np.ndarray, _wht: np.ndarray
               ) -> MaskPart:
    """``S_REGION``'s part of a final tile (:func:`~hapdask.svm.keywords.mask_part`), made by
    its write task from the values written (``drizzle_graph(tile_summary=)``)."""
    return mask_part(sci, window)


def _s_region_task(state: DetectorState, *written: tuple[float, MaskPart]) -> str:
    """``S_REGION`` of a product from its final tiles' data masks (``written``: its write
    tasks' values, :func:`_tile_mask`): the product is not read back."""
    with timed("s_region"):
        mask = merge_mask([part for _, part in written], state.grid.shape)
        return region_of_mask(mask, state.grid.wcs())


def _refine_headers(path: Path, job: DrizzleJob, state: DetectorState, exps: dict,
                    trailer: str, footprint: dict, region: str) -> None:
    """HAP's product keywords (``refine_product_headers``, inventory 4.5) on a staged file
    (``footprint``, ``region``: the product's :func:`_footprint_task` and
    :func:`_s_region_task`)."""
    heads = state.headers()
    stem = path.name.rsplit("_", 1)[0]
    with timed("header"), fits.open(path, mode="update") as hdul:
        h = hdul[0].header
        h["ROOTNAME"] = (stem, "rootname of the product")
        h["FILENAME"] = (path.name, "name of this file")
        h["HAPLEVEL"] = (1 if job.level == "exposure" else 2,
                         "HAP level: 1 exposure, 2 filter/total SVM product")
        h["FILTER"] = (job.filter_value, "filter(s) of the product")
        h["DRIZPARS"] = (trailer, "trailer of the drizzle run")
        h["PARAMSET"] = (job.param_set, "HAP SVM parameter set (hapdask.svm.params)")
        if job.level == "exposure":
            h["IPPPSSOO"] = (job.rootname, "rootname of the exposure")  # 9 characters as HAP
        else:
            for k, v in footprint.items():
                h[k] = (float(v), "HAP footprint keyword (inventory 4.5)")
        sci = hdul["SCI"].header
        sci["S_REGION"] = region
        names = list(dict.fromkeys(
            str(heads[(e.rootname, c.extver)]["WCSNAME"]) if (e.rootname, c.extver) in heads
            and "WCSNAME" in heads[(e.rootname, c.extver)] else c.wcsname
            for e in (exps[q] for q in job.inputs) for c in e.chips))
        sci["WCSNAME"] = (names[0] if len(names) == 1 else "MULTIPLE",
                          "WCS solution of the inputs")
    with timed("hapexpname"):
        add_hapexpname(path, dict(job.hapexpnames))


def _filter_value(exps: list) -> str:
    raw = exps[0].filters_raw
    tokens = [t.strip().upper() for t in raw.split(";") if t.strip()]
    keep = [t for t in tokens if "CLEAR" not in t and "N/A" not in t]
    return ";".join(keep) or "CLEAR"


def _drizzle_graph(job: DrizzleJob, staging: str, state: DetectorState,
                   masks: dict, after: tuple, placed: dict, early: EarlyWork | None = None,
                   reuse_separate: bool = True, banded: bool = False) -> DrizzleGraph:
    """The engine's graph of one SVM drizzle product (AstroDrizzle's job with the product
    level's parameters on the detector's grid; ``masks``: the filter products' cosmic-ray
    masks the total uses, written by the tasks ``after``; ``early``: computes its static masks
    and sky levels while the chips are placed, on its pool; ``reuse_separate``: the engine's
    option, off for products whose final tiles a product family makes; ``banded``: the
    graph is computed once on local threads, and the product's rows are written in full-width
    bands with direct I/O from its tiles kept in the scratch (``banded_product``; each tile's
    rows written through the page cache were ~8 s of the demo's ~22 s of system time: the
    fresh page-cache pages cost more than the disk's writes))."""
    stem = job.name.rsplit("_", 1)[0]
    params = {**dict(job.params), **_grid_params(state.grid)}
    return drizzle_graph(list(job.inputs), Path(staging) / stem, params=params,
                         wcs_updates=state.headers(), crmasks=masks or None, after=after,
                         placed=placed, reserve_cards=RESERVE_CARDS, grid=state.grid,
                         early=early, pool=early.pool if early is not None else None,
                         reuse_separate=reuse_separate, tile_summary=_tile_mask,
                         banded_product=banded)


def _families(jobs: list[DrizzleJob]) -> list[list[str]]:
    """Names of the detector's products that can share a product family
    (:func:`hapdask.mosaic.family.family_groups`: same kernel, pixfrac and weights; they are on
    one grid and tiling by construction)."""
    finals = [AstroDrizzleParams.from_mapping(dict(j.params)).final for j in jobs]
    return [[jobs[i].name for i in g] for g in family_groups(finals)]


def _product_task(job: DrizzleJob, staging: str, exps: dict, state: DetectorState,
                  res: DrizzleResult, footprint: dict, region: str, *_readers: object
                  ) -> ProductRecord:
    """HAP's keywords on a finished drizzle product (``footprint``, ``region``: its
    :func:`_footprint_task` and :func:`_s_region_task`), and its trailer lines. Runs after
    the tasks reading the product (``_readers``: its preview), as the headers are rewritten
    in place."""
    stem = job.name.rsplit("_", 1)[0]
    params = {**dict(job.params), **_grid_params(state.grid)}
    if res.output.name != job.name:
        raise RuntimeError(f"{job.name}: the drizzle wrote {res.output.name}")
    trailer = f"{stem}_trl.txt"
    _refine_headers(res.output, job, state, exps, trailer, footprint, region)
    lines = [f"{job.name}: HAP SVM {job.level} product, parameter set {job.param_set}",
             *[f"  input {p}" for p in job.inputs],
             *[f"  {k} = {v}" for k, v in sorted(params.items())],
             *res.summary().splitlines()]
    lines = [line.replace(staging.rstrip("/") + "/", "") for line in lines]
    crm = {Path(p).name.removesuffix("_crmask.fits"): p for p in res.crmasks}
    return ProductRecord(job.name, res.output, job.level, crm, lines)


def saturation_map(exps: list, state: DetectorState, shape: tuple[int, int]) -> np.ndarray:
    """Saturated input pixels (DQ 256) of the exposures mapped onto the product grid (HAP's
    flag-4 input, inventory 5.5): bool ``(ny, nx)``, True where a saturated pixel's centre
    lands (full distortion, aligned WCS)."""
    bit = next(f.value for f in DQ_FLAGS if f.name == "SATURATED")
    heads = state.headers()
    out = np.zeros(shape, bool)
    gw = state.grid.wcs()
    for e in exps:
        for c in chip_refs(e, None, heads):
            if not c.chip.has_data:
                continue
            _, _, dq = c.chip.read()
            yy, xx = np.nonzero(np.asarray(dq).astype(np.int64) & bit)
            if not yy.size:
                continue
            ra, dec = c.wcs().all_pix2world(xx.astype(float), yy.astype(float), 0)
            x, y = gw.wcs_world2pix(ra, dec, 0)
            i = np.rint(y).astype(np.int64)
            j = np.rint(x).astype(np.int64)
            ok = (i >= 0) & (i < shape[0]) & (j >= 0) & (j < shape[1])
            out[i[ok], j[ok]] = True
    return out


@dataclass(frozen=True)
class _CatalogFailed:
    """A catalog task's ValueError (the message), handed on to the detector's catalog writer."""

    reason: str


def _catalog_failure(*values: object) -> _CatalogFailed | None:
    return next((v for v in values if isinstance(v, _CatalogFailed)), None)


def _catalog_background_task(det_key: str, product: DrizzleResult, _after: object
                             ) -> Background | None | _CatalogFailed:
    """A filter product's background (:func:`hapdask.catalogs.filter_background`), before
    the total's detection arrays are made; one filter at a time (``_after``: the previous
    one, or the previous detector's catalogs): its sigma clipping's float64 copies are the
    catalogs' largest temporaries (0.6-0.9 GiB on the ACS/WFC demo)."""
    give_back_free_memory()  # the earlier stages' kept free memory (see _catalog_detect_task)
    try:
        return filter_background(read_product(product.output, weights=False),
                                 CatalogParams.for_detector(det_key))
    except ValueError as exc:
        return _CatalogFailed(str(exc))


def _catalog_detect_task(det_key: str, total: DrizzleResult, _after: object
                         ) -> Detection | _CatalogFailed:
    """The total's footprint, background and weight regions (``total``: the written product;
    its keywords are written once the detections are done, as they read the file)."""
    params = CatalogParams.for_detector(det_key)
    # the heap's free memory kept by the earlier stages (hapdask._memory) is handed back before
    # the catalog's whole-image arrays are made: they would not fit its holes, and both would
    # count in the run's peak
    give_back_free_memory()
    try:
        # WHT is read (memory-mapped, band by band) by the weight regions only
        return prepare_detection(read_product(total.output, weights=False), params)
    except ValueError as exc:
        return _CatalogFailed(str(exc))


def _catalog_points_task(det_key: str, detection: Detection | _CatalogFailed
                         ) -> Table | _CatalogFailed:
    """The total's point sources (the total's SCI is released when both detections are done
    with it)."""
    if isinstance(detection, _CatalogFailed):
        return detection
    try:
        return detect_points(detection, CatalogParams.for_detector(det_key), release=True)
    except ValueError as exc:
        return _CatalogFailed(str(exc))


def _catalog_segments_task(det_key: str, staging: str, detection: Detection | _CatalogFailed,
                           _points: object) -> Segmentation | _CatalogFailed:
    """The total's segmentation (its detection images kept as file maps in ``staging``),
    after its point sources (``_points``; the total's SCI is then dropped once the
    segmentation's detection image is made): side by side, the two detections raised the svm
    demo's peak RSS to 1.44-1.63 GiB (1.16-1.30 GiB one after the other)."""
    if isinstance(detection, _CatalogFailed):
        return detection
    try:
        return detect_segmentation(detection, CatalogParams.for_detector(det_key),
                                   scratch=staging, release=True)
    except ValueError as exc:
        return _CatalogFailed(str(exc))


def _catalog_saturation_task(det_key: str, exposures: list, state: DetectorState,
                             _after: object = None) -> np.ndarray | None:
    """A filter's saturated input pixels on the product grid (:func:`saturation_map`; None
    for WFC3/IR, which has no such flag): needs the alignment only; made beside the total's
    point sources (``_after``: its detection inputs), off the catalogs' critical path, on
    the thread the products' previews and keywords otherwise leave idle at the end."""
    if CatalogParams.for_detector(det_key).ir:
        return None
    with timed("saturation"):
        return saturation_map(exposures, state, state.grid.shape)


def _catalog_filter_task(det_key: str, product: DrizzleResult, saturated: np.ndarray | None,
                         background: Background | None | _CatalogFailed,
                         points: Table | _CatalogFailed, seg: Segmentation | _CatalogFailed
                         ) -> FilterCatalogs | _CatalogFailed:
    """One filter product's point and segment catalogs (forced photometry at the total's
    sources; ``background``: its :func:`_catalog_background_task`, None: made here) with its
    saturated pixels' flag (``saturated``: its :func:`_catalog_saturation_task`); the
    filters side by side (each holds its product's SCI as one float64 image)."""
    failed = _catalog_failure(background, points, seg)
    if failed is not None:
        return failed
    give_back_free_memory()  # the detections' freed memory, before the whole images are made
    params = CatalogParams.for_detector(det_key)
    try:
        with fits.open(product.output, memmap=True) as hdul:
            shape = hdul["SCI"].shape
        if saturated is not None and saturated.shape != shape:
            raise ValueError(f"{product.output.name}: SCI shape {shape} differs from its "
                             f"grid's {saturated.shape}")
        # SCI read as float64 and used in place (no whole float32 copy besides) when the
        # background is made (a 2-D one is made here again, from the float32 SCI as before);
        # no WHT; the product is handed over (no name kept here)
        own = background is not None
        return measure_filter(read_product(product.output, weights=False,
                                           sci_dtype=np.float64 if own else np.float32),
                              points, seg, params, background=background,
                              saturated=saturated, own_sci=own)
    except ValueError as exc:
        return _CatalogFailed(str(exc))


def _catalog_task(det_key: str, staging: str, fnames: list[str],
                  points: Table | _CatalogFailed, seg: Segmentation | _CatalogFailed,
                  measured: list, total: ProductRecord, *filters: ProductRecord) -> list[str]:
    """A detector's catalogs assembled and written (after the products' keywords, which the
    catalogs' metadata carry: ``total``, ``filters``), from its detections and the filter
    tasks' catalogs ``measured`` (in the order of ``fnames`` and ``filters``)."""
    params = CatalogParams.for_detector(det_key)
    try:
        if not filters:
            raise ValueError(f"{total.name}: no filter products given")
        failed = _catalog_failure(points, seg, *measured)
        if failed is not None:
            raise ValueError(failed.reason)
        head = read_product(total.path, memmap=True)  # keywords only; pixels are not read
        meta = {}
        for fname, rec, cat in zip(fnames, filters, measured, strict=True):
            meta[cat.name] = catalog_meta(read_product(rec.path, memmap=True), params, fname)
        meta[head.name] = catalog_meta(head, params)
        cats = assemble_catalogs(head.name, head.exptime if not params.ir else 0.0, points,
                                 seg, dict(zip(fnames, measured, strict=True)), params, meta)
        del head
    except ValueError as exc:
        return [f"{total.name}: catalogs failed: {exc}"]
    lines = []
    if cats.rejected:
        lines.append(f"{total.name}: catalogs written empty: {cats.rejected}")
    written = cats.write(staging)
    lines.append(f"{total.name}: {len(cats.point_total)} point and {len(cats.segment_total)} "
                 f"segment sources; {len(written)} catalog file(s)")
    del cats  # the segmentation map and tables: their memory is handed back (hapdask._memory)
    give_back_free_memory()
    return lines


def _no_catalogs_task(reason: str, total: ProductRecord) -> list[str]:
    """The trailer line of a detector without HAP catalog parameters."""
    return [f"{total.name}: no catalogs ({reason})"]


@dataclass
class _PreviewDone:
    """What a preview task made: file names, and the preview's block averages when a colour
    preview uses them (:func:`hapdask.preview.preview_planes`)."""

    names: list[str]
    plane: np.ndarray | None = None


def _preview_task(res: DrizzleResult, staging: str, keep_plane: bool) -> _PreviewDone:
    """Preview and thumbnail of a finished product (reads it only, beside its
    :func:`_footprint_task`)."""
    product = read_product(res.output, memmap=True)
    planes = preview_planes(product)
    paths = write_previews(product, staging, planes=planes)
    return _PreviewDone([p.name for p in paths], planes[0] if keep_plane else None)


def _color_task(total: ProductRecord, staging: str, previews: list[_PreviewDone],
                *filters: ProductRecord) -> _PreviewDone:
    """Colour preview of a total from its filter products (their preview block averages:
    ``previews``, in the order of ``filters``, when made)."""
    if len(filters) < 2:
        return _PreviewDone([])
    binned = {r.path.name: pv.plane for r, pv in zip(filters, previews, strict=True)
              if pv.plane is not None}
    prods = sorted((read_product(r.path, memmap=True) for r in filters),
                   key=lambda q: float(q.keyword("PHOTPLAM", default=0.0)))
    if len(prods) > 3:  # bluest, middle, reddest
        prods = [prods[0], prods[len(prods) // 2], prods[-1]]
    return _PreviewDone([write_color_preview(read_product(total.path, memmap=True), prods,
                                             staging, binned=binned).name])


# -- graph -----------------------------------------------------------------------------------
def _jobs(det: DetectorProducts, exps: dict) -> list[DrizzleJob]:
    """The drizzle jobs of a detector, in HAP's order (filters, their exposures, the total)."""
    key = det.key
    jobs = []
    first = min((e.expstart for e in det.all_exposures), default=None)
    all_paths = tuple(e.path for f in det.filters for e in f.exposures)
    hapexp = tuple((e.rootname[:8], e.stem) for e in det.all_exposures)
    for f in det.filters:
        p = svm_drizzle_params(key, "filter", f.n, first)
        inputs = tuple(e.path for e in f.exposures)
        fval = _filter_value([exps[e.path] for e in f.exposures])
        jobs.append(DrizzleJob(f.drizzle_name, "filter", inputs, tuple(sorted(p.items())),
                               _set_name(key, "filter", f.n, first), fval, inputs,
                               hapexpnames=hapexp))
        for e in f.exposures + f.extra:
            pe = svm_drizzle_params(key, "exposure", f.n, first)
            jobs.append(DrizzleJob(e.drizzle_name, "exposure", (e.path,),
                                   tuple(sorted(pe.items())),
                                   _set_name(key, "exposure", f.n, first), fval, (e.path,),
                                   e.rootname, hapexp))
    tot = tuple(e.path for e in det.total_exposures)
    pt = svm_drizzle_params(key, "total", len(tot), first)
    jobs.append(DrizzleJob(det.drizzle_name, "total", tot, tuple(sorted(pt.items())),
                           _set_name(key, "total", len(tot), first), "detection", all_paths,
                           hapexpnames=hapexp))
    return jobs


def _set_name(key: str, level: str, n: int, first: float | None) -> str:
    return f"{key}:{level_key(key, level, n, first)}"


def alignment_graph(p: SvmPlan, refcat) -> tuple[dict, dict]:
    """The alignment part of a visit's graph: the fits and, per detector, the task
    ``("svm-align-state", det)`` giving its WCS updates and north-up grid (:class:`DetectorState`).
    Returns the graph and ``{"fits": [...], "states": {detector key: key}, "kept": [...]}``."""
    exps = p.exposures
    align_exps = [exps[e.path] for d in p.detectors for e in d.all_exposures]
    graph, fit_keys, kept = align_graph(align_exps, refcat)
    fitted = sorted({visit_key(e) for e in align_exps
                     if e.rootname not in {k.rootname for k in kept}})
    key_of = dict(zip(fitted, fit_keys, strict=True))
    states = {}
    for det in p.detectors:
        dexps = [exps[e.path] for e in sorted(det.all_exposures, key=sort_key)]
        deps = sorted({key_of[visit_key(e)] for e in dexps if visit_key(e) in key_of})
        skey = ("svm-align-state", det.key + "-" + det.prefix)
        graph[skey] = (_state_task, dexps, {}, *deps)
        states[det.key + "-" + det.prefix] = skey
    return graph, {"fits": list(fit_keys), "states": states, "kept": kept}


def products_graph(p: SvmPlan, states: Mapping[str, DetectorState], staging: str, *,
                   previews: bool = True, catalogs: bool = True, early: bool = False,
                   family: bool = True, banded: bool | None = None
                   ) -> tuple[dict, dict, list[DrizzleGraph]]:
    """Every product of the visit as one graph, once the alignment is known (``states``: the
    :class:`DetectorState` of each detector, by ``"<detector>-<prefix>"``).

    Keys: the engine's tasks of every drizzle product (``drz-...``: sky, separate drizzles,
    medians, cosmic rays, final tiles, writes), ``("svm-keywords", name)`` HAP's keywords of a
    finished product, ``("svm-catalogs", det)``, ``("svm-preview", name)`` and
    ``("svm-color", det)``. Exposure and filter products have no dependency between them; a
    total reads its filter products' cosmic-ray masks, so its mask tasks wait for those files
    (its sky and pixel work do not). Catalogs hold whole images: their tasks run one after
    the other, from when their detector's total and filter products are written (beside the
    other products' previews and keywords), one detector at a time. The chips of every product are
    placed here (in threads), before the graph runs, once per chip, grid and drizzle parameters (the
    exposure, filter and total products of a detector share them); with ``early`` (local threads),
    the products' static masks and sky levels are computed meanwhile on the threads that place the
    chips, and their values replace their tasks in the graph. With ``family`` (default), the
    products of a detector drizzled with the same kernel, pixfrac and weights (HAP's ACS/WFC
    exposure, filter and total products) get their final tiles from one drizzle pass per chip and
    tile (:mod:`hapdask.mosaic.family`; equal to their own drizzles to float32 rounding). With
    ``banded`` (default: ``early``; local threads, one compute), the products are written in
    full-width bands of rows with direct I/O from their tiles kept in the scratch
    (``drizzle_graph(banded_product=True)``), not tile by tile.

    Returns the graph, its named keys (``drizzle``, ``catalogs``, ``previews``) and the
    :class:`~hapdask.mosaic.job.DrizzleGraph` of each product (remove their scratch after the
    compute).
    """
    exps = p.exposures
    graph: dict = {}
    keys: dict = {"drizzle": [], "catalogs": [], "previews": [], "priority": {}}
    jobs_made: list[DrizzleGraph] = []
    placed: dict = {}  # a chip's placements on the grid, shared by the products
    before = None
    # the products' static masks and sky levels, computed while the chips are placed
    pre = EarlyWork(None) if early else None
    try:
        families = [_families(_jobs(det, exps)) if family else [] for det in p.detectors]
        planned_all = [_plan_products(_jobs(det, exps), det, staging,
                                      states[det.key + "-" + det.prefix], placed, pre, fam,
                                      early if banded is None else banded)
                       for det, fam in zip(p.detectors, families, strict=True)]
    finally:
        if pre is not None:
            pre.join()
    for det, planned, fams in zip(p.detectors, planned_all, families, strict=True):
        state = states[det.key + "-" + det.prefix]
        skey = ("svm-state", det.key + "-" + det.prefix)
        graph[skey] = state
        filter_keys: dict = {}
        total_key = None
        jobs = _jobs(det, exps)
        graphs = {j.name: pre.apply(planned[j.name]) if pre is not None
                  else planned[j.name].graph for j in jobs}
        for n, names in enumerate(fams):
            # one drizzle pass per chip for the family's products (else each its own)
            family_tasks([planned[m] for m in names], [graphs[m] for m in names],
                         f"svm-family-{det.drizzle_name}-{n}")
        # the catalog tasks (hapdask.catalogs' steps), started once the total and filter
        # products are written (not after their keywords: beside the other products'
        # previews and keywords): the filters' backgrounds (their sigma clipping's copies
        # are the largest temporaries, ~0.6 GiB each), the total's detection inputs, its
        # point sources, its segmentation, one after the other (svm demo, peak RSS: the two
        # detections side by side 1.44-1.63 GiB, too near the 1.60 GiB rule), then the
        # filters' photometry side by side (1.36-1.40 GiB), the catalogs assembled and
        # written once the products' keywords are (the catalogs' metadata carry them); a
        # product's keywords are written after the catalog tasks that read its file
        cat_keys, readers = {}, {}
        if catalogs:
            try:
                CatalogParams.for_detector(det.key)
                no_catalogs = None
            except (KeyError, ValueError) as exc:
                no_catalogs = str(exc)
            if no_catalogs is None:
                dk = ("svm-catalogs-detect", det.drizzle_name)
                pk_ = ("svm-catalogs-points", det.drizzle_name)
                sk_ = ("svm-catalogs-segments", det.drizzle_name)
                fck = {f.drizzle_name: ("svm-catalogs-filter", f.drizzle_name)
                       for f in det.filters}
                fbk = {f.drizzle_name: ("svm-catalogs-background", f.drizzle_name)
                       for f in det.filters}
                cat_keys = {"detect": dk, "points": pk_, "segments": sk_, "filters": fck,
                            "backgrounds": fbk}
                readers[det.drizzle_name] = [pk_, sk_]
                readers.update({n: [fbk[n], k_] for n, k_ in fck.items()})
        for job in jobs:
            dg = planned[job.name]
            jobs_made.append(dg)
            graph.update(graphs[job.name])
            # the preview and the keywords from the pixels read the finished product side
            # by side; then the keywords are written into it
            fk_ = ("svm-keywords-footprint", job.name)
            graph[fk_] = (_footprint_task, job, exps, skey, dg.done)
            rk = ("svm-keywords-sregion", job.name)
            graph[rk] = (_s_region_task, skey, *[dg.writes[t] for t in sorted(dg.writes)])
            pk = ("svm-preview", job.name)
            if previews:
                graph[pk] = (_preview_task, dg.done, staging, job.level == "filter")
                keys["previews"].append(pk)
            k = ("svm-keywords", job.name)
            graph[k] = (_product_task, job, staging, exps, skey, dg.done, fk_, rk,
                        *([pk] if previews else []), *readers.get(job.name, ()))
            if cat_keys and job.level != "exposure":
                # the catalogs' inputs first (their products' tile writes, a pick each from
                # the family's tile task, and ends: else Dask's newest-first order left them
                # behind the other products' previews and keywords), the readers and
                # keywords the catalogs' assembly waits for before the exposure products'
                # (local threads)
                keys["priority"].update(dict.fromkeys([*dg.writes.values(), dg.done], 3))
                keys["priority"].update(dict.fromkeys(
                    [fk_, rk, k, *([pk] if previews else [])], 1))
            if job.level == "filter":
                filter_keys[job.name] = k
            elif job.level == "total":
                total_key = k
            keys["drizzle"].append(k)
            keys["drizzle"] += dg.keys[1:]  # cosmic-ray masks (and DQ updates)
            if cat_keys and job.level == "total":
                # after the previous detector's catalogs (directly: a task without
                # dependencies, e.g. a barrier, is run by Dask's local scheduler only when
                # nothing made ready later is left, i.e. after the other products' previews
                # and keywords, and the chain would wait for it) and the filters' backgrounds
                prev = before
                for f in det.filters:
                    bk = cat_keys["backgrounds"][f.drizzle_name]
                    graph[bk] = (_catalog_background_task, det.key,
                                 planned[f.drizzle_name].done, prev)
                    prev = bk
                graph[cat_keys["detect"]] = (_catalog_detect_task, det.key, dg.done, prev)
                graph[cat_keys["points"]] = (_catalog_points_task, det.key, cat_keys["detect"])
                graph[cat_keys["segments"]] = (_catalog_segments_task, det.key, staging,
                                               cat_keys["detect"], cat_keys["points"])
        fk = [filter_keys[f.drizzle_name] for f in det.filters]
        if catalogs:
            ck = ("svm-catalogs", det.drizzle_name)
            if cat_keys:
                for f in det.filters:
                    satk = ("svm-catalogs-saturation", f.drizzle_name)
                    # ready once the total's detection inputs are made: beside its point
                    # sources (~2x longer), so it is done before the filters' photometry
                    # needs it; not with the compute, where it delayed the products' tiles
                    # (and so the catalogs' start) by its ~1 thread-s
                    graph[satk] = (_catalog_saturation_task, det.key,
                                   [exps[e.path] for e in f.exposures], skey,
                                   cat_keys["detect"])
                    keys["priority"][satk] = 1  # after the points (2) on the chain's thread
                    graph[cat_keys["filters"][f.drizzle_name]] = (
                        _catalog_filter_task, det.key, planned[f.drizzle_name].done, satk,
                        cat_keys["backgrounds"][f.drizzle_name], cat_keys["points"],
                        cat_keys["segments"])
                graph[ck] = (_catalog_task, det.key, staging,
                             [next(j for j in jobs if j.name == f.drizzle_name)
                              .filter_value.lower() for f in det.filters],
                             cat_keys["points"], cat_keys["segments"],
                             list(cat_keys["filters"].values()), total_key, *fk)
            else:
                graph[ck] = (_no_catalogs_task, no_catalogs, total_key)
            keys["catalogs"].append(ck)
            if cat_keys:  # started first among the ready tasks (local threads)
                keys["priority"].update(dict.fromkeys(
                    [cat_keys["detect"], cat_keys["points"], cat_keys["segments"], ck,
                     *cat_keys["filters"].values(), *cat_keys["backgrounds"].values()], 2))
            before = ck
        if previews:
            ck = ("svm-color", det.drizzle_name)
            graph[ck] = (_color_task, total_key, staging,
                         [("svm-preview", f.drizzle_name) for f in det.filters], *fk)
            keys["previews"].append(ck)
    if early:
        graph = _released(graph, jobs_made)
    return graph, keys, jobs_made


def _released(graph: dict, jobs: list[DrizzleGraph]) -> dict:
    """``graph`` (computed once, on local threads) with each scratch file of the products
    (separate-drizzle stacks and sums) deleted once its last
    reader is done (:func:`hapdask.mosaic.graph.release_scratch`, as ``hapdask drizzle``
    does), not all at the end of the run: the deletions' waits (~0.35 s/GB on ext4 with
    ``discard``) overlap the run instead of following it."""
    scratches = {j.scratch.directory: j.scratch for j in jobs}
    by_dir: dict[str, dict] = {}
    for path, readers in scratch_readers(graph).items():
        by_dir.setdefault(os.path.dirname(path), {})[path] = readers
    for directory, readers in by_dir.items():
        if directory in scratches:  # else not a product's file: left to its owner
            graph = release_scratch(graph, readers, scratches[directory])
    return graph


def _plan_products(jobs: list[DrizzleJob], det: DetectorProducts, staging: str,
                   state: DetectorState, placed: dict, early: EarlyWork | None = None,
                   families: list[list[str]] = (), banded: bool = False
                   ) -> dict[str, DrizzleGraph]:
    """The engine's graphs of a detector's products (by name), planned side by side in
    :data:`PLAN_THREADS` threads: the pixel maps of one product's placements (numba, GIL released)
    are made while another product's Python planning runs; ``placed`` gives each chip's placement on
    a grid to every product using the same drizzle parameters (made once: a product needing a
    placement being made waits for it). The total is planned once its filter products' cosmic-ray
    mask keys are known. The graphs are those of planning the products one after the other.
    ``early``: computes the products' static masks and sky levels meanwhile, on its pool, which also
    places the chips. ``families``: names of the products whose final tiles product families make
    (their separate drizzles keep no sums for the final tiles). ``banded``: as
    :func:`products_graph`."""
    futures: dict = {}
    in_family = {n for g in families for n in g}
    with ThreadPoolExecutor(PLAN_THREADS) as pool:
        for job in jobs:
            if job.level != "total":
                futures[job.name] = pool.submit(_drizzle_graph, job, staging, state, {}, (),
                                                placed, early, job.name not in in_family,
                                                banded)
        for job in jobs:
            if job.level != "total":
                continue
            masks, after = {}, ()
            for f in det.total_filters:
                fdg = futures[f.drizzle_name].result()
                masks.update({r: str(Path(staging) / crmask_name(r)) for r in fdg.crmask_keys})
                after += tuple(fdg.crmask_keys.values())
            futures[job.name] = pool.submit(_drizzle_graph, job, staging, state, masks, after,
                                            placed, early, job.name not in in_family, banded)
        return {name: f.result() for name, f in futures.items()}


# -- run -------------------------------------------------------------------------------------
def _headerlets(p: SvmPlan, alignment: AlignResult, staging: Path) -> list[Path]:
    """``<stem>_hlet.fits`` of every exposure fitted to the reference catalog (status
    ``aligned``), as DrizzlePac writes them only after a successful fit (inventory 3.3):
    exposures that kept their a-priori WCS, were only aligned relative to each other, or were
    used as they are get none. Built by stwcs from a private copy; inputs are never touched."""
    items = {e.rootname: e for d in p.detectors for e in d.all_exposures}
    fitted = AlignResult([f for f in alignment.exposures if f.status == "aligned"],
                         alignment.catalog)
    done = []
    tmpdir = staging / ".hlet"
    tmpdir.mkdir(exist_ok=True)
    for path in write_headerlets(fitted, tmpdir):
        root = path.name.split("_")[0].lower()
        final = staging / items[root].headerlet_name
        os.replace(path, final)
        done.append(final)
    shutil.rmtree(tmpdir, ignore_errors=True)
    return done


def _updated_inputs(p: SvmPlan, updates: dict, masks: dict, staging: Path) -> list[Path]:
    """HAP's renamed inputs ``hst_..._fl[ct].fits``: copies with the aligned WCS and DQ 4096
    where cosmic rays were found (inventory 3.3); the originals are not touched."""
    out = []
    for d in p.detectors:
        for e in d.all_exposures + d.grisms:
            final = staging / e.renamed_input
            shutil.copy2(e.path, final)
            with fits.open(final, mode="update") as hdul:
                for hdu in hdul:
                    if hdu.name == "SCI":
                        u = updates.get((e.rootname, int(hdu.header.get("EXTVER", 1))))
                        if u is not None:
                            apply_update(hdu.header, fits.Header.fromstring(u))
                h = hdul[0].header
                h["HAPLEVEL"] = (1, "HAP level 1: renamed SVM input")
                h["IPPPSSOO"] = (e.rootname, "rootname of the exposure")
                h["FILENAME"] = (final.name, "name of this file")
            mask = masks.get(e.rootname)
            if mask is not None:
                update_dq(final, read_crmask(mask), 4096, 0)
            out.append(final)
    return out


def _merge_wcs_updates(path: Path, updates: list[WcsUpdate], staging: Path) -> Path:
    """``wcs_updates.fits`` with this visit's records added to an existing file's."""
    merged = {u.key: u for u in updates}
    if path.exists():
        for key, h in read_wcs_updates(path).items():
            merged.setdefault(key, WcsUpdate(key[0], key[1], h.tostring()))
    return write_wcs_updates(staging / path.name, list(merged.values()))


def _check_free(outdir: Path, names: list[str]) -> None:
    taken = sorted(n for n in names if (outdir / n).exists() or (outdir / n).is_symlink())
    if taken:
        more = f" and {len(taken) - 5} more" if len(taken) > 5 else ""
        raise FileExistsError(f"{outdir}: products of this visit already exist ("
                              f"{', '.join(taken[:5])}{more}); choose another --output or "
                              f"move them away (nothing was written)")


def run(
    poller: str | os.PathLike,
    *,
    output: str | os.PathLike = ".",
    refcat: str | os.PathLike | None = None,
    catalog_name: str | None = None,
    scheduler=None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    update_inputs: bool = False,
    catalogs: bool = True,
    previews: bool = True,
    log: Callable[[str], None] = print,
    family: bool = True,
) -> SvmResult:
    """Make a visit's SVM products.

    Parameters
    ----------
    poller : path
        The visit's 8-column SVM poller (or a list of FLT/FLC files).
    output : path
        Output directory (created).
    refcat : path, optional
        Reference catalog (ECSV/FITS with RA, DEC; :class:`hapdask.align.FileCatalog`); without
        one the inputs keep their a-priori WCS (HAP would query its catalog service).
    catalog_name : str, optional
        The catalog's name in WCSNAME (``...-FIT_SVM_<name>``); default the table's
        ``catalog`` meta value, else the file stem (:class:`hapdask.align.FileCatalog`).
    scheduler, workers, threads_per_worker
        As :func:`hapdask.mvm.run`: a Dask scheduler address, a local cluster of ``workers``
        processes, or (default) threads in this process.
    update_inputs : bool
        Also write HAP's renamed copies of the inputs with the aligned WCS and CR flags.
    catalogs, previews : bool
    log : callable
    family : bool
        Product families (:func:`products_graph`; default); False: every product drizzles
        its own chips.

    Returns
    -------
    SvmResult

    Raises
    ------
    ValueError
        Unreadable poller or no usable direct image (every input's reason listed).
    FileExistsError
        When a product of this visit already exists in ``output``.
    """
    t_start = time.perf_counter()
    outdir = Path(output)
    outdir.mkdir(parents=True, exist_ok=True)
    p = plan(poller)
    for line in p.describe():
        log(line)
    names = [n for d in p.detectors for n in output_names(d)] + [p.manifest]
    if update_inputs:
        names += [e.renamed_input for d in p.detectors for e in d.all_exposures + d.grisms]
    names += [crmask_name(e.rootname) for d in p.detectors for f in d.filters
              for e in f.exposures]
    cat = FileCatalog(refcat, name=catalog_name) if refcat is not None else None
    run_log: list[str] = [f"hapdask svm {p.poller} started "
                          f"{_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}",
                          *p.describe()]
    with OutputLock(outdir):
        _check_free(outdir, names)
        staging = Path(tempfile.mkdtemp(prefix=".hapdask-svm-", dir=outdir))
        try:
            with compute_context(scheduler, workers, threads_per_worker, log,
                                 scratch=str(staging)) as (compute, _client):
                t0 = time.perf_counter()
                graph, akeys = alignment_graph(p, cat)
                want = list(akeys["states"].values())
                states_by = dict(zip(akeys["states"],
                                     compute(graph, want, False), strict=True))
                run_log.append(f"alignment graph: {len(graph)} tasks in "
                               f"{time.perf_counter() - t0:.1f} s")
                t0 = time.perf_counter()
                fits_ = [f for st in states_by.values() for f in st.fits_] + list(akeys["kept"])
                alignment = AlignResult(fits_, cat.name if cat is not None else "")
                with step("product graph (pixel maps)"):
                    graph, keys, jobs = products_graph(
                        p, states_by, str(staging), previews=previews, catalogs=catalogs,
                        early=_client is None, family=family)
                # headerlets need only the alignment: they are made while the products are
                hkey = ("svm-headerlets", p.manifest)
                graph[hkey] = (_headerlets, p, alignment, staging)
                try:
                    t1 = time.perf_counter()
                    want = keys["drizzle"] + keys["catalogs"] + keys["previews"] + [hkey]
                    # a spare thread: a product's end waiting for its rows' writes
                    # (mosaic.job._finish_product) hands its core to another task
                    values = dict(zip(want, compute(graph, want, False,
                                                    priority=keys["priority"],
                                                    spare=SPARE_THREADS), strict=True))
                finally:
                    wait_product_rows()  # a failed run: the product rows still being written
                    for j in jobs:
                        j.scratch.remove()
                run_log.append(f"product graph: {len(graph)} tasks, built in {t1 - t0:.1f} s "
                               f"(pixel maps), computed in {time.perf_counter() - t1:.1f} s")
            states = list(states_by.values())
            run_log += [f"alignment: {s}" for s in alignment.summary()]
            for f in fits_:
                if f.status not in ("aligned", "relative", "kept"):
                    run_log.append(f"alignment: {f.rootname}: {f.status}: {f.reason}")
            records = {values[k].name: values[k] for k in keys["drizzle"]
                       if k[0] == "svm-keywords"}
            for k in keys["catalogs"]:
                run_log += values[k]
            for k in keys["previews"]:
                run_log += [f"preview {n}" for n in values[k].names]
            masks = {r: pth for rec in records.values() for r, pth in rec.crmasks.items()}
            updates = {k: v for s in states for k, v in s.updates.items()}
            _merge_wcs_updates(outdir / "wcs_updates.fits", alignment.updates, staging)
            if update_inputs:
                _updated_inputs(p, updates, masks, staging)
            notes = list(p.notes)
            run_log += [f"note: {n}" for n in notes]
            run_log += [f"rejected {f}: {r}" for f, r in p.rejected]
            _trailers(p, records, run_log, staging)
            produced = sorted(q.name for q in staging.iterdir() if q.is_file()
                              and not q.name.endswith(".part"))
            produced.append(p.manifest)
            write_atomic(staging / p.manifest, "".join(n + "\n" for n in sorted(produced)))
            final_names = [n for n in produced if n != "wcs_updates.fits"]
            _check_free(outdir, final_names)
            files = []
            for n in produced:
                os.replace(staging / n, outdir / n)
                files.append(outdir / n)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    result = SvmResult(outdir, p, files, alignment, notes, time.perf_counter() - t_start)
    return result


def _trailers(p: SvmPlan, records: dict, run_log: list[str], staging: Path) -> None:
    """``<stem>_trl.txt`` per product (its drizzle log); the total's gets the whole run log,
    ramp/grism frames get the run log (HAP copies the SVM log into their trailers)."""
    for d in p.detectors:
        for name, rec in records.items():
            if not name.startswith(d.prefix + "_"):
                continue
            lines = list(rec.lines)
            if rec.level == "total":
                lines += ["", "-- SVM run log --", *run_log]
            write_atomic(staging / (name.rsplit("_", 1)[0] + "_trl.txt"), "\n".join(lines) + "\n")
        for e in d.ramps + d.grisms:
            write_atomic(staging / e.trailer_name,
                         "\n".join([f"{os.path.basename(e.path)}: {e.kind} frame, no drizzle "
                                    "products", *run_log]) + "\n")
