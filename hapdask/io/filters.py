"""Filter names: raw header values to the normalised HAP filter name (inventory section 1.3).

:func:`normalize_filter` is the one implementation in :mod:`skycells.names` (the layer file
names use it too), re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping

from skycells.names import normalize_filter

__all__ = ["normalize_filter", "raw_filters"]


def raw_filters(header: Mapping, instrument: str, *, where: str = "primary header") -> str:
    """Return the raw filter string of a primary header, ``;``-separated like a poller.

    WFC3 (and other single-wheel instruments): ``FILTER``; ACS: ``FILTER1;FILTER2``; WFPC2:
    ``FILTNAM1;FILTNAM2``.

    Raises
    ------
    ValueError
        If a required keyword is missing (the message names ``where``).
    """
    inst = instrument.upper()
    if inst == "ACS":
        keys = ("FILTER1", "FILTER2")
    elif inst == "WFPC2":
        keys = ("FILTNAM1", "FILTNAM2")
    else:
        keys = ("FILTER",)
    values = []
    for key in keys:
        if key not in header:
            raise ValueError(f"{where}: keyword {key} is missing ({inst} filter)")
        values.append(str(header[key]).strip())
    return ";".join(values)
