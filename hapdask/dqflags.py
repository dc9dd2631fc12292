"""The one registry of HST data-quality (DQ) bit flags, and good-pixel masks.

HST ACS and WFC3 calibrated exposures (FLT/FLC) carry a 16-bit DQ array per chip; each set bit
marks one condition. The values below are the ACS/WFC3 assignments (ACS and WFC3 data handbooks
and the ACS "DQ flag definitions" page); where WFC3/IR uses a bit differently the description
says so. WFPC2 uses a different assignment and is not described here (its bits are still plain
integers for :func:`good_pixel_mask`).

"Good bits" follow the DrizzlePac convention (``final_bits``, ``driz_sep_bits``, ``sky_bits``):
they list the flags that are *ignored*, i.e. still treated as good. A pixel is good when none of
its set bits lies outside ``good_bits``::

    good = (dq & ~good_bits) == 0

so ``good_bits=0`` keeps only unflagged pixels and ``good_bits=65535`` ignores every one of the 16
HST bits (DQ effectively unused, as MVM does for single-exposure layers). ``good_bits=None`` means
"ignore the DQ array entirely" (every pixel good, whatever its width).

Example
-------
>>> import numpy as np
>>> dq = np.array([0, 16, 64, 4096], dtype=np.uint16)
>>> good_pixel_mask(dq, "HOT,WARM").tolist()
[True, True, True, False]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "DQFlag",
    "DQ_FLAGS",
    "MVM_FINAL_BITS",
    "flag_names",
    "good_pixel_mask",
    "interpret_bits",
    "mvm_final_bits",
]


@dataclass(frozen=True)
class DQFlag:
    """One DQ bit: its registry ``name``, integer ``value`` (a power of two) and description."""

    name: str
    value: int
    description: str


#: Every ACS/WFC3 DQ flag, in bit order.
DQ_FLAGS: tuple[DQFlag, ...] = (
    DQFlag("REED_SOLOMON", 1, "Reed-Solomon decoding error (data lost in transmission)"),
    DQFlag("FILL", 2, "data replaced by fill value"),
    DQFlag("BAD_DETECTOR", 4, "bad detector pixel or beyond aperture (vignetted)"),
    DQFlag(
        "MASKED",
        8,
        "ACS: masked by aperture feature (HRC occulting finger); "
        "WFC3/UVIS: deviant bias value; WFC3/IR: unstable in zero read",
    ),
    DQFlag("HOT", 16, "hot pixel (dark current above the hot threshold)"),
    DQFlag(
        "UNSTABLE",
        32,
        "ACS: unstable dark current / telegraph pixel; WFC3/UVIS: CTE tail; "
        "WFC3/IR: unstable response",
    ),
    DQFlag("WARM", 64, "warm pixel (dark current between the warm and hot thresholds)"),
    DQFlag("BAD_COLUMN", 128, "bias structure / bad column; WFC3/IR: bad reference pixel"),
    DQFlag("SATURATED", 256, "full-well saturated pixel"),
    DQFlag("BAD_FLAT", 512, "bad or uncertain flat-field value (bad pixel in reference file)"),
    DQFlag("CHARGE_TRAP", 1024, "charge trap / sink pixel (CCDs); WFC3/IR: spare"),
    DQFlag("ATOD_SATURATED", 2048, "A-to-D saturated pixel; WFC3/IR: signal in zero read"),
    DQFlag("CR_DRIZZLE", 4096, "cosmic ray detected by AstroDrizzle (driz_cr, crbit)"),
    DQFlag("CR_CALIBRATION", 8192, "cosmic ray detected by calacs/calwf3 (CR-SPLIT, up-the-ramp)"),
    DQFlag("CROSSTALK", 16384, "ghost or crosstalk (WFC3); reserved (ACS)"),
    DQFlag("RESERVED", 32768, "reserved"),
)

_BY_NAME = {f.name: f for f in DQ_FLAGS}

#: MVM ``final_bits`` of a layer with two or more exposures (round(MEANNEXP) >= 2), per
#: (instrument, detector), from the drizzlepac 3.11 ``mvm_parameters`` JSON files. A layer with
#: one exposure uses 65535 (``any_n1``: DQ ignored). ACS/SBC depends on the filter; see
#: :func:`mvm_final_bits`.
MVM_FINAL_BITS: dict[tuple[str, str], int] = {
    ("WFC3", "UVIS"): 80,  # 16 + 64: hot and warm pixels kept
    ("WFC3", "IR"): 528,  # 16 + 512
    ("ACS", "WFC"): 80,
    ("ACS", "HRC"): 80,
    ("WFPC2", "PC"): 1034,  # "2,8,1024"
}

_SBC_BLUE = ("F115LP", "F122M")


def flag_names(value: int) -> list[str]:
    """Return the registry names of the bits set in one DQ ``value`` (lowest bit first).

    Bits above 32768 are reported as ``"BIT<value>"``.
    """
    value = int(value)
    if value < 0:
        raise ValueError(f"DQ value must be non-negative, got {value}")
    names = []
    bit = 1
    while bit <= value:
        if value & bit:
            names.append(_flag_name(bit))
        bit <<= 1
    return names


def _flag_name(bit: int) -> str:
    for f in DQ_FLAGS:
        if f.value == bit:
            return f.name
    return f"BIT{bit}"


def interpret_bits(good_bits: int | str | None) -> int | None:
    """Turn a DrizzlePac-style bit specification into an integer (or ``None``).

    Parameters
    ----------
    good_bits : int, str or None
        An integer sum of flag values; or a string of integers and/or registry names
        (case-insensitive) separated by ``,`` or ``+`` (e.g. ``"16,64"``, ``"HOT+WARM"``,
        ``"80"``); a leading ``~`` inverts the 16-bit result (the listed flags become the
        only *bad* ones). ``None``, ``""``, ``"None"`` and ``"INDEF"`` mean "ignore DQ".

    Returns
    -------
    int or None
        The combined good-bit mask, or ``None`` for "ignore DQ".

    Raises
    ------
    ValueError
        For a negative integer, a value that is not a sum of powers of two when given as a
        single token, or an unknown flag name.
    """
    if good_bits is None:
        return None
    if isinstance(good_bits, bool):
        raise ValueError(f"good_bits must be an int, str or None, not {good_bits!r}")
    if isinstance(good_bits, int | np.integer):
        value = int(good_bits)
        if value < 0:
            raise ValueError(f"good_bits must be >= 0, got {value}")
        return value
    if not isinstance(good_bits, str):
        raise ValueError(f"good_bits must be an int, str or None, not {type(good_bits).__name__}")
    text = good_bits.strip()
    if text.upper() in ("", "NONE", "INDEF"):
        return None
    invert = text.startswith("~")
    if invert:
        text = text[1:].strip()
    value = 0
    for token in text.replace("+", ",").split(","):
        token = token.strip()
        if not token:
            raise ValueError(f"empty entry in good_bits {good_bits!r}")
        if token.lstrip("-").isdigit():
            number = int(token)
            if number < 0:
                raise ValueError(f"negative value {number} in good_bits {good_bits!r}")
            value |= number
        else:
            flag = _BY_NAME.get(token.upper())
            if flag is None:
                known = ", ".join(_BY_NAME)
                raise ValueError(
                    f"unknown DQ flag name {token!r} in good_bits {good_bits!r} (known: {known})"
                )
            value |= flag.value
    if invert:
        value = ~value & 0xFFFF
    return value


def good_pixel_mask(dq: np.ndarray, good_bits: int | str | None) -> np.ndarray:
    """Return a boolean array, True where a pixel is good.

    Parameters
    ----------
    dq : ndarray of unsigned or signed integers
        DQ array (any shape). Signed 16-bit arrays (as stored in HST files) are interpreted
        as their unsigned bit pattern.
    good_bits : int, str or None
        Flags still treated as good (see :func:`interpret_bits`). ``0``: only DQ == 0 is good;
        ``65535``: every 16-bit flag ignored; ``None``: every pixel good.

    Returns
    -------
    ndarray of bool
        Same shape as ``dq``.
    """
    dq = np.asarray(dq)
    if dq.dtype.kind not in "iu":
        raise ValueError(f"DQ array must be of integer type, got {dq.dtype}")
    bits = interpret_bits(good_bits)
    if bits is None:
        return np.ones(dq.shape, dtype=bool)
    if dq.dtype.kind == "i":  # same bytes, same byte order (FITS arrays are big-endian)
        dq = dq.view(dq.dtype.str.replace("i", "u"))
    bad = ~bits & int(np.iinfo(dq.dtype).max)
    return (dq & dq.dtype.type(bad)) == 0


def mvm_final_bits(
    instrument: str, detector: str, n_exposures: int, filter: str | None = None
) -> int:
    """Return the MVM ``final_bits`` for a layer (inventory section 4.2).

    Parameters
    ----------
    instrument, detector : str
        E.g. ``"WFC3"``, ``"UVIS"`` (case-insensitive).
    n_exposures : int
        round(MEANNEXP) of the layer. 1 selects the ``any_n1`` parameters: 65535 (DQ ignored).
    filter : str, optional
        Needed for ACS/SBC only: F115LP and F122M use 0; every other SBC filter falls back to
        the generic ``filter_basic`` value 528 (the drizzlepac index-key mismatch, quirk 20).

    Raises
    ------
    ValueError
        For a detector without an MVM parameter set here, or SBC without a filter.
    """
    inst, det = instrument.upper(), detector.upper()
    if n_exposures < 1:
        raise ValueError(f"n_exposures must be >= 1, got {n_exposures}")
    if n_exposures == 1:
        return 65535
    if (inst, det) == ("ACS", "SBC"):
        if filter is None:
            raise ValueError("ACS/SBC final_bits depend on the filter; pass filter=")
        return 0 if filter.upper() in _SBC_BLUE else 528
    try:
        return MVM_FINAL_BITS[(inst, det)]
    except KeyError:
        raise ValueError(f"no MVM final_bits known for {inst}/{det}") from None
