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


import importlib

from hapdask.mvm.graph import layers, radec
from hapdask.mvm.planning import LayerPlan, MvmPlan, Rejection, plan
from hapdask.mvm.runner import MvmResult, run
from hapdask.mvm.sky import ChipMedianSky, SkyLevel, SkyMethod

#: Names imported on first use (PEP 562): their modules pull pandas and the archive planner
#: (``batch``) or dask.array, xarray and zarr (``projection``), ~1 s of imports at the start of
#: every ``hapdask mvm`` run that needs none of them.
_LAZY = {"BatchResult": "hapdask.mvm.batch", "run_batch": "hapdask.mvm.batch",
         "projection_cell": "hapdask.mvm.projection"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hapdask.mvm' has no attribute {name!r}")


__all__ = ["BatchResult", "ChipMedianSky",
           "LayerPlan", "MvmPlan", "MvmResult", "Rejection", "SkyLevel",
           "SkyMethod", "layers", "plan", "projection_cell", "radec", "run", "run_batch"]
