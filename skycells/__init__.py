"""The HAP sky grid: ProjectionCells and SkyCells (numpy + astropy only).

Public API
----------
ProjectionCell, SkyCell
    WCS of the 2644 projection cells and of their 21 x 21 SkyCells (bit-exact with DrizzlePac).
cells_for_footprint
    Names of the SkyCells an exposure overlaps (exact geometry).
cells_for_polygons
    The same for many polygons at once (vectorised; ``skycells.bulk``).
bounded_wcs
    Smallest sub-array WCS of a SkyCell holding a set of footprints.
layer_filename, normalize_filter, has_coarse_layer, name_component, product_name_parts
    MVM product naming rules; the one gate from header values to file-name components.
"""

from skycells.bulk import cells_for_polygons
from skycells.cells import SCALES, ProjectionCell, SkyCell, parse_scale
from skycells.footprint import bounded_wcs, cells_for_footprint, footprint_polygons, wcs_outline
from skycells.names import (
    KNOWN_DETECTORS,
    has_coarse_layer,
    layer_filename,
    name_component,
    normalize_filter,
    product_name_parts,
)

__all__ = [
    "KNOWN_DETECTORS",
    "SCALES",
    "ProjectionCell",
    "SkyCell",
    "bounded_wcs",
    "cells_for_footprint",
    "cells_for_polygons",
    "footprint_polygons",
    "has_coarse_layer",
    "layer_filename",
    "name_component",
    "normalize_filter",
    "parse_scale",
    "product_name_parts",
    "wcs_outline",
]
