"""Files of a ``hapdask drizzle`` run: the drizzled product (``NAME_drz.fits`` /
``NAME_drc.fits``: PRIMARY, SCI, WHT, CTX, HDRTAB), the cosmic-ray masks
(``<rootname>_crmask.fits``: one ``CRMASK`` image per SCI chip, ``EXTVER`` = the chip's SCI
``EXTVER``, 1 = cosmic ray) and the optional DQ update of the inputs. Every file is written
under a temporary name and renamed when complete.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits

from hapdask.export import headers as xheaders
from hapdask.mosaic.grid import OutputGrid
from hapdask.mosaic.inputs import ChipRef
from hapdask.mosaic.params import DrizzleParams

__all__ = ["chip_crmask", "crmask_name", "find_crmask", "product_headers", "read_crmask",
           "update_dq", "write_crmask"]


def crmask_name(rootname: str) -> str:
    """``<rootname>_crmask.fits``."""
    return f"{rootname.lower()}_crmask.fits"


def write_crmask(path: str | os.PathLike, rootname: str, extvers: Sequence[int],
                 masks: Sequence[np.ndarray]) -> Path:
    """Write a cosmic-ray mask file (temporary name, then renamed)."""
    path = Path(path)
    hdus = [fits.PrimaryHDU()]
    hdus[0].header["ROOTNAME"] = (rootname, "exposure the masks belong to")
    hdus[0].header["ORIGIN"] = ("hapdask", "FITS file originator")
    for extver, m in zip(extvers, masks, strict=True):
        h = fits.ImageHDU(np.asarray(m, np.uint8), name="CRMASK", ver=int(extver))
        h.header["COMMENT"] = "1 = cosmic ray (AstroDrizzle driz_cr), 0 = not flagged"
        hdus.append(h)
    tmp = path.with_name(path.name + ".part")
    fits.HDUList(hdus).writeto(tmp, overwrite=True)
    os.replace(tmp, path)
    return path


def read_crmask(path: str | os.PathLike) -> dict[int, np.ndarray]:
    """``{extver: bool mask}`` of a ``_crmask.fits`` file (or the simulator's ``_crtruth``)."""
    out = {}
    with fits.open(path) as hdul:
        for h in hdul[1:]:
            if h.name in ("CRMASK", "CRTRUTH") and h.data is not None:
                out[int(h.header.get("EXTVER", 1))] = np.asarray(h.data) != 0
    if not out:
        raise ValueError(f"{path}: no CRMASK extension")
    return out


def chip_crmask(path: str, extver: int, shape: tuple[int, int]) -> np.ndarray:
    """The bool cosmic-ray mask of one chip from a mask file (True = cosmic ray).

    Raises
    ------
    ValueError
        When the file has no ``CRMASK`` extension of that ``EXTVER`` or its shape is not the
        chip's (naming the file and HDU).
    """
    try:
        with fits.open(path) as hdul:
            try:
                hdu = hdul["CRMASK", int(extver)]
            except KeyError:
                raise ValueError(f"{path}: no CRMASK,{extver} extension") from None
            data = np.asarray(hdu.data)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the cosmic-ray mask: {exc}") from None
    if data.shape != tuple(shape):
        raise ValueError(f"{path}: CRMASK,{extver} has shape {data.shape}, the chip has "
                         f"{tuple(shape)}")
    return data != 0


def find_crmask(input_path: str, rootname: str, masks_dir: str | os.PathLike | None = None
                ) -> Path | None:
    """The ``<rootname>_crmask.fits`` under ``masks_dir`` or beside an input, if any."""
    name = crmask_name(rootname)
    for d in ([Path(masks_dir)] if masks_dir else []) + [Path(input_path).parent]:
        p = d / name
        if p.is_file():
            return p
    return None


def update_dq(path: str | os.PathLike, masks: dict[int, np.ndarray], crbit: int = 4096,
              reset: int = 0) -> None:
    """Clear ``reset`` bits, then OR ``crbit`` into the DQ arrays of an input where its masks
    are set, atomically.

    A copy is updated and renamed over the original, so the input is either untouched or
    completely updated.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".hapdask-dq.part")
    shutil.copy2(path, tmp)
    try:
        with fits.open(tmp, mode="update", memmap=False) as hdul:
            for extver, m in masks.items():
                try:
                    hdu = hdul["DQ", extver]
                except KeyError:
                    raise ValueError(f"{path}: no DQ,{extver} extension to update") from None
                if hdu.data is None or hdu.data.shape != m.shape:
                    raise ValueError(f"{path}: DQ,{extver} does not match its SCI shape")
                dq = hdu.data
                if reset:
                    dq &= np.array(~int(reset) & 0xFFFF).astype(dq.dtype)
                dq[m] |= np.array(crbit).astype(dq.dtype)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def product_headers(filename: str, grid: OutputGrid, chips: Sequence[ChipRef], primaries: dict,
                    sci_headers: dict, skies: dict, params: DrizzleParams, context: bool,
                    changed: dict) -> dict:
    """PRIMARY/SCI/WHT/CTX headers and HDRTAB of a drizzled product.

    ``primaries``/``sci_headers`` map rootname / chip key to the input headers; ``skies`` chip
    key -> SkyLevel; ``changed`` the AstroDrizzle parameters that differ from the defaults
    (recorded as HISTORY).
    """
    roots = list(dict.fromkeys(c.rootname for c in chips))
    prims = [primaries[r] for r in roots]
    primary = xheaders.combine_primary(prims, filename=filename, skycell="",
                                       ndrizim=len(chips))
    for k in ("SCELLID", "PA_APER", "PA_V3"):
        primary.remove(k, ignore_missing=True)
    primary["HAPLEVEL"] = (2, "drizzled product of hapdask drizzle")
    bunit = "ELECTRONS/S" if params.units == "cps" else "ELECTRONS"
    primary["BUNIT"] = (bunit, "units of SCI")
    primary["ORIGIN"] = ("hapdask", "FITS file originator")
    primary["DATE"] = (_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                       "date this file was written (UTC)")
    scale = grid.scale_arcsec
    cards = []
    for c in chips:
        cards.append({"data": f"{os.path.basename(c.chip.path)}[sci,{c.key[1]}]",
                      "exptime": c.exptime, "sky": skies[c.key].value,
                      "iscale": (scale / c.pscale) ** 2, "in_scale": c.pscale, "scale": scale,
                      "bits": params.bits,
                      "wcsname": getattr(c.chip, "wcsname", ""), "outname": filename,
                      "ctx": context})
    dcards = xheaders.drizzle_cards(cards)
    for i in range(1, len(chips) + 1):
        p = f"D{i:03d}"
        dcards[p + "WTSC"] = (str(params.wt_scl), "weighting factor of input")
        dcards[p + "KERN"] = (params.kernel, "drizzle kernel")
        dcards[p + "PIXF"] = (float(params.pixfrac), "drizzle pixfrac")
        dcards[p + "OUUN"] = (params.units, "units of output image")
        dcards[p + "FVAL"] = (str(params.fillval), "fill value for empty pixels")
    primary.extend(dcards, end=True)
    for k, v in sorted(changed.items()):
        primary.add_history(f"hapdask drizzle: {k} = {v}")
    wcs = grid.fits_header()
    for k in ("NAXIS1", "NAXIS2"):
        wcs.remove(k, ignore_missing=True)
    sci = wcs.copy()
    sci["BUNIT"] = (bunit, "brightness units")
    first = {}
    for c in chips:
        first.setdefault(c.rootname, sci_headers[c.key])
    sci.extend(xheaders.phot_cards([first[r] for r in roots], prims), end=True)
    wht = wcs.copy()
    wht["BUNIT"] = ("UNITLESS", f"{params.wht_type} weight")
    rows = []
    for c in chips:
        rows.append(xheaders.header_row(primaries[c.rootname], sci_headers[c.key],
                                        {"ROOTNAME": c.rootname, "EXTVER": c.key[1],
                                         "MDRIZSKY": skies[c.key].value}))
    return {"primary": primary, "sci": sci, "wht": wht, "ctx": wcs.copy(),
            "hdrtab": xheaders.hdrtab(rows)}
