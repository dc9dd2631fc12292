"""``hapdask align`` files: wcs_updates.fits round trip, alignment.ecsv, inputs unchanged, and
the updates accepted by the MVM plan (with the applied WCSNAME in its headers)."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from stwcs.wcsutil import headerlet

from hapdask import mvm
from hapdask.align import mvm_alignment, read_wcs_updates
from hapdask.cli import main
from hapdask.mvm.planning import wcs_from_bytes


def _digest(paths):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def test_cli_writes_updates_and_leaves_inputs(visit, aligned, tmp_path, capsys):
    ir = [p for p in visit.exposures if p.name.endswith("_flt.fits")]
    before = _digest(ir)
    out = tmp_path / "out"
    code = main(["align", *map(str, ir), "--refcat", str(visit.refcat), "--output", str(out),
                 "--headerlets"])
    assert code == 0
    text = capsys.readouterr().out
    assert "2/2 exposures aligned to GAIASIM" in text
    assert _digest(ir) == before
    ups = read_wcs_updates(out / "wcs_updates.fits")
    mine = {k: v for k, v in aligned.wcs_updates().items() if k in ups}
    assert sorted(ups) == sorted(k for k in aligned.wcs_updates() if k[0] in
                                 {e.rootname for e in aligned.exposures
                                  if e.path.endswith("_flt.fits")})
    # the CLI and the API compute the same fit (the IR visit alone vs. with the UVIS exposures:
    # visits are per detector, so the same inputs and the same solution)
    for k, h in ups.items():
        for key in ("CRVAL1", "CRVAL2", "CD1_1", "CD2_2", "WCSNAME", "NMATCHES"):
            assert h[key] == mine[k][key], (k, key)
    tab = Table.read(out / "alignment.ecsv")
    assert list(tab["status"]) == ["aligned", "aligned"]
    assert set(tab.colnames) >= {"visit", "method", "geometry", "catalog", "matches",
                                 "rms_mas", "status", "reason"}
    assert not list(out.glob("*.part"))
    # stwcs applies the headerlet: the file's WCS becomes the update
    target = tmp_path / ir[0].name
    shutil.copy(ir[0], target)
    root = ir[0].name.split("_")[0]
    headerlet.apply_headerlet_as_primary(str(target), str(out / f"{root}_flt_hlet.fits"),
                                         attach=False, archive=False, logging=False)
    with fits.open(target) as hdul:
        h = hdul["SCI", 1].header
        assert h["WCSNAME"] == ups[(root, 1)]["WCSNAME"]
        for key in ("CRVAL1", "CRVAL2", "CD1_1", "CD1_2", "CD2_1", "CD2_2"):
            assert np.isclose(h[key], ups[(root, 1)][key], rtol=1e-10, atol=1e-13), key


def test_missing_catalog_is_one_line_error(visit, tmp_path, capsys):
    code = main(["align", str(visit.exposures[0]), "--refcat", str(tmp_path / "none.ecsv")])
    assert code == 1
    assert "none.ecsv: reference catalog file not found" in capsys.readouterr().err


def test_mvm_plan_applies_updates_and_margin(visit, aligned):
    ir = [str(p) for p in visit.exposures if p.name.endswith("_flt.fits")]
    updates = {k: v for k, v in aligned.wcs_updates().items() if k[0] in str(ir)}
    assert len(updates) == 2
    p = mvm.plan("p1889x07y19", ir, wcs_updates=updates, tile_size=1024)
    info = {i.rootname: i for i in p.inputs}
    for (root, ext), h in updates.items():
        sci = info[root].sci_headers[ext - 1]
        assert sci["WCSNAME"] == h["WCSNAME"] and sci["NMATCHES"] == h["NMATCHES"]
        chip = next(c for c in info[root].chips if c.key == (root, ext))
        w: WCS = wcs_from_bytes(chip.wcs_bytes)
        assert np.allclose(w.wcs.crval, [h["CRVAL1"], h["CRVAL2"]], rtol=0, atol=1e-12)
    # a margin smaller than the pointing errors (0.1-0.5") rejects every correction, with
    # the reason
    tight = mvm_alignment(ir, visit.refcat, margin=0.05)
    assert not tight.updates
    assert all("exceeds the alignment margin 0.05\"" in e.reason for e in tight.exposures)
