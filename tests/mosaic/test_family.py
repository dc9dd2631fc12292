"""Product families (hapdask.mosaic.family): several products on one grid from one drizzle pass
per chip, against each product's own drizzle, against drizzle's C code, and for determinism.

The family mirrors an SVM visit on two dithered ACS/WFC exposures: a "filter" product (static
mask, sky, separate drizzle, median, driz_cr, bits 336), an "exposure" product of the first
exposure (no sky, bits 65535) and a "total" of both (another sky method, no static mask, the
filter's cosmic-ray masks, bits 336, fill value 0).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from dask.threaded import get as threaded_get

from hapdask.drizzle import calc_pixmap
from hapdask.io import open_exposure
from hapdask.mosaic import chip_refs
from hapdask.mosaic.family import family_groups, family_tasks
from hapdask.mosaic.job import drizzle_graph
from hapdask.mosaic.params import AstroDrizzleParams
from hapdask.mosaic.products import crmask_name, read_crmask

ROOTS = ("jf3t03a1q", "jf3t03a2q")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from hapdask.simulate import simulate_visits

    sim = simulate_visits("p1889x07y19", tmp_path_factory.mktemp("famsim") / "set",
                          small=True, visits=3)
    return [str(sim.outdir / f"{r}_flc.fits") for r in ROOTS]


def _grid(pair) -> dict:
    with fits.open(pair[0]) as h:
        ra, dec = WCS(h[1].header, h).all_pix2world([[255.5, 127.5]], 0)[0]
    grid = {"rot": 0.0, "scale": 0.05, "ra": float(ra), "dec": float(dec), "outnx": 520,
            "outny": 460, "crpix1": 260.5, "crpix2": 230.5}
    out = {"final_wcs": True, "driz_sep_wcs": True}
    for k, v in grid.items():
        out[f"final_{k}"] = v
        out[f"driz_sep_{k}"] = v
    return out


def _products(pair, pixfrac: float = 1.0) -> list[tuple[str, list, dict]]:
    grid = _grid(pair)
    common = {**grid, "context": True, "final_kernel": "square", "final_wht_type": "EXP"}
    filt = {**common, "static": True, "skysub": True, "skymethod": "localmin",
            "driz_separate": True, "driz_sep_kernel": "square", "driz_sep_bits": "336",
            "median": True, "combine_type": "minmed", "blot": True, "driz_cr": True,
            "final_bits": "336", "final_pixfrac": 1.0}
    expo = {**common, "static": False, "skysub": False, "driz_separate": False,
            "median": False, "blot": False, "driz_cr": False, "final_bits": "65535",
            "final_pixfrac": pixfrac, "resetbits": 0}
    total = {**common, "static": False, "skysub": True, "skymethod": "match",
             "driz_separate": False, "median": False, "blot": False, "driz_cr": False,
             "final_bits": "336", "final_fillval": 0.0, "final_pixfrac": 1.0,
             "resetbits": 0}  # as HAP: else CR flags count as good and the masks go unused
    return [("filter", list(pair), filt), ("exposure", [pair[0]], expo),
            ("total", list(pair), total)]


def _run(pair, out, *, family=True, tile=128, workers=2, reverse=False, pixfrac=1.0,
         banded=False):
    """Plan the three products (the total reads the filter's cosmic-ray masks), optionally as
    a family, optionally written in bands of rows from their kept tiles (``banded_product``),
    and compute them; returns ``({name: product path}, family applied)``."""
    out.mkdir(parents=True, exist_ok=True)
    prods = _products(pair, pixfrac)
    dgs, applied = {}, False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, inputs, params in prods:
            masks, after = None, ()
            if name == "total":
                f = dgs["filter"]
                masks = {r: str(out / crmask_name(r)) for r in f.crmask_keys}
                after = tuple(f.crmask_keys.values())
            dgs[name] = drizzle_graph(inputs[::-1] if reverse else inputs, out / name,
                                      params=params, tile_size=tile, region_size=tile,
                                      crmasks=masks, after=after, reuse_separate=not family,
                                      banded_product=banded)
        if family:
            finals = [AstroDrizzleParams.from_mapping(p).final for _, _, p in prods]
            for g in family_groups(finals):
                names = [prods[i][0] for i in g]
                applied |= family_tasks([dgs[n] for n in names], [dgs[n].graph for n in names],
                                        "test-family")
        graph = {}
        for dg in dgs.values():
            graph.update(dg.graph)
        keys = [k for dg in dgs.values() for k in dg.keys]
        try:
            threaded_get(graph, keys, num_workers=workers)
        finally:
            for dg in dgs.values():
                dg.scratch.remove()
    return {n: dg.output for n, dg in dgs.items()}, applied


def _arrays(path):
    with fits.open(path) as h:
        return {e: np.array(h[e].data) for e in ("SCI", "WHT", "CTX")}


@pytest.fixture(scope="module")
def direct(pair, tmp_path_factory):
    return _run(pair, tmp_path_factory.mktemp("direct"), family=False)


@pytest.fixture(scope="module")
def family(pair, tmp_path_factory):
    return _run(pair, tmp_path_factory.mktemp("family"))


def _sky_rate(path) -> float:
    """The largest sky the product subtracted, in its units (electrons/s: MDRIZSKY of the
    electron inputs over their exposure time)."""
    with fits.open(path) as h:
        return float(np.max(h["HDRTAB"].data["MDRIZSKY"])) / float(h[0].header["EXPTIME"]) \
            * len(h["HDRTAB"].data) / h[0].header["NDRIZIM"]


def test_family_equals_direct_drizzles_to_float32_rounding(direct, family):
    """Every product from the family pass equals its own drizzle: SCI within a few float32
    ulps of the values drizzled before the sky was subtracted (the family subtracts the sky
    from the sums, not from each float32 input value), WHT within a few ulps of its value,
    the same empty pixels, CTX identical."""
    paths_d, used_d = direct
    paths_f, used_f = family
    assert used_f and not used_d
    eps = float(np.finfo(np.float32).eps)
    for name in ("filter", "exposure", "total"):
        a, b = _arrays(paths_d[name]), _arrays(paths_f[name])
        np.testing.assert_array_equal(a["CTX"], b["CTX"])
        np.testing.assert_array_equal(a["WHT"] == 0, b["WHT"] == 0)
        assert (a["WHT"] > 0).sum() > 10000
        sky = _sky_rate(paths_d[name])
        for ext in ("SCI", "WHT"):
            x, y = a[ext].astype(np.float64), b[ext].astype(np.float64)
            np.testing.assert_array_equal(np.isfinite(x), np.isfinite(y))
            ok = np.isfinite(x) & (a["WHT"] > 0)
            diff = np.abs(y[ok] - x[ok])
            scale = np.abs(x[ok]) + (sky if ext == "SCI" else 0.0)
            print(name, ext, "sky", sky, "max |diff| / |value|",
                  (diff / np.maximum(np.abs(x[ok]), 1e-30)).max(),
                  "max |diff| / (|value| + sky)", (diff / scale).max(),
                  "differ", (diff > 0).mean())
            assert np.all(diff <= 8 * eps * scale), (name, ext)


def _oracle(paths: dict, name: str, inputs: list[str], bits: int | None, crmasks: dict):
    """The product drizzled by drizzle's C code from the same chips, skies (the product's
    MDRIZSKY), masks and pixel maps, in the product's chip order."""
    from drizzle.resample import Drizzle as CDrizzle

    with fits.open(paths[name]) as h:
        out_wcs = WCS(h["SCI"].header)
        shape = h["SCI"].data.shape
        rows = h["HDRTAB"].data
        skies = {(str(r["ROOTNAME"]).lower(), int(r["EXTVER"])): float(r["MDRIZSKY"])
                 for r in rows}
        fillval = h[0].header["D001FVAL"]
    c = CDrizzle(kernel="square", out_shape=shape, fillval=fillval)
    for path in inputs:
        exp = open_exposure(path)
        for chip in chip_refs(exp, bits):
            sci, _, dq = chip.chip.read()
            good = np.isfinite(sci)
            if bits is not None:
                good &= (dq.astype(np.int64) & ~bits) == 0
            cr = crmasks.get(chip.rootname)
            if cr is not None:
                good &= ~cr[chip.key[1]]
            data = (sci.astype(np.float64) - skies[chip.key]) * chip.gain / chip.exptime
            pm = calc_pixmap(chip.wcs(), out_wcs, chip.shape)
            ratio = out_wcs.proj_plane_pixel_scales()[0].to_value("arcsec") / chip.pscale
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                c.add_image(np.where(good, data, 0).astype(np.float32), exptime=chip.exptime,
                            pixmap=pm, weight_map=np.where(good, chip.exptime, 0)
                            .astype(np.float32), pixfrac=1.0, in_units="cps",
                            iscale=ratio * ratio, pixel_scale_ratio=ratio)
    return c


