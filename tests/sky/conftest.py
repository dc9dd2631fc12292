"""Fixtures of the sky tests (defined in skycases.py, a uniquely named module the tests import)."""

from skycases import acs, dp_static  # noqa: F401
