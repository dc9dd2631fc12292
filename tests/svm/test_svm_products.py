"""Names and contents of ``hapdask svm`` products (inventory 2.1, 2.2, 4.4, 4.5, 5).

Expected names are built here from the poller rows by the inventory's patterns, not by the code
under test.
"""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from PIL import Image

from hapdask.align import read_wcs_updates

INSTR = {"i": "wfc3", "j": "acs"}


def expected_tree(poller: Path) -> dict:
    """Inventory 2.2 names from the poller: {detector: {filter: [(ipppssoo, suffix, exptime)]}}."""
    tree: dict = defaultdict(lambda: defaultdict(list))
    meta = {}
    for line in poller.read_text().splitlines():
        name, prop, _ppp, visit, exptime, filters, det, _path = line.split(",")
        instr = INSTR[name[0]]
        filt = "-".join(t.lower() for t in filters.split(";") if "clear" not in t.lower())
        suffix = "drc" if name.endswith("_flc.fits") else "drz"
        tree[(instr, det.lower())][filt].append((name[:8], suffix, float(exptime), name[:9]))
        meta = {"prop": prop, "visit": visit.lower(), "ppp": name[1:4].lower(), "instr": instr}
    return {"tree": tree, **meta}


def expected_names(poller: Path, fitted: set[str]) -> set[str]:
    """Inventory 2.2 names; a headerlet only for the exposures (``ipppssoo``) in ``fitted``
    (DrizzlePac writes one only after a successful fit to the reference catalog)."""
    e = expected_tree(poller)
    names = {f"{e['instr']}_{e['ppp']}_{e['visit']}_manifest.txt", "wcs_updates.fits"}
    for (instr, det), filters in e["tree"].items():
        prefix = f"hst_{e['prop']}_{e['visit']}_{instr}_{det}"
        first = sorted(x for f in filters.values() for x in f)
        tsuffix = next(iter(filters.values()))[0][1]
        total = f"{prefix}_total_{first[0][0][:6]}"
        names |= {f"{total}_{tsuffix}.fits", f"{total}_trl.txt", f"{total}_point-cat.ecsv",
                  f"{total}_segment-cat.ecsv", f"{total}_{tsuffix}.jpg",
                  f"{total}_{tsuffix}_thumb.jpg"}
        if len(filters) >= 2:
            names.add(f"{total}_{'-'.join(sorted(filters))}_{tsuffix}.jpg")
        for filt, exps in filters.items():
            fstem = f"{prefix}_{filt}_{exps[0][0][:6]}"
            suffix = exps[0][1]
            names |= {f"{fstem}_{suffix}.fits", f"{fstem}_trl.txt", f"{fstem}_point-cat.ecsv",
                      f"{fstem}_segment-cat.ecsv", f"{fstem}_{suffix}.jpg",
                      f"{fstem}_{suffix}_thumb.jpg"}
            for ipppssoo, sfx, _t, root in exps:
                stem = f"{prefix}_{filt}_{ipppssoo}"
                names |= {f"{stem}_{sfx}.fits", f"{stem}_trl.txt",
                          f"{stem}_{sfx}.jpg", f"{stem}_{sfx}_thumb.jpg"}
                if ipppssoo in fitted:
                    names.add(f"{stem}_hlet.fits")
                if len(exps) >= 2:
                    names.add(f"{root}_crmask.fits")
    return names


@pytest.mark.parametrize("which", ["wfc3_run", "acs_run"])
def test_every_expected_product_exists(which, request):
    result, poller, out = request.getfixturevalue(which)
    fitted = {f.rootname[:8] for f in result.alignment.exposures if f.status == "aligned"}
    want = expected_names(poller, fitted)
    if which == "acs_run":  # --update-inputs: renamed copies
        e = expected_tree(poller)
        for (instr, det), filters in e["tree"].items():
            for filt, exps in filters.items():
                for ipppssoo, sfx, _t, _root in exps:
                    want.add(f"hst_{e['prop']}_{e['visit']}_{instr}_{det}_{filt}_{ipppssoo}_"
                             f"{'flc' if sfx == 'drc' else 'flt'}.fits")
    have = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert want == have, (sorted(want - have), sorted(have - want))
    manifest = next(out.glob("*_manifest.txt")).read_text().split()
    assert sorted(manifest) == sorted(have)


