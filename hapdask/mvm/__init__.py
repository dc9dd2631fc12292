"""Multi-Visit Mosaics of a SkyCell as tiled Dask graphs.

* :func:`plan` — inputs, MVM rules, layers, bounded output grids, tiles x chips
  (:class:`MvmPlan`; ``print(plan.describe())`` is what ``hapdask mvm --dry-run`` shows);
* :func:`layers` — the layers as lazy ``xarray.Dataset`` objects (``sci``, ``wht``, ``ctx``
  chunked by tiles); :func:`radec` gives lazy RA/Dec of a layer;
* :func:`run` — plan, drizzle and export (FITS + zarr, manifest, trailers), the Python entry
  point of ``hapdask mvm``;
* :func:`run_batch` — many SkyCells of an archive plan on one cluster (``hapdask mvm --plan``).
"""

from hapdask.mvm.batch import BatchResult, run_batch
from hapdask.mvm.graph import layers, radec
from hapdask.mvm.plan import LayerPlan, MvmPlan, Rejection, plan
from hapdask.mvm.run import MvmResult, run
from hapdask.mvm.sky import ChipMedianSky, SkyLevel, SkyMethod

__all__ = ["BatchResult", "ChipMedianSky",
           "LayerPlan", "MvmPlan", "MvmResult", "Rejection", "SkyLevel",
           "SkyMethod", "layers", "plan", "radec", "run", "run_batch"]
