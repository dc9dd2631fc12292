"""Memory-saving forms of the catalog step give the same numbers as the whole-image forms."""

from __future__ import annotations

import mmap
import weakref
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import pytest
from astropy.convolution import RickerWavelet2DKernel, convolve
from photutils.detection import DAOStarFinder, find_peaks
from photutils.segmentation import (
    SourceCatalog,
    deblend_sources,
    detect_sources,
    make_2dgaussian_kernel,
)
from photutils.utils import calc_total_error
from photutils.utils.exceptions import NoDetectionsWarning
from scipy import ndimage

from hapdask.catalogs import (
    CatalogParams,
    WeightRegion,
    assemble,
    background,
    compute_background,
    detect_point_sources,
    footprint_mask,
    make_catalogs,
    point,
    segment,
    threshold_image,
    weight_regions,
)
from hapdask.catalogs.background import max_filtered
from hapdask.catalogs.point import band_peaks
from hapdask.catalogs.segment import above_threshold, total_error


@pytest.mark.parametrize("gain", [1.0, 1234.5, 0.0])
@pytest.mark.parametrize("rms_kind", ["broadcast", "map"])
def test_total_error_equals_photutils(gain, rms_kind):
    """Band by band, with a broadcast or a per-pixel rms: bit-identical to photutils'
    ``calc_total_error`` (the oracle), NaN and negative pixels included."""
    rng = np.random.default_rng(3)
    data = rng.normal(0.0, 2.0, (700, 257))  # not a multiple of the band height
    data[3, 4] = np.nan
    data[600, 200] = -50.0
    rms = (np.broadcast_to(np.float64(0.7), data.shape) if rms_kind == "broadcast"
           else rng.uniform(0.1, 1.0, data.shape))
    ours = total_error(data, rms, gain, band=64)
    assert np.array_equal(ours, calc_total_error(data, rms, gain), equal_nan=True)


class _Lookup(Mapping):
    """Filter products whose lookup records whether the total's SCI is still alive."""

    def __init__(self, filters: dict, alive) -> None:
        self._filters = filters
        self._alive = alive
        self.seen: list[bool] = []

    def __getitem__(self, key):
        self.seen.append(self._alive() is not None)
        return self._filters[key]

    def __iter__(self):
        return iter(self._filters)

    def __len__(self) -> int:
        return len(self._filters)


@pytest.mark.parametrize("given", [False, True])
def test_total_pixels_freed_before_filters(field, field_catalogs, monkeypatch, given):
    """Passed without a reference kept, the total's WHT is released before the detections and
    its SCI after them (before any filter product is looked up for its measurement); the
    filter backgrounds are made first (each filter looked up once more, before the detection)
    unless given (``filter_backgrounds``, as the SVM catalog task makes them before it reads
    the total); the catalogs are those of the fixture."""
    params = CatalogParams.for_detector("acs_wfc")
    fbkgs = assemble.filter_backgrounds(field.filters, params) if given else None
    total = replace(field.total, sci=field.total.sci.copy(), wht=field.total.wht.copy())
    ref = weakref.ref(total.sci)
    wht = weakref.ref(total.wht)
    wht_alive = []

    def detect(*args, **kw):
        wht_alive.append(wht() is not None)
        return detect_point_sources(*args, **kw)

    monkeypatch.setattr(assemble, "detect_point_sources", detect)
    lookup = _Lookup(dict(field.filters), ref)
    args = [total]
    del total
    res = make_catalogs(args.pop(), lookup, params, backgrounds=fbkgs)
    assert wht_alive == [False]
    first = [] if given else [True] * len(field.filters)  # the backgrounds, before detection
    assert lookup.seen == first + [False] * len(field.filters)
    assert given or all(b is not None for b in assemble.filter_backgrounds(field.filters,
                                                                            params).values())
    for got, want in ((res.point_total, field_catalogs.point_total),
                      (res.segment_total, field_catalogs.segment_total)):
        assert got.colnames == want.colnames and len(got) == len(want)
        for name in got.colnames:
            assert np.array_equal(np.asarray(got[name]), np.asarray(want[name]), equal_nan=True)


