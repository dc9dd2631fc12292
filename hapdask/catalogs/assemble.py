"""Catalog assembly for one detector of a visit (HAP inventory 5.6) and ECSV output.

:func:`make_catalogs` runs the whole chain on a total (detection) product and its filter
products: background and weight regions of each image, point and segment detection on the total,
forced measurement and flags per filter, the total catalogs, trimming and the CR-contamination
rule. :meth:`CatalogProducts.write` writes the ECSV files (HAP names
``<product>_point-cat.ecsv`` / ``<product>_segment-cat.ecsv``).

* The total catalog gets ``MagAP2_<filter>``, ``CI_<filter>``, ``Flags_<filter>`` per filter (left
  join on ID, missing values masked).
* Trimming: a total-catalog row is removed when in *every* filter its flag is above
  ``flag_trim_value`` or missing; filter catalogs are not trimmed.
* CR contamination (:func:`cr_contamination`; not WFC3/IR): when every filter product is a single
  exposure, ``T1 = sum of their EXPTIME`` else 0; ``threshold = crfactor x T1^2 / TEXPTIME``;
  ``N_good`` = total-catalog rows with flag < 2 in at least one filter; if
  ``0 < N_good < threshold`` for either catalog type, *both* types (total and filters) are written
  with zero rows. (HAP's ``cr_residual`` only acts in a branch that cannot trigger; not used.)
* ECSV: masked and NaN values are written as -9999; the metadata block carries the product's
  keywords, the aperture radii, thresholds, number of sources, and the notes (0-based X/Y, ABMAG,
  CI, flag legend). Files are written through :mod:`hapdask.export.paths` (``<name>.part``
  created exclusively, renamed when complete) and an existing file is never replaced unless
  ``overwrite=True``.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from astropy.table import MaskedColumn, Table, join

from hapdask._memory import give_back_free_memory
from hapdask.catalogs.background import (
    Background,
    compute_background,
    footprint_mask,
    weight_regions,
)
from hapdask.catalogs.flags import FLAG_BITS
from hapdask.catalogs.params import CatalogParams
from hapdask.catalogs.point import detect_point_sources, measure_point_sources
from hapdask.catalogs.product import DrizzleProduct, nan_to_zero
from hapdask.catalogs.segment import (
    Segmentation,
    detect_segments,
    measure_segments,
    segmentation_image,
)
from hapdask.export.paths import commit, create_temporary, output_path, remove_temporary
from hapdask.profile import timed

__all__ = ["CatalogProducts", "Detection", "FilterCatalogs", "assemble_catalogs",
           "catalog_meta", "detect_points", "detect_segmentation", "filter_background",
           "filter_backgrounds",
           "make_catalogs", "measure_filter", "prepare_detection", "total_catalog",
           "trim_total", "cr_contamination", "write_catalog", "catalog_filename", "FILL_VALUE"]

FILL_VALUE = -9999

_META_KEYS = ("WCSNAME", "WCSTYPE", "PROPOSID", "TARGNAME", "DATE-OBS", "TIME-OBS", "INSTRUME",
              "DETECTOR", "RA_TARG", "DEC_TARG", "PA_V3", "EXPSTART", "TEXPTIME", "CCDGAIN",
              "FILTER", "ORIENTAT", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CD1_1", "CD1_2",
              "CD2_1", "CD2_2", "PHOTFLAM", "PHOTPLAM")


def catalog_filename(product_name: str, kind: str) -> str:
    """``hst_..._drc.fits`` -> ``hst_..._point-cat.ecsv`` (``kind`` "point" or "segment")."""
    if kind not in ("point", "segment"):
        raise ValueError(f"catalog kind must be 'point' or 'segment', got {kind!r}")
    stem = os.path.basename(product_name)
    for suffix in ("_drz.fits", "_drc.fits", ".fits"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return f"{stem}_{kind}-cat.ecsv"


def total_catalog(sources: Table, filter_catalogs: dict[str, Table]) -> Table:
    """Total catalog: ``sources`` plus MagAP2_/CI_/Flags_<filter> from each filter (by ID)."""
    out = sources.copy()
    out["_order"] = np.arange(len(out))
    for fname, cat in filter_catalogs.items():
        part = Table()
        part["ID"] = np.asarray(cat["ID"], dtype=np.int64)
        part[f"MagAP2_{fname}"] = np.asarray(cat["MagAp2"], dtype=np.float64)
        part[f"CI_{fname}"] = np.asarray(cat["CI"], dtype=np.float64)
        part[f"Flags_{fname}"] = np.asarray(cat["Flags"], dtype=np.int64)
        out = join(out, part, keys="ID", join_type="left")
    out.sort("_order")
    out.remove_column("_order")
    for fname in filter_catalogs:
        out[f"MagAP2_{fname}"].unit = "mag(AB)"
        out[f"CI_{fname}"].unit = "mag(AB)"
    return out


def _flag_matrix(total: Table, filters: list[str]) -> np.ndarray:
    """(n_rows, n_filters) flags, -1 where missing."""
    cols = []
    for fname in filters:
        col = total[f"Flags_{fname}"]
        values = np.asarray(col.filled(-1) if isinstance(col, MaskedColumn) else col)
        cols.append(values.astype(np.int64))
    return np.column_stack(cols) if cols else np.zeros((len(total), 0), dtype=np.int64)


def trim_total(total: Table, filters: list[str], params: CatalogParams) -> Table:
    """Drop rows whose flag is above ``flag_trim_value`` or missing in every filter."""
    flags = _flag_matrix(total, filters)
    keep = ((flags >= 0) & (flags <= params.flag_trim_value)).any(axis=1)
    return total[keep]


def n_good_sources(total: Table, filters: list[str]) -> int:
    """Rows with flag < 2 (point-like or extended only) in at least one filter."""
    flags = _flag_matrix(total, filters)
    return int(((flags >= 0) & (flags < 2)).any(axis=1).sum())


def cr_contamination(n_good: int, crfactor: float, single_exposure_times: list[float] | None,
                     total_exptime: float) -> bool:
    """True when a catalog looks like cosmic rays: ``0 < n_good < crfactor T1^2 / TEXPTIME``.

    ``single_exposure_times``: EXPTIME of each filter product when *every* filter product is a
    single exposure, else None (T1 = 0, never rejected).
    """
    if not single_exposure_times or crfactor <= 0:
        return False
    t1 = float(sum(single_exposure_times))
    return 0 < n_good < crfactor * t1 * t1 / total_exptime


@dataclass
class CatalogProducts:
    """All catalogs of one detector: totals, filters, the segmentation and the decisions."""

    total_name: str
    point_total: Table
    segment_total: Table
    point_filters: dict[str, Table]
    segment_filters: dict[str, Table]
    filter_names: dict[str, str]  # filter -> product file name
    segmentation: Segmentation
    rejected: str | None = None  # reason both catalog types were emptied
    meta: dict[str, dict] = field(default_factory=dict)  # product name -> metadata

    def write(self, outdir: str | os.PathLike[str], *, overwrite: bool = False) -> list[Path]:
        """Write every catalog as ECSV into ``outdir``; returns the paths (sorted)."""
        outdir = Path(outdir)
        jobs = [(self.total_name, "point", self.point_total),
                (self.total_name, "segment", self.segment_total)]
        for fname, pname in self.filter_names.items():
            jobs.append((pname, "point", self.point_filters[fname]))
            jobs.append((pname, "segment", self.segment_filters[fname]))
        paths = []
        for pname, kind, table in jobs:
            meta = dict(self.meta.get(pname, {}))
            if kind == "segment" and self.segmentation.big_island:
                meta["warning"] = ("segmentation failed the big-island test; kernel "
                                   f"{self.segmentation.kernel}")
            if self.rejected:
                meta["rejected"] = self.rejected
                table = table[:0]
            with timed("ecsv"):
                paths.append(write_catalog(table, outdir / catalog_filename(pname, kind),
                                           meta=meta, overwrite=overwrite))
        return sorted(paths)


def _meta(product: DrizzleProduct, params: CatalogParams, kind_note: str) -> dict:
    meta: dict[str, object] = {"file": product.name}
    for key in _META_KEYS:
        if key in product.header:
            meta[key] = product.header[key]
    meta.update({
        "aperture_1_arcsec": params.aperture_1, "aperture_2_arcsec": params.aperture_2,
        "point_threshold_nsigma": params.nsigma, "segment_threshold_nsigma": params.segm_nsigma,
        "notes": [
            "X/Y are 0-based pixel coordinates of the drizzled image",
            "RA/DEC are ICRS at the epoch of observation",
            "magnitudes are ABMAG, without aperture correction",
            f"MagAp1/MagAp2 in circular apertures of {params.aperture_1} and "
            f"{params.aperture_2} arcsec; sky: {params.salgorithm} in an annulus "
            f"{params.skyannulus_arcsec}-{params.skyannulus_arcsec + params.dskyannulus_arcsec}"
            f" arcsec",
            "CI (concentration index) = MagAp1 - MagAp2",
            "Flags: 0 point-like; " + "; ".join(f"{b} {m}" for b, m in FLAG_BITS.items()),
            f"missing values are {FILL_VALUE}",
            kind_note,
        ],
    })
    return meta


def write_catalog(table: Table, path: str | os.PathLike[str], *, meta: dict | None = None,
                  overwrite: bool = False) -> Path:
    """Write ``table`` as ECSV (NaN/masked -> -9999) under a temporary name, then rename.

    An existing ``path`` is left alone (FileExistsError) unless ``overwrite``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    final = output_path(path.parent, path.name)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final}: exists; pass overwrite=True to replace it")
    out = Table(table, masked=False, copy=True)
    for name in out.colnames:
        col = table[name]
        data = col.filled(FILL_VALUE) if isinstance(col, MaskedColumn) else np.asarray(col)
        if data.dtype.kind == "f":
            data = np.where(np.isfinite(data), data, FILL_VALUE)
        out[name] = data
        out[name].unit = col.unit
    out.meta = dict(meta or {})
    out.meta["n_sources"] = len(out)
    text = io.StringIO()
    out.write(text, format="ascii.ecsv")
    fd = create_temporary(final)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text.getvalue())
        return commit(final)
    except BaseException:
        remove_temporary(final)
        raise


