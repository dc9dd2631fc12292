"""Sky methods against AstroDrizzle's sky step (skypac skymatch) and against injected truth."""

from __future__ import annotations

import dask
import numpy as np
import pytest
from skycases import OFFSETS, chip_refs, run_skymatch

from hapdask.sky import AstroDrizzleSky, SkyParams, static_mask_tasks

STAT = {"skystat": "median", "lower": -100.0, "upper": None, "nclip": 5, "lsigma": 4.0,
        "usigma": 4.0, "binwidth": 0.1}
#: tolerance against skypac, electrons. localmin/globalmin use the same pixels and statistic
#: (agree to float32 rounding); match differs only in the one-pixel-wide band along each
#: overlap's edge (pixel-centre test here, rounded vertices + scan fill in skypac).
TOL_SAME, TOL_MATCH = 1e-3, 0.01


def _ours(files, params, static_keys_graph=None):
    chips = chip_refs(files, params.bits)
    graph, keys = AstroDrizzleSky(params).tasks(chips, "sky")
    levels = dask.get(graph, keys)
    return chips, dict(zip([c.key for c in chips], levels, strict=True))


def _sky_noise(files, bits):
    """Sky noise (electrons): clipped stddev of a chip, measured with ImageStats."""
    from stsci.imagestats import ImageStats

    c = chip_refs(files[:1], bits)[0]
    sci, _, _ = c.chip.read()
    return ImageStats(sci[np.isfinite(sci)], fields="stddev", nclip=5, lsig=4, usig=4).stddev


@pytest.mark.parametrize("method", ["localmin", "match"])
def test_method_matches_astrodrizzle(acs, tmp_path, method):
    files = acs["offset"]
    p = SkyParams(skymethod=method, skylower=-100.0, sky_bits=80, static=False,
                  use_static=False)
    chips, ours = _ours(files, p)
    theirs = run_skymatch(files, str(tmp_path), method, 80, **STAT)
    tol = TOL_MATCH if "match" in method else TOL_SAME
    for key, lev in ours.items():
        assert lev.ok, (key, lev.reason)
        assert lev.value == pytest.approx(theirs[key], abs=tol), (key, lev.value, theirs[key])
    # MDRIZSKY is in SCI units (electrons for ACS FLC); rate = value / EXPTIME
    assert ours[chips[0].key].rate == pytest.approx(ours[chips[0].key].value / chips[0].exptime)
    if method == "localmin":
        # globalmin is the lowest localmin surface brightness (skypac's definition), for all
        g = SkyParams(skymethod="globalmin", skylower=-100.0, sky_bits=80, static=False)
        _, glob = _ours(files, g)
        lowest = min(theirs[c.key] / c.exptime for c in chips)  # same pscale for all chips
        for c in chips:
            assert glob[c.key].value == pytest.approx(lowest * c.exptime, abs=TOL_SAME)


def test_globalmin_match_with_static_mask_matches_astrodrizzle(acs, dp_static, tmp_path):
    """The full AstroDrizzle sky path: DQ (sky_bits) AND drizzlepac's static mask."""
    files = acs["offset"]
    static, _ = dp_static("offset")
    p = SkyParams(skymethod="globalmin+match", skylower=-100.0, sky_bits=80)
    chips = chip_refs(files, p.bits)
    sg, skeys = static_mask_tasks(chips, "static", p.static_sig)
    g, keys = AstroDrizzleSky(p, static_keys=skeys).tasks(chips, "sky")
    levels = dask.get({**sg, **g}, keys)
    theirs = run_skymatch(files, str(tmp_path), "globalmin+match", 80, static=static, **STAT)
    for c, lev in zip(chips, levels, strict=True):
        assert lev.value == pytest.approx(theirs[c.key], abs=TOL_MATCH)
    # the same with the static-mask tasks built by the sky method itself
    g2, keys2 = AstroDrizzleSky(p).tasks(chips, "sky2")
    assert [lv.value for lv in dask.get(g2, keys2)] == [lv.value for lv in levels]