def test_spilled_detection_images_same_catalogs(field, field_catalogs, tmp_path, monkeypatch):
    """With ``scratch``, the segmentation's detection images are memory maps of unlinked files
    there (nothing is left in the directory) and every catalog is the in-memory run's."""
    spilled = []
    original = segment._file_array
    original_image = segment.segmentation_image

    def spill(shape, dtype, directory):
        got, mm = original(shape, dtype, directory)
        spilled.append((type(mm), got.shape, got.flags.owndata, directory))
        return got, mm

    def image(*args, spill=None, **kw):
        got, maps = original_image(*args, spill=spill, band=37, **kw)
        spilled.append((*(type(m) for m in maps), got.shape, got.flags.owndata, spill))
        return got, maps

    monkeypatch.setattr(segment, "_file_array", spill)
    monkeypatch.setattr(assemble, "segmentation_image", image)
    res = make_catalogs(field.total, field.filters, CatalogParams.for_detector("acs_wfc"),
                        scratch=tmp_path)
    # the detection image (written band by band) and the convolved image (written into its
    # file as it is convolved)
    assert spilled == [(mmap.mmap, field.total.sci.shape, False, tmp_path)] * 2
    assert list(tmp_path.iterdir()) == []
    pairs = [(res.point_total, field_catalogs.point_total),
             (res.segment_total, field_catalogs.segment_total)]
    pairs += [(res.point_filters[f], field_catalogs.point_filters[f]) for f in field.filters]
    pairs += [(res.segment_filters[f], field_catalogs.segment_filters[f]) for f in field.filters]
    for got, want in pairs:
        assert got.colnames == want.colnames and len(got) == len(want) > 0
        for name in got.colnames:
            assert np.array_equal(np.asarray(got[name]), np.asarray(want[name]), equal_nan=True)


@pytest.mark.parametrize("chunk", [128, 7])
def test_filter_catalogs_compute_nothing_on_spilled_detection(field, tmp_path, monkeypatch,
                                                              chunk):
    """With ``spill``, every detection property the filter catalogs take from the detection
    catalog (photutils' ``use_detcat``) is already in photutils' cache: measuring the filters
    adds nothing to it (so nothing reads the released detection images again), and the filter
    catalogs equal those of an in-memory detection (also with the Kron radii computed on
    slices of a few sources)."""
    from hapdask.catalogs.background import compute_background, footprint_mask, weight_regions
    from hapdask.catalogs.segment import detect_segments, measure_segments

    params = CatalogParams.for_detector("acs_wfc")
    fp = footprint_mask(field.total, params)
    bkg = compute_background(field.total, params, fp)
    regions = weight_regions(field.total, bkg.rms, params, fp)
    monkeypatch.setattr(segment, "_CHUNK", chunk)  # Kron radii of slices of sources
    spilled = detect_segments(field.total, bkg, regions, fp, params, spill=tmp_path)
    plain = detect_segments(field.total, bkg, regions, fp, params)
    assert len(plain.catalog) > 2 * chunk or chunk == 128
    want_kron = plain.source_catalog.kron_radius
    got_kron = spilled.source_catalog.kron_radius
    assert got_kron.unit == want_kron.unit and np.array_equal(got_kron, want_kron)
    cached = set(vars(spilled.source_catalog))
    assert {"area", "kron_radius", "orientation"} <= cached  # photutils caches in the instance
    for prod in field.filters.values():
        fbkg = compute_background(prod, params)
        got = measure_segments(prod, spilled, fbkg, params)
        want = measure_segments(prod, plain, fbkg, params)
        for name in got.colnames:
            assert np.array_equal(np.asarray(got[name]), np.asarray(want[name]), equal_nan=True)
    assert set(vars(spilled.source_catalog)) == cached


# -- banded forms of whole-image library calls: the same results as the library calls --------
def _peak_image(seed: int = 5, shape=(613, 241)) -> np.ndarray:
    """Noise with point sources, exact ties (plateaus), zero rows/columns and negative values."""
    rng = np.random.default_rng(seed)
    img = rng.normal(0.0, 1.0, shape)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    for y, x in rng.uniform((0, 0), shape, (80, 2)):
        img += 20.0 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 3.0)
    img = np.round(img, 1)  # many equal values: ties decide peaks at band edges too
    img[100:103] = 0.0
    img[:, 50] = 0.0
    img[400:410, 100:110] = 7.0  # a plateau
    return img


