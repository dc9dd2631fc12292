"""MVM product naming (``skycells.md`` section 4; inventory section 1.3)."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from skycells.cells import SCALES, SkyCell, parse_scale

#: (instrument, detector) pairs that get a coarse (0.12"/pix) layer besides the fine one.
COARSE_DETECTORS = frozenset({("wfc3", "ir"), ("wfpc2", "pc")})

#: The instruments and detectors HAP products are made for (lower case), and each detector's
#: nominal pixel scale in arcsec (instrument handbooks; WFPC2 "pc" stands for all four chips).
KNOWN_DETECTORS: dict[str, dict[str, float]] = {
    "acs": {"wfc": 0.05, "hrc": 0.025, "sbc": 0.032},
    "wfc3": {"uvis": 0.0396, "ir": 0.1283},
    "wfpc2": {"pc": 0.0996},
}

_COMPONENT = re.compile(r"[a-z0-9][a-z0-9-]*")


def name_component(value: object, what: str, known: Collection[str] | None = None) -> str:
    """The one gate from a header value to a product-name component.

    Header values (instrument, detector, filter, rootname, proposal) end up in file names: a
    value is accepted only when, lower-cased and stripped, it is made of ``[a-z0-9-]`` (first
    character not ``-``) and, when ``known`` is given, is one of those values.

    Parameters
    ----------
    value : object
        The header value.
    what : str
        What it is (``"INSTRUME"``, ``"FILTER"`` ...), for the error message.
    known : collection of str, optional
        The only values allowed (lower case).

    Returns
    -------
    str
        The component (lower case).

    Raises
    ------
    ValueError
        Naming ``what`` and the offending value (control characters escaped).
    """
    text = str(value).strip().lower()
    shown = ascii(str(value))[:80]
    if not _COMPONENT.fullmatch(text) or len(text) > 64:
        raise ValueError(f"{what}={shown} cannot be part of a product name (allowed: a-z, 0-9, "
                         "'-')")
    if known is not None and text not in known:
        raise ValueError(f"{what}={shown} is not one of {', '.join(sorted(known))}")
    return text


def product_name_parts(instrument: str, detector: str,
                       filter: str | Sequence[str | None]) -> tuple[str, str, str]:
    """Checked ``(instrument, detector, filter)`` components of a product name.

    Instrument and detector must be a known pair (:data:`KNOWN_DETECTORS`); the filter is
    normalised (:func:`normalize_filter`) and must pass :func:`name_component`.

    Raises
    ------
    ValueError
        For any value that is not a valid name component.
    """
    instr = name_component(instrument, "INSTRUME", KNOWN_DETECTORS)
    det = name_component(detector, "DETECTOR", KNOWN_DETECTORS[instr])
    filt = name_component(normalize_filter(filter), "FILTER")
    return instr, det, filt


def normalize_filter(filters: str | Sequence[str | None] | None) -> str:
    """Normalise an HST filter specification to the HAP product filter name.

    Rules (DrizzlePac ``determine_filter_name``): lower-case; a string is split on ``';'``;
    only the first two entries are kept; entries containing ``clear`` or ``n/a`` (and empty
    ones) are dropped; a polariser (``pol*``) is put second; the rest are joined with ``'-'``;
    if nothing is left the result is ``'clear'``.

    Parameters
    ----------
    filters : str or sequence of str
        E.g. ``"F160W"``, ``"F850LP;CLEAR2L"``, ``("F606W", "POL60V")``, ``["CLEAR1L", "N/A"]``.

    Examples
    --------
    >>> normalize_filter("F850LP;CLEAR2L")
    'f850lp'
    >>> normalize_filter(("POL60V", "F606W"))
    'f606w-pol60v'
    """
    if filters is None:
        tokens: list[str] = []
    elif isinstance(filters, str):
        tokens = filters.split(";")
    else:
        tokens = ["" if f is None else str(f) for f in filters]
    tokens = [t.strip().lower() for t in tokens[:2]]
    kept = [t for t in tokens if t and "clear" not in t and "n/a" not in t]
    if not kept:
        return "clear"
    kept.sort(key=lambda t: t.startswith("pol"))  # stable: polariser last
    return "-".join(kept)


def has_coarse_layer(instrument: str, detector: str) -> bool:
    """True for the detectors that get a coarse layer too: WFC3/IR and WFPC2/PC."""
    return (instrument.strip().lower(), detector.strip().lower()) in COARSE_DETECTORS


def layer_filename(
    cell: SkyCell | str,
    instrument: str,
    detector: str,
    filter: str | Sequence[str | None],
    scale: str | float = "fine",
    flc: bool = False,
) -> str:
    """File name of an MVM layer product.

    ``hst_skycell-pPPPPxXXyYY_<instr>_<det>_<filter>_<layer>_<drz|drc>.fits``, all lower case,
    with layer ``all`` (fine) or ``coarse-all`` (coarse), and ``drc`` when the layer is built
    from FLC inputs.

    Parameters
    ----------
    cell : SkyCell or str
        The SkyCell or its name (``skycell-p1889x07y19`` or ``p1889x07y19``).
    instrument, detector : str
        E.g. ``"WFC3"``, ``"IR"``.
    filter : str or sequence of str
        Filter specification, normalised with :func:`normalize_filter`.
    scale : "fine", "coarse", 0.04 or 0.12
        Layer scale.
    flc : bool
        True if the layer's inputs are FLC (CTE-corrected) files.

    Raises
    ------
    ValueError
        For an invalid name or scale, a coarse layer of a detector that has none, or an
        instrument, detector or filter that is not a valid name component
        (:func:`product_name_parts`).

    Examples
    --------
    >>> layer_filename("p1889x07y19", "WFC3", "IR", "F160W", "coarse", False)
    'hst_skycell-p1889x07y19_wfc3_ir_f160w_coarse-all_drz.fits'
    """
    name = cell.name if isinstance(cell, SkyCell) else SkyCell.from_name(cell).name
    value = parse_scale(scale)
    if value == SCALES["fine"]:
        layer = "all"
    elif value == SCALES["coarse"]:
        if not has_coarse_layer(instrument, detector):
            raise ValueError(
                f"{instrument}/{detector} has no coarse layer (only WFC3/IR and WFPC2/PC)"
            )
        layer = "coarse-all"
    else:
        raise ValueError(f"MVM layers are 'fine' or 'coarse', got scale {scale!r}")
    instr, det, filt = product_name_parts(instrument, detector, filter)
    kind = "drc" if flc else "drz"
    return f"hst_{name}_{instr}_{det}_{filt}_{layer}_{kind}.fits"