def _image_background(product: DrizzleProduct, params: CatalogParams) -> Background:
    return compute_background(product, params, footprint_mask(product, params))


def filter_background(product: DrizzleProduct, params: CatalogParams) -> Background | None:
    """A filter product's background for :func:`measure_filter`, made before the detections
    (its sigma clipping's float64 copies of the footprint values are the catalogs' largest
    temporaries: made while no detection array is held): a constant background (two
    scalars) is returned, a 2-D one (whole images) is not (None: made again, the same values,
    when the filter is measured)."""
    with timed("background"):
        fbkg = _image_background(product, params)
    out = fbkg if fbkg.method == "constant" else None
    del fbkg, product
    give_back_free_memory()  # its statistics' copies of the footprint values
    return out


def filter_backgrounds(filters: Mapping[str, DrizzleProduct], params: CatalogParams
                       ) -> dict[str, Background | None]:
    """:func:`filter_background` of each filter product, for :func:`make_catalogs`
    ``backgrounds`` (each product is looked up once: a mapping that reads on lookup holds one
    at a time)."""
    return {fname: filter_background(filters[fname], params) for fname in list(filters)}


#: guards :meth:`Detection.release_sci`'s count (the two detections may run in two threads)
_SCI_LOCK = threading.Lock()


@dataclass
class Detection:
    """What the total's point and segment detections read (:func:`prepare_detection`).

    ``total`` keeps its SCI, WCS and header only (WHT and the exposure count served the
    footprint and the weight regions and are dropped); ``background``, ``regions`` and
    ``footprint`` are those of :func:`~hapdask.catalogs.background.compute_background`,
    :func:`~hapdask.catalogs.background.weight_regions` and
    :func:`~hapdask.catalogs.background.footprint_mask`. The point and the segment detections
    only read it, so they may run side by side (two threads) on one :class:`Detection`; the
    total's SCI is dropped once both are done with it (:meth:`release_sci`).
    """

    total: DrizzleProduct
    background: Background
    regions: list
    footprint: np.ndarray
    sci_users: int = 2  # the detections still reading ``total.sci`` (see release_sci)

    def release_sci(self) -> None:
        """One of the two detections is done with ``total.sci``: after the second one, the SCI
        is replaced by a broadcast 0 (freed when nothing else holds it). Thread-safe; the
        detection that is still running keeps its own reference until it returns."""
        with _SCI_LOCK:
            self.sci_users -= 1
            if self.sci_users == 0:
                self.total = replace(self.total, sci=np.broadcast_to(np.float32(0),
                                                                     self.total.sci.shape))