@pytest.mark.parametrize("box", [11, 5, 4])
@pytest.mark.parametrize("band", [7, 64, 1000])
@pytest.mark.parametrize("with_mask", [False, True])
def test_band_peaks_equal_find_peaks(box, band, with_mask):
    """``band_peaks`` (bands narrower, wider and taller than the box) returns photutils'
    whole-image ``find_peaks`` positions, in the same order."""
    img = _peak_image()
    mask = None
    if with_mask:
        mask = np.zeros(img.shape, bool)
        mask[:30] = True
        mask[250:380, 60:200] = True
    want = find_peaks(img, threshold=0.0, box_size=box, mask=mask)
    got = band_peaks(lambda lo, hi: img[lo:hi], img.shape, box, mask=mask, band=band)
    assert want is not None and got is not None
    assert np.array_equal(got[0], np.asarray(want["x_peak"]))
    assert np.array_equal(got[1], np.asarray(want["y_peak"]))


def test_band_peaks_none_and_nan():
    """Constant data gives None as find_peaks does; NaN is refused."""
    flat = np.full((50, 20), 3.0)
    with pytest.warns(NoDetectionsWarning):
        assert find_peaks(flat, threshold=0.0, box_size=5) is None
    assert band_peaks(lambda lo, hi: flat[lo:hi], flat.shape, 5, band=8) is None
    bad = _peak_image()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        band_peaks(lambda lo, hi: bad[lo:hi], bad.shape, 5)


def _psf_sources_whole(region, footprint, fwhm, params):
    """HAP's PSF path as before the banding: whole-image deconvolution, photutils find_peaks
    (twice) and DAOStarFinder on whole images (the reference)."""
    box = params.region_size
    dec = point.deconvolve(region, fwhm, params)
    dec *= ndimage.binary_erosion(footprint, iterations=box)
    peaks = find_peaks(dec, threshold=0.0, mask=~footprint, box_size=box)
    half = box // 2
    near = np.zeros(region.shape, dtype=bool)
    for x, y in zip(np.asarray(peaks["x_peak"]), np.asarray(peaks["y_peak"]), strict=True):
        near[max(0, y - half):y + half + 1, max(0, x - half):x + half + 1] = True
    region[~near] = 0.0
    peaks = find_peaks(region, threshold=0.0, box_size=half)
    finder = DAOStarFinder(threshold=1e-10, fwhm=fwhm, sharpness_range=point.PSF_SHARPNESS,
                           xycoords=np.column_stack([peaks["x_peak"], peaks["y_peak"]]))
    found = finder(region, mask=~footprint)
    return np.asarray(found["x_centroid"]), np.asarray(found["y_centroid"])


@pytest.mark.parametrize(("block_size", "band"), [(1024, 512), (96, 512), (1024, 40)])
def test_psf_sources_equal_whole_image_path(field, block_size, band):
    """The PSF path with the region made on demand, the deconvolution made block row by block
    row, banded peak searches and DAOFIND measured band by band finds the same sources
    (bit-identical centroids, same order) as the whole-image deconvolution with photutils'
    find_peaks and DAOStarFinder; with small blocks and bands many block rows and band edges
    cross the sources."""
    params = replace(CatalogParams.for_detector("acs_wfc"), block_size=block_size)
    fp = footprint_mask(field.total, params)
    bkg = compute_background(field.total, params, fp)
    regions = weight_regions(field.total, bkg.rms, params, fp)
    fwhm = params.fwhmpsf / field.total.pixel_scale
    n = 0
    for reg in regions:
        region = point._detection_image(field.total, bkg)
        region -= params.nsigma * reg.noise
        region[~reg.mask] = 0.0
        np.clip(region, 0.0, None, out=region)
        want = _psf_sources_whole(region.copy(), fp, fwhm, params)
        rows = point._region_rows(field.total, bkg, reg, params.nsigma * reg.noise)
        assert np.array_equal(rows(0, region.shape[0]), region)
        got = point._psf_sources(rows, region.shape, fp, fwhm, params, band=band)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
        n += got[0].size
    assert n > 50


def test_above_threshold_same_segmentation():
    """``detect_sources`` on ``above_threshold``'s pixels (0/1, threshold 0) makes the
    segmentation image of ``detect_sources(conv, threshold_image(...), mask=~footprint)``."""
    rng = np.random.default_rng(1)
    conv = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (700, 300)), 1.5) * 4
    fp = np.ones(conv.shape, bool)
    fp[:20] = False
    fp[:, -15:] = False
    inner = np.zeros(conv.shape, bool)
    inner[100:400] = True
    regions = [WeightRegion(inner & fp, 0.5, 0.8), WeightRegion(fp & ~inner, 0.25, 1.2)]
    want = detect_sources(conv, threshold_image(regions, 1.5, conv.shape), n_pixels=5,
                          mask=~fp)
    above = above_threshold(conv, regions, 1.5, fp, band=64)
    got = detect_sources(above.view(np.uint8), 0, n_pixels=5)
    assert want.n_labels > 20
    assert np.array_equal(got.data, want.data)
    # hapdask's detect_sources of those pixels: photutils' segmentation image, labels, boxes
    ours = segment.detect_above(above, 5)
    assert ours.data.dtype == want.data.dtype and np.array_equal(ours.data, want.data)
    assert np.array_equal(ours.labels, want.labels) and ours.slices == want.slices
    assert np.array_equal(ours.areas, want.areas)
    with pytest.warns(NoDetectionsWarning):
        assert segment.detect_above(np.zeros((40, 30), bool), 5) is None