def test_match_recovers_injected_offsets(acs):
    """Offsets added to whole exposures come back exactly: the truth is OFFSETS."""
    p = SkyParams(skymethod="match", skylower=-100.0, sky_bits=80, static=False)
    _, plain = _ours(acs["plain"], p)
    chips, shifted = _ours(acs["offset"], p)
    noise = _sky_noise(acs["plain"], 80)
    roots = sorted({c.key[0] for c in chips})
    texp = {c.key[0]: c.exptime for c in chips}
    # in e-/s (surface brightness up to the common pixel area), shifted minus plain
    got = {r: shifted[(r, 1)].rate - plain[(r, 1)].rate for r in roots}
    # match leaves the lowest exposure at 0: compare differences to the first exposure
    r0 = roots[0]
    for k, r in enumerate(roots):
        want = OFFSETS[k] / texp[r] - OFFSETS[0] / texp[r0]
        assert got[r] - got[r0] == pytest.approx(want, abs=0.005 * noise / texp[r]), r
        # both chips of an exposure get the same offset
        assert shifted[(r, 2)].value == pytest.approx(shifted[(r, 1)].value, rel=1e-9)


def test_all_nan_chip_is_reported_others_measured(acs):
    p = SkyParams(skymethod="globalmin+match", skylower=-100.0, sky_bits=80)
    chips, lev = _ours(acs["nan"], p)
    bad = chips[3].key  # exposure 2, chip 2
    assert not lev[bad].ok and "NaN" in lev[bad].reason and lev[bad].value == 0.0
    _, ref = _ours(acs["plain"], p)
    for c in chips:
        if c.key != bad:
            assert lev[c.key].ok and np.isfinite(lev[c.key].value) and lev[c.key].value > 0
    # localmin: the other chip of that exposure keeps its own value
    q = SkyParams(skymethod="localmin", skylower=-100.0, sky_bits=80)
    _, loc = _ours(acs["nan"], q)
    other = (bad[0], 1)
    from hapdask.sky import sky_statistic
    from hapdask.sky.stats import good_sky_pixels

    sci, _, dq = chips[2].chip.read()
    value, _ = sky_statistic(sci[good_sky_pixels(sci, dq, 80, None)], q)
    assert loc[other].value == pytest.approx(value, rel=1e-6)


def test_skysub_false_and_skyuser(acs, tmp_path):
    chips = chip_refs(acs["plain"], 80)
    g, keys = AstroDrizzleSky(SkyParams(skysub=False)).tasks(chips, "s")
    assert all(lv.value == 0.0 and lv.ok for lv in dask.get(g, keys))
    # skyuser: the header keyword's value, recorded (MDRIZSKY) but not subtracted again
    g, keys = AstroDrizzleSky(SkyParams(skysub=False, skyuser="SKYLEVEL")).tasks(chips, "s")
    for c, lv in zip(chips, dask.get(g, keys), strict=True):
        assert lv.value == c.chip.header["SKYLEVEL"] and lv.subtract is False
    with pytest.raises(ValueError, match="NOSUCHKEY"):
        AstroDrizzleSky(SkyParams(skysub=False, skyuser="NOSUCHKEY")).tasks(chips, "s")


def test_single_exposure_match_gives_zero(acs):
    p = SkyParams(skymethod="match", sky_bits=80, static=False)
    _, lev = _ours(acs["plain"][:1], p)
    assert all(lv.value == 0.0 and lv.ok and "2 exposures" in lv.reason for lv in lev.values())


def test_mvm_sky_names_still_work():
    from hapdask.mvm.sky import ChipMedianSky, SkyLevel, SkyMethod  # noqa: F401
    from hapdask.sky import SkyLevel as S

    assert SkyLevel is S


def test_input_order_does_not_matter(acs):
    p = SkyParams(skymethod="globalmin+match", skylower=-100.0, sky_bits=80, static=False)
    chips = chip_refs(acs["offset"], p.bits)
    g, keys = AstroDrizzleSky(p).tasks(chips, "a")
    fwd = {c.key: lv.value for c, lv in zip(chips, dask.get(g, keys), strict=True)}
    rev = chips[::-1]
    g, keys = AstroDrizzleSky(p).tasks(rev, "b")
    bwd = {c.key: lv.value for c, lv in zip(rev, dask.get(g, keys), strict=True)}
    for k, v in fwd.items():
        assert bwd[k] == pytest.approx(v, rel=1e-9, abs=1e-9)


