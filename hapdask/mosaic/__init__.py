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

Names are imported lazily (on first use), so that importing one module of the engine (e.g.
:mod:`~hapdask.mosaic.tiles` for planning) does not import the whole engine and its
dependencies (:func:`drizzle` pulls in the export, sky and combine packages).
"""

from __future__ import annotations

from hapdask._lazy import lazy_names

_LAZY = {
    "AstroDrizzleParams": "params",
    "ChipRef": "inputs",
    "DrizzleParams": "params",
    "DrizzleResult": "job",
    "OutputGrid": "grid",
    "ParameterError": "params",
    "astrodrizzle_grid": "grid",
    "chip_refs": "inputs",
    "drizzle": "job",
    "north_up_grid": "grid",
    "skycell_grid": "grid",
}

__getattr__, __all__ = lazy_names(__name__, _LAZY)
