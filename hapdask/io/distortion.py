"""Full HST distortion from reference files: a copy of an exposure with SIP + NPOL + D2IM.

Archive FLT/FLC files normally carry their distortion already. Older files, or files whose
lookup-table extensions were stripped, carry only the SIP part; ``stwcs.updatewcs`` rebuilds the
full model from the instrument's reference files (IDCTAB, NPOLFILE, D2IMFILE).
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

from astropy.io import fits

__all__ = ["apply_reference_distortion"]

_REFERENCE_KEYS = ("IDCTAB", "NPOLFILE", "D2IMFILE")


def apply_reference_distortion(
    src: str | os.PathLike, dest: str | os.PathLike, refdir: str | os.PathLike
) -> Path:
    """Write a copy of ``src`` whose WCS carries the full distortion of its reference files.

    Parameters
    ----------
    src : path
        An FLT/FLC file (``.gz`` allowed). It is never modified.
    dest : path
        The uncompressed copy to write; it must not exist yet.
    refdir : path
        Directory holding the reference files the primary header names in IDCTAB, NPOLFILE and
        D2IMFILE (with or without an ``iref$``/``jref$`` prefix).

    Returns
    -------
    Path
        ``dest``, now with SIP coefficients and the WCSDVARR (NPOL) / D2IMARR (D2IM) lookup
        table extensions, as ``stwcs.updatewcs`` writes them.

    Raises
    ------
    FileExistsError
        If ``dest`` exists.
    ValueError
        If a named reference file is missing from ``refdir``.

    Notes
    -----
    DGEOFILE, the obsolete distortion image that NPOLFILE superseded, is set to ``N/A`` so that
    stwcs does not look for it.

    ``stwcs`` finds reference files through the ``jref`` environment variable; it is set to
    ``refdir`` for the duration of the call and restored afterwards, so do not call this from
    several threads at once.
    """
    from stwcs import updatewcs  # optional heavy dependency, only needed here

    src, dest, refdir = Path(src), Path(dest), Path(refdir)
    if dest.exists():
        raise FileExistsError(f"{dest}: already exists; not overwriting it")
    work = dest.with_name(dest.name + ".part")  # never a half-made file under the final name
    try:
        _copy_and_update(src, work, refdir, updatewcs)
        os.replace(work, dest)
    finally:
        work.unlink(missing_ok=True)
    return dest


def _copy_and_update(src: Path, work: Path, refdir: Path, updatewcs) -> None:
    opener = gzip.open if src.suffix == ".gz" else open
    with opener(src, "rb") as fin, open(work, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    with fits.open(work, mode="update") as hdul:
        hdr = hdul[0].header
        for key in _REFERENCE_KEYS:
            value = str(hdr.get(key, "N/A")).strip()
            if value.upper() in ("", "N/A", "NONE"):
                continue
            name = os.path.basename(value.split("$")[-1])
            if not (refdir / name).is_file():
                raise ValueError(f"{src}[PRIMARY]: {key} = {value!r} not found in {refdir}")
            hdr[key] = f"jref${name}"
        hdr["DGEOFILE"] = "N/A"
    old = os.environ.get("jref")
    os.environ["jref"] = f"{refdir}{os.sep}"
    try:
        updatewcs.updatewcs(str(work), use_db=False)
    finally:
        if old is None:
            os.environ.pop("jref", None)
        else:
            os.environ["jref"] = old
