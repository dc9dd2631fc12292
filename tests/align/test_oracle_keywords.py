"""Oracles: tweakwcs on the same matched lists; DrizzlePac's WCSNAME and fit keywords."""

from __future__ import annotations

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from tweakwcs import fit_wcs

from hapdask.align import FileCatalog, fit_params, fit_visit, wcsname_for
from hapdask.align.fit import ChipSources, ExposureInput, _corrector
from hapdask.align.pipeline import _epoch
from hapdask.align.sources import chip_sources
from hapdask.io import open_exposure
from hapdask.io._fits import open_fits


def test_wcsname_convention():
    # inventory 3.3: IDC_0461802ej-FIT_SVM_GAIAeDR3; the part before the first '-' is kept
    assert wcsname_for("IDC_0461802ej", "SVM", "GAIAeDR3") == "IDC_0461802ej-FIT_SVM_GAIAeDR3"
    assert wcsname_for("IDC_0461802ej-GSC240", "SVM", "GAIAeDR3") == \
        "IDC_0461802ej-FIT_SVM_GAIAeDR3"
    assert wcsname_for("IDC_w3m18525i-HSC30", "MVM", "NONE") == "IDC_w3m18525i-FIT_MVM_NONE"


def test_fit_keywords(visit, aligned):
    for e in aligned.exposures:
        assert len(e.updates) == len(open_exposure(e.path).chips)
        for u in e.updates:
            h = u.header()
            apriori = open_exposure(e.path).chips[0].wcsname
            assert h["WCSNAME"] == wcsname_for(apriori, "SVM", "GAIASIM")
            assert h["NMATCHES"] == e.matches >= 4
            assert h["FITGEOM"] in ("rscale", "rshift", "shift")
            assert h["CATALOG"] == "GAIASIM"
            assert 0 <= h["RMS_RA"] < 20 and 0 <= h["RMS_DEC"] < 20
            assert np.isclose(h["CRDER1"], h["RMS_RA"] / 3.6e6, rtol=1e-3)
            assert h["RELREFIM"] == aligned.exposures[0].rootname or \
                h["RELREFIM"] in {x.rootname for x in aligned.exposures}
            assert h["CTYPE1"] == "RA---TAN-SIP" and "A_ORDER" in h


def test_tweakwcs_fit_on_same_matched_list_agrees(visit):
    """One exposure fitted alone (2dhist method); tweakwcs.fit_wcs on the matched pairs of our
    solution, with the same weights and clipping, gives the same WCS within 1 mas."""
    exp = open_exposure(str(next(p for p in visit.exposures if "a3q" in p.name)))  # IR
    chip = exp.chips[0]
    src, note = chip_sources(chip)
    refcat = FileCatalog(visit.refcat)
    inp = ExposureInput(exp.rootname, exp.path, "v", _epoch(exp.expstart), exp.wcsname,
                        [ChipSources(exp.rootname, chip.extver, chip, src, note)])
    (res,) = fit_visit([inp], refcat, fit_params(exp.instrument, exp.detector))
    assert res.status == "aligned" and res.method == "2dhist", res.reason
    ours = res.updates[0].header()
    cat = refcat.query(chip.footprint(), _epoch(exp.expstart))
    hdr = chip.header.copy()
    for k in [k for k in hdr if k[:2] in ("A_", "B_") or k[:3] in ("AP_", "BP_")]:
        hdr.remove(k, remove_all=True)
    hdr.update(ours)
    with open_fits(chip.path) as hdul:
        w_ours = WCS(hdr, fobj=hdul)
    x, y = w_ours.all_world2pix(cat["RA"], cat["DEC"], 0)
    d = np.hypot(np.asarray(src["x"])[:, None] - x[None], np.asarray(src["y"])[:, None] - y[None])
    i, j = np.nonzero((d == d.min(axis=1, keepdims=True)) & (d < 0.5))
    assert i.size >= 10
    corr = _corrector(ChipSources(exp.rootname, chip.extver, chip, src), "g")
    imcat = corr.meta["catalog"][i]
    ref = Table({"RA": np.asarray(cat["RA"])[j], "DEC": np.asarray(cat["DEC"])[j],
                 "weight": np.asarray(cat["weight"])[j]})
    oracle = fit_wcs(ref, imcat, corr, fitgeom=ours["FITGEOM"], nclip=1, sigma=3.0).wcs
    ny, nx = chip.shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, 7), np.linspace(0, ny - 1, 7))
    r1, d1 = oracle.all_pix2world(gx.ravel(), gy.ravel(), 0)
    r2, d2 = w_ours.all_pix2world(gx.ravel(), gy.ravel(), 0)
    sep = np.hypot((r1 - r2) * np.cos(np.radians(d2)), d1 - d2) * 3.6e6
    assert sep.max() < 1.0, sep.max()
