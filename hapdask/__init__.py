"""hapdask: Hubble Advanced Products (SVM/MVM) mosaics as a Dask dataflow.

The package follows the data flow of ``design/ARCHITECTURE.md``:

``hapdask.io``        HST exposures, pollers and input lists in
``hapdask.analyze``   the analyze rules deciding which exposures are usable
``hapdask.drizzle``   numba drizzle kernels, blot and distortion-aware pixel maps
``hapdask.simulate``  realistic simulated visits with known truth (and the demo data)
``hapdask.mvm``       SkyCell layers as tiled xarray/Dask graphs
``hapdask.export``    lazy, tile-by-tile FITS and zarr writers
``hapdask.cli``       the ``hapdask`` command, a thin layer over the above

The sky grid itself lives in the sibling package :mod:`skycells`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hapdask")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
