"""The mosaic engine: AstroDrizzle's steps as a tiled Dask graph, for SVM, MVM and custom mosaics.

One concept per module:

* :mod:`~hapdask.mosaic.grid` — :class:`OutputGrid` (a celestial WCS with a shape) and its
  constructors (AstroDrizzle ``final_*`` parameters, SkyCell sub-array, north-up visit grid);
* :mod:`~hapdask.mosaic.inputs` — :class:`ChipRef`, an input chip as the graph sees it;
* :mod:`~hapdask.mosaic.params` — :class:`DrizzleParams` and :class:`AstroDrizzleParams`
  (every AstroDrizzle parameter by name, defaults, validation);
* :mod:`~hapdask.mosaic.tiles` — tiles, exact per-tile input boxes, chip regions;
* :mod:`~hapdask.mosaic.stages` — the work of one task of each stage;
* :mod:`~hapdask.mosaic.graph` — the stages wired as Dask tasks;
* :mod:`~hapdask.mosaic.coverage` — chip coverage rasters (C, T);
* :mod:`~hapdask.mosaic.wcsio` — WCS transport to the tasks;
* :mod:`~hapdask.mosaic.products` — drizzled product, cosmic-ray mask files, DQ update;
* :mod:`~hapdask.mosaic.job` — :func:`drizzle`, AstroDrizzle's job (``hapdask drizzle``).
"""

from hapdask.mosaic.grid import OutputGrid, astrodrizzle_grid, north_up_grid, skycell_grid
from hapdask.mosaic.inputs import ChipRef, chip_refs
from hapdask.mosaic.job import DrizzleResult, drizzle
from hapdask.mosaic.params import AstroDrizzleParams, DrizzleParams, ParameterError

__all__ = ["AstroDrizzleParams", "ChipRef", "DrizzleParams", "DrizzleResult", "OutputGrid",
           "ParameterError", "astrodrizzle_grid", "chip_refs", "drizzle", "north_up_grid",
           "skycell_grid"]
