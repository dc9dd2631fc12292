"""Segmentation catalogs (HAP inventory 5.4), with photutils 3.

Detection (:func:`detect_segments`) on the total image: ``image - background`` convolved with a
Gaussian kernel (FWHM ``TWEAK_FWHMPSF / pixel scale``, ``kernel_size`` square, unit sum),
``detect_sources`` with ``source_box`` connected pixels above ``segm_nsigma x weight-region noise``,
outside the eroded footprint masked.

Quality test ("big islands"): the biggest segment must not exceed ``rw2d_biggest_source`` of the
footprint pixels nor ``rw2d_biggest_pixels``, and all segments together not
``rw2d_source_fraction`` of it. When the Gaussian map fails, it is redone with a matched
RickerWavelet kernel (sigma ``1.5 x`` the Gaussian's, ``rw2d_size`` pixels, peak-normalised,
threshold ``rw2d_nsigma``), judged on the biggest-segment criteria only. **Simplification**: HAP
then retries with a 2-D background or doubled thresholds; we stop after the Ricker step and keep the
Ricker map when the Gaussian/Ricker biggest-segment ratio exceeds ``ratio_bigsource_limit``
(overlapping PSFs rather than nebulosity, HAP's final acceptance rule), else return no sources.
:attr:`Segmentation.big_island` records a failed test (written to the catalog header).

Deblending: segments with at least ``kernel_size^2`` pixels, except the largest when it is at least
``ratio_bigsource_deblend_limit`` times the next, are deblended (``deblend_sources``, ``nlevels``,
``contrast``, ``source_box`` pixels).

The total catalog is ``SourceCatalog`` (Kron parameters ``kron_scaling_radius``,
``kron_minimum_radius``) -> ID, X-Centroid, Y-Centroid, RA, DEC; rows with non-finite centroids are
removed and the segmentation map relabelled.

Per filter (:func:`measure_segments`): ``SourceCatalog(filter - background, total segmentation,
detection_catalog=total)`` plus the two-aperture photometry of :mod:`hapdask.catalogs.photometry` at
the centroids. **Choice**: HAP passes ``calc_total_error(data, rms, 1.0)`` (effective gain 1 for
count-rate data, i.e. a Poisson term in the wrong units); we use the same effective gain as the
aperture photometry (``EXPTIME x ATODGN``). ``Theta`` is in radians (photutils gives degrees).
"""

from __future__ import annotations

import mmap
import os
import tempfile
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from astropy.convolution import RickerWavelet2DKernel, convolve
from astropy.table import Table
from numba import njit
from photutils.segmentation import (
    SegmentationImage,
    SourceCatalog,
    deblend_sources,
    make_2dgaussian_kernel,
)
from photutils.utils.exceptions import NoDetectionsWarning
from scipy import ndimage

try:  # photutils' private helper (3.x): without it, deblend_sources relabels itself
    from photutils.segmentation.deblend import _update_deblend_label_map
except ImportError:  # pragma: no cover - a photutils without it
    _update_deblend_label_map = None

from hapdask._memory import release_free_memory
from hapdask.catalogs.background import Background, WeightRegion, threshold_image
from hapdask.catalogs.flags import source_flags
from hapdask.catalogs.params import CatalogParams
from hapdask.catalogs.photometry import abmag, aperture_photometry_hap, effective_gain
from hapdask.catalogs.point import COLUMN_UNITS
from hapdask.catalogs.product import DrizzleProduct, nan_to_zero

__all__ = ["Segmentation", "detect_segments", "measure_segments", "segment_flux_err",
           "total_error", "above_threshold", "convolve_bands", "convolve_extend",
           "segmentation_image", "detect_above", "SEGMENT_COLUMNS"]

SEGMENT_COLUMNS = ("X-Centroid", "Y-Centroid", "RA", "DEC", "ID", "CI", "Flags", "MagAp1",
                   "MagErrAp1", "FluxAp1", "FluxErrAp1", "MagAp2", "MagErrAp2", "FluxAp2",
                   "FluxErrAp2", "MSkyAp2", "Bck", "Area", "FWHM", "MagSegment", "FluxSegment",
                   "FluxSegmentErr", "KronRadius", "Xmin", "Ymin", "Xmax", "Ymax", "X2", "Y2",
                   "XY", "CXX", "CYY", "CXY", "Elongation", "Ellipticity", "Theta")

