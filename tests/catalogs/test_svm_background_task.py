"""The SVM catalog background task (``hapdask.svm.runner._background_task``): a filter
product's background made in its own task is the one the catalog step makes itself."""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from catalog_truth import make_wcs

from hapdask.catalogs import CatalogParams, compute_background, footprint_mask, read_product
from hapdask.svm.runner import ProductRecord, _background_task


def _write_filter_product(path, seed: int) -> None:
    """A small drizzle-like filter product: sky + noise + a few sources, NaN outside the data."""
    rng = np.random.default_rng(seed)
    sci = (0.05 + rng.normal(0.0, 0.01, (160, 180))).astype(np.float32)
    sci[rng.integers(0, 160, 40), rng.integers(0, 180, 40)] += 5.0
    sci[:, :12] = np.nan
    wht = np.where(np.isnan(sci), 0.0, 1000.0).astype(np.float32)
    hdr = make_wcs().to_header()
    prim = fits.Header({"EXPTIME": 1000.0, "NDRIZIM": 2, "DETECTOR": "WFC",
                        "FILTER": "F775W", "PHOTFLAM": 1e-19, "PHOTPLAM": 7700.0})
    fits.HDUList([fits.PrimaryHDU(header=prim), fits.ImageHDU(sci, hdr, name="SCI"),
                  fits.ImageHDU(wht, hdr, name="WHT")]).writeto(path)


def test_background_task_is_the_catalog_steps_background(tmp_path):
    """Its (filter, background) is keyed by the FILTER keyword as the catalog task keys the
    filter products, and the background equals ``compute_background`` of the product read as
    the catalog step reads it (the oracle: the values the catalog task made before); a
    detector without catalog parameters gives None (the catalog task reports it)."""
    path = tmp_path / "hst_1_01_acs_wfc_f775w_j8xx01_drc.fits"
    _write_filter_product(path, 4)
    rec = ProductRecord(path.name, path, "filter")
    fname, bkg = _background_task("acs_wfc", None, rec)
    params = CatalogParams.for_detector("acs_wfc")
    prod = read_product(path, weights=False)
    want = compute_background(prod, params, footprint_mask(prod, params))
    assert fname == "f775w" and want.method == "constant" and bkg.method == "constant"
    assert (bkg.median, bkg.rms_median, bkg.skew) == (want.median, want.rms_median, want.skew)
    assert np.array_equal(bkg.background, want.background)
    assert np.array_equal(bkg.rms, want.rms)
    assert _background_task("stis_ccd", None, rec) is None
