"""Input lists: SVM/MVM poller files, plain file lists, directories, paths and URLs.

Poller formats (inventory section 1.1-1.2): header-less comma-separated lines whose column
count decides the format.

=========  ===========  ===================================================================
columns    poller_type  columns in the file
=========  ===========  ===================================================================
8          ``svm``      filename, proposal_id, program_id, obset_id, exptime, filters,
                        detector, pathname
10         ``mvm``      the same with skycell_id and skycell_new (NEW/OLD) after detector
1          ``list``     filename
2          ``wfpc2``    filename, aperture (the WFPC2 SVM variant)
=========  ===========  ===================================================================

:func:`read_poller` always returns the columns of :data:`POLLER_COLUMNS`. Values a format does
not carry are filled as follows: ``program_id`` and ``obset_id`` come from the file name
(characters 2-4 and 5-6 of an ``ipppssoot`` name, as drizzlepac does; ``""`` for other names);
``proposal_id``, ``exptime``, ``filters`` and ``detector`` are read from the primary header when
the file exists locally (beside the poller, or at its absolute path), otherwise they are -1,
NaN, ``""`` and ``""``; ``skycell_id`` is ``""`` and ``skycell_new`` ``"NEW"`` outside MVM
pollers; ``aperture`` is ``""`` except for the 2-column WFPC2 format; ``pathname`` is the
poller directory joined with the file name for formats without a pathname column. Two derived
columns follow: ``instrument`` (from the file name: first letter of an ``ipppssoot`` name, or
the instrument token of an ``hst_...`` SVM name) and ``filter`` (normalised, see
:func:`hapdask.io.filters.normalize_filter`). ``line`` is the 1-based line number in the file.
Blank lines and lines starting with ``#`` are skipped. ``meta`` holds ``poller_type`` and
``path``.
"""

from __future__ import annotations

import functools
import glob
import math
import os
import re
from collections.abc import Iterable, Sequence

from astropy.io import fits
from astropy.table import Table

from hapdask.io._fits import _fsspec_kwargs, check_regular_file, is_url, normalize_path
from hapdask.io.filters import normalize_filter, raw_filters

__all__ = ["POLLER_COLUMNS", "read_poller", "resolve_inputs"]

#: Columns of every table :func:`read_poller` returns, in order.
POLLER_COLUMNS: tuple[str, ...] = (
    "filename",
    "proposal_id",
    "program_id",
    "obset_id",
    "exptime",
    "filters",
    "detector",
    "skycell_id",
    "skycell_new",
    "pathname",
    "aperture",
    "instrument",
    "filter",
    "line",
)

_TYPES = {8: "svm", 10: "mvm", 1: "list", 2: "wfpc2"}
_SKYCELL_RE = re.compile(r"^skycell-p\d{4}x\d{2}y\d{2}$", re.IGNORECASE)
_FITS_NAME_RE = re.compile(r"\.fits(\.gz|\.fz|\.bz2)?$", re.IGNORECASE)
_FIRST_LETTER = {"i": "WFC3", "j": "ACS", "o": "STIS", "u": "WFPC2", "x": "FOC", "w": "WFPC"}
_IPPPSSOOT_RE = re.compile(r"^[a-z][a-z0-9]{8}_", re.IGNORECASE)


def _instrument_from_name(name: str) -> str:
    base = os.path.basename(name).lower()
    if base.startswith("hst_"):
        parts = base.split("_")
        # hst_<prop>_<visit>_<instr>_... (SVM) or hst_skycell-..._<instr>_... (MVM)
        for token in parts[1:5]:
            if token in ("wfc3", "acs", "wfpc2", "stis"):
                return token.upper()
        return ""
    return _FIRST_LETTER.get(base[:1], "")


def _name_ids(name: str) -> tuple[str, str]:
    base = os.path.basename(name)
    if _IPPPSSOOT_RE.match(base):
        return base[1:4].upper(), base[4:6].upper()
    return "", ""


