"""MVM product naming (``skycells.md`` section 4; inventory section 1.3)."""

from __future__ import annotations

from collections.abc import Sequence

from skycells.cells import SCALES, SkyCell, parse_scale

#: (instrument, detector) pairs that get a coarse (0.12"/pix) layer besides the fine one.
COARSE_DETECTORS = frozenset({("wfc3", "ir"), ("wfpc2", "pc")})


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
        For an invalid name or scale, or a coarse layer of a detector that has none.

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
    instr = instrument.strip().lower()
    det = detector.strip().lower()
    if not instr or not det:
        raise ValueError("instrument and detector must be non-empty")
    kind = "drc" if flc else "drz"
    return f"hst_{name}_{instr}_{det}_{normalize_filter(filter)}_{layer}_{kind}.fits"
