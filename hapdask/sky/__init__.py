"""AstroDrizzle's static mask and sky step as Dask tasks (issue 9).

Public interface (what the mosaic engine codes against):

* :class:`SkyParams` — AstroDrizzle's parameter names and defaults (``skysub``, ``skymethod``,
  ``skystat``, ``skywidth``, ``skylower``, ``skyupper``, ``skyclip``, ``skylsigma``,
  ``skyusigma``, ``skyuser``, ``sky_bits``, ``use_static``, ``static``, ``static_sig``);
  ``SkyParams.from_dict`` rejects unknown names; bad values raise ``ValueError`` naming them.
* :class:`AstroDrizzleSky` ``(params, static_keys=None)`` — a
  :class:`SkyMethod`: ``tasks(chips, prefix) -> (graph, keys)``, one :class:`SkyLevel` key per
  :class:`hapdask.mosaic.ChipRef` (same order). ``SkyLevel.value`` is the chip's MDRIZSKY (SCI
  units); subtract it from SCI when ``SkyLevel.subtract``; ``ok=False`` chips are unusable
  (``reason``). See :mod:`hapdask.sky.methods`.
* :func:`static_mask_tasks` ``(chips, prefix, static_sig) -> (graph, {chip key: mask key})``
  — AstroDrizzle's static mask (bool, chip shape, True = good), to pass to
  ``AstroDrizzleSky(params, static_keys=...)`` and to multiply into the drizzle weights.
* Numerics usable outside a graph: :func:`clipped_stats` / :func:`sky_statistic`
  (stsci.imagestats semantics), :func:`brightness_factor`, :func:`static_part`,
  :func:`chip_overlap`, :func:`measure_chip`, :func:`solve_sky`.

Typical engine use::

    sg, static_keys = static_mask_tasks(chips, f"static-{fp}", params.static_sig)
    sky = AstroDrizzleSky(params, static_keys=static_keys)
    g, sky_keys = sky.tasks(chips, f"sky-{fp}")
    graph.update(sg); graph.update(g)
"""

from hapdask.sky.level import SkyLevel, SkyMethod
from hapdask.sky.methods import AstroDrizzleSky, ChipMeasure, measure_chip, solve_sky
from hapdask.sky.overlap import Overlap, Spans, chip_overlap
from hapdask.sky.params import SKYMETHODS, SKYSTATS, SkyParams
from hapdask.sky.static import signature, static_mask_tasks, static_part
from hapdask.sky.stats import (
                               ClippedStats,
                               brightness_factor,
                               clipped_stats,
                               good_sky_pixels,
                               sky_statistic,
)

__all__ = ["SKYMETHODS", "SKYSTATS", "AstroDrizzleSky", "ChipMeasure", "ClippedStats",
           "Overlap", "SkyLevel", "SkyMethod", "SkyParams", "Spans", "brightness_factor",
           "chip_overlap", "clipped_stats", "good_sky_pixels", "measure_chip", "signature",
           "sky_statistic", "solve_sky", "static_mask_tasks", "static_part"]