def _fail(path: str, lineno: int, message: str) -> ValueError:
    return ValueError(f"{path}, line {lineno}: {message}")


def _header_values(local: str) -> dict:
    """proposal_id, exptime, filters, detector from a primary header (drizzlepac 1-col rules).

    Read once per file version: a run resolves its inputs more than once (analyze tasks,
    OLD rows, the plan), and a file rewritten since (other size or mtime) is read again.
    """
    try:
        st = os.stat(local)
    except OSError as exc:
        raise OSError(f"{local}: cannot read the primary header: {exc}") from exc
    return dict(_header_values_of(local, st.st_mtime_ns, st.st_size, st.st_ino))


@functools.lru_cache(maxsize=4096)
def _header_values_of(local: str, mtime_ns: int, size: int, ino: int) -> dict:
    try:
        hdr = fits.getheader(local, 0)
    except Exception as exc:
        raise OSError(f"{local}: cannot read the primary header: {exc}") from exc
    out = {}
    instrument = str(hdr.get("INSTRUME", "")).strip().upper()
    out["proposal_id"] = int(hdr["PROPOSID"]) if "PROPOSID" in hdr else -1
    out["exptime"] = float(hdr["EXPTIME"]) if "EXPTIME" in hdr else math.nan
    if instrument == "WFPC2":
        out["detector"] = "PC"
    else:
        out["detector"] = str(hdr.get("DETECTOR", "")).strip().upper()
    try:
        out["filters"] = raw_filters(hdr, instrument, where=f"{local}: primary header")
    except ValueError:
        out["filters"] = ""
    if instrument:
        out["instrument"] = instrument
    return out


def read_poller(path: str | os.PathLike) -> Table:
    """Read an SVM poller, an MVM poller or a plain list of exposure file names.

    Parameters
    ----------
    path : str or os.PathLike
        The poller/list file.

    Returns
    -------
    astropy.table.Table
        One row per entry with the columns of :data:`POLLER_COLUMNS` (see the module
        docstring for how missing values are filled); ``meta["poller_type"]`` is ``"svm"``,
        ``"mvm"``, ``"list"`` or ``"wfpc2"``.

    Raises
    ------
    ValueError
        For an empty file, or a malformed line (wrong column count, non-numeric proposal id or
        exposure time, bad sky-cell name, skycell_new other than NEW/OLD, an entry that is not a
        FITS file name); the message names the file and the 1-based line number.
    OSError
        If the file cannot be read.
    """
    path = normalize_path(path)
    try:
        if is_url(path):  # a remote poller (s3://, https://, ...): read through fsspec
            lines = _read_remote_text(path).splitlines()
        else:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text poller file ({exc})") from exc
    except OSError as exc:
        raise OSError(f"{path}: cannot read poller file: {exc.strerror or exc}") from exc
    base_dir = os.path.dirname(path)

    ncols: int | None = None
    rows: list[dict] = []
    for lineno, raw in enumerate(lines, start=1):
        text = raw.strip().lstrip("\ufeff")
        if not text or text.startswith("#"):
            continue
        fields = [f.strip() for f in text.split(",")]
        if ncols is None:
            if len(fields) not in _TYPES:
                raise _fail(
                    path,
                    lineno,
                    f"{len(fields)} comma-separated columns; a poller has 8 (SVM), 10 (MVM), "
                    "1 (file list) or 2 (WFPC2 file, aperture)",
                )
            ncols = len(fields)
        elif len(fields) != ncols:
            raise _fail(
                path,
                lineno,
                f"{len(fields)} comma-separated columns, expected {ncols} like the first line",
            )
        rows.append(_parse_row(path, lineno, fields, base_dir))
    if ncols is None:
        raise ValueError(f"{path}: poller file is empty (no entries)")

    table = Table(rows=[[r[c] for c in POLLER_COLUMNS] for r in rows], names=POLLER_COLUMNS)
    table.meta["poller_type"] = _TYPES[ncols]
    table.meta["path"] = path
    return table


