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

from hapdask._lazy import lazy_names

# Names are imported on first use: hapdask.sky.stats compiles numba kernels (numba's import
# alone is ~0.3 s CPU), which planning (hapdask.mvm imports the SkyLevel interface) never needs.
_LAZY = {
    "SKYMETHODS": "params", "SKYSTATS": "params", "AstroDrizzleSky": "methods",
    "ChipMeasure": "methods", "ClippedStats": "stats", "Overlap": "overlap",
    "SkyLevel": "level", "SkyMethod": "level", "SkyParams": "params", "Spans": "overlap",
    "brightness_factor": "stats", "chip_overlap": "overlap", "clipped_stats": "stats",
    "good_sky_pixels": "stats", "measure_chip": "methods", "signature": "static",
    "sky_statistic": "stats", "solve_sky": "methods", "static_mask_tasks": "static",
    "static_part": "static",
}

__getattr__, __all__ = lazy_names(__name__, _LAZY)