def prepare_detection(total: DrizzleProduct, params: CatalogParams) -> Detection:
    """The total's footprint, background and weight regions (HAP inventory 5.1, 5.2).

    The exposure count (a whole image) serves the footprint only and WHT the weight regions:
    neither is in the result (pass ``read_product(path)`` directly, not a name the caller keeps,
    and they are freed here; WHT memory-mapped is read band by band).
    """
    with timed("background"):
        footprint = footprint_mask(total, params)
        total = replace(total, nexp=None)
        bkg = compute_background(total, params, footprint)
        give_back_free_memory()  # its statistics' copies of the footprint values
        regions = weight_regions(total, bkg.rms, params, footprint)
    total = replace(total, wht=np.broadcast_to(np.float32(0), total.sci.shape))
    return Detection(total, bkg, regions, footprint)


def detect_points(detection: Detection, params: CatalogParams, *,
                  release: bool = False) -> Table:
    """The total's point sources (:func:`~hapdask.catalogs.point.detect_point_sources`).
    ``release=True``: done with ``detection.total``'s SCI afterwards
    (:meth:`Detection.release_sci`)."""
    total = detection.total  # taken once: the segmentation may release it meanwhile
    with timed("point-detect"):
        points = detect_point_sources(total, detection.background, detection.regions,
                                      detection.footprint, params)
    del total
    if release:
        detection.release_sci()
    give_back_free_memory()  # the banded steps' freed heap memory (see there), at each stage
    return points


