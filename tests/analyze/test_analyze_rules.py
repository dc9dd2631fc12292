"""hapdask.analyze: the SVM/MVM exclusion rules of inventory section 1.5."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from hapdask.analyze import RULES, Verdict, analyze_exposure, analyze_header, analyze_table
from hapdask.io import open_exposure, read_poller

BASE = {
    "WFC3": {"INSTRUME": "WFC3", "DETECTOR": "UVIS", "FILTER": "F606W", "SCAN_TYP": "N",
             "CHINJECT": "NONE"},
    "ACS": {"INSTRUME": "ACS", "DETECTOR": "WFC", "FILTER1": "F606W", "FILTER2": "CLEAR2L"},
    "WFPC2": {"INSTRUME": "WFPC2", "FILTNAM1": "F606W", "FILTNAM2": "", "IMAGETYP": "EXT",
              "MTFLAG": False},
}  # fmt: skip
COMMON = {
    "OBSTYPE": "IMAGING",
    "MTFLAG": "",
    "DRIZCORR": "PERFORM",
    "TARGNAME": "NGC104",
    "EXPTIME": 100.0,
    "FGSLOCK": "FINE",
    "ROOTNAME": "ixxx01aaq",
}


def _make(tmp_path, name="ixxx01aaq_flt.fits", instrument="WFC3", sci=None, **overrides):
    hdr = fits.Header()
    values = {**COMMON, **BASE[instrument], **overrides}
    if instrument == "WFPC2":
        values.pop("OBSTYPE")
    for key, value in values.items():
        if value is not None:
            hdr[key] = value
    data = np.ones((8, 8), np.float32) if sci is None else sci
    sci_hdu = fits.ImageHDU(data, name="SCI", ver=1)
    sci_hdu.header["BUNIT"] = "ELECTRONS"
    path = tmp_path / name
    fits.HDUList([fits.PrimaryHDU(header=hdr), sci_hdu]).writeto(path, overwrite=True)
    return path


CASES = [
    # (instrument, overrides, mode, keep, rule)
    ("WFC3", {}, "mvm", True, "keep"),
    ("WFC3", {}, "svm", True, "keep"),
    ("ACS", {"OBSTYPE": "CORONAGRAPHIC"}, "mvm", False, "1"),
    ("WFPC2", {"IMAGETYP": "FLAT", "TARGNAME": "INTFLAT"}, "svm", False, "1"),
    ("WFC3", {"DRIZCORR": "OMIT"}, "svm", False, "2"),
    ("ACS", {"DRIZCORR": "SKIPPED"}, "mvm", False, "2"),
    ("WFC3", {"MTFLAG": "T"}, "mvm", False, "3"),
    ("WFPC2", {"MTFLAG": True}, "mvm", False, "3"),
    ("WFC3", {"SCAN_TYP": "C"}, "svm", False, "4"),
    ("WFC3", {"SCAN_TYP": "D"}, "mvm", False, "4"),
    ("ACS", {"TARGNAME": "DARK"}, "mvm", False, "5"),
    ("WFC3", {"TARGNAME": "TUNGSTEN"}, "svm", False, "5"),
    ("ACS", {"TARGNAME": "EARTH-CALIB"}, "svm", False, "5"),
    ("WFPC2", {"TARGNAME": "DARK"}, "mvm", True, "keep"),  # rule 5 is not for WFPC2
    ("WFC3", {"EXPTIME": 0.0}, "mvm", False, "7"),
    ("ACS", {"EXPTIME": 5e-6}, "svm", False, "7"),
    ("WFC3", {"CHINJECT": "CONT"}, "mvm", False, "9"),
    ("WFC3", {"DETECTOR": "IR", "CHINJECT": "CONT"}, "mvm", True, "keep"),  # UVIS only
    ("WFC3", {"FILTER": "G280"}, "mvm", False, "F1"),
    ("WFC3", {"FILTER": "G141", "DETECTOR": "IR"}, "svm", True, "keep"),
    ("ACS", {"FILTER1": "PR110L", "DETECTOR": "SBC"}, "mvm", False, "F1"),
    ("WFC3", {"FILTER": "G280", "MTFLAG": "T"}, "svm", True, "keep"),  # F1 un-rejects in SVM
    ("WFC3", {"FILTER": "G280", "EXPTIME": 0.0}, "svm", False, "7"),
    ("ACS", {"FILTER1": "BLOCK1", "DETECTOR": "SBC"}, "svm", False, "F2"),
    ("ACS", {"FILTER1": "BLOCK2", "FILTER2": "N/A", "DETECTOR": "SBC"}, "mvm", False, "F2"),
    ("ACS", {"FILTER1": "CLEAR1L", "FILTER2": "FR656N"}, "mvm", False, "F3"),
    ("ACS", {"FILTER1": "CLEAR1L", "FILTER2": "FR656N"}, "svm", True, "keep"),
    ("WFC3", {"FILTER": "FQ508N"}, "mvm", True, "keep"),  # MVM rejects FR, not FQ
    ("WFC3", {"QUALITY": "GSFAIL"}, "mvm", False, "G"),
    ("WFC3", {"QUALITY": "TDF-DOWN AT EXPSTART"}, "mvm", False, "G"),
    ("WFC3", {"QUALITY": "GSFAIL"}, "svm", True, "keep"),  # guiding test is MVM only
]


@pytest.mark.parametrize("instrument,overrides,mode,keep,rule", CASES)
def test_analyze_each_rule(tmp_path, instrument, overrides, mode, keep, rule):
    path = _make(tmp_path, instrument=instrument, **overrides)
    v = analyze_exposure(path, mode)
    assert isinstance(v, Verdict)
    assert (v.keep, v.rule) == (keep, rule), v
    assert rule in RULES or rule == "keep"
    if not keep:
        assert v.reason


def test_analyze_fgslock_warns_and_shadows_chinject(tmp_path):
    v = analyze_exposure(_make(tmp_path, FGSLOCK="FINE/GYRO"), "mvm")
    assert v.keep and v.rule == "keep"
    assert any("FGSLOCK=FINE/GYRO" in w for w in v.warnings)
    # rule 8 precedes rule 9 in the chain: CHINJECT is never tested (drizzlepac quirk)
    v = analyze_exposure(_make(tmp_path, FGSLOCK="GYROS", CHINJECT="CONT"), "svm")
    assert v.keep and any("GYROS" in w for w in v.warnings)
    v = analyze_exposure(_make(tmp_path, FGSLOCK="COARSE"), "svm")
    assert v.keep and any("COARSE" in w for w in v.warnings)
    assert not analyze_exposure(_make(tmp_path), "svm").warnings


def test_analyze_all_zero_data(tmp_path):
    zero = np.zeros((600, 40), np.float32)
    v = analyze_exposure(_make(tmp_path, sci=zero), "mvm")
    assert (v.keep, v.rule, v.reason) == (False, "Z", "SCI data all zeros")
    assert analyze_exposure(_make(tmp_path, sci=zero), "svm").rule == "Z"
    # one non-zero pixel at the very end (after several read blocks) is enough
    last = zero.copy()
    last[-1, -1] = 1e-3
    assert analyze_exposure(_make(tmp_path, sci=last), "mvm").keep
    nan = zero.copy()
    nan[300, 3] = np.nan
    assert analyze_exposure(_make(tmp_path, sci=nan), "mvm").keep
    # Z is only reached when no other rule matched; FGSLOCK warning skips it (drizzlepac)
    assert analyze_exposure(_make(tmp_path, sci=zero, MTFLAG="T"), "mvm").rule == "3"
    assert analyze_exposure(_make(tmp_path, sci=zero, FGSLOCK="GYROS"), "mvm").keep
    # and it can be switched off
    assert analyze_exposure(_make(tmp_path, sci=zero), "mvm", check_data=False).keep


def test_analyze_real_all_zero_exposure(shared_data):
    """j94f05bgq has zero pixels: rejected by Z; missing keywords only warn."""
    v = analyze_exposure(shared_data / "real/j94f05bgq_flt.fits.gz", "mvm")
    assert (v.keep, v.rule) == (False, "Z")
    assert any(w.startswith("OBSTYPE missing") for w in v.warnings)
    v = analyze_exposure(shared_data / "real/j8bt06nyq_flt.fits", "mvm")
    assert v.keep
    v = analyze_exposure(shared_data / "headers/sample_svm_flc.fits", "svm")
    assert (v.keep, v.rule, v.warnings) == (True, "keep", [])


def test_analyze_small_detectors(tmp_path):
    path = _make(tmp_path, instrument="ACS", DETECTOR="HRC")
    assert analyze_exposure(path, "mvm").keep
    v = analyze_exposure(path, "mvm", include_small=False)
    assert (v.keep, v.rule) == (False, "S")
    assert analyze_exposure(path, "svm", include_small=False).keep


def test_analyze_header_errors():
    with pytest.raises(ValueError, match="mode must be"):
        analyze_header({"INSTRUME": "ACS", "EXPTIME": 1.0}, "xyz")
    with pytest.raises(ValueError, match=r"f\.fits: primary header: keyword EXPTIME"):
        analyze_header({"INSTRUME": "ACS"}, "mvm", name="f.fits")
    with pytest.raises(ValueError, match="keyword INSTRUME"):
        analyze_header({"EXPTIME": 1.0}, "mvm")


# -- the j97e06 visit: direct images and G800L grism frames --------------------------------


def _poller_exposures(tmp_path, shared_data, grism_obstype):
    table = read_poller(shared_data / "pollers/acs_97e_06_input.out")
    paths = []
    for row in table:
        local = shared_data / "pollers" / row["filename"]
        if local.exists():  # pragma: no cover - the real FITS files are not shipped here
            paths.append(local)
            continue
        f1, f2 = row["filters"].split(";")
        grism = "G800L" in (f1, f2)
        paths.append(
            _make(
                tmp_path,
                name=row["filename"],
                instrument="ACS",
                DETECTOR=row["detector"],
                FILTER1=f1,
                FILTER2=f2,
                EXPTIME=float(row["exptime"]),
                PROPOSID=int(row["proposal_id"]),
                ROOTNAME=row["filename"][:9],
                OBSTYPE=grism_obstype if grism else "IMAGING",
            )
        )
    return table, paths


@pytest.mark.parametrize("grism_obstype", ["SPECTROSCOPIC", "IMAGING"])
def test_analyze_acs_97e_06_poller(tmp_path, shared_data, grism_obstype):
    table, paths = _poller_exposures(tmp_path, shared_data, grism_obstype)
    is_grism = np.array(["G800L" in f for f in table["filters"]])
    assert is_grism.sum() == 6

    svm = analyze_table(paths, "svm")
    assert svm.meta["mode"] == "svm"
    assert list(svm["file"]) == list(table["filename"])
    # SVM: every frame is kept; the grism frames (EXPTIME 45 s > 0) only for their WCS
    assert all(svm["keep"])
    for row, grism in zip(svm, is_grism, strict=True):
        assert ("grism/prism exposure" in row["warnings"]) == grism

    mvm = analyze_table(paths, "mvm")
    assert list(mvm["keep"]) == list(~is_grism)
    rejected = mvm[~mvm["keep"]]
    expected_rule = "1" if grism_obstype == "SPECTROSCOPIC" else "F1"
    assert set(rejected["rule"]) == {expected_rule}
    assert all("Grism/Prism data and MVM processing" in r for r in rejected["reason"])
    kept = mvm[mvm["keep"]]
    assert sorted(set(kept["filter"])) == ["f555w", "f606w", "f625w", "f775w", "f814w", "f850lp"]


def test_analyze_table_accepts_exposures_and_empty(shared_data):
    exp = open_exposure(shared_data / "real/j8bt06nyq_flt.fits")
    t = analyze_table([exp], "svm")
    assert t.colnames == [
        "file", "rootname", "instrument", "detector", "filter", "exptime",
        "keep", "rule", "reason", "warnings",
    ]  # fmt: skip
    assert t[0]["rootname"] == "j8bt06nyq" and t[0]["keep"]
    assert len(analyze_table([], "mvm")) == 0


def test_analyze_zero_test_stops_at_first_nonzero_block(tmp_path, monkeypatch):
    from hapdask.io.exposure import Chip

    calls = []
    original = Chip._read_one

    def counting(self, hdul, spec, region):
        calls.append(region)
        return original(self, hdul, spec, region)

    monkeypatch.setattr(Chip, "_read_one", counting)
    data = np.zeros((2000, 64), np.float32)
    data[10, 5] = 3.0
    # SVM: no guiding test, so the all-zero test is the only pixel reader
    assert analyze_exposure(_make(tmp_path, sci=data), "svm").keep
    assert calls == [(0, 256, 0, 64)]  # one block of 256 rows, then stop
    calls.clear()
    data[:] = 0
    data[1999, 0] = 1.0
    assert analyze_exposure(_make(tmp_path, sci=data), "svm").keep
    assert len(calls) == 8 and calls[-1] == (1792, 2000, 0, 64)


# -- rule G: the guiding trail detector ------------------------------------------------------


def _star_field(seed, trail=0.0, angle=30.0, n=60, shape=(320, 320)):
    """Gaussian stars (sigma 1.5 px) on a noisy sky, optionally smeared into parallel trails."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    img = np.zeros(shape)
    ys = rng.uniform(15, shape[0] - 15, n)
    xs = rng.uniform(15, shape[1] - 15, n)
    flux = rng.uniform(3e3, 4e4, n)
    steps = np.linspace(-trail / 2, trail / 2, max(1, int(trail * 2)))
    for y, x, f in zip(ys, xs, flux, strict=True):
        yy = np.clip(y + steps * np.sin(np.deg2rad(angle)), 0, shape[0] - 1).astype(int)
        xx = np.clip(x + steps * np.cos(np.deg2rad(angle)), 0, shape[1] - 1).astype(int)
        np.add.at(img, (yy, xx), f / steps.size)
    img = ndimage.gaussian_filter(img, 1.5)
    return (img + 100 + rng.normal(0, 5, shape)).astype(np.float32)