def test_family_against_drizzle_c(pair, family):
    """The exposure (no sky, every finite pixel) and the total (sky, DQ 336, the filter's
    cosmic-ray masks) from the family pass against drizzle's C code: the resample oracle
    tests' tolerances (2e-5 where the C weight is >= 1 % of its largest, context identical;
    off the output frame's 2-pixel edge)."""
    pytest.importorskip("drizzle")
    paths, _ = family
    masks = {r: read_crmask(paths["filter"].parent / crmask_name(r)) for r in ROOTS}
    assert sum(int(m.sum()) for v in masks.values() for m in v.values()) > 100
    for name, inputs, bits, crm in (("exposure", pair[:1], None, {}),
                                    ("total", pair, 336, masks)):
        c = _oracle(paths, name, inputs, bits, crm)
        ours = _arrays(paths[name])
        good = c.out_wht >= 0.01 * c.out_wht.max()
        # the C scanner drops pixels whose centre maps off the output (a documented deviation
        # of hapdask.drizzle, tests/drizzle/test_drizzle_resample.py): not the frame's edge
        good[:2] = good[-2:] = False
        good[:, :2] = good[:, -2:] = False
        assert good.sum() > 10000
        ref = np.abs(c.out_img[good]).astype(np.float64)
        denom = np.maximum(ref, np.median(ref))
        err = np.abs(ours["SCI"][good] - c.out_img[good]) / denom
        werr = np.abs(ours["WHT"][good] - c.out_wht[good]) / c.out_wht[good]
        print(name, "SCI max rel", err.max(), "WHT max rel", werr.max())
        assert err.max() <= 2e-5 and werr.max() <= 2e-5
        ctx = ours["CTX"][0] if ours["CTX"].ndim == 3 else ours["CTX"]
        cctx = c.out_ctx[0] if c.out_ctx.ndim == 3 else c.out_ctx
        np.testing.assert_array_equal(ctx[good], cctx[good])