_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))

#: properties :func:`measure_segments` reads that photutils takes from the detection catalog
#: (``use_detcat``); evaluated by :func:`detect_segments` before it releases spilled images
DETECTION_PROPERTIES = ("centroid", "bbox_xmin", "bbox_xmax", "bbox_ymin", "bbox_ymax", "area",
                        "fwhm", "kron_radius", "covariance_xx", "covariance_yy", "covariance_xy",
                        "ellipse_cxx", "ellipse_cyy", "ellipse_cxy", "elongation", "ellipticity",
                        "orientation")


@dataclass
class Segmentation:
    """Detection result of :func:`detect_segments`.

    ``segm`` is None when nothing was detected (or the map was rejected); ``catalog`` has ID,
    X-Centroid, Y-Centroid (0-based), RA, DEC; ``kernel`` is "gaussian" or "ricker".
    """

    segm: SegmentationImage | None
    catalog: Table
    source_catalog: SourceCatalog | None
    kernel: str
    big_island: bool


def _quality(segm: SegmentationImage | None, n_real: int, params: CatalogParams,
             biggest_only: bool) -> tuple[bool, int]:
    """(passes, biggest segment area) of the big-island test."""
    if segm is None or segm.n_labels == 0:
        return True, 0
    areas = segm.areas
    biggest = int(areas.max())
    bad = biggest > params.rw2d_biggest_source * n_real or biggest > params.rw2d_biggest_pixels
    if not biggest_only:
        bad |= areas.sum() > params.rw2d_source_fraction * n_real
    return not bad, biggest


def above_threshold(conv: np.ndarray, regions: list[WeightRegion], nsigma: float,
                    footprint: np.ndarray, band: int = 512,
                    after_band: Callable[[], None] | None = None) -> np.ndarray:
    """Pixels of ``conv`` above the weight regions' threshold, inside ``footprint`` (bool).

    The pixels ``detect_sources(conv, threshold_image(regions, nsigma, shape),
    mask=~footprint)`` selects before it labels them (``conv > threshold``, masked pixels off),
    made band by band without the whole-image float64 threshold map and the comparison's and
    mask's temporaries (``after_band`` is called after each band, e.g. to release the pages
    of a memory-mapped ``conv`` read)."""
    out = np.empty(conv.shape, dtype=bool)
    for r in range(0, conv.shape[0], band):
        rows = slice(r, r + band)
        thresh = threshold_image([WeightRegion(reg.mask[rows], reg.limit, reg.noise)
                                  for reg in regions], nsigma, conv[rows].shape)
        np.greater(conv[rows], thresh, out=out[rows])
        out[rows] &= footprint[rows]
        if after_band is not None:
            after_band()
    return out


#: output columns per pass of :func:`_convolve_padded` (its running sums stay in L1 cache)
_CONV_COLUMNS = 1024


@njit(nogil=True, cache=True)
def _convolve_padded(p, kernel, out):  # pragma: no cover - numba
    """``out[r, c] = sum(p[r + i, c + j] * kernel[n0 - 1 - i, n1 - 1 - j])`` over ``i`` then
    ``j`` in ascending order, each product added to a running sum that starts at 0: the loop
    of astropy's C ``convolve2d`` (``nan_interpolate`` off), the same float64 operations per
    pixel in the same order (so the same values), run over a block of output columns per
    kernel tap (the sums of a block stay in cache; the taps' loops vectorise)."""
    nk0, nk1 = kernel.shape
    ny, nx = out.shape
    acc = np.empty(min(_CONV_COLUMNS, nx))
    for r in range(ny):
        for c0 in range(0, nx, _CONV_COLUMNS):
            m = min(_CONV_COLUMNS, nx - c0)
            acc[:m] = 0.0
            for i in range(nk0):
                row = p[r + i, c0:c0 + m + nk1 - 1]
                for j in range(nk1):
                    w = kernel[nk0 - 1 - i, nk1 - 1 - j]
                    for c in range(m):
                        acc[c] += row[c + j] * w
            out[r, c0:c0 + m] = acc[:m]