def _blended_pairs(seed: int):
    """Blended pairs of sources on noise and photutils' segmentation of them."""
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.normal(0.0, 1.0, (400, 500)), 1.5)
    yy, xx = np.mgrid[:400, :500]
    for _ in range(25):
        x, y = rng.uniform(10, 490), rng.uniform(10, 390)
        for dx in (0.0, rng.uniform(4, 9)):
            img += rng.uniform(0.5, 3) * np.exp(-((xx - x - dx) ** 2 + (yy - y) ** 2)
                                                / (2 * rng.uniform(1.2, 3) ** 2))
    return img, detect_sources(img, 0.2, n_pixels=6)


def _assert_same_deblend(got, want):
    assert np.array_equal(got.data, want.data) and np.array_equal(got.labels, want.labels)
    assert got._deblend_label_map.keys() == want._deblend_label_map.keys()
    for key, value in want._deblend_label_map.items():
        assert np.array_equal(got._deblend_label_map[key], value)


@pytest.mark.parametrize("seed", [0, 1])
def test_deblend_relabel_equals_photutils(seed):
    """``deblend_sources(..., relabel=False)`` then :func:`segment._relabel_consecutive` gives
    photutils' ``relabel=True`` segmentation image, labels and deblended-label map (blended
    pairs of sources on noise, most segments too small to deblend)."""
    img, segm = _blended_pairs(seed)
    labels = segm.labels[segm.areas >= 121]
    want = deblend_sources(img, segm, n_pixels=6, labels=labels, n_levels=64,
                           contrast=0.001, progress_bar=False)
    got = deblend_sources(img, segm, n_pixels=6, labels=labels, n_levels=64, contrast=0.001,
                          relabel=False, progress_bar=False)
    segment._relabel_consecutive(got)
    assert len(want._deblend_label_map) > 5 and want.n_labels > segm.n_labels
    _assert_same_deblend(got, want)


def test_deblend_without_photutils_private_relabel_helper(monkeypatch):
    """A photutils without ``_update_deblend_label_map`` (private): the deblending relabels
    itself and gives photutils' own ``deblend_sources`` result."""
    img, segm = _blended_pairs(0)
    params = CatalogParams(kernel_size=11)
    labels = segm.labels[segm.areas >= params.kernel_size ** 2]
    want = deblend_sources(img, segm, n_pixels=params.source_box, labels=labels,
                           n_levels=params.nlevels, contrast=params.contrast,
                           progress_bar=False)
    _assert_same_deblend(segment._deblend(img, segm, params), want)
    monkeypatch.setattr(segment, "_update_deblend_label_map", None)
    _assert_same_deblend(segment._deblend(img, segm, params), want)


@pytest.mark.parametrize("size", [11, 4])
def test_max_filtered_equals_scipy(size):
    """Banded ``max_filtered`` equals ``maximum_filter(nan_to_num(wht))`` (native and
    big-endian input, NaN included)."""
    rng = np.random.default_rng(2)
    wht = rng.uniform(0.0, 5.0, (700, 300)).astype(np.float32)
    wht[5, 5] = np.nan
    wht[650:, :10] = np.nan
    want = ndimage.maximum_filter(np.nan_to_num(wht), size=size)
    assert np.array_equal(max_filtered(wht, size, band=64), want)
    assert np.array_equal(max_filtered(wht.astype(">f4"), size, band=100), want)


