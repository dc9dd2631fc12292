"""HAP source catalogs of drizzled products (DrizzlePac ``catalog_utils`` / ``hla_flag_filter``).

=============  ==================================================================================
module         concept
=============  ==================================================================================
params         :class:`CatalogParams`: HAP's catalog/flag parameters per detector
product        :class:`DrizzleProduct`: SCI + WHT + WCS + header (+ exposure count) in memory
background     background/rms (inventory 5.1), weight regions and thresholds (5.2)
photometry     two-aperture photometry with annulus sky, ABMAG, CI
flags          HAP flag bits (5.5)
point          point-source detection and forced photometry (5.3)
segment        segmentation detection, deblending, SourceCatalog columns (5.4)
assemble       the chain's steps (detection inputs, point / segment detection, per-filter
               measurement: separate tasks for a caller that schedules them), total-catalog
               assembly, trimming, CR-contamination rule, ECSV output (5.6)
=============  ==================================================================================
"""

from hapdask.catalogs.assemble import (
    CatalogProducts,
    Detection,
    FilterCatalogs,
    assemble_catalogs,
    catalog_filename,
    catalog_meta,
    cr_contamination,
    detect_points,
    detect_segmentation,
    filter_background,
    filter_backgrounds,
    make_catalogs,
    measure_filter,
    prepare_detection,
    total_catalog,
    write_catalog,
)
from hapdask.catalogs.background import (
    Background,
    WeightRegion,
    compute_background,
    footprint_mask,
    threshold_image,
    weight_regions,
)
from hapdask.catalogs.flags import FLAG_BITS, source_flags
from hapdask.catalogs.params import CatalogParams
from hapdask.catalogs.photometry import abmag, aperture_photometry_hap
from hapdask.catalogs.point import detect_point_sources, measure_point_sources
from hapdask.catalogs.product import DrizzleProduct, context_count, read_product
from hapdask.catalogs.segment import Segmentation, detect_segments, measure_segments

__all__ = [
    "Background", "CatalogParams", "CatalogProducts", "Detection", "DrizzleProduct", "FLAG_BITS",
    "FilterCatalogs", "Segmentation", "WeightRegion", "abmag", "aperture_photometry_hap",
    "assemble_catalogs", "catalog_filename", "catalog_meta",
    "compute_background", "context_count", "cr_contamination", "detect_point_sources",
    "detect_points", "detect_segmentation", "detect_segments", "filter_background",
    "filter_backgrounds",
    "footprint_mask", "make_catalogs", "measure_filter", "measure_point_sources",
    "prepare_detection",
    "measure_segments", "read_product", "source_flags", "threshold_image", "total_catalog",
    "weight_regions", "write_catalog",
]