def convolve_extend(image: np.ndarray, kernel: np.ndarray, rows: tuple[int, int] | None = None,
                    out: np.ndarray | None = None) -> np.ndarray:
    """astropy's ``convolve(image, kernel, normalize_kernel=False, boundary="extend")`` of a
    NaN-free ``image`` with an odd-sized float64 ``kernel``: the same values (astropy's loop,
    :func:`_convolve_padded`, in a compiled loop that vectorises: ~4x less CPU).

    ``rows``: ``(r0, r1)``, only those rows of the result, from ``image[r0 - h:r1 + h]`` (``h``
    half the kernel's height; rows past the image's edges are its edge rows, as astropy's
    padding makes them), written into ``out`` (``r1 - r0`` rows) or a new array. An image
    holding NaN (which astropy interpolates over) is handed to astropy's function."""
    ny, nx = image.shape
    r0, r1 = rows if rows is not None else (0, ny)
    kernel = np.ascontiguousarray(kernel, dtype=np.float64)
    h0, h1 = kernel.shape[0] // 2, kernel.shape[1] // 2
    lo, hi = max(0, r0 - h0), min(ny, r1 + h0)
    block = np.asarray(image[lo:hi], dtype=np.float64)
    if out is None:
        out = np.empty((r1 - r0, nx), dtype=np.float64)
    if np.isnan(block.sum()) or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        conv = convolve(block, kernel, normalize_kernel=False, boundary="extend")
        out[:] = conv[r0 - lo:r1 - lo]
        return out
    padded = np.pad(block, ((h0 - (r0 - lo), h0 - (hi - r1)), (h1, h1)), mode="edge")
    _convolve_padded(padded, kernel, out)
    return out


def convolve_bands(image: np.ndarray, kernel: np.ndarray, band: int = 512,
                   workers: int = 2, after_band: Callable[[], None] | None = None,
                   out: np.ndarray | None = None) -> np.ndarray:
    """astropy's ``convolve(image, kernel, normalize_kernel=False, boundary="extend")`` of a
    NaN-free image, band by band (:func:`convolve_extend`, in ``workers`` threads: the
    compiled loop releases the GIL).

    Each band is convolved from its rows and the kernel's half height of context on both
    sides: every pixel sees the same neighbours, summed in the same order, so the values are
    the same as the whole-image call's, without its whole-image padded copy (a memory-mapped
    ``image`` is read a band at a time; ``after_band`` is called after each band, e.g. to
    release the pages read). ``out``: a float64 array of the image's shape to write into
    (e.g. a file map), else a new one."""
    ny = image.shape[0]
    if out is None:
        out = np.empty(image.shape, dtype=np.float64)

    def one(r0: int) -> None:
        r1 = min(ny, r0 + band)
        convolve_extend(image, kernel, rows=(r0, r1), out=out[r0:r1])
        if after_band is not None:
            after_band()

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(one, range(0, ny, band)))
    return out


def _detect(image: np.ndarray, kernel: np.ndarray, regions: list[WeightRegion], nsigma: float,
            footprint: np.ndarray, params: CatalogParams, maps: tuple[mmap.mmap, ...] = (),
            spill: str | os.PathLike[str] | None = None
            ) -> tuple[np.ndarray, SegmentationImage | None, tuple[mmap.mmap, ...]]:
    """The convolved image, its segmentation and the convolved image's file map (with
    ``spill``: it is written into an unlinked file there band by band and its pages are
    released as they are written and read, so it is never whole in memory; else ``()``)."""
    if spill is not None:
        conv, mm = _file_array(image.shape, np.float64, spill)
        own: tuple[mmap.mmap, ...] = (mm,)
    else:
        conv, own = None, ()

    def release() -> None:  # a spilled image is read by the convolution only
        for m in maps + own:
            _drop_pages(m)

    conv = convolve_bands(image, kernel, after_band=release if maps or own else None, out=conv)
    release_free_memory()  # the bands' freed heap memory (threads' arenas included)
    # detect_sources labels the pixels above the threshold (its only use of the data and the
    # threshold): given them as 0/1 with threshold 0, it makes the same segmentation image
    # (tested against the call with the convolved image and the threshold map)
    above = above_threshold(conv, regions, nsigma, footprint,
                            after_band=release if own else None)
    return conv, detect_above(above, params.source_box), own


