"""simulate_visits / demo_dataset contracts: determinism, overwrite rules, cache, CLI, geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from hapdask.cli import main
from hapdask.simulate import (
    SimulationError,
    core,
    demo_dataset,
    instruments,
    load_set,
    read_true_wcs,
    simulate_visits,
)

CELL = "p1889x07y19"


def _contents(d):
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = simulate_visits(CELL, tmp_path / "a", visits=2, small=True, seed=11)
    b = simulate_visits(CELL, tmp_path / "b", visits=2, small=True, seed=11)
    ca, cb = _contents(a.outdir), _contents(b.outdir)
    assert ca.keys() == cb.keys()
    for name in ca:
        if name.endswith(".out"):  # pollers hold absolute paths
            assert ca[name].replace(bytes(a.outdir), b"") == cb[name].replace(bytes(b.outdir), b"")
        else:
            assert ca[name] == cb[name], name
    c = simulate_visits(CELL, tmp_path / "c", visits=1, small=True, seed=12)
    first = a.exposures[0].name
    assert (c.outdir / first).read_bytes() != ca[first]


def test_overwrite_rules(tmp_path):
    # foreign content: refused, untouched
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not made by 'hapdask simulate'"):
        simulate_visits(CELL, foreign, visits=1, small=True)
    assert (foreign / "mine.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign"]  # no temp dir left

    # an empty directory is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    s = simulate_visits(CELL, empty, visits=1, small=True)
    assert s.outdir == empty.resolve() and len(s.exposures) == 4

    # same parameters: the existing set is returned, nothing rewritten
    mtimes = {p.name: p.stat().st_mtime_ns for p in empty.iterdir()}
    again = simulate_visits(CELL, empty, visits=1, small=True)
    assert again.exposures == s.exposures
    assert mtimes == {p.name: p.stat().st_mtime_ns for p in empty.iterdir()}

    # different parameters: refused
    with pytest.raises(FileExistsError, match="different parameters"):
        simulate_visits(CELL, empty, visits=1, small=True, seed=5)

    # a damaged set (a file removed) is not silently reused or overwritten
    s.exposures[0].unlink()
    with pytest.raises(FileExistsError, match="incomplete or modified"):
        simulate_visits(CELL, empty, visits=1, small=True)


@pytest.mark.parametrize("kwargs, match", [
    ({"skycell": "p1889x7y19"}, "SkyCell name"),
    ({"skycell": "p1889x22y19"}, "out of range"),
    ({"skycell": "p1889x07y19", "visits": 0}, "visits must be"),
    ({"skycell": "p1889x07y19", "seed": -1}, "seed must be"),
])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(SimulationError, match=match):
        simulate_visits(outdir=tmp_path / "x", **{"small": True, **kwargs})
    assert not (tmp_path / "x").exists()


def test_demo_dataset_is_cached_and_repaired(tmp_path, monkeypatch):
    monkeypatch.setattr(core, "DEMO_PARAMS", {"visits": 1, "small": True, "seed": 0})
    cache = tmp_path / "cache"
    s = demo_dataset(CELL, cache_dir=cache)
    assert s.marker.is_file() and s.visits == 1
    mtime = s.exposures[0].stat().st_mtime_ns
    s2 = demo_dataset(CELL, cache_dir=cache)
    assert s2.exposures == s.exposures and s2.exposures[0].stat().st_mtime_ns == mtime
    # damaged cache: re-simulated
    s.exposures[1].unlink()
    s3 = demo_dataset(CELL, cache_dir=cache)
    assert s3.exposures[1].is_file()
    assert load_set(cache).exposures == s.exposures
    # the default location follows $HAPDASK_DEMO_DIR
    monkeypatch.setenv("HAPDASK_DEMO_DIR", str(tmp_path / "env"))
    expected = tmp_path / "env" / f"{CELL}-v{core.FORMAT_VERSION}"
    assert core.default_demo_dir("skycell-p1889x07y19") == expected
    # foreign content is never deleted
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.fits").write_bytes(b"")
    with pytest.raises(FileExistsError):
        demo_dataset(CELL, cache_dir=other)
    assert (other / "x.fits").exists()


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["simulate", CELL, str(out), "--small", "--visits", "1", "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert "4 exposures in 1 visits" in text and str(out) in text
    assert load_set(out).seed == 3
    assert main(["simulate", "nonsense", str(tmp_path / "bad"), "--small"]) == 1
    assert "SkyCell name 'nonsense'" in capsys.readouterr().err


def test_read_true_wcs_rejects_other_files(tmp_path, shared_data):
    with pytest.raises(ValueError, match="not a hapdask true-WCS file"):
        read_true_wcs(shared_data / "headers" / "sample_svm_flt.fits")
    with pytest.raises(OSError, match="cannot read"):
        read_true_wcs(tmp_path / "missing.fits")


def test_rotation_moves_the_whole_distorted_chip_rigidly():
    """Re-pointing = a rotation of the sky applied to every pixel's world position (1e-9 deg)."""
    tmpl = instruments.load_template("acs_wfc", small=False)
    rot = instruments.rotation_between(*tmpl.ref_radec, tmpl.ref_pa, 181.07, 27.9, 37.0)
    rng = np.random.default_rng(0)
    for hdr in tmpl.sci:
        before = tmpl.chip_wcs(hdr)
        moved = hdr.copy()
        instruments.rotate_header_wcs(moved, rot)
        after = tmpl.chip_wcs(moved)
        pix = rng.uniform(0, [4096, 2048], (50, 2))
        vec = np.array([instruments.unit_vector(r, d) for r, d in before.all_pix2world(pix, 0)])
        expect = np.array([instruments.radec_of(rot @ v) for v in vec])
        got = after.all_pix2world(pix, 0)
        dra = (got[:, 0] - expect[:, 0] + 180) % 360 - 180
        assert np.abs(dra * math.cos(math.radians(27.9))).max() < 1e-9
        assert np.abs(got[:, 1] - expect[:, 1]).max() < 1e-9
    moved = tmpl.sci[0].copy()
    instruments.rotate_header_wcs(moved, rot)
    # the roll is defined at the field centre; chip 1's own CRVAL is ~100" away, where the meridians
    # converge by ~0.02 deg at these declinations
    assert instruments.orientat(moved) == pytest.approx(37.0, abs=0.05)


