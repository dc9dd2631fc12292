"""Fixtures of the combine tests (defined in stacks.py, which the tests import by name)."""

from stacks import stacks  # noqa: F401