@njit(nogil=True, cache=True)
def _label_counts(labels, n):  # pragma: no cover - numba
    """Pixels per label ``0 .. n`` of a 2-D label image (``np.bincount`` of it, without its
    whole-image intp copy)."""
    counts = np.zeros(n + 1, np.int64)
    for r in range(labels.shape[0]):
        for c in range(labels.shape[1]):
            counts[labels[r, c]] += 1
    return counts


@njit(nogil=True, cache=True)
def _map_labels(labels, label_map):  # pragma: no cover - numba
    """``labels[:] = label_map[labels]`` of a 2-D label image, in place (numpy's fancy index
    makes a whole-image intp copy of the index and a new image)."""
    for r in range(labels.shape[0]):
        for c in range(labels.shape[1]):
            labels[r, c] = label_map[labels[r, c]]


def _segmentation(data: np.ndarray, labels: np.ndarray, slices: list) -> SegmentationImage:
    """A :class:`SegmentationImage` of a label image whose labels ``labels`` and bounding
    boxes ``slices`` are known, made as photutils' ``detect_sources`` makes its result (no
    second pass over the image for them)."""
    segm = object.__new__(SegmentationImage)
    segm._data = data
    segm.__dict__["labels"] = labels
    segm.__dict__["slices"] = slices
    segm.__dict__["_deblend_label_map"] = {}
    return segm


def detect_above(above: np.ndarray, n_pixels: int) -> SegmentationImage | None:
    """photutils' ``detect_sources(above.view(np.uint8), 0, n_pixels)`` of a boolean image of
    the pixels above the threshold (:func:`above_threshold`): the same segmentation image
    (labels, their order, bounding boxes), or None (with photutils' ``NoDetectionsWarning``).

    The same steps as photutils' ``_detect_sources`` (8-connected ``scipy.ndimage.label``,
    ``find_objects``, segments of fewer than ``n_pixels`` pixels removed, the others relabelled
    ``1 .. n`` in their order), with the pixels per label counted in one compiled pass instead
    of a cut-out comparison per label, and the relabelling done in place by a compiled lookup
    instead of numpy's fancy index (its whole-image intp copy of the index and a new image:
    ~0.8 s for a 6000^2 image).
    """
    data = None
    if np.count_nonzero(above):
        data, nlabels = ndimage.label(above, structure=np.ones((3, 3), dtype=bool))
        counts = _label_counts(data, nlabels)
        keep = counts[1:] >= n_pixels
        if keep.any():
            slices = ndimage.find_objects(data)
            kept = [slc for slc, k in zip(slices, keep, strict=True) if k]
            n_kept = len(kept)
            if n_kept != nlabels:
                label_map = np.zeros(nlabels + 1, dtype=data.dtype)
                label_map[1:][keep] = np.arange(n_kept, dtype=data.dtype) + 1
                _map_labels(data, label_map)
            return _segmentation(data, np.arange(n_kept, dtype=data.dtype) + 1, kept)
    warnings.warn("No sources were found. Try lowering the threshold or pixels parameters.",
                  NoDetectionsWarning, stacklevel=2)
    return None


def _deblend(conv: np.ndarray, segm: SegmentationImage, params: CatalogParams) -> SegmentationImage:
    areas = segm.areas
    order = np.argsort(areas)[::-1]
    candidates = segm.labels[areas >= params.kernel_size ** 2]
    if areas.size > 1 and areas[order[0]] >= params.ratio_bigsource_deblend_limit * areas[order[1]]:
        candidates = candidates[candidates != segm.labels[order[0]]]
    if candidates.size == 0:
        return segm
    out = deblend_sources(conv, segm, n_pixels=params.source_box, labels=candidates,
                          n_levels=params.nlevels, contrast=params.contrast,
                          relabel=_update_deblend_label_map is None, progress_bar=False)
    if _update_deblend_label_map is not None:
        _relabel_consecutive(out)
    return out


