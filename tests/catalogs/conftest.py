"""Fixtures of the catalog tests: simulated drizzle-like fields (see :mod:`catalog_truth`)."""

from __future__ import annotations

import pytest
from catalog_truth import TruthField, make_field

from hapdask.catalogs import CatalogParams, CatalogProducts, make_catalogs


@pytest.fixture(scope="session")
def field() -> TruthField:
    """The sparse simulated field (900 stars and 500 galaxies per square arcminute)."""
    return make_field()


@pytest.fixture(scope="session")
def dense_field() -> TruthField:
    """A crowded field (4000 stars and 1500 galaxies per square arcminute)."""
    return make_field(seed=11, star_density=4000.0, galaxy_density=1500.0)


@pytest.fixture(scope="session")
def field_catalogs(field) -> CatalogProducts:
    """HAP ACS/WFC catalogs of the sparse field."""
    return make_catalogs(field.total, field.filters, CatalogParams.for_detector("acs_wfc"))


@pytest.fixture(scope="session")
def dense_catalogs(dense_field) -> CatalogProducts:
    """HAP ACS/WFC catalogs of the dense field."""
    return make_catalogs(dense_field.total, dense_field.filters,
                         CatalogParams.for_detector("acs_wfc"))
