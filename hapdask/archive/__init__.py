"""Full-sky planning: an archive inventory -> the SkyCells to build and what goes into each.

* :func:`read_inventory` reads a MAST-style exposure table (Parquet, ECSV, CSV);
  :func:`inventory_from_exposures` builds one from FITS headers;
* :func:`parse_s_region` parses STC-S ``s_region`` strings (one POLYGON per chip);
* :func:`assign` finds every exposure's SkyCells (vectorised, parallel with Dask; the geometry of
  :func:`skycells.cells_for_footprint`);
* :func:`plan_archive` writes ``PLAN/`` (assignments, SkyCells with cost estimates, pollers on
  demand) and :func:`read_plan` reads it back; ``hapdask plan`` is the command.
"""

from hapdask._lazy import lazy_names

# lazy (PEP 562): the planning modules import pandas/pyarrow (~0.5 s), which users of
# ``hapdask.archive.sregion`` alone (S_REGION formatting in every product) must not pay
__getattr__, __all__ = lazy_names(__name__, {
    "ArchivePlan": "planfile", "Assignments": "assignment", "CostModel": "cost",
    "assign": "assignment",
    "format_s_region": "sregion", "inventory_from_exposures": "inventory",
    "parse_s_region": "sregion", "parse_s_regions": "sregion", "plan_archive": "planfile",
    "read_inventory": "inventory", "read_plan": "planfile", "write_inventory": "inventory",
    "write_pollers": "planfile"})