def _relabel_consecutive(segm: SegmentationImage) -> None:
    """What ``deblend_sources(..., relabel=True)`` does after deblending, in place: the labels
    present renumbered ``1 .. n`` in their order (``_create_relabel_map``), and the deblended
    labels' map updated (``_update_deblend_label_map``); the same image and map, with the
    labels found by one compiled counting pass and the lookup done in place (photutils
    sorts the whole image with ``np.unique`` and indexes it with numpy: ~1.5 s for a 6000^2
    image)."""
    data = segm._data
    top = int(data.max())
    present = np.flatnonzero(_label_counts(data, top)[1:]) + 1
    if present.size == 0 or (present[0] == 1 and present[-1] == present.size):
        return
    label_map = np.zeros(top + 1, dtype=data.dtype)
    label_map[present] = np.arange(present.size) + 1
    _map_labels(data, label_map)
    segm._deblend_label_map = _update_deblend_label_map(segm._deblend_label_map, label_map)


def total_error(data: np.ndarray, rms: np.ndarray, gain: float, band: int = 256) -> np.ndarray:
    """photutils' ``calc_total_error(data, rms, gain)`` for a scalar ``gain``, band by band:
    ``sqrt(rms^2 + max(data / gain, 0))`` (0 source variance where ``gain`` is 0), the same
    values, with no whole-image temporaries (photutils makes ~5 of them: the peak of the
    catalog step). ``rms`` may be a read-only broadcast view."""
    data = np.asarray(data)
    out = np.empty(data.shape, dtype=np.result_type(data, rms, np.float64))
    for r in range(0, data.shape[0], band):
        d = data[r:r + band]
        var = d / gain if gain != 0 else np.zeros_like(d, dtype=out.dtype)
        np.maximum(var, 0, out=var)
        e = np.asarray(rms[r:r + band])
        np.sqrt(e ** 2 + var, out=out[r:r + band])
    return out


def segment_flux_err(data: np.ndarray, rms: np.ndarray, gain: float, segm: SegmentationImage,
                     labels: np.ndarray, slices: list) -> np.ndarray:
    """photutils' ``SourceCatalog(data, segm, error=calc_total_error(data, rms, gain))
    .segment_flux_err`` of the sources ``labels`` (bounding boxes ``slices``, the catalog's),
    from the segments' pixels only: each pixel's error is :func:`total_error`'s expression,
    gathered in photutils' order (row-major in the box, pixels of the segment with finite
    data), squared and summed by the same ``np.add.reduceat`` (a source without such pixels
    gives NaN, as photutils). The same values, without the whole-image error array."""
    values = []
    for label, box in zip(np.atleast_1d(labels), slices, strict=True):
        d = np.asarray(data[box])
        use = (segm.data[box] == label) & np.isfinite(d)
        d = d[use]
        var = d / gain if gain != 0 else np.zeros_like(d, dtype=np.float64)
        np.maximum(var, 0, out=var)
        e = np.asarray(rms[box])[use]
        err = np.sqrt(e ** 2 + var)
        values.append(err if err.size else np.array([np.nan]))
    if not values:
        return np.zeros(0)
    sizes = np.array([len(v) for v in values])
    splits = np.concatenate(([0], np.cumsum(sizes[:-1])))
    return np.sqrt(np.add.reduceat(np.square(np.concatenate(values)), splits))


def _theta(orientation_deg: np.ndarray) -> np.ndarray:
    """Orientation (deg, any range) -> radians in [-pi/2, pi/2) (an ellipse axis is modulo pi)."""
    return np.radians((orientation_deg + 90.0) % 180.0 - 90.0)


def _empty_catalog() -> Table:
    out = Table()
    out["ID"] = np.zeros(0, dtype=np.int64)
    for name in ("X-Centroid", "Y-Centroid", "RA", "DEC"):
        out[name] = np.zeros(0)
    return out


def _file_array(shape: tuple[int, ...], dtype: type, directory: str | os.PathLike[str]
                ) -> tuple[np.ndarray, mmap.mmap]:
    """A writeable array of zeros in an unlinked file in ``directory`` (a shared file map: the
    pages written are the file's, so :func:`_drop_pages` releases them from the process's
    memory without losing them; they are read again from the file where used), and the map."""
    count = int(np.prod(shape))
    nbytes = max(1, count * np.dtype(dtype).itemsize)
    fd, name = tempfile.mkstemp(suffix=".bin", prefix=".hapdask-segm-", dir=directory)
    try:
        os.ftruncate(fd, nbytes)
        mm = mmap.mmap(fd, nbytes)
    finally:
        os.close(fd)
        os.unlink(name)
    _read_sparsely(mm)
    return np.frombuffer(mm, dtype=dtype, count=count).reshape(shape), mm


