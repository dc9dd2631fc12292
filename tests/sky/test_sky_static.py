"""Static mask against drizzlepac's staticMask on the same chips."""

from __future__ import annotations

import dask
import numpy as np
from skycases import chip_refs

from hapdask.sky import static_mask_tasks


def test_static_mask_matches_drizzlepac(acs, dp_static):
    files = acs["offset"]
    theirs, sigs = dp_static("offset")
    chips = chip_refs(files, 80)
    graph, keys = static_mask_tasks(chips, "static", 4.0)
    ours = dict(zip(keys, dask.get(graph, list(keys.values())), strict=True))
    # the same grouping as drizzlepac 3.11: one mask per exposure chip
    assert len(set(keys.values())) == len(set(sigs.values())) == len(chips)
    flagged = 0
    for c in chips:
        np.testing.assert_array_equal(ours[c.key], theirs[c.key])
        flagged += int((~ours[c.key]).sum())
    assert flagged > 0  # the check is not vacuous: some pixels are low


def test_static_mask_across_exposures_is_and_of_parts(acs, dp_static):
    files = acs["offset"]
    theirs, _ = dp_static("offset")
    chips = chip_refs(files, 80)
    graph, keys = static_mask_tasks(chips, "static", 4.0, across_exposures=True)
    assert len(set(keys.values())) == 2  # one per detector chip (SCI,1 and SCI,2)
    ours = dict(zip(keys, dask.get(graph, list(keys.values())), strict=True))
    for ext in (1, 2):
        want = np.logical_and.reduce([theirs[c.key] for c in chips if c.key[1] == ext])
        for c in chips:
            if c.key[1] == ext:
                np.testing.assert_array_equal(ours[c.key], want)
