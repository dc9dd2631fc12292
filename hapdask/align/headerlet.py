"""Headerlets of aligned exposures (``hapdask align --headerlets``), built by stwcs.

A headerlet holds an exposure's complete WCS solution (linear WCS, SIP, NPOL/D2IM) so that
``stwcs.wcsutil.headerlet.apply_headerlet_as_primary(file, headerlet)`` installs it. stwcs builds
it from the input opened read-only, with the update applied to the headers in memory: only the
headers and the small distortion arrays are read (no copy of the file, no pixel data), and the
input is never touched.
"""

from __future__ import annotations

import os
from pathlib import Path

from astropy.io import fits

from hapdask.align.updates import FIT_KEYS, apply_update


def headerlet_name(path: str, wcsname: str) -> str:
    """DrizzlePac's HDRNAME: ``<file stem>_<WCSNAME>-hlet.fits``."""
    stem = Path(path).name.split(".fits")[0]
    return f"{stem}_{wcsname}-hlet.fits"


def write_headerlets(result, outdir: str | os.PathLike) -> list[Path]:
    """One headerlet per aligned exposure of an :class:`~hapdask.align.AlignResult`.

    Written to ``outdir/<file stem>_hlet.fits`` (temporary name, then renamed); the headerlet's
    HDRNAME is :func:`headerlet_name`, its WCSNAME the fit's, with NMATCH and CATALOG set.
    """
    from stwcs.wcsutil import headerlet

    out = Path(outdir)
    written: list[Path] = []
    for e in result.exposures:
        if not e.updates:
            continue
        # read-only, lazily loaded: stwcs reads the headers and the NPOL/D2IM arrays only
        with fits.open(e.path) as hdul:
            for u in e.updates:
                apply_update(hdul["SCI", u.extver].header, u.header())
            wcsname = e.updates[0].wcsname
            hlet = headerlet.create_headerlet(
                hdul, hdrname=headerlet_name(e.path, wcsname), wcsname=wcsname,
                catalog=e.catalog, nmatch=e.matches,
                descrip=f"hapdask alignment ({e.method}, {e.geometry})", logging=False)
            for k in ("RMS_RA", "RMS_DEC", "FIT_RMS"):
                if k in FIT_KEYS and k in e.updates[0].header():
                    hlet[0].header[k] = e.updates[0].header()[k]
            final = out / f"{Path(e.path).name.split('.fits')[0]}_hlet.fits"
            part = final.with_name(final.name + ".part")
            hlet.writeto(str(part), overwrite=True)
            os.replace(part, final)
            written.append(final)
    return written