def test_overlaps_build_each_chip_wcs_once_per_thread(acs, monkeypatch):
    """The overlap tasks of aligned chips (a replacement WCS: SIP + lookup tables rebuilt from
    bytes, ~5 ms each) build each chip's WCS once per thread, not four times per pair; the
    overlaps are those of WCS objects built afresh for every use."""
    from hapdask.io import open_exposure
    from hapdask.mosaic import chip_refs as mosaic_chip_refs
    from hapdask.mosaic import inputs, wcsio
    from hapdask.sky import overlap

    files = acs["plain"]
    updates = {}
    for f in files:
        e = open_exposure(f)
        for c in e.chips:
            h = c.wcs().to_header(relax=True)
            h["CRVAL1"] += 1e-6  # an aligned WCS: the chips carry serialised bytes
            updates[(e.rootname, c.extver)] = h
    chips = [r for f in files for r in mosaic_chip_refs(open_exposure(f), 80, updates)]
    assert all(c.wcs_bytes is not None for c in chips)
    pairs = [(i, j) for i in range(len(chips)) for j in range(i + 1, len(chips))
             if chips[i].rootname != chips[j].rootname]

    def fresh(a, b):  # the oracle: a new WCS object for every use
        sa = overlap.spans_in(a.wcs(), a.shape, _corners(b))
        sb = overlap.spans_in(b.wcs(), b.shape, _corners(a)) if sa is not None else None
        return None if sa is None or sb is None else overlap.Overlap(sa, sb)

    def _corners(ref):
        ny, nx = ref.shape
        ra, dec = ref.wcs().all_pix2world(np.array([-0.5, nx - 0.5, nx - 0.5, -0.5]),
                                          np.array([-0.5, -0.5, ny - 0.5, ny - 0.5]), 0)
        return np.column_stack([ra, dec])

    want = [fresh(chips[i], chips[j]) for i, j in pairs]
    builds = []
    real = wcsio.wcs_from_bytes
    for module in (wcsio, inputs):  # every way a chip's WCS is built from its bytes
        monkeypatch.setattr(module, "wcs_from_bytes", lambda b: builds.append(1) or real(b))
    got = [overlap.chip_overlap(chips[i], chips[j]) for i, j in pairs]
    assert sum(o is not None for o in want) >= 4
    for g, w in zip(got, want, strict=True):
        assert (g is None) == (w is None)
        if g is not None:
            for s, t in ((g.a, w.a), (g.b, w.b)):
                assert s.y0 == t.y0
                assert np.array_equal(s.xlo, t.xlo) and np.array_equal(s.xhi, t.xhi)
    assert len(builds) <= len(chips)


def test_overlaps_with_the_same_pixels_are_measured_once(monkeypatch):
    """Two pairs selecting the same pixels of a chip (other chips at one pointing) share one
    statistic; each pair still gets the value of its pixels (numpy's median, skyclip=0)."""
    from types import SimpleNamespace

    from hapdask.sky import methods
    from hapdask.sky.overlap import Overlap, Spans

    rng = np.random.default_rng(4)
    sci = rng.normal(30.0, 3.0, (40, 50)).astype(np.float32)
    dq = (rng.random((40, 50)) < 0.05).astype(np.uint16) * 4
    ref = SimpleNamespace(chip=SimpleNamespace(read=lambda err: (sci, None, dq)))
    rows = np.arange(30)
    a = Spans(5, (rows % 7).astype(np.int32), np.full(30, 44, np.int32))
    same = Spans(5, a.xlo.copy(), a.xhi.copy())
    other = Spans(0, np.zeros(40, np.int32), np.full(40, 20, np.int32))
    calls = []
    real = methods.sky_statistic
    monkeypatch.setattr(methods, "sky_statistic",
                        lambda v, p, first=None: calls.append(v.size) or real(v, p, first))
    p = SkyParams(skyclip=0, skystat="median")
    ovs = [Overlap(a, other), Overlap(other, same), Overlap(other, other)]
    got = methods.measure_chip(ref, p, None, ovs, [0, 1, 1], [3, 5, 4], False)
    good = dq == 0
    want_a = sci[a.mask(sci.shape) & good]
    want_o = sci[other.mask(sci.shape) & good]
    assert got.overlaps[3] == got.overlaps[5] == (float(np.median(want_a)), want_a.size)
    assert got.overlaps[4] == (float(np.median(want_o)), want_o.size)
    assert sorted(calls) == sorted([want_a.size, want_o.size])
