"""Bad and awkward inputs of ``hapdask drizzle`` not covered in test_mosaic_drizzle.py:
exposures that do not overlap each other, no input on the grid, every chip all-NaN, and bad
parameter values (each error names the parameter)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits

from hapdask.mosaic import ParameterError, drizzle
from hapdask.mosaic.products import read_crmask
from hapdask.simulate import simulate_visits
from hapdask.testing import astrodrizzle_run, grid_params

STEPS = {"skymethod": "localmin", "combine_type": "median", "context": True}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    s = simulate_visits("p1889x07y19", tmp_path_factory.mktemp("bad") / "set", visits=3,
                        small=True, seed=3, filters=["F775W"])
    return [str(p) for p in s.exposures]


def _run(inputs, out, params=STEPS):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return drizzle(inputs, out, params=params, tile_size=256, region_size=256,
                       log=lambda m: None)


def _shifted(src, dst, arcsec):
    """A copy of ``src`` whose WCS points ``arcsec`` further north (pixels unchanged)."""
    with fits.open(src) as h:
        for hdu in h:
            if hdu.name in ("SCI", "ERR", "DQ") and "CRVAL2" in hdu.header:
                hdu.header["CRVAL2"] = hdu.header["CRVAL2"] + arcsec / 3600.0
        h.writeto(dst)
    return str(dst)


def test_exposures_that_do_not_overlap_each_other(pair, tmp_path):
    """Two exposures 60" apart (chips are ~26" tall): the default grid holds both and each part
    of the product comes from one exposure. The median of one image is that image, so driz_cr
    only flags what blot's resampling smooths (sharp hot pixels, cosmic-ray cores): the same
    pixels as AstroDrizzle (oracle, same parameters)."""
    far = _shifted(pair[1], tmp_path / "jf3t03a2q_flc.fits", 60.0)
    params = {**STEPS, **grid_params([pair[0], far], 0.05)}
    res = _run([pair[0], far], tmp_path / "out" / "m", params)
    ad = astrodrizzle_run([pair[0], far], tmp_path / "ad", clean=True, in_memory=True, **params)
    with fits.open(res.output) as h:
        ctx = h["CTX"].data
        ctx = ctx[0] if ctx.ndim == 3 else ctx
        wht = h["WHT"].data
    ids = set(np.unique(ctx[wht > 0]).tolist())
    # context bits of each chip alone, never two exposures on one pixel
    assert len(ids) >= 2 and all(bin(i).count("1") == 1 for i in ids)
    for path in res.crmasks:
        with fits.open(ad / path.name.replace("_crmask", "_flc")) as h:
            for e, m in read_crmask(path).items():
                theirs = (h["DQ", e].data & 4096) != 0
                assert (m != theirs).sum() <= 0.01 * max(theirs.sum(), 100)
                assert m.sum() <= 0.005 * m.size


def test_no_input_on_the_grid(pair, tmp_path):
    params = {**STEPS, "final_wcs": True, "final_ra": 10.0, "final_dec": -40.0,
              "final_scale": 0.05, "final_outnx": 100, "final_outny": 100}
    with pytest.raises(ValueError, match="no input chip overlaps the output grid"):
        _run(pair, tmp_path / "x", params)
    assert not list(tmp_path.glob("x_dr?.fits*"))


def test_every_chip_all_nan(pair, tmp_path):
    paths = []
    for p in pair:
        dst = tmp_path / p.split("/")[-1]
        with fits.open(p) as h:
            for hdu in h:
                if hdu.name == "SCI":
                    hdu.data[:] = np.nan
            h.writeto(dst)
        paths.append(str(dst))
    try:
        res = _run(paths, tmp_path / "out" / "m")
    except ValueError as exc:  # a clear refusal naming the files is fine
        assert "nan" in str(exc).lower() or "no input" in str(exc).lower()
    else:  # or a product without data, with a note per chip
        assert sum("[sci," in n for n in res.notes) == 4
        with fits.open(res.output) as h:
            assert not (h["WHT"].data > 0).any()


@pytest.mark.parametrize("name, value", [
    ("final_pixfrac", -0.5), ("final_pixfrac", "wide"), ("final_kernel", "triangle"),
    ("final_wht_type", "VAR"), ("driz_cr_snr", "a b"), ("combine_nsigma", "x y"),
    ("skymethod", "median"), ("final_bits", "abc"), ("combine_maskpt", 2.0),
])
def test_bad_values_are_named(pair, tmp_path, name, value):
    with pytest.raises(ParameterError, match=name):
        drizzle(pair, tmp_path / "x", params={name: value}, log=lambda m: None)
    assert not list(tmp_path.iterdir()) or not list(tmp_path.glob("x_dr?.fits"))


def test_write_failure_keeps_the_error_and_leaves_nothing(pair, tmp_path, monkeypatch):
    """A failing product write (here: a full disk; tile by tile, or in bands of rows as
    ``drizzle`` writes on local threads) surfaces as itself and removes the partial product
    (regression: the clean-up raised AttributeError over it and left the .part)."""
    from hapdask.export import fits as xfits

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(xfits, "write_fits_tile", full)
    monkeypatch.setattr(xfits.FitsRows, "write", full)
    with pytest.raises(OSError, match="No space left"):
        _run(pair, tmp_path / "m")
    assert [p.name for p in tmp_path.iterdir() if ".part" in p.name or "_dr" in p.name] == []