def test_inputs_untouched(wfc3_run, acs_run, input_digests, file_digest):
    for path, digest in input_digests.items():
        assert file_digest(path) == digest, path


def _products(out: Path) -> dict[str, Path]:
    return {p.name: p for p in out.glob("hst_*_dr[cz].fits")}


@pytest.mark.parametrize("which", ["wfc3_run", "acs_run"])
def test_hap_keywords(which, request):
    result, poller, out = request.getfixturevalue(which)
    e = expected_tree(poller)
    exptime = {x[0]: x[2] for f in e["tree"].values() for xs in f.values() for x in xs}
    for name, path in _products(out).items():
        stem = name[:-len("_drc.fits")]
        ip = stem.rsplit("_", 1)[1]
        with fits.open(path) as hdul:
            h = hdul[0].header
            assert [x.name for x in hdul] == ["PRIMARY", "SCI", "WHT", "CTX", "HDRTAB"]
            assert h["ROOTNAME"] == stem and h["FILENAME"] == name
            assert h["DRIZPARS"] == f"{stem}_trl.txt" and (out / h["DRIZPARS"]).is_file()
            assert hdul["SCI"].header["BUNIT"] == "ELECTRONS/S"
            assert hdul["SCI"].header["PHOTFLAM"] > 0
            assert str(hdul["SCI"].header["S_REGION"]).startswith("POLYGON ICRS ")
            if len(ip) == 8:  # exposure product
                assert h["HAPLEVEL"] == 1 and h["IPPPSSOO"][:8] == ip and len(h["IPPPSSOO"]) == 9
                assert h["NUMEXP"] == 1
                assert h["TEXPTIME"] == pytest.approx(exptime[ip])
                assert "MEANNEXP" not in h
            else:
                assert h["HAPLEVEL"] == 2
                roots = set(np.char.lower(np.asarray(hdul["HDRTAB"].data["ROOTNAME"],
                                                     dtype=str)))
                assert h["NUMEXP"] == len(roots)
                assert h["TEXPTIME"] == pytest.approx(sum(exptime[r[:8]] for r in roots))
                assert 0 < h["NPIXFRAC"] <= 1
                assert 1.0 <= h["MEANNEXP"] <= h["NUMEXP"] + 1e-9
                assert h["MEDNEXP"] in range(1, h["NUMEXP"] + 1)
                assert 0 < h["MEANEXPT"] <= h["TEXPTIME"] + 1e-6
                assert h["MEANWHT"] > 0 and h["MEDWHT"] > 0
                if "_total_" in name:
                    assert h["FILTER"] == "detection"
                else:
                    assert h["FILTER"].lower() == stem.split("_")[5]


@pytest.mark.parametrize("which", ["wfc3_run", "acs_run"])
def test_one_north_up_grid_per_detector(which, request):
    """Inventory 4.4: every product of a detector on the same north-up grid at the native
    scale of the detector, enclosing every input chip."""
    from skycells import KNOWN_DETECTORS

    result, poller, out = request.getfixturevalue(which)
    grids: dict = defaultdict(set)
    for name, path in _products(out).items():
        instr, det = name.split("_")[3:5]
        h = fits.getheader(path, "SCI")
        w = WCS(h)
        m = w.pixel_scale_matrix * 3600.0
        assert abs(m[0, 1]) < 1e-9 and abs(m[1, 0]) < 1e-9 and m[0, 0] < 0 < m[1, 1]
        assert -m[0, 0] == pytest.approx(KNOWN_DETECTORS[instr][det], rel=0.02)
        grids[(instr, det)].add((h["NAXIS1"], h["NAXIS2"], round(h["CRVAL1"], 10),
                                 round(h["CRVAL2"], 10), h["CRPIX1"], h["CRPIX2"],
                                 round(m[0, 0], 12)))
        if "_total_" in name:
            # every input chip corner (a-priori WCS; corrections are < 1") inside the grid
            for p in result.plan.exposures.values():
                if p.detector.lower() != det:
                    continue
                for c in p.chips:
                    ny, nx = c.shape
                    cw = c.wcs()
                    ra, dec = cw.all_pix2world([0, nx - 1, 0, nx - 1], [0, 0, ny - 1, ny - 1], 0)
                    x, y = w.wcs_world2pix(ra, dec, 0)
                    margin = 1.0 / -m[0, 0]
                    assert (x > -margin).all() and (x < h["NAXIS1"] + margin).all()
                    assert (y > -margin).all() and (y < h["NAXIS2"] + margin).all()
    assert all(len(g) == 1 for g in grids.values()), grids