@pytest.mark.parametrize("variant", [dict(tile=200, workers=1), dict(tile=96, workers=2,
                                                                      reverse=True),
                                     dict(tile=128, workers=2, banded=True)])
def test_family_deterministic(pair, family, tmp_path, variant):
    """Other tile sizes, worker counts and input orders give identical bytes, and so does the
    family writing its members' products in bands of rows from their kept tiles (what
    ``hapdask svm`` does on local threads)."""
    paths, _ = family
    other, used = _run(pair, tmp_path / "v", **variant)
    assert used
    for name in paths:
        a, b = _arrays(paths[name]), _arrays(other[name])
        for ext in ("SCI", "WHT", "CTX"):
            assert a[ext].tobytes() == b[ext].tobytes(), (name, ext)


def test_other_pixfrac_keeps_its_own_drizzle(pair, direct, tmp_path):
    """A product with another pixfrac is no family member: it is drizzled as without families
    (bit-identical), while the two others still form one."""
    finals = [AstroDrizzleParams.from_mapping(p).final for _, _, p in _products(pair, 0.8)]
    assert family_groups(finals) == [[0, 2]]
    paths, used = _run(pair, tmp_path / "pf", pixfrac=0.8)
    assert used
    alone, _ = _run(pair, tmp_path / "alone", family=False, pixfrac=0.8)
    a, b = _arrays(alone["exposure"]), _arrays(paths["exposure"])
    for ext in ("SCI", "WHT", "CTX"):
        assert a[ext].tobytes() == b[ext].tobytes()


def test_members_on_other_grids_are_refused(pair, tmp_path):
    """family_tasks leaves the graphs unchanged when the members' tiles differ."""
    prods = _products(pair)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = drizzle_graph([pair[0]], tmp_path / "a", params=prods[1][2], tile_size=128)
        b = drizzle_graph([pair[0]], tmp_path / "b", params=prods[1][2], tile_size=256)
    try:
        before = (dict(a.graph), dict(b.graph))
        assert not family_tasks([a, b], [a.graph, b.graph], "x")
        assert (a.graph, b.graph) == before
    finally:
        a.scratch.remove()
        b.scratch.remove()