def detect_segmentation(detection: Detection, params: CatalogParams, *,
                        scratch: str | os.PathLike[str] | None = None,
                        release: bool = False) -> Segmentation:
    """The total's segmentation (:func:`~hapdask.catalogs.segment.detect_segments`).

    ``scratch``: where the detection images are kept as memory maps (see
    :func:`make_catalogs`). ``release=True``: done with ``detection.total``'s SCI once the
    segmentation's detection image is made (:meth:`Detection.release_sci`: dropped when the
    point detection, before or beside this one, is done with it too).
    """
    with timed("segment-detect"):
        # the segmentation's detection image is made (spilled band by band with ``scratch``),
        # then the total's SCI is not read any more: the segmentation gets the total without it
        total = detection.total
        seg_image = segmentation_image(total, detection.background, detection.footprint,
                                       spill=scratch)
        total = replace(total, sci=np.broadcast_to(np.float32(0), total.sci.shape))
        if release:
            detection.release_sci()
        seg = detect_segments(total, detection.background, detection.regions,
                              detection.footprint, params, spill=scratch, image=seg_image)
        del seg_image, total
    give_back_free_memory()
    return seg


@dataclass
class FilterCatalogs:
    """One filter product's catalogs (:func:`measure_filter`) and what the total's assembly
    reads of it (``nexp``: NUMEXP/NDRIZIM; ``exptime``: its exposure time, or the ValueError
    of a product without one, raised only when the CR rule needs it; ``meta``: its
    :func:`catalog_meta` when asked for)."""

    point: Table
    segment: Table
    name: str
    nexp: int
    exptime: float | ValueError
    meta: dict | None = None