@pytest.mark.parametrize("workers", [1, 3])
def test_convolve_bands_equals_astropy(workers):
    """Banded (and threaded) convolution equals astropy's whole-image ``convolve`` for the
    segmentation's Gaussian and Ricker kernels; ``after_band`` runs once per band."""
    rng = np.random.default_rng(4)
    img = rng.normal(0.0, 1.0, (900, 400))
    img[:30] = 0.0
    calls = []
    for kernel in (make_2dgaussian_kernel(3.2, size=11).array,
                   RickerWavelet2DKernel(2.0, x_size=15, y_size=15).array):
        want = convolve(img, kernel, normalize_kernel=False, boundary="extend")
        got = segment.convolve_bands(img, kernel, band=64, workers=workers,
                                     after_band=lambda: calls.append(1))
        assert np.array_equal(got, want)
    assert len(calls) == 2 * 15  # ceil(900 / 64) bands per kernel


def test_convolve_extend_equals_astropy():
    """The compiled convolution gives astropy's values bit for bit: asymmetric kernels (the
    flip), images narrower and shorter than the kernel (edge padding on both axes), heavy-tailed
    values (any change of summation order would show), a row range of the whole result, and an
    image holding NaN (astropy's interpolation, by astropy)."""
    rng = np.random.default_rng(11)
    for shape, ksize in (((300, 1500), (11, 11)), ((7, 5), (9, 13)), ((40, 33), (3, 1))):
        img = rng.normal(0.0, 1.0, shape) * rng.random(shape) ** 6 * 1e3
        kernel = rng.random(ksize) - 0.3
        want = convolve(img, kernel, normalize_kernel=False, boundary="extend")
        assert np.array_equal(segment.convolve_extend(img, kernel), want)
        r0, r1 = shape[0] // 3, shape[0] - 1
        assert np.array_equal(segment.convolve_extend(img, kernel, rows=(r0, r1)),
                              want[r0:r1])
    img[3, 4] = np.nan
    want = convolve(img, kernel, normalize_kernel=False, boundary="extend")
    assert np.array_equal(segment.convolve_extend(img, kernel), want, equal_nan=True)


@pytest.mark.parametrize("spill", [False, True])
def test_segmentation_image_values(field, tmp_path, spill):
    """The segmentation's detection image, made band by band (and written to a file band by
    band), is SCI (NaN as 0) minus the background, 0 outside the footprint, float64."""
    params = CatalogParams.for_detector("acs_wfc")
    total = replace(field.total, sci=field.total.sci.astype(np.float32))
    total.sci[7, 9] = np.nan
    fp = footprint_mask(field.total, params)
    bkg = compute_background(total, params, fp)
    got, maps = segment.segmentation_image(total, bkg, fp, spill=tmp_path if spill else None,
                                           band=37)
    want = np.where(fp, np.nan_to_num(total.sci.astype(np.float64)) - bkg.background, 0.0)
    assert got.dtype == np.float64 and len(maps) == int(spill)
    assert np.array_equal(got, want)


def test_measure_segments_own_sci(field, field_catalogs):
    """``own_sci=True`` (SCI float64 without NaN, subtracted in place) gives the catalog of
    the copying default."""
    params = CatalogParams.for_detector("acs_wfc")
    seg = field_catalogs.segmentation
    for fname, prod in field.filters.items():
        fbkg = compute_background(prod, params)
        want = segment.measure_segments(prod, seg, fbkg, params)
        owned = replace(prod, sci=np.nan_to_num(prod.sci.astype(np.float64)))
        got = segment.measure_segments(owned, seg, fbkg, params, own_sci=True)
        for name in want.colnames:
            assert np.array_equal(np.asarray(got[name]), np.asarray(want[name]),
                                  equal_nan=True), (fname, name)
        with pytest.raises(ValueError, match="own_sci"):
            segment.measure_segments(prod.__class__(prod.sci.astype(np.float32), prod.wht,
                                                    prod.wcs, prod.header), seg, fbkg, params,
                                     own_sci=True)


@pytest.mark.parametrize("rms_kind", ["broadcast", "map"])
def test_region_noise_equals_gathered(rms_kind):
    """A weight region's noise without gathering the region equals the gathered expression
    ``nanmedian(rms[mask] * sqrt(1 / rel[mask].max()))`` bit for bit (float32 weights, a
    constant broadcast rms and a per-pixel one; odd and even pixel counts)."""
    rng = np.random.default_rng(7)
    rel = rng.uniform(0.0, 1.0, (700, 300)).astype(np.float32)
    rms = (np.broadcast_to(np.float64(0.0123456789), rel.shape) if rms_kind == "broadcast"
           else rng.uniform(0.01, 0.02, rel.shape))
    for frac in (0.3, 0.7):
        mask = rng.uniform(size=rel.shape) < frac
        mask[600:] = False  # bands without any pixel
        for extra in (False, True):  # change the parity of the count
            mask[0, 0] = extra
            want = float(np.nanmedian(rms[mask] * np.sqrt(1.0 / rel[mask].max())))
            got = background._region_noise(rms, rel, mask)
            assert got == want
            assert background._masked_max(rel, mask) == rel[mask].max()


