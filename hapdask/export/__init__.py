"""Lazy, tile-by-tile exporters: HAP-layout FITS layers, a zarr v3 store per SkyCell, manifest.

``fits``      preallocated FITS written tile by tile at byte offsets, temp name then rename
``zarr``      one group per layer, one shard per tile, resumable via per-tile markers
``stats``     whole-layer keywords (MEANWHT, MEDNEXP, ...) merged from per-tile summaries
``headers``   combined PRIMARY keywords, D### keywords and HDRTAB (MVM header rules)
``manifest``  the SkyCell manifest and the per-layer trailer logs
"""
