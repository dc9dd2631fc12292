"""Memory-saving forms of the catalog step give the same numbers as the whole-image forms."""

from __future__ import annotations

import mmap
import weakref
from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import pytest
from photutils.utils import calc_total_error

from hapdask.catalogs import CatalogParams, assemble, detect_point_sources, make_catalogs, segment
from hapdask.catalogs.segment import total_error


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


def test_total_pixels_freed_before_filters(field, field_catalogs, monkeypatch):
    """Passed without a reference kept, the total's WHT is released before the detections and
    its SCI after them (before any filter product is looked up); the catalogs are those of the
    fixture."""
    params = CatalogParams.for_detector("acs_wfc")
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
    res = make_catalogs(args.pop(), lookup, params)
    assert wht_alive == [False]
    assert lookup.seen == [False] * len(field.filters)
    for got, want in ((res.point_total, field_catalogs.point_total),
                      (res.segment_total, field_catalogs.segment_total)):
        assert got.colnames == want.colnames and len(got) == len(want)
        for name in got.colnames:
            assert np.array_equal(np.asarray(got[name]), np.asarray(want[name]), equal_nan=True)


def test_spilled_detection_images_same_catalogs(field, field_catalogs, tmp_path, monkeypatch):
    """With ``scratch``, the segmentation's detection images are memory maps of unlinked files
    there (nothing is left in the directory) and every catalog is the in-memory run's."""
    spilled = []
    original = segment._spill

    def spill(array, directory):
        got, mm = original(array, directory)
        spilled.append((type(mm), got.shape, got.flags.owndata, directory))
        return got, mm

    monkeypatch.setattr(segment, "_spill", spill)
    res = make_catalogs(field.total, field.filters, CatalogParams.for_detector("acs_wfc"),
                        scratch=tmp_path)
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


def test_filter_catalogs_compute_nothing_on_spilled_detection(field, tmp_path):
    """With ``spill``, every detection property the filter catalogs take from the detection
    catalog (photutils' ``use_detcat``) is already in photutils' cache: measuring the filters
    adds nothing to it (so nothing reads the released detection images again), and the filter
    catalogs equal those of an in-memory detection."""
    from hapdask.catalogs.background import compute_background, footprint_mask, weight_regions
    from hapdask.catalogs.segment import detect_segments, measure_segments

    params = CatalogParams.for_detector("acs_wfc")
    fp = footprint_mask(field.total, params)
    bkg = compute_background(field.total, params, fp)
    regions = weight_regions(field.total, bkg.rms, params, fp)
    spilled = detect_segments(field.total, bkg, regions, fp, params, spill=tmp_path)
    plain = detect_segments(field.total, bkg, regions, fp, params)
    cached = set(vars(spilled.source_catalog))
    assert {"area", "kron_radius", "orientation"} <= cached  # photutils caches in the instance
    for prod in field.filters.values():
        fbkg = compute_background(prod, params)
        got = measure_segments(prod, spilled, fbkg, params)
        want = measure_segments(prod, plain, fbkg, params)
        for name in got.colnames:
            assert np.array_equal(np.asarray(got[name]), np.asarray(want[name]), equal_nan=True)
    assert set(vars(spilled.source_catalog)) == cached
