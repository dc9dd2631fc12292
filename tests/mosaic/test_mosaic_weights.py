"""final_wht_type ERR and IVM against AstroDrizzle (drizzlepac 3.11) on small simulated ACS/WFC
exposures: same files, same sky method, same grid (our product's, via final_refimage), at an
output scale of 0.04"/px so that AstroDrizzle's 1 / pix_ratio**4 weight scaling shows.
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
from astropy.io import fits

from hapdask.mosaic import drizzle
from hapdask.testing import astrodrizzle_final, astrodrizzle_refimage

ROOTS = ("jf3t03a1q", "jf3t03a2q")
STEPS = {"static": False, "skysub": True, "skymethod": "localmin", "driz_separate": False,
         "median": False, "blot": False, "driz_cr": False, "final_kernel": "square",
         "final_pixfrac": 1.0, "final_bits": "336", "final_units": "cps"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Copies with a dark level in MEANDARK and a flat-field reference file in PFLTFILE (the
    IVM terms; AstroDrizzle requires both keywords)."""
    from hapdask.simulate import simulate_visits

    sim = simulate_visits("p1889x07y19", tmp_path_factory.mktemp("sim") / "set", small=True,
                          visits=3)
    work = tmp_path_factory.mktemp("inputs")
    flat = work / "test_pfl.fits"
    with fits.open(sim.outdir / f"{ROOTS[0]}_flc.fits") as h:
        hdus = [fits.PrimaryHDU()]
        for hdu in h:
            if hdu.name == "SCI":
                ny, nx = hdu.data.shape
                yy, xx = np.mgrid[0:ny, 0:nx]
                f = (0.9 + 0.2 * xx / nx + 0.05 * yy / ny).astype(np.float32)
                hdus.append(fits.ImageHDU(f, name="SCI", ver=hdu.ver))
        fits.HDUList(hdus).writeto(flat)
    out = []
    for r in ROOTS:
        dst = work / f"{r}_flc.fits"
        shutil.copy(sim.outdir / dst.name, dst)
        with fits.open(dst, mode="update") as h:
            h[0].header["PFLTFILE"] = str(flat)
            for hdu in h:
                if hdu.name == "SCI":
                    hdu.header["MEANDARK"] = 25.0
        out.append(dst)
    return out


def test_reference_file_resolves_environment_prefix(tmp_path, monkeypatch):
    from hapdask.mosaic.inputs import reference_file

    (tmp_path / "x_pfl.fits").write_bytes(b"")
    monkeypatch.setenv("jref", str(tmp_path) + "/")
    assert reference_file("jref$x_pfl.fits") == str(tmp_path / "x_pfl.fits")
    assert reference_file("jref$missing_pfl.fits") is None
    assert reference_file("N/A") is None and reference_file(None) is None
    monkeypatch.delenv("jref")
    assert reference_file("jref$x_pfl.fits") is None


@pytest.mark.parametrize("wht_type", ["ERR", "IVM"])
def test_weight_types_against_astrodrizzle(inputs, wht_type, tmp_path):
    params = {**STEPS, "final_wht_type": wht_type, "final_scale": 0.04, "final_rot": 0.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = drizzle([str(p) for p in inputs], tmp_path / "ours" / "m", params=params,
                       tile_size=256, log=lambda m: None)
    assert not list((tmp_path / "ours").glob(".m-scratch-*"))  # scratch removed at the end
    ref = astrodrizzle_refimage(ours.output, tmp_path / "ref.fits")
    work = tmp_path / "ad"
    work.mkdir()
    for p in inputs:
        shutil.copy(p, work / p.name)
    ad_params = {k: v for k, v in params.items() if k not in ("final_scale", "final_rot")}
    theirs = astrodrizzle_final([p.name for p in inputs], ref, work, **ad_params)
    with fits.open(theirs) as a, fits.open(ours.output) as b:
        sa, sb = a["SCI"].data, b["SCI"].data
        wa, wb = a["WHT"].data, b["WHT"].data
    both = (wa > 0) & (wb > 0) & np.isfinite(sa) & np.isfinite(sb)
    assert both.sum() > 0.5 * (wa > 0).sum()
    rel = np.abs(wb[both] - wa[both]) / wa[both]
    # the weights' formula (exptime**2 / ERR**2 or flat**2 / (dark + sky + rn**2) x
    # exptime**2, over pix_ratio**4): equal up to the sky levels (~1e-4) and kernel rounding
    assert np.median(rel) < 1e-3
    assert np.percentile(rel, 99) < 0.01
    diff = np.abs(sb[both] - sa[both])
    assert np.median(diff) < 1e-4
    assert np.percentile(diff, 99) < 2e-3
