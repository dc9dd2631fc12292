"""Fidelity of a simulated --small set: headers, WCS, positions, counts, cosmic rays, pollers."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from photutils.centroids import centroid_2dg
from scipy import ndimage
from stwcs.wcsutil import HSTWCS

from hapdask.simulate import core, instruments, read_true_wcs, simulate_visits, sky, true_chip_wcs
from hapdask.testing import sky_pixel_area
from skycells import cells_for_footprint

CELL = "p1889x07y19"
DET_KEY = {"UVIS": "wfc3_uvis", "IR": "wfc3_ir", "WFC": "acs_wfc"}


@pytest.fixture(scope="module")
def simset(tmp_path_factory: pytest.TempPathFactory) -> core.SimulatedSet:
    out = tmp_path_factory.mktemp("sim") / "set"
    return simulate_visits(CELL, out, visits=4, small=True, seed=7)


def _chips(hdul: fits.HDUList) -> list[int]:
    return [h.ver for h in hdul if h.name == "SCI"]


def _det_filter(hdr: fits.Header) -> tuple[str, str]:
    det = DET_KEY[hdr["DETECTOR"]]
    if hdr["INSTRUME"] == "ACS":
        name = [f for f in (hdr["FILTER1"], hdr["FILTER2"]) if not f.startswith("CLEAR")][0]
    else:
        name = hdr["FILTER"]
    return det, name


_MODELS: dict = {}


def _model(simset, path: Path, ext: int, hdul: fits.HDUList):
    """Noise-free render of one chip with the TRUE WCS; returns (model e-, wcs, xy, catalog)."""
    key = (str(path), ext)
    if key not in _MODELS:
        _MODELS[key] = _model_uncached(simset, path, ext, hdul)
    return _MODELS[key]


def _model_uncached(simset, path: Path, ext: int, hdul: fits.HDUList):
    cat = simset.truth()
    prim = hdul[0].header
    det, filt = _det_filter(prim)
    w = true_chip_wcs(path, ext, simset.true_wcs_headers())
    epoch = 2000.0 + (prim["EXPSTART"] - 51544.5) / 365.25
    ra, dec = sky.positions_at_epoch(cat, epoch)
    ny, nx = hdul["SCI", ext].data.shape
    model = core._render_chip((ny, nx), w, cat, ra, dec, instruments.DETECTORS[det],
                              instruments.FILTERS[(det, filt)], prim["EXPTIME"],
                              float(hdul["SCI", ext].header["IDCSCALE"]))
    xy = w.all_world2pix(np.column_stack([ra, dec]), 0, tolerance=1e-9, quiet=True)
    return model, w, xy, cat


def _isolated_bright_stars(cat: Table, xy: np.ndarray, shape, mag_col: str, maglim: float,
                           edge: int = 9) -> np.ndarray:
    ny, nx = shape
    mag = np.asarray(cat[mag_col])
    inside = (xy[:, 0] > edge) & (xy[:, 0] < nx - 1 - edge) & (xy[:, 1] > edge) & (
        xy[:, 1] < ny - 1 - edge)
    good = []
    for k in np.flatnonzero(inside & (np.asarray(cat["type"]) == "star") & (mag < maglim)):
        d = np.hypot(*(xy - xy[k]).T)
        near = (d > 0) & (d < 12) & (mag < mag[k] + 6)
        if not near.any():
            good.append(k)
    return np.asarray(good, dtype=int)


def test_files_are_real_looking_mefs(simset):
    assert len(simset.exposures) == 18
    roots = set()
    for path in simset.exposures:
        assert path.is_file() and path.is_absolute()
        with fits.open(path) as hdul:
            p = hdul[0].header
            root = p["ROOTNAME"]
            assert re.fullmatch(r"[ij][0-9a-z]{3}[0-9a-z]{2}[0-9a-z]{2}q", root)
            assert path.name == f"{root}_{'flt' if p['DETECTOR'] == 'IR' else 'flc'}.fits"
            roots.add(root)
            for key in ("INSTRUME", "DETECTOR", "EXPTIME", "EXPSTART", "EXPEND", "DATE-OBS",
                        "TIME-OBS", "PROPOSID", "OBSTYPE", "MTFLAG", "FGSLOCK", "DRIZCORR",
                        "TARGNAME", "CCDGAIN", "READNSEA", "PHOTFLAM", "PHOTPLAM"):
                assert key in p, (path.name, key)
            assert p["OBSTYPE"] == "IMAGING" and p["FGSLOCK"] == "FINE"
            assert p["MTFLAG"].strip() not in ("T", "TRUE")
            assert p["EXPEND"] > p["EXPSTART"] and p["EXPTIME"] > 0
            if p["INSTRUME"] == "WFC3":
                assert p["SCAN_TYP"] == "N" and "FILTER" in p
                if p["DETECTOR"] == "UVIS":
                    assert p["CHINJECT"] == "NONE"
            else:
                assert "FILTER1" in p and "FILTER2" in p
            chips = _chips(hdul)
            assert chips == ([1] if p["DETECTOR"] == "IR" else [1, 2])
            assert p["NEXTEND"] == len(hdul) - 1
            for v in chips:
                s = hdul["SCI", v].header
                assert hdul["ERR", v].data.shape == hdul["SCI", v].data.shape
                assert hdul["DQ", v].data.dtype.kind == "i" and hdul["DQ", v].data.itemsize == 2
                assert s["BUNIT"] == ("ELECTRONS/S" if p["DETECTOR"] == "IR" else "ELECTRONS")
                for key in ("CCDCHIP", "WCSNAME", "IDCSCALE", "PHOTFLAM", "PHOTPLAM",
                            "S_REGION", "ORIENTAT"):
                    assert key in s, (path.name, v, key)
                assert "FIT" not in s["WCSNAME"]  # header WCS is the uncorrected a-priori one
                assert np.isfinite(hdul["SCI", v].data).all()
    assert len(roots) == 18


def test_astropy_wcs_carries_full_distortion(simset):
    seen = set()
    for path in simset.exposures:
        with fits.open(path) as hdul:
            det = hdul[0].header["DETECTOR"]
            for v in _chips(hdul):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    w = WCS(hdul["SCI", v].header, fobj=hdul)
                assert w.sip is not None
                if det == "IR":
                    assert w.cpdis1 is None and w.det2im1 is None
                else:  # UVIS and ACS/WFC: NPOL and D2IM lookup tables
                    assert w.cpdis1 is not None and w.cpdis2 is not None
                    assert w.det2im1 is not None
                    # the tables change positions at the 0.001-0.1 pixel level across the chip
                    ny, nx = hdul["SCI", v].data.shape
                    grid = np.array([[x, y] for x in np.linspace(0, nx - 1, 7)
                                     for y in np.linspace(0, ny - 1, 5)])
                    bare = w.deepcopy()
                    bare.cpdis1 = bare.cpdis2 = bare.det2im1 = bare.det2im2 = None
                    dra, ddec = (w.all_pix2world(grid, 0) - bare.all_pix2world(grid, 0)).T
                    scale = np.sqrt(abs(np.linalg.det(w.pixel_scale_matrix)))
                    dist = np.hypot(dra * np.cos(np.radians(w.wcs.crval[1])), ddec) / scale
                    assert 1e-3 < dist.max() < 0.5
                seen.add(det)
                # DrizzlePac's reader (stwcs HSTWCS) sees the same full WCS
                hw = HSTWCS(hdul, ext=("SCI", v))
                assert hw.idcscale == hdul["SCI", v].header["IDCSCALE"]
                pix = np.array([[1.0, 2.0], [200.0, 100.0]])
                np.testing.assert_allclose(hw.all_pix2world(pix, 0), w.all_pix2world(pix, 0),
                                           rtol=0, atol=1e-11)
    assert seen == {"UVIS", "IR", "WFC"}


def test_true_wcs_differs_from_header_by_the_pointing_error(simset):
    true = read_true_wcs(simset.true_wcs)
    assert len(true) == sum(2 if p.name.endswith("flc.fits") else 1 for p in simset.exposures)
    for path in simset.exposures:
        with fits.open(path) as hdul:
            root = hdul[0].header["ROOTNAME"]
            for v in _chips(hdul):
                th = true[(root, v)]
                assert th["WCSNAME"] == "SIMULATED-TRUE" and "A_ORDER" in th
                wt = true_chip_wcs(path, v, true)
                wn = WCS(hdul["SCI", v].header, fobj=hdul)
                ny, nx = hdul["SCI", v].data.shape
                c = wn.all_pix2world([[nx / 2, ny / 2]], 0)
                t = wt.all_pix2world([[nx / 2, ny / 2]], 0)
                sep = np.hypot((c[0, 0] - t[0, 0]) * np.cos(np.radians(c[0, 1])),
                               c[0, 1] - t[0, 1]) * 3600
                assert 0.05 < sep < 0.6, (path.name, v, sep)
                # SIP unchanged: the distortion belongs to the detector
                assert th["A_2_0"] == hdul["SCI", v].header["A_2_0"]


def test_star_centroids_match_truth_with_true_wcs(simset):
    """Noise-free renders: < 0.05 px everywhere; real (noisy) files: median < 0.05 px."""
    errs_model, errs_data, errs_header = [], [], []
    for path in simset.exposures:
        with fits.open(path) as hdul:
            det, filt = _det_filter(hdul[0].header)
            for v in _chips(hdul):
                model, w, xy, cat = _model(simset, path, v, hdul)
                data = hdul["SCI", v].data.astype(float)
                dq = hdul["DQ", v].data
                wn = WCS(hdul["SCI", v].header, fobj=hdul)
                ra, dec = w.all_pix2world(xy, 0).T
                xy_hdr = wn.all_world2pix(np.column_stack([ra, dec]), 0)
                sky_level = np.median(data)
                maglim = {"wfc3_uvis": 23.5, "wfc3_ir": 23.0, "acs_wfc": 23.5}[det]
                for k in _isolated_bright_stars(cat, xy, data.shape, f"mag_{filt.lower()}",
                                                maglim):
                    x0, y0 = int(round(xy[k, 0])), int(round(xy[k, 1]))
                    sl = np.s_[y0 - 5:y0 + 6, x0 - 5:x0 + 6]
                    cx, cy = centroid_2dg(model[sl])
                    errs_model.append(np.hypot(cx + x0 - 5 - xy[k, 0], cy + y0 - 5 - xy[k, 1]))
                    if dq[sl].any() or model[sl].max() > 20000:
                        continue
                    cx, cy = centroid_2dg(data[sl] - sky_level)
                    errs_data.append(np.hypot(cx + x0 - 5 - xy[k, 0], cy + y0 - 5 - xy[k, 1]))
                    errs_header.append(np.hypot(cx + x0 - 5 - xy_hdr[k, 0],
                                                cy + y0 - 5 - xy_hdr[k, 1]))
    assert len(errs_model) >= 20 and len(errs_data) >= 15
    assert max(errs_model) < 0.05
    assert np.median(errs_data) < 0.05
    # with the (uncorrected) header WCS the same stars are off by the pointing error (>= 0.05")
    assert np.median(errs_header) > 0.5


def test_counts_match_exptime_times_flux(simset):
    """Stars: render flux = exptime x 10^(-0.4 (m - ZP)); IR chips: total counts within noise."""
    checked_ir = 0
    chis: list[float] = []
    for path in simset.exposures:
        with fits.open(path) as hdul:
            prim = hdul[0].header
            det, filt = _det_filter(prim)
            f = instruments.FILTERS[(det, filt)]
            t = prim["EXPTIME"]
            for v in _chips(hdul):
                model, w, xy, cat = _model(simset, path, v, hdul)
                mags = np.asarray(cat[f"mag_{filt.lower()}"])
                ny, nx = model.shape
                inner = ((xy[:, 0] > 25) & (xy[:, 0] < nx - 26) & (xy[:, 1] > 25)
                         & (xy[:, 1] < ny - 26))
                epoch = 2000.0 + (prim["EXPSTART"] - 51544.5) / 365.25
                for k in np.flatnonzero(inner)[:4]:  # stars and galaxies, rendered alone
                    one = cat[k:k + 1]
                    ra1, dec1 = sky.positions_at_epoch(one, epoch)
                    idc = float(hdul["SCI", v].header["IDCSCALE"])
                    alone = core._render_chip(model.shape, w, one, ra1, dec1,
                                              instruments.DETECTORS[det], f, t, idc)
                    # flat-fielded: true counts / PAM, PAM = true pixel area / IDCSCALE^2
                    pam = float(sky_pixel_area(w, *xy[k])) / idc ** 2
                    expected = t * 10 ** (-0.4 * (mags[k] - f.zp_ab)) / pam
                    assert alone.sum() == pytest.approx(expected,
                                                        rel=0.02 if one["r_eff"][0] else 0.002)
                if det != "wfc3_ir":
                    # CCD: aperture photometry of isolated stars vs the truth, in units of the
                    # expected noise (cosmic rays hit a few apertures: robust statistics)
                    data = hdul["SCI", v].data.astype(float)
                    dq = hdul["DQ", v].data
                    d_ = instruments.DETECTORS[det]
                    yy, xx = np.mgrid[-8:9, -8:9]
                    ap = np.hypot(xx, yy) <= 8
                    for k in _isolated_bright_stars(cat, xy, data.shape, f"mag_{filt.lower()}",
                                                    25.0, edge=10):
                        x0, y0 = int(round(xy[k, 0])), int(round(xy[k, 1]))
                        sl = np.s_[y0 - 8:y0 + 9, x0 - 8:x0 + 9]
                        if dq[sl][ap].any():
                            continue
                        truth = model[sl][ap].sum()
                        meas = (data[sl][ap] - f.sky * t).sum()
                        var = truth + ap.sum() * (f.sky * t + d_.readnoise ** 2)
                        chis.append((meas - truth) / np.sqrt(var))
                    continue
                # IR: cosmic rays repaired and flagged, so the whole chip is a clean test
                data = hdul["SCI", v].data.astype(float) * t  # e-
                good = hdul["DQ", v].data == 0
                expected = model[good].sum() + (f.sky) * t * good.sum()
                measured = data[good].sum()
                det_ = instruments.DETECTORS[det]
                sigma = np.sqrt(expected + good.sum() * det_.readnoise ** 2)
                assert abs(measured - expected) < 5 * sigma, (path.name, measured, expected)
                # and pixel by pixel the residuals are unit-variance
                resid = (data - model - f.sky * t)[good] / np.sqrt(
                    model[good] + f.sky * t + det_.readnoise ** 2)
                assert np.std(resid) == pytest.approx(1.0, abs=0.1)
                checked_ir += 1
    assert checked_ir >= 8
    chis_a = np.asarray(chis)
    assert chis_a.size >= 15
    assert abs(np.median(chis_a)) < 1.0
    assert np.mean(np.abs(chis_a) < 3) > 0.7


def test_cosmic_ray_rate_matches_configuration(simset):
    """CR events detected in the CCD files (unflagged, as in real FLC) vs the configured rate."""
    found = 0
    expected = 0.0
    for path in simset.exposures:
        with fits.open(path) as hdul:
            prim = hdul[0].header
            if prim["DETECTOR"] == "IR":
                continue
            det, filt = _det_filter(prim)
            d = instruments.DETECTORS[det]
            f = instruments.FILTERS[(det, filt)]
            t = prim["EXPTIME"]
            for v in _chips(hdul):
                model, *_ = _model(simset, path, v, hdul)
                data = hdul["SCI", v].data.astype(float)
                dq = hdul["DQ", v].data
                assert not (dq & 4096).any()  # CRs are not flagged in FLC files
                noise = np.sqrt(f.sky * t + d.readnoise ** 2)
                resid = data - model - f.sky * t
                masked = ndimage.binary_dilation((model > 3 * noise) | (dq != 0), iterations=2)
                hits = (resid > 8 * noise) & ~masked
                labels, n = ndimage.label(hits, structure=np.ones((3, 3)))
                found += n
                area_cm2 = (~masked).sum() * (d.pixel_um * 1e-4) ** 2
                expected += instruments.CR_RATE * area_cm2 * t
    assert expected > 1000
    assert found == pytest.approx(expected, rel=0.2)


def _read_poller(path: Path, ncol: int) -> list[list[str]]:
    rows = [line.split(",") for line in path.read_text().splitlines() if line.strip()]
    assert rows and all(len(r) == ncol for r in rows), path
    return rows


def test_pollers_parse_and_name_existing_files(simset):
    listed = []
    for poller in simset.svm_pollers:
        rows = _read_poller(poller, 8)
        assert len({(r[2], r[3]) for r in rows}) == 1  # one visit per SVM poller
        for r in rows:
            listed.append(r[0])
            path = Path(r[7])
            assert path.is_absolute() and path.is_file() and path.name == r[0]
            with fits.open(path) as hdul:
                p = hdul[0].header
                assert int(r[1]) == p["PROPOSID"]
                assert r[2] == p["ROOTNAME"][1:4].upper() and r[3] == p["ROOTNAME"][4:6]
                assert float(r[4]) == pytest.approx(p["EXPTIME"])
                assert r[6] == p["DETECTOR"]
                filters = p["FILTER"] if p["INSTRUME"] == "WFC3" else (
                    f"{p['FILTER1']};{p['FILTER2']}")
                assert r[5] == filters
    assert sorted(listed) == sorted(p.name for p in simset.exposures)
    mvm = _read_poller(simset.mvm_poller, 10)
    assert [r[0] for r in mvm] == [p.name for p in simset.exposures]
    assert all(r[7] == f"skycell-{CELL}" and r[8] == "NEW" for r in mvm)
    assert all(Path(r[9]).is_file() for r in mvm)


def test_pollers_through_hapdask_io(simset):
    io = pytest.importorskip("hapdask.io", reason="hapdask.io not merged yet")
    svm = io.read_poller(simset.svm_pollers[0])
    assert len(svm) >= 2
    mvm = io.read_poller(simset.mvm_poller)
    assert len(mvm) == len(simset.exposures)


def test_round_trip_through_hapdask_io(simset):
    io = pytest.importorskip("hapdask.io", reason="hapdask.io not merged yet")
    for path in simset.exposures[:: 3]:
        exp = io.open_exposure(str(path))
        with fits.open(path) as hdul:
            assert len(exp.chips) == len(_chips(hdul))
            for chip, v in zip(exp.chips, _chips(hdul), strict=True):
                sci, err, dq = chip.read()
                np.testing.assert_array_equal(np.asarray(sci), hdul["SCI", v].data)
                np.testing.assert_array_equal(np.asarray(dq), hdul["DQ", v].data)
                w = chip.wcs()
                ref = WCS(hdul["SCI", v].header, fobj=hdul)
                pix = np.array([[0.0, 0.0], [100.0, 50.0], [200.0, 250.0]])
                np.testing.assert_allclose(w.all_pix2world(pix, 0), ref.all_pix2world(pix, 0),
                                           rtol=0, atol=1e-10)


def test_analyze_rules_keep_every_simulated_exposure(simset):
    io = pytest.importorskip("hapdask.io")
    analyze = pytest.importorskip("hapdask.analyze")
    for path in simset.exposures[::4]:
        for mode in ("svm", "mvm"):
            verdict = analyze.analyze_exposure(io.open_exposure(str(path)), mode=mode)
            assert verdict.keep, (path.name, mode, verdict.rule, verdict.reason)
            assert not verdict.warnings


def test_every_exposure_overlaps_the_skycell(simset):
    for path in simset.exposures:
        with fits.open(path) as hdul:
            wcs = [WCS(hdul["SCI", v].header, fobj=hdul) for v in _chips(hdul)]
            for w, v in zip(wcs, _chips(hdul), strict=True):
                w.pixel_shape = hdul["SCI", v].data.shape[::-1]
        assert f"skycell-{CELL}" in cells_for_footprint(wcs), path.name


def test_truth_catalog(simset):
    cat = Table.read(simset.truth_catalog, format="ascii.ecsv")
    for col in ("ra", "dec", "pm_ra", "pm_dec", "ref_epoch", "type", "mag", "mag_f475w",
                "mag_f160w", "mag_f850lp", "r_eff", "sersic_n"):
        assert col in cat.colnames
    assert set(cat["type"]) == {"star", "galaxy"}
    gal = cat["type"] == "galaxy"
    assert np.all(cat["pm_ra"][gal] == 0) and np.any(cat["pm_ra"][~gal] != 0)
    assert cat["ra"].unit == "deg"
    c = core.skycell_center(CELL)
    assert abs(np.median(cat["ra"]) - c[0]) < 0.01 and abs(np.median(cat["dec"]) - c[1]) < 0.01
