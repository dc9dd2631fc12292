"""Session fixtures of the sky tests: four small dithered ACS/WFC exposures (simulated) with
known injected sky offsets, and AstroDrizzle's own sky/static-mask code as the oracle."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import warnings

import numpy as np
import pytest
from astropy.io import fits

from hapdask.io import open_exposure
from hapdask.mosaic import chip_refs as mosaic_chip_refs

#: sky offsets (electrons) added to the four ACS exposures (truth for ``match``)
OFFSETS = (0.0, 12.0, -7.0, 25.0)


def _copy(files, outdir, offsets=None, nan_chip=None):
    os.makedirs(outdir, exist_ok=True)
    out = []
    for k, f in enumerate(files):
        d = os.path.join(outdir, os.path.basename(f))
        shutil.copy(f, d)
        with fits.open(d, mode="update") as h:
            for hdu in h:
                if hdu.name == "SCI":
                    # drizzlepac's ACS image class requires MEANDARK (the simulator omits it)
                    hdu.header["MEANDARK"] = 0.0
                    if offsets is not None:
                        hdu.data += np.float32(offsets[k])
                    if nan_chip == (k, hdu.header["EXTVER"]):
                        hdu.data[:] = np.nan
        out.append(d)
    return out


@pytest.fixture(scope="session")
def acs(tmp_path_factory):
    """``{"plain": [...], "offset": [...], "nan": [...]}``: paths of the 4 ACS/WFC exposures
    as simulated, with :data:`OFFSETS` added, and with chip 2 of the 2nd exposure all NaN."""
    from hapdask.simulate import simulate_visits

    base = tmp_path_factory.mktemp("skysim")
    sim = simulate_visits("p1889x07y19", base / "set", visits=3, small=True)
    files = sorted(str(p) for p in sim.exposures if os.path.basename(str(p)).startswith("j"))
    assert len(files) == 4
    return {"plain": _copy(files, str(base / "plain")),
            "offset": _copy(files, str(base / "offset"), OFFSETS),
            "nan": _copy(files, str(base / "nan"), nan_chip=(1, 2))}


def chip_refs(files, bits):
    """ChipRefs of every SCI chip of ``files`` (as the engine builds them)."""
    return [ref for f in files for ref in mosaic_chip_refs(open_exposure(f), bits)]


def run_skymatch(files, workdir, method, bits, static=None, **stat):
    """AstroDrizzle's sky step (skypac ``skymatch`` called as ``drizzlepac.sky._skymatch``
    does: masks = DQ-good (stsci.tools.bitmask) AND static mask, ``MDRIZSKY`` written without
    subtracting). Returns ``{(rootname, extver): MDRIZSKY}``.

    spherical_geometry 1.4 lacks ``SphericalPolygon.iter_polygons_flat`` that skypac's
    ``match`` calls (installed AstroDrizzle silently reverts to ``localmin``); the oracle adds
    it as iteration over the polygon's parts, which is what it meant.
    """
    from spherical_geometry.polygon import SphericalPolygon
    from stsci.skypac.parseat import FileExtMaskInfo
    from stsci.skypac.skymatch import skymatch
    from stsci.skypac.utils import MultiFileLog
    from stsci.tools.bitmask import bitfield_to_boolean_mask

    if not hasattr(SphericalPolygon, "iter_polygons_flat"):
        SphericalPolygon.iter_polygons_flat = lambda self: iter(self)
    os.makedirs(workdir, exist_ok=True)
    infos, copies = [], []
    for f in files:
        d = os.path.join(workdir, os.path.basename(f))
        shutil.copy(f, d)
        copies.append(d)
        root = os.path.basename(f)[:9]
        fi = FileExtMaskInfo(default_ext=("SCI", "*"), default_mask_ext=0, clobber=False,
                             doNotOpenDQ=True, fnamesOnly=False, im_fmode="update",
                             dq_fmode="readonly", msk_fmode="readonly")
        fi.image = d
        with fits.open(d) as h:
            exts = [("SCI", hd.header["EXTVER"]) for hd in h if hd.name == "SCI"]
            fi.append_ext(exts)
            fi.finalize()
            fi.clear_masks()
            for e in exts:
                m = bitfield_to_boolean_mask(h["DQ", e[1]].data, bits, good_mask_value=1,
                                             dtype=np.uint8)
                if static is not None:
                    m &= static[(root, e[1])].astype(np.uint8)
                mf = os.path.join(workdir, f"{root}_{e[1]}_mask.fits")
                fits.PrimaryHDU(m).writeto(mf, overwrite=True)
                fi.append_mask(mf, 0)
        fi.finalize()
        infos.append(fi)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        skymatch(infos, skymethod=method, skyuser_kwd="MDRIZSKY", units_kwd="BUNIT",
                 readonly=False, dq_bits=None, optimize="balanced", clobber=True, clean=True,
                 verbose=False, flog=MultiFileLog(console=False),
                 _taskname4history="AstroDrizzle", **stat)
    for fi in infos:
        fi.release_all_images()
    out = {}
    for d in copies:
        with fits.open(d) as h:
            for hd in h:
                if hd.name == "SCI":
                    out[(os.path.basename(d)[:9], hd.header["EXTVER"])] = float(
                        hd.header.get("MDRIZSKY", 0.0))
    return out


def drizzlepac_static(files, static_sig=4.0):
    """drizzlepac's static masks (``staticMask.addMember`` on its image objects):
    ``{(rootname, extver): bool mask, True = good}`` and the signature of each chip."""
    from drizzlepac import processInput, staticMask

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        objs = processInput.createImageObjectList(list(files), instrpars={}, group=None)
        sm = staticMask.staticMask(configObj={"STEP 1: STATIC MASK": {"static_sig": static_sig}})
        for o in objs:
            sm.addMember(o)
    masks, sigs = {}, {}
    for f, o in zip(files, objs, strict=True):
        root = os.path.basename(f)[:9]
        for ext in o.getExtensions():
            sig = o["SCI", ext].signature
            masks[(root, ext)] = sm.masklist[sig].astype(bool)
            sigs[(root, ext)] = sig
        o.close()
    return masks, sigs


@pytest.fixture(scope="session")
def dp_static(acs):
    """``dp_static(name)``: :func:`drizzlepac_static` of the set ``acs[name]`` (static_sig 4),
    computed once per session."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = drizzlepac_static(acs[name], 4.0)
        return cache[name]
    return get