POINT_FILTER = ["X-Center", "Y-Center", "RA", "DEC", "ID", "MagAp1", "MagErrAp1", "FluxAp1",
                "FluxErrAp1", "MagAp2", "MagErrAp2", "MSkyAp2", "StdevAp2", "FluxAp2",
                "FluxErrAp2", "CI", "Flags"]
SEGMENT_FILTER = ["X-Centroid", "Y-Centroid", "RA", "DEC", "ID", "CI", "Flags", "MagAp1",
                  "MagErrAp1", "FluxAp1", "FluxErrAp1", "MagAp2", "MagErrAp2", "FluxAp2",
                  "FluxErrAp2", "MSkyAp2", "Bck", "Area", "FWHM", "MagSegment", "FluxSegment",
                  "FluxSegmentErr", "KronRadius", "Xmin", "Ymin", "Xmax", "Ymax", "X2", "Y2",
                  "XY", "CXX", "CYY", "CXY", "Elongation", "Ellipticity", "Theta"]


def test_catalogs_have_hap_columns(acs_run):
    result, poller, out = acs_run
    totals = list(out.glob("*_total_*_point-cat.ecsv"))
    assert len(totals) == 1
    total = Table.read(totals[0], format="ascii.ecsv")
    assert len(total) > 10
    for f in ("f775w", "f850lp"):
        assert {f"MagAP2_{f}", f"CI_{f}", f"Flags_{f}"} <= set(total.colnames)
        pt = Table.read(next(out.glob(f"*_{f}_jf3t03_point-cat.ecsv")), format="ascii.ecsv")
        sg = Table.read(next(out.glob(f"*_{f}_jf3t03_segment-cat.ecsv")), format="ascii.ecsv")
        assert pt.colnames == POINT_FILTER
        assert set(SEGMENT_FILTER) <= set(sg.colnames)
        # RA/DEC are the product WCS at X/Y (0-based)
        w = WCS(fits.getheader(next(out.glob(f"*_{f}_jf3t03_drc.fits")), "SCI"))
        ra, dec = w.wcs_pix2world(pt["X-Center"], pt["Y-Center"], 0)
        assert np.allclose(ra, pt["RA"], atol=1e-8) and np.allclose(dec, pt["DEC"], atol=1e-8)
        good = pt["MagAp2"] > 0
        assert good.sum() > 10 and np.all(np.isin(pt["Flags"] & ~0xFF, [0]))


def test_crmasks_wcs_updates_and_headerlets(wfc3_run, acs_run):
    from hapdask.mosaic.products import read_crmask

    # the WFC3/IR half of visit 01 is fitted to the catalog: headerlets are made
    assert any(f.status == "aligned" for f in wfc3_run[0].alignment.exposures)

    for result, _poller, out in (wfc3_run, acs_run):
        for e in result.plan.exposures.values():
            masks = read_crmask(out / f"{e.rootname}_crmask.fits")
            assert sorted(masks) == sorted(c.extver for c in e.chips)
            assert all(masks[c.extver].shape == tuple(c.shape) for c in e.chips)
        updates = read_wcs_updates(out / "wcs_updates.fits")
        aligned = {f.rootname for f in result.alignment.exposures if f.updates}
        assert {k[0] for k in updates} == aligned
        for h in updates.values():
            assert "-FIT_SVM_" in h["WCSNAME"]
        fitted = {f.rootname[:8] for f in result.alignment.exposures if f.status == "aligned"}
        hlets = sorted(out.glob("*_hlet.fits"))
        assert {h.name.split("_")[-2] for h in hlets} == fitted
        for hlet in hlets:
            with fits.open(hlet) as hdul:
                assert "-FIT_SVM_" in hdul[0].header["WCSNAME"]


