"""Lazy package namespaces (PEP 562): one home for the ``__getattr__`` the packages share.

A package whose modules are costly to import (numba code, photutils) lists its public names and
the submodule holding each; a name is imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_names(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], object], list[str]]:
    """``(__getattr__, __all__)`` for ``package``: ``names`` maps a public name to its submodule.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    names : mapping
        Public name -> submodule (relative to ``package``) that defines it.

    Returns
    -------
    tuple
        The module-level ``__getattr__`` and the sorted ``__all__``.
    """

    def __getattr__(name: str):
        try:
            module = names[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__, sorted(names)