def measure_filter(product: DrizzleProduct, points: Table, segmentation: Segmentation,
                   params: CatalogParams, *, background: Background | None = None,
                   saturated: np.ndarray | None = None,
                   filter_name: str | None = None, own_sci: bool = False) -> FilterCatalogs:
    """Forced point and segment photometry of one filter product at the total's sources.

    ``background``: the product's background when already made (:func:`filter_backgrounds`),
    else it is made here. ``product``'s SCI is read once (converted to float64, NaN as 0, then
    background-subtracted in place by the segment measurement): pass ``read_product(path)``
    directly and it is freed here. ``own_sci=True``: a float64 SCI (``read_product(path,
    sci_dtype=np.float64)``) is used in place (NaN set to 0, background subtracted), not
    copied: the whole-image float32 and float64 arrays are never held together.
    ``filter_name``: the filter's name in the catalog metadata (:func:`catalog_meta` of the
    product's header, in the result); None: no metadata.
    """
    meta = catalog_meta(product, params, filter_name) if filter_name is not None else None
    if background is None:
        with timed("background"):
            background = _image_background(product, params)
        give_back_free_memory()
    # both measurements read SCI as float64 with NaN as 0: converted once (a new array; the
    # product's own SCI is released when the caller keeps no reference), background-
    # subtracted in place by the segment measurement (its last use)
    sci = product.sci
    if not (own_sci and sci.dtype == np.float64 and sci.flags.writeable):
        sci = np.array(sci, dtype=np.float64)
    product = replace(product, sci=nan_to_zero(sci))
    del sci
    with timed("point-measure"):
        point = measure_point_sources(product, points, background, params, saturated=saturated)
    with timed("segment-measure"):
        seg = measure_segments(product, segmentation, background, params, saturated=saturated,
                               own_sci=True)
    nexp = int(product.keyword("NUMEXP", "NDRIZIM", default=1) or 1)
    try:  # needed (and an error) only when every filter product is a single exposure
        exptime: float | ValueError = product.exptime
    except ValueError as exc:
        exptime = exc
    name = product.name
    del product, background
    give_back_free_memory()
    return FilterCatalogs(point, seg, name, nexp, exptime, meta)


def catalog_meta(product: DrizzleProduct, params: CatalogParams,
                 filter_name: str | None = None) -> dict:
    """The ECSV metadata of a product's catalogs (its keywords, apertures, thresholds, notes);
    ``filter_name`` None: the total (detection) product's."""
    note = (f"filter catalog of {filter_name}" if filter_name is not None else
            "total (detection) catalog; per-filter columns MagAP2_/CI_/Flags_<filter>")
    return _meta(product, params, note)