@pytest.mark.parametrize("key", ["wfc3_uvis", "acs_wfc", "wfc3_ir"])
def test_subarray_windows_keep_the_detector_distortion(key):
    """A --small window pixel (i, j) maps exactly like full-chip pixel (x0 + i, y0 + j)."""
    full = instruments.load_template(key, small=False)
    small = instruments.load_template(key, small=True)
    rng = np.random.default_rng(1)
    for c, (x0, y0, nx, ny) in enumerate(small.windows):
        wf = full.chip_wcs(full.sci[c])
        ws = small.chip_wcs(small.sci[c])
        pix = rng.uniform(0, [nx, ny], (100, 2))
        a = wf.all_pix2world(pix + [x0, y0], 0)
        b = ws.all_pix2world(pix, 0)
        assert np.abs(a - b).max() < 1e-10
        assert small.sci[c]["LTV1"] == -x0 and small.sci[c]["LTV2"] == -y0
        if ws.cpdis1 is not None:
            # the lookup tables really are shifted: without the shift positions would differ
            unshifted = [lut.copy() for lut in small.luts]
            for lut, orig in zip(unshifted, full.luts, strict=True):
                lut.header["CRVAL1"] = orig.header.get("CRVAL1", 0.0)
                lut.header["CRVAL2"] = orig.header.get("CRVAL2", 0.0)
            wu = WCS(instruments.wcs_only(small.sci[c]),
                     fobj=fits.HDUList([fits.PrimaryHDU(), *unshifted]))
            assert np.abs(wu.all_pix2world(pix, 0) - b).max() > 1e-8


