"""Fixtures shared by the mosaic engine's tests."""

from __future__ import annotations

import pytest

from hapdask.simulate import simulate_visits


@pytest.fixture(scope="session")
def trio(tmp_path_factory) -> list[str]:
    """Three small simulated visits of p1889x07y19, two F775W exposures each (seed 2): inputs
    whose final drizzle reuses the separate sums and has cosmic rays to redrizzle (the scratch
    discard and banded-product tests)."""
    s = simulate_visits("p1889x07y19", tmp_path_factory.mktemp("three_visits") / "set",
                        visits=3, small=True, seed=2, exposures_per_filter=2,
                        filters=["F775W"])
    return [str(p) for p in s.exposures]
