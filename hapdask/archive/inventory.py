"""Archive inventories: MAST-style exposure tables (Parquet, ECSV, CSV) or FITS headers.

An inventory has one row per exposure with the MAST CAOM columns

=================  ==========================================================================
``obs_id``         exposure id (``ipppssoot``), required
``instrument_name`` ``WFC3/UVIS``, ``WFC3/IR``, ``ACS/WFC``, ``ACS/HRC``, ``ACS/SBC``, ``WFPC2``
                   (``WFPC2/PC``, ``WFPC2/WFC``), required
``filters``        raw filters, ``;``-separated (``F850LP;CLEAR2L``), required
``s_region``       STC-S, one ``POLYGON`` per chip (:mod:`hapdask.archive.sregion`), required
``t_exptime``      exposure time (s), optional (NaN)
``t_min``          start (MJD), optional (NaN)
``proposal_id``    optional (-1)
``path``           where the file is: a local path (relative to the inventory file) or an
                   fsspec URL; taken from ``path``,
                   ``dataURL`` or ``dataURI`` (``mast:HST/product/<name>`` becomes the public
                   ``s3://stpubdata/hst/public/<ipppss>/<ipppssoot>/<name>`` copy), optional
=================  ==========================================================================
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.table import Table

from hapdask.archive.sregion import format_s_region
from hapdask.io import open_exposure, raw_filters, resolve_inputs
from hapdask.io._fits import is_url
from skycells import has_coarse_layer, normalize_filter

__all__ = ["INSTRUMENTS", "REQUIRED", "inventory_from_exposures", "mast_uri_to_url",
           "read_inventory", "split_instrument"]

#: Required inventory columns.
REQUIRED = ("obs_id", "instrument_name", "filters", "s_region")

#: instrument_name (upper case) -> (instrument, detector) as HAP names them.
INSTRUMENTS: dict[str, tuple[str, str]] = {
    "WFC3/UVIS": ("WFC3", "UVIS"),
    "WFC3/IR": ("WFC3", "IR"),
    "ACS/WFC": ("ACS", "WFC"),
    "ACS/HRC": ("ACS", "HRC"),
    "ACS/SBC": ("ACS", "SBC"),
    "WFPC2": ("WFPC2", "PC"),
    "WFPC2/PC": ("WFPC2", "PC"),
    "WFPC2/WFC": ("WFPC2", "PC"),
}

_MAST_PREFIX = "mast:HST/product/"


def split_instrument(name: object) -> tuple[str, str] | None:
    """``(instrument, detector)`` of an inventory ``instrument_name``, None if unknown."""
    if not isinstance(name, str):
        return None
    return INSTRUMENTS.get(name.strip().upper())


def mast_uri_to_url(uri: str) -> str:
    """``mast:HST/product/ib2u01a1q_flt.fits`` -> its public S3 copy; other strings unchanged."""
    if not uri.startswith(_MAST_PREFIX):
        return uri
    name = uri[len(_MAST_PREFIX):]
    root = name.split("_", 1)[0].lower()
    return f"s3://stpubdata/hst/public/{root[:4]}/{root}/{name}"


def _read_table(path: str) -> pd.DataFrame:
    low = path.lower()
    if low.endswith((".parquet", ".pq")):
        return pd.read_parquet(path)
    if low.endswith(".ecsv"):
        return Table.read(path, format="ascii.ecsv").to_pandas()
    if low.endswith((".csv", ".csv.gz", ".txt")):
        return pd.read_csv(path, dtype={"obs_id": str, "instrument_name": str, "filters": str,
                                        "s_region": str}, keep_default_na=False,
                           na_values={"t_exptime": [""], "t_min": [""]})
    raise ValueError(f"{path}: unknown inventory format (use .parquet, .ecsv or .csv)")


def read_inventory(path: str | os.PathLike) -> pd.DataFrame:
    """Read an inventory table and normalise its columns.

    Returns
    -------
    pandas.DataFrame
        Columns ``obs_id, instrument_name, filters, s_region, t_exptime, t_min, proposal_id,
        path`` in the file's row order (row ``i`` is data row ``i + 1`` of the file).

    Raises
    ------
    ValueError
        Unknown format, or a required column missing (named).
    OSError
        If the file cannot be read.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise OSError(f"{path}: no such inventory file")
    try:
        df = _read_table(path)
    except (ValueError, OSError):
        raise
    except Exception as exc:  # pandas/pyarrow/astropy parse errors
        raise ValueError(f"{path}: cannot read the inventory: {exc}") from exc
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: inventory lacks column(s) {', '.join(missing)} "
                         f"(has {', '.join(map(str, df.columns))})")
    out = normalise(df)
    # relative local paths are relative to the inventory file
    base = os.path.dirname(os.path.abspath(path))
    out["path"] = [p if not p or is_url(p) or os.path.isabs(p) else os.path.join(base, p)
                   for p in out["path"].tolist()]
    return out


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """The standard columns of an inventory (see :func:`read_inventory`)."""
    n = len(df)
    out = pd.DataFrame({c: df[c] for c in REQUIRED})
    for c in ("obs_id", "instrument_name", "filters"):
        out[c] = out[c].astype(object).where(out[c].notna(), "").astype(str)
    out["t_exptime"] = pd.to_numeric(df["t_exptime"], errors="coerce") \
        if "t_exptime" in df else np.full(n, math.nan)
    out["t_min"] = pd.to_numeric(df["t_min"], errors="coerce") \
        if "t_min" in df else np.full(n, math.nan)
    if "proposal_id" in df:
        out["proposal_id"] = pd.to_numeric(df["proposal_id"], errors="coerce") \
            .fillna(-1).astype(np.int64)
    else:
        out["proposal_id"] = np.full(n, -1, np.int64)
    path = None
    for c in ("path", "dataURL", "dataURI"):
        if c in df:
            path = df[c].astype(object).where(df[c].notna(), "").astype(str)
            break
    if path is None:
        out["path"] = ""
    else:
        out["path"] = [mast_uri_to_url(p) for p in path]
    return out.reset_index(drop=True)