def assemble_catalogs(total_name: str, total_exptime: float, points: Table,
                      segmentation: Segmentation, filters: Mapping[str, FilterCatalogs],
                      params: CatalogParams, meta: dict[str, dict]) -> CatalogProducts:
    """The total catalogs (per-filter columns, trimming) and the CR-contamination rule
    (module docstring) from the detections and each filter's :func:`measure_filter`
    (``filters`` in the catalog's column order; ``total_exptime``: the total's TEXPTIME, not
    used for WFC3/IR; ``meta``: :func:`catalog_meta` of each product, by product name)."""
    flist = list(filters)
    point_f = {f: c.point for f, c in filters.items()}
    seg_f = {f: c.segment for f, c in filters.items()}
    names = {f: c.name for f, c in filters.items()}
    point_total = trim_total(total_catalog(points, point_f), flist, params)
    seg_total = trim_total(
        total_catalog(segmentation.catalog["ID", "X-Centroid", "Y-Centroid", "RA", "DEC"],
                      seg_f), flist, params)
    rejected = None
    if not params.ir:
        nexp = [c.nexp for c in filters.values()]
        exptimes = [c.exptime for c in filters.values()]
        singles = exptimes if all(n == 1 for n in nexp) else None
        for t in singles or ():
            if isinstance(t, ValueError):
                raise t
        for kind, table, factor in (("point", point_total, params.crfactor_point),
                                    ("segment", seg_total, params.crfactor_segment)):
            n_good = n_good_sources(table, flist)
            if cr_contamination(n_good, factor, singles, total_exptime):
                rejected = (f"CR contamination: {n_good} good {kind} sources < "
                            f"{factor} x T1^2 / TEXPTIME")
                break
    return CatalogProducts(total_name, point_total, seg_total, point_f, seg_f, names,
                           segmentation, rejected, dict(meta))


def make_catalogs(total: DrizzleProduct, filters: Mapping[str, DrizzleProduct],
                  params: CatalogParams, *,
                  saturated: Mapping[str, np.ndarray] | None = None,
                  scratch: str | os.PathLike[str] | None = None,
                  backgrounds: Mapping[str, Background | None] | None = None
                  ) -> CatalogProducts:
    """Point and segment catalogs of a total product and its filter products (module docstring).

    The steps in one call: :func:`prepare_detection`, :func:`detect_points`,
    :func:`detect_segmentation`, :func:`measure_filter` per filter, :func:`assemble_catalogs`
    (callers that run them as separate tasks get the same catalogs).
    ``saturated`` optionally maps a filter to its saturated-pixel mask in the drizzle frame.
    Each filter product (and mask) is looked up once and released before the next, so lazy
    mappings that read on lookup keep one filter product in memory at a time. The total's
    arrays are not used after detection, nor its WHT and exposure count after the weight regions
    (pass ``read_product(path)`` directly, not a name the caller keeps, and they are freed then).
    ``scratch``: a directory where the segmentation's detection images are kept as memory maps
    (:func:`~hapdask.catalogs.segment.detect_segments` ``spill``; the filter catalogs do not read
    them again: ~0.55 GiB less memory for a 6000^2 total); default in memory.
    ``backgrounds``: the filter products' backgrounds made by :func:`filter_backgrounds` before
    the total was read (its sigma clipping is the step's largest temporary: the caller can then
    run it without the total in memory); by default they are made first here.
    """
    if not filters:
        raise ValueError(f"{total.name}: no filter products given")
    saturated = saturated or {}
    # the filter products' backgrounds first, while no detection array is held (their sigma
    # clipping's float64 copies of the footprint values are the step's largest temporaries)
    fbkgs = dict(backgrounds) if backgrounds is not None else filter_backgrounds(filters, params)
    detection = prepare_detection(total, params)
    # the total's pixels are needed for detection only: from here on only its name, keywords and
    # TEXPTIME (with ``make_catalogs(read_product(path), ...)`` its arrays are freed here)
    total_name = detection.total.name
    meta = {}
    total_meta = catalog_meta(detection.total, params)
    total_exptime = detection.total.exptime if not params.ir else 0.0
    del total
    points = detect_points(detection, params, release=True)
    seg = detect_segmentation(detection, params, scratch=scratch, release=True)
    del detection
    measured: dict[str, FilterCatalogs] = {}
    # one filter product at a time: ``filters`` may be a mapping that reads each product when
    # it is looked up (the SVM catalog task), so only one is in memory with the total
    for fname in list(filters):
        measured[fname] = measure_filter(filters[fname], points, seg, params,
                                         background=fbkgs.pop(fname, None),
                                         saturated=saturated.get(fname), filter_name=fname)
        meta[measured[fname].name] = measured[fname].meta
    meta[total_name] = total_meta
    return assemble_catalogs(total_name, total_exptime, points, seg, measured, params, meta)