def test_wfc3_ir_visit_aligned(wfc3_run):
    """The IR half of visit 01 has enough reference stars: FIT_SVM, and its products use it."""
    result, _poller, out = wfc3_run
    ir = [f for f in result.alignment.exposures if f.rootname in ("if3s01a3q", "if3s01a4q")]
    assert ir and all(f.status in ("aligned", "relative") for f in ir)
    assert all(f.wcsname.endswith("-FIT_SVM_GAIASIM") for f in ir)
    for p in out.glob("hst_*_wfc3_ir_*_drz.fits"):
        assert fits.getval(p, "WCSNAME", "SCI") == ir[0].wcsname


def test_updated_inputs(acs_run):
    """--update-inputs: renamed copies carry the aligned WCS, HAP level 1 and DQ 4096 exactly
    where the CR masks are set."""
    from hapdask.mosaic.products import read_crmask

    result, _poller, out = acs_run
    updates = read_wcs_updates(out / "wcs_updates.fits")
    for e in result.plan.exposures.values():
        copy = next(out.glob(f"hst_*_{e.rootname[:8]}_flc.fits"))
        masks = read_crmask(out / f"{e.rootname}_crmask.fits")
        with fits.open(copy) as new, fits.open(e.path) as old:
            assert new[0].header["HAPLEVEL"] == 1 and new[0].header["FILENAME"] == copy.name
            for c in e.chips:
                dq_new = new["DQ", c.extver].data
                dq_old = old["DQ", c.extver].data
                assert np.array_equal((dq_new & 4096) != 0, masks[c.extver] | ((dq_old & 4096) > 0))
                assert np.array_equal(dq_new & ~4096, dq_old & ~4096)
                upd = updates.get((e.rootname, c.extver))
                if upd is not None:
                    assert new["SCI", c.extver].header["WCSNAME"] == upd["WCSNAME"]
                    assert new["SCI", c.extver].header["CRVAL1"] == upd["CRVAL1"]


def test_previews_are_jpegs(acs_run):
    _result, _poller, out = acs_run
    for jpg in out.glob("*.jpg"):
        im = Image.open(io.BytesIO(jpg.read_bytes()))
        assert im.format == "JPEG"
        if jpg.name.endswith("_thumb.jpg"):
            assert max(im.size) <= 128
        elif "f775w-f850lp" in jpg.name:
            assert im.mode == "RGB"


def test_mvm_consumes_svm_outputs(acs_run, tmp_path):
    """``hapdask mvm`` on the SVM output directory (renamed aligned copies + CR masks beside
    them): the layer is made from the SVM inputs and uses the SVM cosmic-ray masks."""
    from hapdask.cli import main

    _result, _poller, out = acs_run
    dest = tmp_path / "mvm"
    assert main(["mvm", "p1889x07y19", "--input", str(out), "--output", str(dest),
                 "--format", "fits", "--layer", "f775w", "--tile-size", "512"]) == 0
    layer = dest / "hst_skycell-p1889x07y19_acs_wfc_f775w_all_drc.fits"
    with fits.open(layer) as hdul:
        rows = hdul["HDRTAB"].data
        assert hdul[0].header["NUMEXP"] == 2
        assert {str(r).lower()[:9] for r in rows["ROOTNAME"]} == {"jf3t03a1q", "jf3t03a2q"}
    trailer = (dest / "hst_skycell-p1889x07y19_acs_wfc_f775w_all_drc_trl.txt").read_text()
    assert str(out / "jf3t03a1q_crmask.fits") in trailer