def _read_sparsely(mm: mmap.mmap) -> None:
    """Tell the kernel that a file map is read in small pieces (Linux ``MADV_RANDOM``): a
    fault maps its own page only, not the up to 16 cached pages around it ("fault-around"),
    so cut-outs of a few pixels per row (photutils' per-source cut-outs) make only the pages
    they read resident; no read-ahead either. The values read are not affected."""
    if hasattr(mmap, "MADV_RANDOM"):
        mm.madvise(mmap.MADV_RANDOM)


def _drop_pages(mm: mmap.mmap) -> None:
    """Release the pages of a file map read so far from the process's memory (Linux
    ``MADV_DONTNEED``: they are read again from the file when used; elsewhere nothing)."""
    if hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED)


def segmentation_image(total: DrizzleProduct, background: Background, footprint: np.ndarray,
                       *, spill: str | os.PathLike[str] | None = None, band: int = 512
                       ) -> tuple[np.ndarray, tuple[mmap.mmap, ...]]:
    """The segmentation's detection image and its file maps: the total's SCI (NaN as 0) minus
    the background, 0 outside ``footprint``, float64.

    With ``spill`` (a directory) it is written band by band into an unlinked file there and
    returned as a read-only memory map of it (no whole image in memory at any time), with the
    map (for :func:`_drop_pages`); else an array in memory and no map.
    """
    dtype = np.result_type(total.sci, background.background, np.float64)
    shape = total.sci.shape

    def rows(r: slice) -> np.ndarray:
        x = np.array(total.sci[r], dtype=dtype)
        nan_to_zero(x)
        x -= background.background[r]
        x[~footprint[r]] = 0.0
        return x

    if spill is None:
        out = np.empty(shape, dtype=dtype)
        for r0 in range(0, shape[0], band):
            out[r0:r0 + band] = rows(slice(r0, r0 + band))
        return out, ()
    fd, name = tempfile.mkstemp(suffix=".bin", prefix=".hapdask-segm-", dir=spill)
    try:
        with os.fdopen(fd, "w+b") as fh:
            for r0 in range(0, shape[0], band):
                rows(slice(r0, r0 + band)).tofile(fh)
            fh.flush()
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    finally:
        os.unlink(name)
    _read_sparsely(mm)
    return np.frombuffer(mm, dtype=dtype).reshape(shape), (mm,)


#: detection properties that read large areas around every source (Kron's elliptical apertures:
#: the whole spilled image's pages for a 6000^2 total), computed :data:`_CHUNK` sources at a time
_CHUNKED_PROPERTIES = ("kron_radius",)
_CHUNK = 128


def _property_in_chunks(cat: SourceCatalog, name: str, maps: tuple[mmap.mmap, ...]) -> None:
    """Put photutils' lazy property ``name`` of ``cat`` into its cache, computed on slices of
    :data:`_CHUNK` sources (``cat[i:j]``, photutils' own sub-catalogs) with the pages read
    released after each: the same per-source values (each source's aperture sums are its own),
    joined in order, without every source's pages in memory at once."""
    if len(cat) <= _CHUNK:
        getattr(cat, name)
        return
    parts = []
    for i in range(0, len(cat), _CHUNK):
        parts.append(getattr(cat[i:i + _CHUNK], name))
        for mm in maps:
            _drop_pages(mm)
    cat.__dict__[name] = np.concatenate(parts)  # where photutils' lazyproperty caches it