def layer_keys(df: pd.DataFrame) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Per row: layer code, layer names (``wfc3_ir_f160w``), and whether it has a coarse layer.

    Rows with an unknown instrument get code -1.
    """
    names: dict[str, int] = {}
    coarse: list[bool] = []
    codes = np.full(len(df), -1, np.int64)
    cache: dict[tuple[str, str], int] = {}
    for i, (inst, filt) in enumerate(zip(df["instrument_name"].tolist(),
                                         df["filters"].tolist(), strict=True)):
        key = (inst, filt)
        code = cache.get(key)
        if code is None:
            det = split_instrument(inst)
            if det is None:
                code = -1
            else:
                name = f"{det[0]}_{det[1]}_{normalize_filter(filt)}".lower()
                if name not in names:
                    names[name] = len(names)
                    coarse.append(has_coarse_layer(*det))
                code = names[name]
            cache[key] = code
        codes[i] = code
    return codes, list(names), np.array(coarse, dtype=bool)


def _exposure_row(path: str) -> dict:
    exp = open_exposure(path)
    polys = exp.footprints()
    s_region = format_s_region(polys, digits=8)
    try:
        filters = raw_filters(exp.primary, exp.instrument, where=f"{path}: primary header")
    except ValueError:
        filters = exp.filters_raw
    instrument = exp.instrument if exp.instrument == "WFPC2" else \
        f"{exp.instrument}/{exp.detector}"
    return {"obs_id": exp.rootname, "instrument_name": instrument, "filters": filters,
            "s_region": s_region, "t_exptime": exp.exptime,
            "t_min": exp.expstart if exp.expstart is not None else math.nan,
            "proposal_id": exp.proposal_id if exp.proposal_id is not None else -1,
            "path": exp.path}


def inventory_from_exposures(inputs, *, num_workers: int | None = None
                             ) -> tuple[pd.DataFrame, dict[str, str]]:
    """Build an inventory from exposure headers (chip outlines with the full distortion).

    Parameters
    ----------
    inputs : directory, poller/list file, paths or URLs
        Anything :func:`hapdask.io.resolve_inputs` accepts.
    num_workers : int, optional
        Threads reading headers (default: 8; the work is I/O bound).

    Returns
    -------
    (DataFrame, dict)
        The inventory (columns of :func:`read_inventory`) and ``path -> reason`` for files that
        could not be read (reported, skipped).
    """
    from dask.threaded import get

    paths = resolve_inputs(inputs)
    graph = {("hdr", i): (_safe_row, p) for i, p in enumerate(paths)}
    rows = get(graph, list(graph), num_workers=num_workers or 8)
    bad = {p: r for p, r in zip(paths, rows, strict=True) if isinstance(r, str)}
    good = [r for r in rows if isinstance(r, dict)]
    df = pd.DataFrame(good, columns=["obs_id", "instrument_name", "filters", "s_region",
                                     "t_exptime", "t_min", "proposal_id", "path"])
    return normalise(df), bad


def _safe_row(path: str) -> dict | str:
    try:
        return _exposure_row(path)
    except (OSError, ValueError, KeyError) as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]


def write_inventory(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write an inventory (format from the suffix: .parquet, .ecsv, .csv) atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    low = path.name.lower()
    if low.endswith((".parquet", ".pq")):
        df.to_parquet(tmp, index=False)
    elif low.endswith(".ecsv"):
        Table.from_pandas(df).write(tmp, format="ascii.ecsv", overwrite=True)
    elif low.endswith(".csv"):
        df.to_csv(tmp, index=False)
    else:
        raise ValueError(f"{path}: unknown inventory format (use .parquet, .ecsv or .csv)")
    os.replace(tmp, path)
    return path
