"""The final drizzle made from the separate drizzles' sums (``reuse_separate``, HAP's ACS/WFC
case: square kernel, pixfrac 1, EXP weights and the same bits in both drizzles).

The oracle is the full final drizzle of the same job (every pixel drizzled again with the
cosmic-ray masks as weights): SCI and WHT may differ by float64 rounding only (the sums are
added in another order), i.e. at most one float32 ulp; CTX and the cosmic-ray masks must be
identical. The reuse path must also stay deterministic (tile size, input order).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits

import hapdask.drizzle
import hapdask.io
import hapdask.mosaic.graph as mosaic_graph
import hapdask.mosaic.stages as mosaic_stages
import hapdask.mosaic.tiles as mosaic_tiles
from hapdask.mosaic import drizzle
from hapdask.mosaic.grid import north_up_grid
from hapdask.mosaic.job import reuses_separate
from hapdask.mosaic.params import AstroDrizzleParams
from hapdask.mosaic.stages import count_dtype
from hapdask.simulate import simulate_visits

PARAMS = {"static": True, "skysub": True, "skymethod": "match", "combine_type": "minmed",
          "combine_nhigh": 1, "driz_cr_snr": "3.5 3.0", "driz_cr_scale": "1.5 1.2",
          "final_bits": "336", "driz_sep_bits": "336", "context": True,
          "driz_sep_kernel": "square", "final_pixfrac": 1.0}


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    s = simulate_visits("p1889x07y19", tmp_path_factory.mktemp("reuse") / "set", visits=3,
                        small=True, seed=2, exposures_per_filter=3, filters=["F775W"])
    return [str(p) for p in s.exposures]


def _run(inputs, out, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return drizzle(inputs, out, params=PARAMS, log=lambda m: None, threads_per_worker=1,
                       **kw)


def _arrays(result):
    with fits.open(result.output) as h:
        out = {e: h[e].data.copy() for e in ("SCI", "WHT", "CTX")}
    for p in result.crmasks:
        with fits.open(p) as h:
            out[p.name] = np.stack([x.data for x in h[1:]])
    return out


def test_reuse_matches_full_drizzle(trio, tmp_path, monkeypatch):
    calls = []
    real = mosaic_graph.reuse_tile

    def counting(*args):
        calls.append(args[0].index)
        return real(*args)

    monkeypatch.setattr(mosaic_graph, "reuse_tile", counting)
    full = _arrays(_run(trio, tmp_path / "full" / "m", tile_size=128, reuse_separate=False))
    assert not calls
    reused = _arrays(_run(trio, tmp_path / "reuse" / "m", tile_size=128))
    assert len(calls) > 4  # the tiles were made from the sums
    assert full["CTX"].max() > 0 and np.isnan(full["SCI"]).any()
    # cosmic rays were found, and they removed some chips' bits from the context
    masks = [k for k in full if k.endswith("_crmask.fits")]
    assert masks and all(full[k].sum() > 20 for k in masks)
    for k in masks:
        np.testing.assert_array_equal(reused[k], full[k], err_msg=k)
    np.testing.assert_array_equal(reused["CTX"], full["CTX"])
    for ext in ("SCI", "WHT"):
        a, b = full[ext], reused[ext]
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=ext)
        ok = ~np.isnan(a)
        # float64 sums in another order: one float32 ulp at most
        ulp = np.spacing(np.abs(a[ok]).astype(np.float32))
        assert np.all(np.abs(a[ok].astype(np.float64) - b[ok]) <= ulp), ext
    # deterministic: another tiling and input order give the same bits
    again = _arrays(_run(trio[::-1], tmp_path / "again" / "m", tile_size=200))
    for k, v in reused.items():
        np.testing.assert_array_equal(again[k], v, err_msg=k)


def test_sparse_cosmic_ray_maps_give_the_same_bits(trio, tmp_path, monkeypatch):
    """reuse_tile's maps computed at the cosmic-ray pixels' neighbourhoods only give the
    products of the whole maps (read from the scratch), bit for bit."""
    monkeypatch.setattr(mosaic_stages, "_SPARSE_MAP", 0.0)  # never sparse: the whole maps
    whole = _arrays(_run(trio, tmp_path / "whole" / "m", tile_size=128))
    monkeypatch.undo()
    sparse_calls = []
    real = hapdask.drizzle.calc_pixmap_at

    def counting(*args, **kw):
        got = real(*args, **kw)
        sparse_calls.append(got is not None)
        return got

    models = []
    real_models = hapdask.drizzle.fast_models

    def counting_models(wcs_from, wcs_to, shape=None):
        models.append(shape)
        return real_models(wcs_from, wcs_to, shape)

    monkeypatch.setattr(hapdask.drizzle, "calc_pixmap_at", counting)
    monkeypatch.setattr(hapdask.drizzle, "fast_models", counting_models)
    monkeypatch.setattr(mosaic_tiles, "_MODELS", type(mosaic_tiles._MODELS)())
    sparse = _arrays(_run(trio, tmp_path / "sparse" / "m", tile_size=128))
    assert len(sparse_calls) > 4 and all(sparse_calls)
    # the astropy check of the numba models runs once per chip (its placement's, kept for its
    # tasks), not once per tile and chip
    nchips = sum(len(e.chips) for e in map(hapdask.io.open_exposure, trio))
    assert 0 < len(models) <= nchips < len(sparse_calls)
    for k, v in whole.items():
        np.testing.assert_array_equal(sparse[k], v, err_msg=k)


def test_reuse_only_when_the_drizzles_agree(trio):
    from hapdask.io import open_exposure

    chips = [c for p in trio for c in open_exposure(p).chips]
    grid = north_up_grid([c.wcs() for c in chips], scale=0.05)
    other = north_up_grid([c.wcs() for c in chips], scale=0.04)

    def reuse(**changes):
        return reuses_separate(AstroDrizzleParams.from_mapping({**PARAMS, **changes}), grid, grid)

    assert reuse()
    assert not reuse(driz_sep_kernel="turbo")          # AstroDrizzle's default
    assert not reuse(final_pixfrac=0.8)
    assert not reuse(final_wht_type="ERR")
    assert not reuse(final_wt_scl="expsq")
    assert not reuse(final_bits="0")
    params = AstroDrizzleParams.from_mapping(PARAMS)
    assert not reuses_separate(params, other, grid)
    assert not reuses_separate(params, None, grid)


@pytest.mark.parametrize("ratio", [0.3, 1.0, 2.2, 8.6, 20.0])
def test_count_dtype_holds_every_count(ratio):
    """The separate pass's per-chip counts never wrap: a chip rotated by 45 deg (the most unit
    squares per output pixel) and distorted by 5 %, drizzled with uint32 counts, never puts more
    pixels on one output pixel than :func:`count_dtype` can hold; HAP's ratios fit in uint8."""
    from hapdask.drizzle import add_to_tile

    n = int(12 * max(ratio, 1.0)) + 8
    y, x = np.indices((n, n), dtype=np.float64)
    c = np.cos(np.pi / 4) / ratio
    xs = c * (x - y) * (1 + 0.05 * x / n) + 2 * n / ratio + 2
    ys = c * (x + y) * (1 + 0.05 * y / n) + 2
    shape = (int(ys.max()) + 3, int(xs.max()) + 3)
    cnt = np.zeros(shape, np.uint32)
    add_to_tile(np.ones((n, n), np.float32), None, np.dstack([xs, ys]), np.zeros(shape),
                np.zeros(shape), None, origin=(0, 0), count=cnt)
    assert cnt.max() >= max(ratio, 1.0) ** 2  # a full output pixel was reached
    assert cnt.max() <= np.iinfo(count_dtype([1.0, ratio])).max
    if ratio <= 2.2:
        assert count_dtype([ratio]) == np.uint8