def _parse_row(path: str, lineno: int, fields: list[str], base_dir: str) -> dict:
    n = len(fields)
    filename = fields[0]
    if not filename or any(c.isspace() for c in filename):
        raise _fail(path, lineno, f"bad file name {filename!r}")
    if not _FITS_NAME_RE.search(filename):
        raise _fail(
            path,
            lineno,
            f"{filename!r} is not a FITS file name (.fits); lists of poller files (.lst) are "
            "not pollers",
        )
    program_id, obset_id = _name_ids(filename)
    row = {
        "filename": os.path.basename(filename),
        "proposal_id": -1,
        "program_id": program_id,
        "obset_id": obset_id,
        "exptime": math.nan,
        "filters": "",
        "detector": "",
        "skycell_id": "",
        "skycell_new": "NEW",
        "pathname": "",
        "aperture": "",
        "instrument": _instrument_from_name(filename),
        "line": lineno,
    }
    if n in (8, 10):
        try:
            row["proposal_id"] = int(fields[1])
        except ValueError:
            raise _fail(path, lineno, f"proposal_id {fields[1]!r} is not an integer") from None
        try:
            row["exptime"] = float(fields[4])
        except ValueError:
            raise _fail(path, lineno, f"exptime {fields[4]!r} is not a number") from None
        if not math.isfinite(row["exptime"]) or row["exptime"] < 0:
            raise _fail(path, lineno, f"exptime {fields[4]!r} must be finite and >= 0")
        if not fields[2] or not fields[3]:
            raise _fail(path, lineno, "program_id and obset_id must not be empty")
        row["program_id"] = fields[2].upper()
        row["obset_id"] = fields[3].upper()
        row["filters"] = fields[5]
        if not fields[6]:
            raise _fail(path, lineno, "detector is empty")
        row["detector"] = fields[6].upper()
        if n == 10:
            skycell, new = fields[7], fields[8]
            if not _SKYCELL_RE.match(skycell):
                raise _fail(path, lineno, f"skycell_id {skycell!r} is not like skycell-pNNNNxXXyYY")
            if new.upper() not in ("NEW", "OLD"):
                hint = " (0/1 are not accepted)" if new in ("0", "1") else ""
                raise _fail(path, lineno, f"skycell_new {new!r} must be NEW or OLD{hint}")
            row["skycell_id"] = skycell.lower()
            row["skycell_new"] = new.upper()
            row["pathname"] = fields[9]
        else:
            row["pathname"] = fields[7]
        if not row["pathname"]:
            raise _fail(path, lineno, "pathname is empty")
    else:
        if n == 2:
            if not fields[1] or any(c.isspace() for c in fields[1]):
                raise _fail(path, lineno, f"bad WFPC2 aperture {fields[1]!r}")
            row["aperture"] = fields[1]
        local = filename if os.path.isabs(filename) else os.path.join(base_dir, filename)
        row["pathname"] = local
        if os.path.isfile(local):
            row.update(_header_values(local))
    row["filter"] = normalize_filter(row["filters"]) if row["filters"] else ""
    return row


def _resolve_row(table: Table, row) -> str:
    """Where a poller row's file is: beside the poller first, then its pathname."""
    poller = table.meta.get("path", "")
    base_dir = os.path.dirname(poller)
    beside = os.path.join(base_dir, row["filename"])
    if os.path.isfile(beside):
        return beside
    pathname = str(row["pathname"])
    if is_url(pathname):
        return pathname
    if is_url(poller):  # remote poller: relative names resolve against its URL, unchecked
        return pathname if os.path.isabs(pathname) else f"{base_dir}/{pathname or row['filename']}"
    candidate = pathname if os.path.isabs(pathname) else os.path.join(base_dir, pathname)
    if os.path.isfile(candidate):
        return os.path.abspath(candidate)
    raise OSError(
        f"{poller}, line {row['line']}: {row['filename']} not found beside the poller "
        f"({beside}) nor at its pathname ({candidate})"
    )


