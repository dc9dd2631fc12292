"""Full-sky planning: an archive inventory -> the SkyCells to build and what goes into each.

* :func:`read_inventory` reads a MAST-style exposure table (Parquet, ECSV, CSV);
  :func:`inventory_from_exposures` builds one from FITS headers;
* :func:`parse_s_region` parses STC-S ``s_region`` strings (one POLYGON per chip);
* :func:`assign` finds every exposure's SkyCells (vectorised, parallel with Dask; the geometry of
  :func:`skycells.cells_for_footprint`);
* :func:`plan_archive` writes ``PLAN/`` (assignments, SkyCells with cost estimates, pollers on
  demand) and :func:`read_plan` reads it back; ``hapdask plan`` is the command.
"""

from hapdask.archive.assign import Assignments, assign
from hapdask.archive.cost import CostModel
from hapdask.archive.inventory import inventory_from_exposures, read_inventory, write_inventory
from hapdask.archive.planfile import ArchivePlan, plan_archive, read_plan, write_pollers
from hapdask.archive.sregion import parse_s_region, parse_s_regions

__all__ = ["ArchivePlan", "Assignments", "CostModel", "assign", "inventory_from_exposures",
           "parse_s_region", "parse_s_regions", "plan_archive", "read_inventory", "read_plan",
           "write_inventory", "write_pollers"]
