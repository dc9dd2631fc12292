"""Product-tree rules (inventory 2.1) and parameter-set choice (4.1, hap_parameters.md) on
hand-made exposure lists (no files)."""

from __future__ import annotations

import pytest

from hapdask.svm.params import level_key, svm_drizzle_params
from hapdask.svm.products import ExposureItem, build_detector, manifest_name


def _item(root, filt, flc=True, exptime=100.0, kind="direct", det="UVIS"):
    return ExposureItem(f"/x/{root}_{'flc' if flc else 'flt'}.fits", root, "WFC3", det, filt,
                        exptime, 57000.0, 1e-19, flc, kind, 1)


def test_drc_drz_rule_and_flipped_non_members():
    d = build_detector("wfc3", "uvis", "hst_1_01_wfc3_uvis", [
        _item("ib4606c5q", "f555w"), _item("ib4606c6q", "f555w", flc=False),
        _item("ib4606c7q", "f814w", flc=False), _item("ib4606c8q", "f814w", flc=False)])
    f555, f814 = d.filters
    assert f555.suffix == "drc" and [e.rootname for e in f555.exposures] == ["ib4606c5q"]
    assert [e.drizzle_name for e in f555.extra] == ["hst_1_01_wfc3_uvis_f555w_ib4606c6_drz.fits"]
    assert f814.suffix == "drz" and f814.drizzle_name == "hst_1_01_wfc3_uvis_f814w_ib4606_drz.fits"
    assert d.drizzle_name == "hst_1_01_wfc3_uvis_total_ib4606_drc.fits"
    # single-exposure filters stay out of the total when another filter has two
    assert [f.filter for f in d.total_filters] == ["f814w"]


def test_all_singletons_ramps_and_grisms():
    d = build_detector("wfc3", "uvis", "hst_1_01_wfc3_uvis", [
        _item("ib4606c5q", "f555w"), _item("ib4606c6q", "f814w"),
        _item("ib4606c7q", "fr388n", kind="ramp"), _item("ib4606c8q", "g280", kind="grism"),
        _item("ib4606c9q", "fq508n", kind="ramp")])
    assert [f.filter for f in d.total_filters] == ["f555w", "f814w"]
    assert sorted(e.rootname for e in d.ramps) == ["ib4606c7q", "ib4606c9q"]
    assert [e.rootname for e in d.grisms] == ["ib4606c8q"]
    assert "ib4606c7q" in [e.rootname for e in d.all_exposures]
    assert build_detector("wfc3", "uvis", "p", [_item("ib4606c8q", "g280", kind="grism")]) is None


def test_hap_order_exptime_then_photflam():
    items = [_item("ib4606c5q", "f555w", exptime=300.0), _item("ib4606c6q", "f555w",
                                                               exptime=100.0)]
    d = build_detector("wfc3", "uvis", "p", items)
    assert [e.rootname for e in d.filters[0].exposures] == ["ib4606c6q", "ib4606c5q"]


def test_ir_is_always_drz():
    d = build_detector("wfc3", "ir", "p", [_item("ib4606c5q", "f160w", flc=True, det="IR"),
                                           _item("ib4606c6q", "f160w", flc=True, det="IR")])
    assert d.suffix == "drz"


def test_exposure_kinds():
    from hapdask.svm.planning import exposure_kind

    assert exposure_kind("G280", "g280") == "grism"
    assert exposure_kind("CLEAR1L;PR200L", "pr200l") == "grism"
    assert exposure_kind("FQ508N", "fq508n") == "ramp"
    assert exposure_kind("FR388N", "fr388n") == "ramp"
    assert exposure_kind("F606W;POL60V", "f606w-pol60v") == "direct"


def test_manifest_name():
    assert manifest_name("wfc3", "ib4606c5q", "06") == "wfc3_b46_06_manifest.txt"


@pytest.mark.parametrize("det, level, n, mjd, key, pixfrac, bits, sky_bits, cr", [
    ("wfc3_uvis", "filter", 2, 58000.0, "filter_post_n2", 1.0, 336, 80, True),
    ("wfc3_uvis", "filter", 6, 56000.0, "filter_pre_n6", 0.8, 352, 96, True),
    ("wfc3_uvis", "total", 3, 56000.0, "total_pre", 1.0, 96, 16, False),
    ("wfc3_uvis", "filter", 1, 58000.0, "filter_n1", 1.0, 65535, 80, False),
    ("wfc3_ir", "filter", 3, None, "filter_n2", 1.0, 528, 16, True),
    ("wfc3_ir", "filter", 4, None, "filter_n4", 1.0, 528, 16, True),
    ("acs_wfc", "filter", 6, None, "filter_n6", 0.8, 336, 80, True),
    ("acs_wfc", "total", 4, None, "total", 1.0, 336, 16, False),
    ("acs_wfc", "exposure", 2, None, "single", 1.0, 65535, 0, False),
])
def test_parameter_sets(det, level, n, mjd, key, pixfrac, bits, sky_bits, cr):
    """Values from ../shared/design/hap_parameters.md (Appendix A) and inventory 4.2."""
    assert level_key(det, level, n, mjd) == key
    p = svm_drizzle_params(det, level, n, mjd)
    assert (p["final_pixfrac"], p["final_bits"], p["sky_bits"], p["driz_cr"]) == \
        (pixfrac, bits, sky_bits, cr)
    assert p["final_rot"] == 0.0 and p["final_units"] == "cps" and p["final_kernel"] == "square"
    # HAP's code override: resetbits 0 on exposure, total and single-exposure products
    assert p["resetbits"] == (4096 if level == "filter" and n >= 2 else 0)
    if level == "total" and n >= 2:
        assert p["final_fillval"] == 0.0


def test_unknown_detector_is_named():
    with pytest.raises(ValueError, match="acs_sbc"):
        svm_drizzle_params("acs_sbc", "filter", 2)
