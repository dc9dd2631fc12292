"""Fixtures of the catalog tests: simulated drizzle-like fields (see :mod:`catalog_truth`)."""

from __future__ import annotations

import pytest
from catalog_truth import TruthField, make_field


@pytest.fixture(scope="session")
def field() -> TruthField:
    """The sparse simulated field (900 stars and 500 galaxies per square arcminute)."""
    return make_field()


@pytest.fixture(scope="session")
def dense_field() -> TruthField:
    """A crowded field (4000 stars and 1500 galaxies per square arcminute)."""
    return make_field(seed=11, star_density=4000.0, galaxy_density=1500.0)