def test_sersic_mixtures_reproduce_the_profiles():
    for n in (1.0, 4.0):
        frac, sig = core.sky.sersic_mixture(n)
        assert frac.sum() == pytest.approx(1.0)
        # half of the (mixture) light within r_eff, within a few per cent for n=1
        r = 1.0
        inside = np.sum(frac * (1 - np.exp(-0.5 * (r / sig) ** 2)))
        assert inside == pytest.approx(0.5, abs=0.03 if n == 1 else 0.08)


@pytest.mark.parametrize("key, nchips, shape, scale", [
    ("wfc3_uvis", 2, (4096, 2051), 0.0396),
    ("wfc3_ir", 1, (1014, 1014), 0.128),
    ("acs_wfc", 2, (4096, 2048), 0.05),
])
def test_full_size_geometry_is_the_real_instrument(key, nchips, shape, scale):
    tmpl = instruments.load_template(key, small=False)
    assert len(tmpl.sci) == nchips
    assert [w[2:] for w in tmpl.windows] == [shape] * nchips
    for hdr in tmpl.sci:
        assert (hdr["NAXIS1"], hdr["NAXIS2"]) == shape
        w = tmpl.chip_wcs(hdr)
        pscale = math.sqrt(abs(np.linalg.det(w.pixel_scale_matrix))) * 3600
        assert pscale == pytest.approx(scale, rel=0.03)  # ACS/WFC pixels are skewed
        assert hdr["IDCSCALE"] == pytest.approx(scale, rel=0.01)


def test_fast_repointed_wcs_equals_parsing_the_header():
    tmpl = instruments.load_template("wfc3_uvis", small=True)
    rot = instruments.rotation_between(*tmpl.ref_radec, tmpl.ref_pa, 181.07, 27.9, 211.0)
    pix = np.random.default_rng(2).uniform(0, 256, (20, 2))
    for c, hdr in enumerate(tmpl.sci):
        moved = hdr.copy()
        instruments.rotate_header_wcs(moved, rot)
        fast = tmpl.repointed_wcs(c, moved)
        slow = tmpl.chip_wcs(moved)
        assert np.abs(fast.all_pix2world(pix, 0) - slow.all_pix2world(pix, 0)).max() < 1e-12


def test_concurrent_runs_of_the_same_set_share_the_result(tmp_path, monkeypatch):
    """A run that finds its target filled by an identical concurrent run returns that set."""
    target = tmp_path / "set"
    real_write = core._write_set

    def write_then_race(tmp, final, *args):
        real_write(tmp, final, *args)
        if not final.exists():  # the "other process" finishes first
            monkeypatch.setattr(core, "_write_set", real_write)
            simulate_visits(CELL, final, visits=1, small=True)

    monkeypatch.setattr(core, "_write_set", write_then_race)
    s = simulate_visits(CELL, target, visits=1, small=True)
    assert s.outdir == target.resolve() and len(s.exposures) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # our temp dir is gone


def test_saturated_charge_bleeds_along_columns_and_is_conserved():
    img = np.full((40, 5), 100.0)
    img[20, 2] = 100.0 + 5 * 1000.0  # 5 full wells' worth of excess above 1000
    img[0, 4] = 3000.0  # at the edge: charge can only go up, some leaves nothing
    before = img.sum()
    sat = np.zeros(img.shape, dtype=np.uint8)
    core.render.bleed_saturated(img, 1000.0, sat)
    assert img.max() <= 1000.0
    assert img.sum() == pytest.approx(before)
    col = np.flatnonzero(sat[:, 2])
    assert col.min() < 20 < col.max() and np.all(np.diff(col) == 1)  # one vertical trail
    assert sat[:, [0, 1, 3]].sum() == 0
