"""Multi-Visit Mosaics of a SkyCell as tiled Dask graphs.

* :func:`plan` — inputs, MVM rules, layers, bounded output grids, tiles x chips
  (:class:`MvmPlan`; ``print(plan.describe())`` is what ``hapdask mvm --dry-run`` shows);
* :func:`layers` — the layers as lazy ``xarray.Dataset`` objects (``sci``, ``wht``, ``ctx``
  chunked by tiles); :func:`radec` gives lazy RA/Dec of a layer;
* :func:`run` — plan, drizzle and export (FITS + zarr, manifest, trailers), the Python entry
  point of ``hapdask mvm``;
* :func:`run_batch` — many SkyCells of an archive plan on one cluster (``hapdask mvm --plan``);
* :func:`projection_cell` — a whole ProjectionCell as one lazy array over a run's SkyCell stores.
"""

from hapdask.mvm.batch import BatchResult, run_batch
from hapdask.mvm.graph import layers, radec
from hapdask.mvm.planning import LayerPlan, MvmPlan, Rejection, plan
from hapdask.mvm.projection import projection_cell
from hapdask.mvm.runner import MvmResult, run
from hapdask.mvm.sky import ChipMedianSky, SkyLevel, SkyMethod

__all__ = ["BatchResult", "ChipMedianSky",
           "LayerPlan", "MvmPlan", "MvmResult", "Rejection", "SkyLevel",
           "SkyMethod", "layers", "plan", "projection_cell", "radec", "run", "run_batch"]
