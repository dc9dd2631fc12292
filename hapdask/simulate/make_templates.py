"""Regenerate the instrument templates shipped in ``hapdask/simulate/templates``.

The simulator re-points real HST headers; it does not invent instrument geometry. This module
builds one small template file per detector from the public files in ``../shared/data``:

* ``wfc3_uvis.fits.gz`` from ``headers/sample_ipppssoot_flc.fits`` (ib4606c5q, two UVIS chips, SIP,
  NPOL and D2IM lookup tables). That sample file has its lookup tables cut to 10x10 nodes with a
  64-pixel node spacing, i.e. they cover only the first 640x640 pixels of each chip. So that the
  (real, <= 0.035 pixel) lookup corrections vary across the whole chip instead of being clamped
  to their edge value, the template stretches the node spacing (``CDELT``) to span the chip. This
  is the only change to the real distortion model and it is recorded in the template header.
* ``wfc3_ir.fits.gz`` from ``headers/sample_ipppssoot_flt.fits`` (ib4606cpq; SIP only, as real IR
  files have no lookup tables).
* ``acs_wfc.fits.gz`` from ``real/j94f05bgq_flt.fits.gz`` after ``stwcs.updatewcs`` with the real
  IDCTAB/NPOLFILE/D2IMFILE in ``real/`` (``jref`` pointing there): SIP + full-size NPOL (65x33)
  and D2IM (4096x1) lookup tables.

Each template holds the PRIMARY header, header-only SCI/ERR/DQ (and SAMP/TIME for IR) extensions
and the WCSDVARR/D2IMARR lookup-table extensions with their data. Alternate WCSs and headerlet
bookkeeping are removed; the pixel arrays are not stored.

Run ``python -m hapdask.simulate.make_templates /work/shared/data`` to rebuild them.
"""

from __future__ import annotations

import gzip
import os
import re
import sys
import tempfile
from pathlib import Path

from astropy.io import fits

from hapdask.io import apply_reference_distortion

TEMPLATE_DIR = Path(__file__).parent / "templates"

#: Keywords that only describe alternate WCSs (suffix A-Z) and headerlet bookkeeping.
_ALT_WCS = re.compile(
    r"^(WCSNAME|WCSAXES|CRPIX[12]|CRVAL[12]|CTYPE[12]|CUNIT[12]|CD[12]_[12]|RADESYS|CRDER[12]|"
    r"CSYER[12]|WCSTYPE|HDRNAME|LONPOLE|LATPOLE|PC[12]_[12]|CDELT[12])[A-Z]$"
)
_DROP = {
    "HDRNAME", "RMS_RA", "RMS_DEC", "NMATCHES", "FITGEOM", "WCSTYPE", "MDRIZSKY", "CRDER1",
    "CRDER2",
    "WCSCDATE", "IRAF-TLM", "OORIENTA", "TDDALPHA", "TDDBETA", "FITNAME", "NMATCH", "CATALOG",
}


def _clean(header: fits.Header) -> fits.Header:
    out = header.copy()
    for key in list(out.keys()):
        if key in ("HISTORY", "COMMENT"):
            continue
        if _ALT_WCS.match(key) or key in _DROP:
            out.remove(key, ignore_missing=True, remove_all=True)
    out.remove("HISTORY", ignore_missing=True, remove_all=True)
    return out


def _header_only(header: fits.Header) -> fits.ImageHDU:
    hdr = header.copy()
    for key in ("NAXIS1", "NAXIS2"):
        hdr.remove(key, ignore_missing=True)
    hdr["NAXIS"] = 0
    return fits.ImageHDU(data=None, header=hdr)


def _build(src: Path, dest: Path, *, stretch_luts: bool, extra_exts: tuple[str, ...] = ()) -> None:
    with fits.open(src) as hdul:
        out = fits.HDUList([fits.PrimaryHDU(header=_clean(hdul[0].header))])
        nchips = sum(1 for h in hdul if h.name == "SCI")
        for ver in range(1, nchips + 1):
            sci = _clean(hdul["SCI", ver].header)
            # the pipeline's a-priori name (e.g. 'IDC_2731450pi'): our headers are not aligned
            sci["WCSNAME"] = str(sci.get("WCSNAME", "IDC")).split("-")[0]
            out.append(_header_only(sci))
            for name in ("ERR", "DQ", *extra_exts):
                out.append(_header_only(_clean(hdul[name, ver].header)))
        for h in hdul:
            if h.name in ("WCSDVARR", "D2IMARR"):
                hdr = h.header.copy()
                if stretch_luts:
                    ny, nx = h.data.shape
                    sci = hdul["SCI", 1].header
                    size = (sci.get("SIZAXIS1", 4096), sci.get("SIZAXIS2", 2051))
                    hdr["CDELT1"] = (size[0] / (nx - 1), "stretched from 64: sample table is cut")
                    hdr["CDELT2"] = (size[1] / (ny - 1), "stretched from 64: sample table is cut")
                out.append(fits.ImageHDU(data=h.data.astype("float32"), header=hdr))
        tmp = dest.with_suffix(".tmp")
        with gzip.GzipFile(tmp, "wb", mtime=0) as fh:
            out.writeto(fh)
        os.replace(tmp, dest)


def build_templates(shared_data: str | os.PathLike[str], dest: Path = TEMPLATE_DIR) -> list[Path]:
    """Rebuild the three templates from the shared data folder; return their paths."""
    data = Path(shared_data)
    dest.mkdir(parents=True, exist_ok=True)
    made = []
    target = dest / "wfc3_uvis.fits.gz"
    _build(data / "headers" / "sample_ipppssoot_flc.fits", target, stretch_luts=True)
    made.append(target)
    target = dest / "wfc3_ir.fits.gz"
    _build(data / "headers" / "sample_ipppssoot_flt.fits", target, stretch_luts=False,
           extra_exts=("SAMP", "TIME"))
    made.append(target)
    with tempfile.TemporaryDirectory() as tmpdir:
        work = apply_reference_distortion(
            data / "real" / "j94f05bgq_flt.fits.gz", Path(tmpdir) / "j94f05bgq_flt.fits",
            data / "real",
        )
        target = dest / "acs_wfc.fits.gz"
        _build(work, target, stretch_luts=False)
        made.append(target)
    return made


if __name__ == "__main__":
    for path in build_templates(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data"):
        print(path, path.stat().st_size)
