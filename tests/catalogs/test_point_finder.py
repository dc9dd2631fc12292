"""HAP's PSF star finder (``starfinder_algorithm="psf"``, inventory 5.3) against its rules.

DrizzlePac's PSF path measures only peaks of the region *minus* ``nsigma x region noise``
(clipped at 0): every point source therefore has a pixel above that threshold in the
background-subtracted total image, and none lies within ``footprint_erosion + region_size``
pixels of the data edge. DAOStarFinder (HAP's ``"dao"`` fall-back, and hapdask's finder before)
keeps more (sharpness 0.2-1.0 on the unthresholded image) and searches up to the footprint edge.
"""

from __future__ import annotations

import numpy as np
import pytest
from catalog_truth import BORDER, SHAPE
from scipy import ndimage

from hapdask.catalogs import (
    CatalogParams,
    compute_background,
    detect_point_sources,
    footprint_mask,
    weight_regions,
)


def _detect(fld, **overrides):
    params = CatalogParams.for_detector("acs_wfc", **overrides)
    fp = footprint_mask(fld.total, params)
    bkg = compute_background(fld.total, params, fp)
    regions = weight_regions(fld.total, bkg.rms, params, fp)
    return detect_point_sources(fld.total, bkg, regions, fp, params), bkg, regions, params


@pytest.mark.parametrize("which", ["field", "dense_field"])
def test_every_psf_source_has_a_pixel_above_the_threshold(which, request):
    fld = request.getfixturevalue(which)
    src, bkg, regions, params = _detect(fld)
    assert len(src) >= 20
    image = np.nan_to_num(fld.total.sci) - bkg.background
    # the 3x3 maximum around each source against its region's threshold
    peak = ndimage.maximum_filter(image, size=3)
    thresh = np.zeros(image.shape)
    for reg in regions:
        thresh[reg.mask] = params.nsigma * reg.noise
    x = np.round(np.asarray(src["X-Center"])).astype(int)
    y = np.round(np.asarray(src["Y-Center"])).astype(int)
    assert np.all(peak[y, x] > thresh[y, x])


def test_no_psf_source_near_the_data_edge(field):
    src, _bkg, _regions, params = _detect(field)
    lo = BORDER + params.footprint_erosion + params.region_size
    x, y = np.asarray(src["X-Center"]), np.asarray(src["Y-Center"])
    assert np.all((x >= lo - 1) & (x <= SHAPE[1] - lo) & (y >= lo - 1) & (y <= SHAPE[0] - lo))


def test_dao_fallback_finds_more_and_edge_sources(field):
    """The "dao" fall-back (hapdask's finder before) finds more sources than the PSF path
    (the PSF path measures sharpness on the threshold-subtracted image, with limits 0.4-0.9)
    and finds them in the 21-pixel edge strip the PSF path does not search."""
    dao, _bkg, _regions, params = _detect(field, starfinder="dao")
    psf, *_ = _detect(field)
    lo = BORDER + params.footprint_erosion + params.region_size
    x, y = np.asarray(dao["X-Center"]), np.asarray(dao["Y-Center"])
    edge = ~((x >= lo - 1) & (x <= SHAPE[1] - lo) & (y >= lo - 1) & (y <= SHAPE[0] - lo))
    print(f"\nsparse field: dao {len(dao)} sources ({int(edge.sum())} in the edge strip), "
          f"psf {len(psf)}")
    assert edge.sum() > 0
    assert len(dao) > len(psf)


def test_starfinder_is_validated():
    with pytest.raises(ValueError, match="starfinder"):
        CatalogParams.for_detector("acs_wfc", starfinder="iraf")
