"""STC-S ``s_region`` strings (as MAST gives them) <-> sky polygons.

:func:`format_s_region` writes the one form every hapdask product uses (``S_REGION`` keywords,
inventories, the simulator): ``POLYGON ICRS ra dec ...`` per polygon, joined by spaces.

Accepted: one or more ``POLYGON [frame] [refpos] ra dec ra dec ...`` shapes per string
(case-insensitive, e.g. ``POLYGON ICRS 10.1 -5.2 ...  POLYGON ICRS ...``, one per chip).
``frame`` is ``ICRS``, ``FK5`` or ``J2000`` (taken as ICRS: the difference is ~20 mas, far below
the SkyCell overlap margins) or absent/``UNKNOWNFRAME`` (taken as ICRS); a reference position
(``GEOCENTER``, ``BARYCENTER``, ``TOPOCENTER``, ``UNKNOWNREFPOS``) and the flavour ``SPHERICAL2``
may follow. A closing vertex equal to the first is dropped. Anything else (other frames,
``CIRCLE``/``BOX``/``POSITION`` shapes, odd coordinate counts, fewer than 3 vertices,
non-numbers, |Dec| > 90) is an error naming what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ParsedRegions", "format_s_region", "parse_s_region", "parse_s_regions"]

_OK_FRAMES = {"ICRS", "FK5", "J2000", "UNKNOWNFRAME"}
_OTHER_FRAMES = {"FK4", "B1950", "GALACTIC", "ECLIPTIC", "GEO_C", "GEO_D"}
_REFPOS = {"GEOCENTER", "BARYCENTER", "HELIOCENTER", "TOPOCENTER", "LSR", "UNKNOWNREFPOS",
           "SPHERICAL2"}
_SHAPES = {"CIRCLE", "BOX", "POSITION", "ELLIPSE", "UNION", "INTERSECTION", "NOT", "CONVEX"}


def format_s_region(polygons, digits: int = 8) -> str:
    """STC-S ``POLYGON ICRS ra dec ...`` of each polygon, joined by a space.

    Parameters
    ----------
    polygons : iterable of (N, 2) array-like
        Vertices (RA, Dec) in degrees of each polygon, in the order to write (not closed).
    digits : int
        Decimal places of every coordinate.

    Returns
    -------
    str
        What :func:`parse_s_region` reads back into the same polygons (to ``digits``).
    """
    fmt = f"{{:.{digits}f}} {{:.{digits}f}}"
    return " ".join("POLYGON ICRS " + " ".join(fmt.format(a, d) for a, d in np.asarray(p))
                    for p in polygons)


def _is_number(tok: str) -> bool:
    c = tok[0]
    return c.isdigit() or c in "+-."


def _tokenize(text: object) -> tuple[list[int], list[str]]:
    """Vertex counts and numeric tokens (unconverted) of every polygon of one string."""
    if not isinstance(text, str):
        raise ValueError(f"s_region is not a string ({type(text).__name__})")
    toks = text.replace("(", " ").replace(")", " ").split()
    if not toks:
        raise ValueError("s_region is empty")
    sizes: list[int] = []
    nums: list[str] = []
    i = 0
    n = len(toks)
    while i < n:
        word = toks[i].upper()
        if word != "POLYGON":
            if word in _SHAPES:
                raise ValueError(f"shape {toks[i]} is not supported (only POLYGON)")
            raise ValueError(f"expected POLYGON, got {toks[i]!r}")
        i += 1
        while i < n and not _is_number(toks[i]):
            w = toks[i].upper().strip("[]")
            if w == "POLYGON":
                break
            if w in _OTHER_FRAMES:
                raise ValueError(f"frame {toks[i]} is not supported (ICRS, FK5, J2000)")
            if w not in _OK_FRAMES and w not in _REFPOS:
                raise ValueError(f"unexpected word {toks[i]!r} in POLYGON")
            i += 1
        j = i
        while j < n and _is_number(toks[j]):
            j += 1
        vals = toks[i:j]
        if len(vals) % 2:
            raise ValueError(f"POLYGON has an odd number of coordinates ({len(vals)})")
        if len(vals) >= 8 and vals[0] == vals[-2] and vals[1] == vals[-1]:
            vals = vals[:-2]  # closing vertex repeated
        if len(vals) < 6:
            raise ValueError(f"POLYGON has {len(vals) // 2} vertices, needs at least 3")
        sizes.append(len(vals) // 2)
        nums.extend(vals)
        i = j
    return sizes, nums


def _check(arr: np.ndarray) -> None:
    if not np.all(np.isfinite(arr)):
        raise ValueError("s_region has non-finite coordinates")
    if np.any(np.abs(arr[:, 1]) > 90.0):
        raise ValueError("s_region has a declination outside -90..90 deg")


def parse_s_region(text: str) -> list[np.ndarray]:
    """Polygons of one ``s_region`` string.

    Returns
    -------
    list of ndarray
        One (V, 2) array of (RA, Dec) degrees per POLYGON, RA in [0, 360).

    Raises
    ------
    ValueError
        If the string is not a list of ICRS/FK5 POLYGONs (see the module docstring).
    """
    sizes, nums = _tokenize(text)
    try:
        arr = np.array([float(v) for v in nums], dtype=np.float64).reshape(-1, 2)
    except ValueError as exc:
        raise ValueError(f"s_region has a coordinate that is not a number ({exc})") from None
    _check(arr)
    arr[:, 0] = np.mod(arr[:, 0], 360.0)
    return np.split(arr, np.cumsum(sizes)[:-1])


@dataclass
class ParsedRegions:
    """Polygons of many ``s_region`` strings, concatenated.

    Attributes
    ----------
    radec : ndarray, shape (M, 2)
        All vertices (RA in [0, 360), Dec), degrees.
    sizes : ndarray of int64
        Vertex count of every polygon.
    owner : ndarray of int64
        Row (index into the input sequence) of every polygon.
    bad : dict[int, str]
        Rows that could not be parsed -> reason.
    """

    radec: np.ndarray
    sizes: np.ndarray
    owner: np.ndarray
    bad: dict[int, str]


def parse_s_regions(texts) -> ParsedRegions:
    """Parse a sequence of ``s_region`` strings; bad rows are reported, not raised.

    Parameters
    ----------
    texts : sequence of str
        One string per row (None or NaN counts as a bad row).

    Returns
    -------
    ParsedRegions
    """
    sizes: list[int] = []
    owner: list[int] = []
    nums: list[str] = []
    row_span: list[tuple[int, int, int]] = []  # row, first polygon, polygon count
    bad: dict[int, str] = {}
    for row, text in enumerate(texts):
        try:
            s, v = _tokenize(text)
        except ValueError as exc:
            bad[row] = str(exc)
            continue
        row_span.append((row, len(sizes), len(s)))
        sizes.extend(s)
        owner.extend([row] * len(s))
        nums.extend(v)
    try:
        flat = np.array(nums, dtype=np.float64)
    except ValueError:  # a non-number somewhere: find its rows, the slow way
        flat = np.empty(len(nums))
        vsz = np.array(sizes, np.int64) * 2
        first = np.concatenate([[0], np.cumsum(vsz)])
        keep_poly = np.ones(len(sizes), bool)
        for row, p0, npoly in row_span:
            a, b = first[p0], first[p0 + npoly]
            try:
                flat[a:b] = [float(v) for v in nums[a:b]]
            except ValueError as exc:
                bad[row] = f"s_region has a coordinate that is not a number ({exc})"
                keep_poly[p0:p0 + npoly] = False
        keep_vals = np.repeat(keep_poly, vsz)
        flat = flat[keep_vals]
        sizes = list(np.asarray(sizes)[keep_poly])
        owner = list(np.asarray(owner)[keep_poly])
    radec = flat.reshape(-1, 2)
    sizes_a = np.asarray(sizes, dtype=np.int64)
    owner_a = np.asarray(owner, dtype=np.int64)
    vert_owner = np.repeat(owner_a, sizes_a)
    wrong = ~np.isfinite(radec).all(axis=1) | (np.abs(radec[:, 1]) > 90.0)
    if wrong.any():
        for row in np.unique(vert_owner[wrong]).tolist():
            bad[int(row)] = "s_region has a non-finite coordinate or a declination outside " \
                            "-90..90 deg"
        keep_poly = ~np.isin(owner_a, np.unique(vert_owner[wrong]))
        radec = radec[np.repeat(keep_poly, sizes_a)]
        sizes_a, owner_a = sizes_a[keep_poly], owner_a[keep_poly]
    radec[:, 0] = np.mod(radec[:, 0], 360.0)
    return ParsedRegions(radec, sizes_a, owner_a, dict(sorted(bad.items())))
