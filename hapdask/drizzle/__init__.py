"""Drizzle engine: numba kernels, blot and distortion-aware pixel maps.

The public API mirrors ``drizzle.resample`` 3.0 so that switching is a one-line import change::

    from hapdask.drizzle import Drizzle, blot_image, calc_pixmap

Names are imported lazily so that ``import hapdask.drizzle`` does not compile any numba code.
"""

from __future__ import annotations

from hapdask._lazy import lazy_names

_LAZY = {
    "Drizzle": "resample",
    "blot_image": "blot",
    "calc_pixmap": "pixmap",
    "calc_pixmap_at": "pixmap",
    "fast_models": "pixmap",
    "FastModels": "pixmap",
    "grown_segments": "pixmap",
    "fill_segments": "pixmap",
    "add_to_tile": "tile",
    "finalize_tile": "tile",
    "input_bbox": "tile",
}

__getattr__, __all__ = lazy_names(__name__, _LAZY)
