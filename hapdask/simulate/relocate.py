"""Move a simulated set to another place on the sky (for multi-SkyCell demos and tests).

The simulator centres a set on one SkyCell. :func:`relocate_set` copies its exposures and
applies one sky rotation (taking the set's centre to a new position, north kept north) to the
WCS of every extension and to the true WCS, so a set can straddle SkyCell or projection-cell
boundaries. Pixels are unchanged: relative to the rotated true WCS they are exactly as right
as before.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from astropy.io import fits

from hapdask.simulate import instruments as ins
from hapdask.simulate.core import SimulatedSet, read_true_wcs

__all__ = ["relocate_set"]


def _rotate_hdul(hdul: fits.HDUList, rot) -> None:
    for hdu in hdul:
        h = hdu.header
        if "CRVAL1" in h and "CD1_1" in h:
            ins.rotate_header_wcs(h, rot)
            h.remove("S_REGION", ignore_missing=True)
    prim = hdul[0].header
    if "RA_TARG" in prim and "DEC_TARG" in prim:
        ra, dec = ins.radec_of(rot @ ins.unit_vector(prim["RA_TARG"], prim["DEC_TARG"]))
        prim["RA_TARG"], prim["DEC_TARG"] = ra, dec


def relocate_set(sim: SimulatedSet, ra: float, dec: float, outdir: str | os.PathLike
                 ) -> tuple[list[Path], dict[tuple[str, int], fits.Header]]:
    """Copy a simulated set's exposures, moved so that its centre lands on (ra, dec).

    Parameters
    ----------
    sim : SimulatedSet
        The set (``sim.center`` is its centre).
    ra, dec : float
        New centre, degrees.
    outdir : path
        New, empty or missing directory; filled under a temporary name, then renamed.

    Returns
    -------
    (list of Path, dict)
        The moved exposures, and their true WCS ``(rootname, extver) -> Header`` (the
        "WCS updates" of :func:`hapdask.mvm.run`).

    Raises
    ------
    FileExistsError
        If ``outdir`` exists and is not empty.
    """
    outdir = Path(outdir).resolve()
    if outdir.exists() and any(outdir.iterdir()):
        raise FileExistsError(f"{outdir}: exists and is not empty")
    rot = ins.rotation_between(sim.center[0], sim.center[1], 0.0, ra, dec, 0.0)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.tmp-", dir=outdir.parent))
    try:
        names = []
        for src in sim.exposures:
            with fits.open(src) as hdul:
                hdul = fits.HDUList([h.copy() for h in hdul])
            _rotate_hdul(hdul, rot)
            hdul.writeto(tmp / src.name)
            names.append(src.name)
        if outdir.exists():
            outdir.rmdir()
        os.rename(tmp, outdir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    true = {}
    for key, hdr in read_true_wcs(sim.true_wcs).items():
        h = hdr.copy()
        ins.rotate_header_wcs(h, rot)
        true[key] = h
    return [outdir / n for n in names], true
