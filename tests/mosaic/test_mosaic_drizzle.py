"""hapdask drizzle (the mosaic engine's AstroDrizzle job) on small simulated ACS/WFC exposures.

Oracle: drizzlepac.astrodrizzle.AstroDrizzle on copies of the same files with the same
parameters; truth: the simulator's cosmic-ray masks.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from hapdask.cli import main
from hapdask.mosaic import ParameterError, drizzle
from hapdask.mosaic.products import read_crmask

ROOTS = ("jf3t03a1q", "jf3t03a2q")  # two dithered ACS/WFC F775W exposures of one visit


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from hapdask.simulate import simulate_visits

    return simulate_visits("p1889x07y19", tmp_path_factory.mktemp("sim") / "set", small=True,
                           visits=3)


@pytest.fixture(scope="module")
def pair(sim):
    return [str(sim.outdir / f"{r}_flc.fits") for r in ROOTS]


@pytest.fixture(scope="module")
def params(pair):
    """A fixed grid (both tools get the same one) and HAP-like steps."""
    with fits.open(pair[0]) as h:
        ra, dec = WCS(h[1].header, h).all_pix2world([[255.5, 127.5]], 0)[0]
    grid = {"rot": 0.0, "scale": 0.05, "ra": float(ra), "dec": float(dec), "outnx": 700,
            "outny": 700, "crpix1": 350.5, "crpix2": 350.5}
    p = {"skysub": True, "skymethod": "localmin", "static": True, "driz_sep_kernel": "turbo",
         "combine_type": "median", "final_wcs": True, "driz_sep_wcs": True, "context": True}
    for k, v in grid.items():
        p[f"final_{k}"] = v
        p[f"driz_sep_{k}"] = v
    return p


def _run(pair, out, params, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return drizzle(pair, out, params=params, log=lambda m: None, **kw)


@pytest.fixture(scope="module")
def ours(pair, params, tmp_path_factory):
    out = tmp_path_factory.mktemp("ours")
    return _run(pair, out / "mosaic", params, tile_size=256, region_size=256,
                threads_per_worker=2)


@pytest.fixture(scope="module")
def astrodrizzle_run(pair, params, tmp_path_factory):
    """AstroDrizzle on copies (it writes its CR flags into the copies' DQ)."""
    import os

    from drizzlepac import astrodrizzle

    work = tmp_path_factory.mktemp("astrodrizzle")
    names = []
    for p in pair:
        dst = work / os.path.basename(p)
        shutil.copy(p, dst)
        with fits.open(dst, mode="update") as h:  # its ACS noise model reads MEANDARK
            for hdu in h:
                if hdu.name == "SCI" and "MEANDARK" not in hdu.header:
                    hdu.header["MEANDARK"] = 0.0
        names.append(dst.name)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            astrodrizzle.AstroDrizzle(names, output="ad", build=True, clean=True,
                                      in_memory=True, num_cores=1, preserve=False, resetbits=0,
                                      **params)
    finally:
        os.chdir(cwd)
    return work


def test_products_layout(ours, pair):
    nchips = sum(sum(1 for x in fits.open(p) if x.name == "SCI") for p in pair)
    with fits.open(ours.output) as h:
        assert [x.name for x in h] == ["PRIMARY", "SCI", "WHT", "CTX", "HDRTAB"]
        assert h[0].header["NDRIZIM"] == nchips and h[0].header["D001KERN"] == "square"
        assert h["SCI"].header["BUNIT"] == "ELECTRONS/S"
        assert len(h["HDRTAB"].data) == nchips
    for r, path in zip(ROOTS, ours.crmasks, strict=True):
        assert path.name == f"{r}_crmask.fits"
        with fits.open(path) as h:
            assert h[1].name == "CRMASK" and h[1].header["EXTVER"] == 1
            assert h[1].data.shape == fits.getdata(pair[0], ("SCI", 1)).shape


def test_against_astrodrizzle(ours, astrodrizzle_run):
    """Same parameters, same grid: CR masks, sky and final images agree."""
    with fits.open(astrodrizzle_run / "ad_drc.fits") as a, fits.open(ours.output) as b:
        sa, sb = a["SCI"].data, b["SCI"].data
        wa, wb = a["WHT"].data, b["WHT"].data
    cov_a, cov_b = np.isfinite(sa) & (wa > 0), np.isfinite(sb) & (wb > 0)
    assert (cov_a != cov_b).sum() <= 0.001 * cov_a.sum()
    both = cov_a & cov_b
    diff = np.abs(sb[both] - sa[both])
    # sky levels agree to ~0.02 e- (4e-5 e-/s at 500 s); kernels to float32 rounding
    assert np.median(diff) < 1e-5
    assert np.percentile(diff, 99) < 2e-4
    assert np.percentile(np.abs(wb[both] - wa[both]) / wa[both], 99) < 0.01
    for r in ROOTS:
        dq = fits.getdata(astrodrizzle_run / f"{r}_flc.fits", ("DQ", 1))
        theirs = (dq & 4096) != 0
        mine = read_crmask(ours.output.parent / f"{r}_crmask.fits")[1]
        assert theirs.sum() > 100
        assert (mine & theirs).sum() >= 0.99 * theirs.sum()
        assert (mine & ~theirs).sum() <= 0.01 * theirs.sum()
        sky_ad = fits.getheader(astrodrizzle_run / f"{r}_flc.fits", ("SCI", 1))["MDRIZSKY"]
        assert ours.skies[(r, 1)].value == pytest.approx(sky_ad, abs=0.05)


def test_cosmic_rays_against_truth(ours, sim):
    found = total = false = 0
    for r in ROOTS:
        truth_path = sim.outdir / f"{r}_crtruth.fits"
        if not truth_path.exists():
            pytest.skip("simulator without cosmic-ray truth")
        truth = read_crmask(truth_path)[1]
        mine = read_crmask(ours.output.parent / f"{r}_crmask.fits")[1]
        found += (mine & truth).sum()
        total += truth.sum()
        false += (mine & ~truth).sum()
    # two exposures, AstroDrizzle's own parameters: most CR charge is found
    assert found >= 0.8 * total
    assert false <= 0.5 * total


def test_tiling_threads_and_order_do_not_change_results(ours, pair, params, tmp_path):
    other = _run(pair[::-1], tmp_path / "m", params, tile_size=128, region_size=200,
                 threads_per_worker=1)
    with fits.open(ours.output) as a, fits.open(other.output) as b:
        for ext in ("SCI", "WHT", "CTX"):
            np.testing.assert_array_equal(a[ext].data, b[ext].data)
    for p, q in zip(ours.crmasks, other.crmasks, strict=True):
        np.testing.assert_array_equal(fits.getdata(p, 1), fits.getdata(q, 1))


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_inputs_untouched_unless_update_dq(pair, params, tmp_path, ours):
    before = [_digest(p) for p in pair]
    copies = []
    for p in pair:
        shutil.copy(p, tmp_path / p.split("/")[-1])
        copies.append(str(tmp_path / p.split("/")[-1]))
    assert [_digest(p) for p in pair] == before  # the module run left them alone
    res = _run(copies, tmp_path / "out" / "m", params, tile_size=256, update_dq=True)
    for c, mpath in zip(copies, res.crmasks, strict=True):
        dq = fits.getdata(c, ("DQ", 1))
        mask = read_crmask(mpath)[1]
        assert ((dq & 4096) != 0)[mask].all()
    assert not list(tmp_path.glob("*.part"))


def test_one_exposure_skips_cr_steps(pair, params, tmp_path):
    res = _run(pair[:1], tmp_path / "one", params, tile_size=256)
    assert res.crmasks == []
    assert any("one exposure" in n for n in res.notes)
    assert res.output.exists()


def test_bad_parameters_are_named(pair, tmp_path, capsys):
    with pytest.raises(ParameterError, match="final_pixfrc"):
        drizzle(pair, tmp_path / "x", params={"final_pixfrc": 0.8})
    with pytest.raises(ParameterError, match="combine_type"):
        drizzle(pair, tmp_path / "x", params={"combine_type": "average"})
    cfg = tmp_path / "c.json"
    cfg.write_text('{"final_pixfrac": 0.8,\n "skystat": }')
    with pytest.raises(ParameterError, match="line 2"):
        drizzle(pair, tmp_path / "x", config=cfg)
    cfg.write_text(json.dumps({"STEP 7": {"final_units": "furlongs"}}))
    assert main(["drizzle", *pair, "--output", str(tmp_path / "x"), "--config", str(cfg)]) == 1
    assert "final_units" in capsys.readouterr().err
    assert main(["drizzle", *pair, "--output", str(tmp_path / "x"), "--param", "nope"]) == 1
    assert not list(tmp_path.glob("x_dr?.fits"))


def test_mixed_units_and_unreadable_input(pair, tmp_path):
    rate = tmp_path / "jf3t03a9q_flc.fits"
    with fits.open(pair[1]) as h:
        h[0].header["ROOTNAME"] = "jf3t03a9q"
        for hdu in h:
            if hdu.name == "SCI":
                hdu.header["BUNIT"] = "COUNTS"
        h.writeto(rate)
    with pytest.raises(ValueError, match="different units"):
        drizzle([pair[0], str(rate)], tmp_path / "x")
    bad = tmp_path / "broken_flc.fits"
    bad.write_bytes(b"not a fits file")
    with pytest.raises(ValueError, match="broken_flc.fits"):
        drizzle([pair[0], str(bad)], tmp_path / "x")


def test_mvm_uses_crmask_files(pair, ours, tmp_path):
    """``hapdask mvm`` gives cosmic-ray pixels of a ``_crmask.fits`` (beside an input or under
    ``masks``) zero weight: the layer's weight drops exactly where flagged pixels land."""
    from hapdask import mvm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = mvm.plan("p1889x07y19", pair, tile_size=256, only=["f775w_all"])
        masked = mvm.plan("p1889x07y19", pair, tile_size=256, only=["f775w_all"],
                          masks=ours.output.parent)
        assert not base.crmasks
        assert {k[0] for k in masked.crmasks} == set(ROOTS)
        assert base.fingerprint != masked.fingerprint
        a = mvm.layers(base)
        b = mvm.layers(masked)
    name = next(iter(a))
    wa, wb = a[name]["wht"].values, b[name]["wht"].values
    assert (wb <= wa + 1e-3).all()
    assert (wb < wa - 1.0).sum() > 100  # cosmic-ray footprints lost their exposure's weight


def test_all_nan_chip_and_non_overlapping_exposure(pair, params, tmp_path):
    """An all-NaN chip is left out with a note; an exposure off the user grid is skipped with a
    note; the rest is drizzled."""
    nan = tmp_path / "jf3t03a2q_flc.fits"
    with fits.open(pair[1]) as h:
        h["SCI", 1].data[:] = np.nan
        h.writeto(nan)
    res = _run([pair[0], str(nan)], tmp_path / "nan", params, tile_size=256)
    assert any("jf3t03a2q_flc.fits[sci,1]" in n for n in res.notes)
    assert read_crmask(res.crmasks[1])[1].sum() == 0
    with fits.open(res.output) as h:
        assert np.isfinite(h["SCI"].data).any()
    far = tmp_path / "far" / "jf3t03a2q_flc.fits"
    far.parent.mkdir()
    with fits.open(pair[1]) as h:
        for hdu in h:
            if hdu.name == "SCI":
                hdu.header["CRVAL2"] = hdu.header["CRVAL2"] + 0.5
        h.writeto(far)
    res = _run([pair[0], str(far)], tmp_path / "far" / "m", params, tile_size=256)
    assert any("does not overlap" in n for n in res.notes)
    assert any("one exposure" in n for n in res.notes)

