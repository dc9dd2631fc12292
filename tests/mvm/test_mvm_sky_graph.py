"""Skies measured inside the tiles' graph: the exact clipped median, the recorded sky cards,
tiling/threads invariance, the zarr fingerprints and the redo when a chip turns out unusable."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr
from astropy.io import fits

from hapdask import mvm
from hapdask.export import zarr as xzarr
from hapdask.mvm import runner
from hapdask.mvm.sky import chip_sky, clipped_median
from hapdask.scheduling import local_compute

SKYCELL = "p1889x07y19"
LAYERS = ["acs_wfc_f850lp", "wfc3_ir_f160w_coarse"]
warnings.filterwarnings("ignore", category=fits.verify.VerifyWarning)


def _definition(values, sigma=3.0, maxiters=5) -> float:
    """The clipped median as its docstring defines it, step by step on unsorted values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float("nan")
    med = float(np.median(v))
    for _ in range(maxiters):
        if v.size < 3:
            break
        dev = np.abs(v - med)
        std = 1.4826 * float(np.median(dev))
        if std <= 0:
            break
        keep = dev <= sigma * std
        if keep.all():
            break
        v = v[keep]
        med = float(np.median(v))
    return med


def test_clipped_median_is_bit_identical_to_its_definition():
    rng = np.random.default_rng(7)
    cases = [np.array([]), np.array([5.0]), np.array([1.0, 2.0]), np.full(10, 3.0),
             np.array([0.0, 0.0, 0.0, 1e6]), np.array([-1.0, 1.0, -1.0, 1.0, 40.0])]
    for n in (3, 4, 7, 50, 51, 999, 4000):
        cases += [rng.normal(10, 2, n), rng.integers(0, 5, n).astype(np.float32),
                  np.concatenate([rng.normal(0, 1, n), rng.exponential(40, n // 3 + 1)]),
                  np.round(rng.normal(100, 3, n), 1)]
    for x in cases:
        for sigma, iters in ((3.0, 5), (2.0, 10), (1.0, 2)):
            want = _definition(x, sigma, iters)
            got = clipped_median(x, sigma, iters)
            assert (got == want) or (np.isnan(got) and np.isnan(want)), (x[:8], sigma, iters)


def _run(sim, true_wcs, verdicts, out, **kw):
    return mvm.run(SKYCELL, str(sim.mvm_poller), output=out, wcs_updates=true_wcs,
                   layers=LAYERS, log=lambda m: None, verdicts=verdicts, **kw)


def _hdus(path: Path) -> dict:
    with fits.open(path) as h:
        return {e.name: (e.header.copy(), None if e.data is None else
                         (e.data.copy() if not isinstance(e, fits.BinTableHDU)
                          else e.data.tobytes())) for e in h}


def _assert_same_products(a, b, layers) -> None:
    """The FITS layers (headers but DATE, data) and the zarr store (sci/wht/ctx and the tile
    fingerprints) of two output folders are identical."""
    for name in layers:
        fa = _hdus(a / f"{name}.fits")
        fb = _hdus(b / f"{name}.fits")
        assert fa.keys() == fb.keys()
        for ext in fa:
            ha, hb = fa[ext][0], fb[ext][0]
            for h in (ha, hb):
                h.remove("DATE", ignore_missing=True)
            assert ha.tostring() == hb.tostring(), ext
            if isinstance(fa[ext][1], bytes):
                assert fa[ext][1] == fb[ext][1]
            elif fa[ext][1] is not None:
                np.testing.assert_array_equal(fa[ext][1], fb[ext][1])
    ga = zarr.open_group(str(a / runner.store_name(SKYCELL)), mode="r")
    gb = zarr.open_group(str(b / runner.store_name(SKYCELL)), mode="r")
    assert sorted(ga.group_keys()) == sorted(gb.group_keys()) == sorted(layers)
    for name in layers:
        for arr in ("sci", "wht", "ctx"):
            np.testing.assert_array_equal(ga[name][arr][...], gb[name][arr][...])
        np.testing.assert_array_equal(ga[name][xzarr.MARKERS]["tile_fp"][...],
                                      gb[name][xzarr.MARKERS]["tile_fp"][...])


def test_skies_in_graph_recorded_and_same_for_any_tiling_and_threads(sim, true_wcs, verdicts,
                                                                     tmp_path):
    """Tiles of 256 on one thread and one whole tile on two threads: every D###SKY card and
    HDRTAB MDRIZSKY equals ChipMedianSky measured on the chip alone, the files are the same
    but for DATE (arrays to the tiling test's float32 tolerance, the whole-layer statistics
    to rounding), and every zarr tile
    fingerprint completed in its write task equals the one computed from the known skies."""
    a = _run(sim, true_wcs, verdicts, tmp_path / "a", tile_size=256, threads_per_worker=1)
    b = _run(sim, true_wcs, verdicts, tmp_path / "b", tile_size=16384, threads_per_worker=2,
             oversubscribe=True)
    assert len(a.plan.layers) == 2 and not a.plan.rejected
    for name, lay in a.plan.layers.items():
        oracle = [chip_sky(c).value for c in lay.chips]  # measured outside any graph
        fa = _hdus(tmp_path / "a" / f"{name}.fits")
        fb = _hdus(tmp_path / "b" / f"{name}.fits")
        hdr = fa["PRIMARY"][0]
        assert [hdr[f"D{i:03d}SKY"] for i in range(1, len(lay.chips) + 1)] == oracle
        assert len(set(oracle)) == len(oracle) and all(v != 0 for v in oracle)
        with fits.open(tmp_path / "a" / f"{name}.fits") as h:
            assert list(h["HDRTAB"].data["MDRIZSKY"]) == oracle
        assert [a.skies[c.key].value for c in lay.chips] == oracle
        for ext in fa:
            ha, hb = fa[ext][0], fb[ext][0]
            for key in runner.STAT_KEYS:  # sums over tiles: in another order
                if key in ha:
                    assert ha[key] == pytest.approx(hb[key], rel=1e-9, abs=1e-12)
                    ha[key] = hb[key]
            for h in (ha, hb):
                h.remove("DATE", ignore_missing=True)
            assert ha.tostring() == hb.tostring(), ext
        assert fa["HDRTAB"][1] == fb["HDRTAB"][1]
        s0, s1 = fa["SCI"][1], fb["SCI"][1]
        np.testing.assert_array_equal(np.isnan(s0), np.isnan(s1))
        np.testing.assert_allclose(s0, s1, rtol=2e-6, atol=1e-6 * np.nanmax(np.abs(s0)))
        np.testing.assert_allclose(fa["WHT"][1], fb["WHT"][1], rtol=2e-6)
        np.testing.assert_array_equal(fa["CTX"][1], fb["CTX"][1])
        for res, out in ((a, tmp_path / "a"), (b, tmp_path / "b")):
            lay = res.plan.layers[name]
            group = zarr.open_group(str(out / runner.store_name(SKYCELL)), mode="r")
            want = np.zeros(lay.ntiles, np.uint64)
            for t in lay.tiles:
                want[t.index] = runner.tile_fingerprint(res.plan, lay, t, res.skies)
            np.testing.assert_array_equal(group[name][xzarr.MARKERS]["tile_fp"][...], want)


def test_unusable_chip_found_in_graph_gives_the_products_of_measuring_first(sim, true_wcs,
                                                                           verdicts, tmp_path,
                                                                           monkeypatch):
    """A chip that is all NaN (its exposure passes the analyze rules on the other chip) is
    found by its sky task inside the tiles' graph: its tiles are skipped and the layers are
    redone without it. The products equal those of measuring every sky first (the plan's
    chips rejected before any tile), and no stale layer is left in the zarr store."""
    src = next(p for p in sim.exposures if Path(p).name.startswith("j"))
    data = tmp_path / "inputs"
    data.mkdir()
    bad = data / Path(src).name
    with fits.open(src) as h:
        h["SCI", 2].data = np.full_like(h["SCI", 2].data, np.nan)
        h.writeto(bad)
    for p in sim.exposures:
        if Path(p).name.startswith("j") and Path(p) != Path(src):
            shutil.copy(p, data / Path(p).name)
    paths = sorted(str(p) for p in data.iterdir())
    verd = {p: verdicts[str(Path(src).parent / Path(p).name)] for p in paths}

    attempts = []
    inner = runner._write_layers

    def counted(p, outdir, formats, compute, skies, *rest):
        attempts.append(skies is None)
        return inner(p, outdir, formats, compute, skies, *rest)

    monkeypatch.setattr(runner, "_write_layers", counted)
    res = mvm.run(SKYCELL, paths, output=tmp_path / "graph", tile_size=512, verdicts=verd,
                  log=lambda m: None)
    monkeypatch.undo()
    assert attempts == [True, False]  # skies in the graph, then redone with them known
    assert any(r.path == str(bad) and "nan" in r.reason.lower() for r in res.plan.rejected)

    p = mvm.plan(SKYCELL, paths, tile_size=512, verdicts=verd)
    skies = runner.measure_skies(p, local_compute)
    assert not skies[(bad.name.split("_")[0], 2)].ok
    outputs, *_ = runner.write_layers(p, tmp_path / "first", compute=local_compute,
                                      skies=skies, log=lambda m: None)
    assert sorted(res.plan.layers) == sorted(p.layers)
    _assert_same_products(tmp_path / "graph", tmp_path / "first", p.layers)


@pytest.mark.parametrize("formats", [("fits",), ("fits", "zarr")])
def test_resume_measures_skies_first(sim, true_wcs, verdicts, tmp_path, formats):
    """An output directory without a store runs the skies in the graph; with a store (a run to
    resume) they are measured first and every tile is reused on the second run."""
    out = tmp_path / "o"
    first = _run(sim, true_wcs, verdicts, out, tile_size=1024, formats=formats)
    assert first.tiles_computed > 0 and first.tiles_reused == 0
    again = _run(sim, true_wcs, verdicts, out, tile_size=1024, formats=formats)
    if "zarr" in formats:
        assert again.tiles_computed == 0 and again.tiles_reused == first.tiles_computed
    else:
        assert again.tiles_reused == 0
    assert again.skies == first.skies


def test_pixel_test_rejection_beside_the_tiles_gives_the_products_of_waiting(sim, tmp_path,
                                                                            monkeypatch):
    """On local threads the analyze rules that read pixels run beside the tiles while the run
    plans on the header rules. An exposure whose SCI is all zero passes the header rules and is
    rejected by rule Z only there: the run plans again without it before finalising anything.
    The products (FITS headers but DATE, data, HDRTAB; zarr arrays and tile fingerprints) and
    the rejections equal those of a run given the full verdicts first; no .part file is left."""
    from hapdask.mvm.planning import analyze_one

    src = sorted(p for p in sim.exposures if Path(p).name.startswith("j"))
    data = tmp_path / "inputs"
    data.mkdir()
    zero = data / Path(src[0]).name
    with fits.open(src[0]) as h:
        for ext in h:
            if ext.name == "SCI":
                ext.data = np.zeros_like(ext.data)
        h.writeto(zero)
    for p in src[1:]:
        shutil.copy(p, data / Path(p).name)
    paths = sorted(str(p) for p in data.iterdir())
    full = {p: analyze_one(p) for p in paths}
    assert not full[str(zero)].keep and full[str(zero)].rule == "Z"
    assert analyze_one(str(zero), check_data=False).keep  # the header rules keep it

    plans = []
    inner = runner.plan

    def counted(*args, **kw):
        plans.append(sorted(p for p, v in kw["verdicts"].items() if v.keep))
        return inner(*args, **kw)

    monkeypatch.setattr(runner, "plan", counted)
    res = mvm.run(SKYCELL, paths, output=tmp_path / "beside", tile_size=512,
                  log=lambda m: None)
    monkeypatch.undo()
    assert len(plans) == 2 and str(zero) in plans[0] and str(zero) not in plans[1]
    waited = mvm.run(SKYCELL, paths, output=tmp_path / "waited", tile_size=512,
                     verdicts=full, log=lambda m: None)
    assert [(r.path, r.rule, r.reason) for r in res.plan.rejected] == \
        [(r.path, r.rule, r.reason) for r in waited.plan.rejected]
    assert any(r.path == str(zero) and r.rule == "Z" for r in res.plan.rejected)
    assert sorted(res.plan.layers) == sorted(waited.plan.layers)
    assert not list((tmp_path / "beside").glob("*.part"))
    _assert_same_products(tmp_path / "beside", tmp_path / "waited", waited.plan.layers)