def detect_segments(total: DrizzleProduct, background: Background,
                    regions: list[WeightRegion], footprint: np.ndarray,
                    params: CatalogParams, *,
                    spill: str | os.PathLike[str] | None = None,
                    image: tuple[np.ndarray, tuple[mmap.mmap, ...]] | None = None
                    ) -> Segmentation:
    """Segmentation of the total (detection) image (module docstring).

    The returned :attr:`Segmentation.source_catalog` keeps the background-subtracted and the
    convolved total images (whole float64 images, read by photutils for the detection image's
    properties the filter catalogs use); with ``spill`` (a directory) they are kept as memory
    maps of unlinked files there (the total image from before its convolution), those
    properties (:data:`DETECTION_PROPERTIES`) are computed here and the pages read are released,
    so that the filter catalogs take them from photutils' cache without reading the images.
    ``image``: the detection image already made by :func:`segmentation_image` (with the same
    ``spill``); then the total's SCI is not read (the caller may have released it).
    """
    if image is None:
        image = segmentation_image(total, background, footprint, spill=spill)
    image, maps = image
    fwhm = params.fwhmpsf / total.pixel_scale
    gauss = make_2dgaussian_kernel(fwhm, size=params.kernel_size).array
    n_real = int(footprint.sum())
    conv, segm, conv_map = _detect(image, gauss, regions, params.segm_nsigma, footprint, params,
                                   maps, spill)
    ok, big_g = _quality(segm, n_real, params, biggest_only=False)
    kernel_name, big_island = "gaussian", not ok
    if not ok:
        sigma = 1.5 * fwhm / _FWHM_PER_SIGMA
        ricker = RickerWavelet2DKernel(sigma, x_size=params.rw2d_size,
                                       y_size=params.rw2d_size).array
        ricker = ricker / ricker.max()
        conv_r, segm_r, map_r = _detect(image, ricker, regions, params.rw2d_nsigma, footprint,
                                        params, maps, spill)
        ok_r, big_r = _quality(segm_r, n_real, params, biggest_only=True)
        if ok_r or (big_r > 0 and big_g / big_r > params.ratio_bigsource_limit):
            conv, segm, kernel_name, conv_map = conv_r, segm_r, "ricker", map_r
        else:
            segm = None
    if segm is None or segm.n_labels == 0:
        return Segmentation(None, _empty_catalog(), None, kernel_name, big_island)
    segm = _deblend(conv, segm, params)
    if conv_map:
        # the convolved image's file map is kept with the image's; read-only from here on
        conv.flags.writeable = False
        _drop_pages(conv_map[0])
        maps += conv_map
    cat = SourceCatalog(image, segm, convolved_data=conv, wcs=total.wcs.celestial,
                        kron_params=(params.kron_scaling_radius, params.kron_minimum_radius))
    good = np.isfinite(cat.x_centroid) & np.isfinite(cat.y_centroid)
    if not good.all():
        segm = segm.copy()
        segm.keep_labels(cat.labels[good], relabel=True)
        cat = SourceCatalog(image, segm, convolved_data=conv, wcs=total.wcs.celestial,
                            kron_params=(params.kron_scaling_radius, params.kron_minimum_radius))
    if maps:
        # the detection properties the filter catalogs take from this catalog are computed now
        # (photutils caches them), then the pages read are released: the filter catalogs
        # hardly read the spilled images again (the same values, from the cache)
        for name in DETECTION_PROPERTIES:
            if name in _CHUNKED_PROPERTIES:
                _property_in_chunks(cat, name, maps)
            else:
                getattr(cat, name)
            for mm in maps:  # after each: the pages one property read, not all of them at once
                _drop_pages(mm)
    ra, dec = total.wcs.celestial.all_pix2world(cat.x_centroid, cat.y_centroid, 0)
    out = Table()
    out["ID"] = np.asarray(cat.labels, dtype=np.int64)
    out["X-Centroid"] = np.asarray(cat.x_centroid, dtype=np.float64)
    out["Y-Centroid"] = np.asarray(cat.y_centroid, dtype=np.float64)
    out["RA"] = np.asarray(ra, dtype=np.float64)
    out["DEC"] = np.asarray(dec, dtype=np.float64)
    return Segmentation(segm, out, cat, kernel_name, big_island)