def test_analyze_guiding_trails_detector():
    pytest.importorskip("skimage")
    from hapdask.analyze import guiding_trails

    bad, info = guiding_trails(_star_field(1))
    assert not bad and info["sources"] > 40 and info["lines"] == 0
    bad, info = guiding_trails(_star_field(2, trail=60, angle=30))
    assert bad and info["peak"] > info["limit"] and info["lines"] >= 4
    bad, _ = guiding_trails(_star_field(3, trail=60, angle=-70))
    assert bad
    # trails along the columns look like bleeding/CTE and are ignored
    bad, info = guiding_trails(_star_field(4, trail=60, angle=90))
    assert not bad and info["vertical"] == info["lines"] > 0
    # per-second data give the same verdict once scaled back to counts
    rate = _star_field(2, trail=60, angle=30) / np.float32(500.0)
    assert guiding_trails(rate, rate=True, exptime=500.0)[0]
    # flagged pixels (other than 256/512/1024/2048/4096) are ignored: masking the trails
    field = _star_field(2, trail=60, angle=30)
    dq = np.where(field > 130, 16, 0).astype(np.uint16)
    assert not guiding_trails(field, dq)[0]
    assert guiding_trails(field, np.where(field > 130, 4096, 0).astype(np.uint16))[0]


def test_analyze_rule_g_in_mvm_only(tmp_path):
    pytest.importorskip("skimage")
    path = _make(tmp_path, sci=_star_field(5, trail=60, angle=20))
    v = analyze_exposure(path, "mvm")
    assert (v.keep, v.rule) == (False, "G")
    assert "guiding trails in SCI,1" in v.reason
    assert analyze_exposure(path, "svm").keep
    assert analyze_exposure(path, "mvm", check_data=False).keep
    assert analyze_exposure(_make(tmp_path, sci=_star_field(6)), "mvm").keep