def _read_remote_text(url: str) -> str:
    """Text of a remote file (fsspec; anonymous for ``s3://`` like the exposures)."""
    import fsspec  # ~0.1 s of imports (asyncio, an entry-point scan): only URLs pay it

    with fsspec.open(url, "rt", encoding="utf-8", **_fsspec_kwargs(url)) as fh:
        return fh.read()


def _remote_is_fits(url: str) -> bool:
    """A URL names an exposure if its name is a FITS name, or its first bytes are FITS."""
    if _FITS_NAME_RE.search(url.split("?", 1)[0]):
        return True
    import fsspec  # as in _read_remote_text

    try:
        with fsspec.open(url, "rb", **_fsspec_kwargs(url)) as fh:
            return fh.read(9) == b"SIMPLE  ="
    except (OSError, ValueError) as exc:
        raise OSError(f"{url}: cannot open: {exc}") from exc


def _looks_like_fits(path: str) -> bool:
    if _FITS_NAME_RE.search(path):
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(9) == b"SIMPLE  ="
    except OSError:
        return False


def resolve_inputs(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[str]:
    """Turn the pipeline's input argument into a list of exposure paths/URLs.

    Parameters
    ----------
    inputs : str, os.PathLike or iterable of them
        * a poller or file-list (anything :func:`read_poller` reads): its rows, each found
          beside the poller first (like drizzlepac's copy into the working directory), then at
          its ``pathname`` (relative pathnames resolve against the poller's directory). MVM
          ``OLD`` rows are included (they bound the output array); filter with
          :func:`read_poller` if needed;
        * a directory: all ``*_flt.fits``/``*_flc.fits`` (optionally ``.gz``) in it, sorted;
        * a FITS file path, or a URL (``s3://...``, ``https://...``) of a FITS file (a
          ``.fits`` name, else FITS content): itself; any other URL is read as a poller or
          file list, its relative names resolved against the URL's folder;
        * a list/tuple of any of these, expanded in order.

    Returns
    -------
    list of str
        Absolute local paths and URLs, in input order, duplicates removed.

    Raises
    ------
    OSError
        If a path does not exist or a poller row's file cannot be found.
    ValueError
        For malformed pollers or an empty result.
    """
    if isinstance(inputs, str | os.PathLike):
        items: Sequence = [inputs]
    else:
        items = list(inputs)
    out: list[str] = []
    for item in items:
        out.extend(_resolve_one(item))
    seen: set[str] = set()
    unique = [p for p in out if not (p in seen or seen.add(p))]
    if not unique:
        raise ValueError(f"no input exposures found in {inputs!r}")
    return unique


def _resolve_one(item: str | os.PathLike) -> list[str]:
    text = os.fspath(item)
    if is_url(text):
        if _remote_is_fits(text):
            return [text]
        table = read_poller(text)  # a remote poller or file list
        return [_resolve_row(table, row) for row in table]
    path = normalize_path(text)
    if os.path.isdir(path):
        found = set()
        for pattern in ("*_flt.fits", "*_flc.fits", "*_flt.fits.gz", "*_flc.fits.gz"):
            found.update(glob.glob(os.path.join(glob.escape(path), pattern)))
        if not found:
            raise ValueError(f"{path}: directory holds no *_flt.fits or *_flc.fits files")
        return sorted(found)
    if not os.path.exists(path):
        raise OSError(f"{path}: no such file or directory")
    if _FITS_NAME_RE.search(path):
        return [path]  # opened (or refused, when not a regular file) one by one later
    check_regular_file(path)  # a FIFO would block the reads below
    if _looks_like_fits(path):
        return [path]
    table = read_poller(path)
    return [_resolve_row(table, row) for row in table]
