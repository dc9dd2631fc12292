"""The MVM plan: layers, bounded grids, tiles and their chips, dry run."""

from __future__ import annotations

import numpy as np
import pytest

import skycells
from hapdask import mvm
from hapdask.io import open_exposure

SKYCELL = "p1889x07y19"
EXPECTED = {
    "acs_wfc_f775w_all_drc", "acs_wfc_f850lp_all_drc", "wfc3_ir_f105w_all_drz",
    "wfc3_ir_f105w_coarse-all_drz", "wfc3_ir_f125w_all_drz", "wfc3_ir_f125w_coarse-all_drz",
    "wfc3_ir_f160w_all_drz", "wfc3_ir_f160w_coarse-all_drz", "wfc3_uvis_f475w_all_drc",
}


@pytest.fixture(scope="module")
def plan(sim, true_wcs, verdicts):
    return mvm.plan(SKYCELL, str(sim.mvm_poller), tile_size=256, wcs_updates=true_wcs,
                    verdicts=verdicts)


def test_layer_names_follow_hap_rules(plan):
    assert {n.split(f"skycell-{SKYCELL}_")[1] for n in plan.layers} == EXPECTED
    for name, lay in plan.layers.items():
        assert lay.filename == name + ".fits"
        # drc layers hold only FLC inputs, drz layers only FLT
        assert all(i.flc == lay.flc for i in lay.inputs)
        assert lay.flc == name.endswith("_drc")


def test_grids_are_the_bounded_skycell_subarray(plan, sim, true_wcs):
    """Every layer's grid = skycells.bounded_wcs of all inputs' (true-WCS) footprints."""
    fps = []
    for path in sim.exposures:
        exp = open_exposure(path)
        for chip in exp.chips:
            from hapdask.mvm.planning import updated_wcs_bytes, wcs_from_bytes

            w = wcs_from_bytes(updated_wcs_bytes(chip, true_wcs[(exp.rootname, chip.extver)]))
            fps.append(skycells.wcs_outline(w))
    for scale in ("fine", "coarse"):
        ref = skycells.bounded_wcs(skycells.SkyCell.from_name(SKYCELL, scale=scale), fps)
        lays = [lay for lay in plan.layers.values() if lay.scale == scale]
        assert lays
        for lay in lays:
            w = lay.wcs()
            assert lay.shape == (ref.pixel_shape[1], ref.pixel_shape[0])
            np.testing.assert_allclose(w.wcs.crpix, ref.wcs.crpix, rtol=1e-13)
            np.testing.assert_array_equal(w.wcs.crval, ref.wcs.crval)
            # FITS cards hold ~14 significant digits
            np.testing.assert_allclose(w.pixel_scale_matrix, ref.pixel_scale_matrix, rtol=1e-13)
            assert lay.scale_arcsec == pytest.approx(0.04 if scale == "fine" else 0.12)


def test_tiles_cover_grid_and_list_every_overlapping_chip(plan):
    for lay in plan.layers.values():
        ny, nx = lay.shape
        cover = np.zeros(lay.shape, int)
        for t in lay.tiles:
            y0, y1, x0, x1 = t.window
            cover[y0:y1, x0:x1] += 1
            assert [i for i, _ in t.contribs] == sorted(i for i, _ in t.contribs)
            for i, (b0, b1, a0, a1) in t.contribs:
                cy, cx = lay.chips[i].shape
                assert 0 <= b0 < b1 <= cy and 0 <= a0 < a1 <= cx
        assert (cover == 1).all()
        # every chip centre lies in a tile that lists the chip
        for k, chip in enumerate(lay.chips):
            cy, cx = chip.shape
            ra, dec = chip.wcs().all_pix2world([cx / 2], [cy / 2], 0)
            x, y = lay.wcs().wcs_world2pix(ra, dec, 0)
            ty, tx = int((y[0] + 0.5) // lay.tile_size), int((x[0] + 0.5) // lay.tile_size)
            if 0 <= ty < lay.ntiles[0] and 0 <= tx < lay.ntiles[1]:
                tile = lay.tiles[ty * lay.ntiles[1] + tx]
                assert k in [i for i, _ in tile.contribs]


def test_input_order_is_fixed(plan):
    keys = [(i.expstart, i.rootname) for i in plan.inputs]
    assert keys == sorted(keys)
    for lay in plan.layers.values():
        order = [(c.key[0], c.key[1]) for c in lay.chips]
        starts = {i.rootname: i.expstart for i in lay.inputs}
        assert order == sorted(order, key=lambda k: (starts[k[0]], k[0], k[1]))


def test_layer_selection(sim, true_wcs, verdicts, plan):
    sub = mvm.plan(SKYCELL, str(sim.mvm_poller), tile_size=256, wcs_updates=true_wcs,
                   verdicts=verdicts, only=["ir_f160w"])
    assert sorted(sub.layers) == sorted(n for n in plan.layers if "ir_f160w" in n)
    for name, lay in sub.layers.items():
        assert lay.shape == plan.layers[name].shape  # grids still bounded by every input


def test_dry_run_cli_prints_the_plan(sim, capsys):
    import gc

    from hapdask.cli import main

    before = gc.get_threshold(), gc.get_freeze_count()
    assert main(["mvm", SKYCELL, "--input", str(sim.mvm_poller), "--dry-run",
                 "--tile-size", "1024"]) == 0
    # the command's garbage-collector settings (hapdask.cli.mvm) are undone when it returns
    assert (gc.get_threshold(), gc.get_freeze_count()) == before
    out = capsys.readouterr().out
    assert "9 layer(s)" in out
    assert "hst_skycell-p1889x07y19_wfc3_ir_f160w_coarse-all_drz.fits" in out
    assert "estimated memory per tile task" in out and "inputs per tile" in out


def test_cli_bad_arguments_give_one_line_errors(capsys):
    from hapdask.cli import main

    assert main(["mvm", SKYCELL, "--format", "tiff", "--dry-run"]) == 1
    assert "unknown format" in capsys.readouterr().err
    assert main(["mvm", "p9999x99y99", "--input", "nothing_here.fits", "--dry-run"]) == 1