@pytest.mark.parametrize("gain", [1.0, 850.0, 0.0])
@pytest.mark.parametrize("rms_kind", ["broadcast", "map"])
def test_segment_flux_err_equals_photutils(gain, rms_kind):
    """FluxSegmentErr from the segments' pixels equals photutils' ``segment_flux_err`` with the
    whole-image ``calc_total_error`` (the oracle), bit for bit (negative pixels included)."""
    rng = np.random.default_rng(8)
    data = rng.normal(0.0, 1.0, (120, 140))
    yy, xx = np.mgrid[:120, :140]
    for y0, x0, a in ((30, 40, 40.0), (80, 100, 25.0), (60, 20, 60.0), (100, 60, 15.0)):
        data += a * np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / 18.0)
    segm = detect_sources(data, 4.0, n_pixels=5)
    rms = (np.broadcast_to(np.float64(0.9), data.shape) if rms_kind == "broadcast"
           else rng.uniform(0.5, 1.5, data.shape))
    with np.errstate(divide="ignore", invalid="ignore"):
        want = SourceCatalog(data, segm, error=calc_total_error(data, rms, gain)).segment_flux_err
    cat = SourceCatalog(data, segm)
    got = segment.segment_flux_err(data, rms, gain, segm, cat.labels, cat.slices)
    assert segm.n_labels >= 4
    assert np.array_equal(got, np.asarray(want))


def test_deconvolution_block_padding():
    """The deconvolution's blocks (block + margins, e.g. 100 + 22 = 2 x 61) are transformed at
    a 2-3-5-smooth size: the deconvolved image equals the one at the blocks' own size (the
    margins' periodic wrap, reference computed here) up to a small fraction of its peaks, and
    recovers point sources blurred by the PSF at their pixels."""
    params = replace(CatalogParams.for_detector("acs_wfc"), block_size=100)
    n0 = params.block_size + 2 * params.region_size
    n = point._block_fft_size(params)
    assert n >= n0 and n != n0
    m = n
    for f in (2, 3, 5):
        while m % f == 0:
            m //= f
    assert m == 1
    fwhm = 3.0
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    yy, xx = np.mgrid[0:230, 0:210]
    stars = [(40.0, 50.0, 5.0), (121.0, 77.0, 3.0), (180.0, 160.0, 8.0)]
    image = sum(a * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))
                for y, x, a in stars)
    got = point.deconvolve(image, fwhm, params)
    for y, x, _ in stars:
        cut = got[int(y) - 5:int(y) + 6, int(x) - 5:int(x) + 6]
        assert np.unravel_index(np.argmax(cut), cut.shape) == (5, 5)
    # reference: the same filter (alpha from the n0 grid) at the blocks' own size n0
    ky, kx = np.fft.fftfreq(n0)[:, None], np.fft.rfftfreq(n0)[None, :]
    psf_t = np.exp(-2.0 * (np.pi * sigma) ** 2 * (kx * kx + ky * ky))
    f0 = np.fft.fftfreq(n0)
    full = np.exp(-2.0 * (np.pi * sigma) ** 2 * (f0[None, :] ** 2 + f0[:, None] ** 2))
    alpha = np.sort(full.ravel())[::-1][int(full.size * params.freq_limit)]
    filt = psf_t / (psf_t * psf_t + alpha * alpha)
    want = np.zeros_like(image)
    b, g = params.block_size, params.region_size
    for y0 in range(0, image.shape[0], b):
        for x0 in range(0, image.shape[1], b):
            ys, xs = max(0, y0 - g), max(0, x0 - g)
            src = image[ys:y0 + b + g, xs:x0 + b + g]
            block = np.zeros((n0, n0))
            block[:src.shape[0], :src.shape[1]] = src
            dec = np.fft.irfft2(np.fft.rfft2(block) * filt, s=(n0, n0))
            h, w = min(b, image.shape[0] - y0), min(b, image.shape[1] - x0)
            want[y0:y0 + h, x0:x0 + w] = dec[y0 - ys:y0 - ys + h, x0 - xs:x0 - xs + w]
    want[image <= 0] = 0.0
    assert np.abs(got - want).max() < 5e-3 * np.abs(want).max()  # 1.2e-3 measured
