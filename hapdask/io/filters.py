"""Filter names: raw header values to the normalised HAP filter name (inventory section 1.3)."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["normalize_filter", "raw_filters"]


def normalize_filter(raw: str) -> str:
    """Return the HAP filter name for a ``;``-separated raw filter string.

    The rules of drizzlepac ``determine_filter_name``: lower-case; split on ``;`` and keep the
    first two tokens (dropping the bogus third token of some SBC pollers); discard tokens
    containing ``clear`` or ``n/a`` (and blank tokens); none left gives ``"clear"``; a polariser
    (``pol*``) is moved to second place; the rest is joined with ``-``.

    Examples
    --------
    >>> normalize_filter("F850LP;CLEAR2L")
    'f850lp'
    >>> normalize_filter("POL60V;F606W")
    'f606w-pol60v'
    >>> normalize_filter("CLEAR1L;CLEAR2L")
    'clear'
    """
    tokens = [t.strip().lower() for t in str(raw).split(";")][:2]
    keep = [t for t in tokens if t and "clear" not in t and "n/a" not in t]
    if not keep:
        return "clear"
    if len(keep) == 2 and keep[0].startswith("pol") and not keep[1].startswith("pol"):
        keep = [keep[1], keep[0]]
    return "-".join(keep)


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