def measure_segments(image: DrizzleProduct, seg: Segmentation, background: Background,
                     params: CatalogParams, *, saturated: np.ndarray | None = None,
                     own_sci: bool = False) -> Table:
    """Filter segment catalog (:data:`SEGMENT_COLUMNS`) of ``image`` on the total segmentation.

    ``own_sci=True``: ``image.sci`` is a float64 array without NaN that is not used again; it is
    background-subtracted in place instead of copied (one whole image less).
    """
    out = Table()
    if seg.segm is None:
        for name in SEGMENT_COLUMNS:
            out[name] = np.zeros(0, dtype=np.int64 if name in ("ID", "Flags") else np.float64)
        return out
    if image.sci.shape != seg.segm.shape:
        raise ValueError(f"{image.name}: shape {image.sci.shape} differs from the total "
                         f"segmentation {seg.segm.shape}; segment catalogs need a common grid")
    photflam, photplam = image.photometry_keywords()
    gain = effective_gain(image, params)
    if own_sci:
        data = image.sci
        if data.dtype != np.float64 or not data.flags.writeable:
            raise ValueError(f"{image.name}: own_sci needs a writeable float64 SCI")
    else:
        data = np.array(image.sci, dtype=np.float64)  # one whole-image array, used twice:
        nan_to_zero(data)
    # centroids: the detection catalog's (SourceCatalog takes them from detection_catalog),
    # finite by construction (detect_segments drops the others)
    x = np.array(seg.catalog["X-Centroid"], dtype=np.float64)
    y = np.array(seg.catalog["Y-Centroid"], dtype=np.float64)
    # 1. the two-aperture photometry on the image as it is (HAP: not background-subtracted)
    phot = aperture_photometry_hap(data, x, y, rms=background.rms,
                                   pixel_scale=image.pixel_scale, gain=gain, photflam=photflam,
                                   photplam=photplam, params=params)
    # 2. SourceCatalog on the background-subtracted image (subtracted in place)
    data -= background.background
    sub = data
    # no error image: photutils reads it for segment_flux_err only, computed from the
    # segments' pixels (segment_flux_err: the same values, without a whole float64 image; the
    # Poisson term of negative pixels is 0, as calc_total_error's)
    cat = SourceCatalog(sub, seg.segm, background=background.background,
                        wcs=image.wcs.celestial, detection_catalog=seg.source_catalog,
                        kron_params=(params.kron_scaling_radius, params.kron_minimum_radius))
    flux = np.asarray(cat.segment_flux, dtype=np.float64)
    flux_err = segment_flux_err(sub, background.rms, gain, seg.segm, cat.labels, cat.slices)
    values = {
        "X-Centroid": x, "Y-Centroid": y,
        "ID": np.asarray(cat.labels, dtype=np.int64),
        "Bck": np.asarray(cat.background_centroid, dtype=np.float64),
        "Area": np.asarray(cat.area.value, dtype=np.float64),
        "FWHM": np.asarray(cat.fwhm.value, dtype=np.float64),
        "MagSegment": abmag(flux, photflam, photplam), "FluxSegment": flux,
        "FluxSegmentErr": flux_err,
        "KronRadius": np.asarray(cat.kron_radius.value, dtype=np.float64),
        "Xmin": cat.bbox_xmin, "Ymin": cat.bbox_ymin, "Xmax": cat.bbox_xmax,
        "Ymax": cat.bbox_ymax,
        "X2": np.asarray(cat.covariance_xx.value), "Y2": np.asarray(cat.covariance_yy.value),
        "XY": np.asarray(cat.covariance_xy.value), "CXX": np.asarray(cat.ellipse_cxx.value),
        "CYY": np.asarray(cat.ellipse_cyy.value), "CXY": np.asarray(cat.ellipse_cxy.value),
        "Elongation": np.asarray(cat.elongation.value),
        "Ellipticity": np.asarray(cat.ellipticity.value),
        "Theta": _theta(np.asarray(cat.orientation.value)),
    }
    del cat, sub, data  # whole-image arrays
    n_exp = int(image.keyword("NUMEXP", "NDRIZIM", default=1) or 1)
    values["Flags"] = source_flags(phot, x, y, params=params, pixel_scale=image.pixel_scale,
                                   exposure_count=image.exposure_count, n_exposures=n_exp,
                                   saturated=saturated)
    values["RA"], values["DEC"] = image.wcs.celestial.all_pix2world(x, y, 0)
    for name in SEGMENT_COLUMNS:
        col = values[name] if name in values else phot[name]
        out[name] = np.asarray(col, dtype=np.int64 if name in ("ID", "Flags", "Xmin", "Ymin",
                                                               "Xmax", "Ymax") else np.float64)
        if name in COLUMN_UNITS:
            out[name].unit = COLUMN_UNITS[name]
    return out
