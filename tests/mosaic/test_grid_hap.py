"""HAP's SVM visit grid against DrizzlePac's own construction (oracle: drizzlepac
``wcs_functions.make_mosaic_wcs(files, rot=0)``, what HAP's ``TotalProduct.generate_metawcs``
calls) on real ACS/WFC, WFC3/UVIS and WFC3/IR headers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hapdask.io import linear_pixel_scale, open_exposure
from hapdask.mosaic.grid import hap_visit_grid

FILES = ["real/j94f05bgq_flt.fits.gz", "headers/sample_svm_flc.fits",
         "headers/sample_svm_flt.fits"]


@pytest.mark.parametrize("name", FILES)
def test_hap_visit_grid_is_drizzlepacs(shared_data, name):
    wf = pytest.importorskip("drizzlepac.wcs_functions")
    path = str(shared_data / name)
    e = open_exposure(path)
    c = e.chips[0]
    scale = float(c.header["IDCSCALE"]) if "IDCSCALE" in c.header else \
        linear_pixel_scale(c.wcs())
    grid = hap_visit_grid([ch.wcs() for ch in e.chips], scale, sci_header=c.header,
                          pa_v3=e.primary.get("PA_V3"), detector=(e.instrument, e.detector))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = wf.make_mosaic_wcs([path], rot=0.0)
    h = grid.fits_header()
    assert (h["NAXIS1"], h["NAXIS2"]) == tuple(ref.pixel_shape)
    assert np.allclose([h["CRPIX1"], h["CRPIX2"]], ref.wcs.crpix, atol=1e-6)
    assert np.allclose([h["CRVAL1"], h["CRVAL2"]], ref.wcs.crval, atol=1e-9, rtol=0)
    assert np.allclose(grid.wcs().pixel_scale_matrix, ref.wcs.cd, atol=1e-15, rtol=1e-12)
