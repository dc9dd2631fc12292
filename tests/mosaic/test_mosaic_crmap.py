"""The pixel map around the cosmic rays kept by the blot tasks for the final drizzle's reuse
tiles (:func:`hapdask.mosaic.stages.keep_cr_map`): the reuse tiles read those entries instead
of their chips' whole maps, and must make the same bits."""

from __future__ import annotations

import warnings
from concurrent.futures import Future

import numpy as np
from astropy.io import fits
from scipy import ndimage

import hapdask.mosaic.stages as stages
from hapdask.mosaic import drizzle
from hapdask.mosaic.scratch import Scratch, load_array
from hapdask.mosaic.stages import Buffer, grow1, keep_cr_map

# the final drizzle reuses the separate one (square kernel, pixfrac 1, EXP weights, same bits)
PARAMS = {"static": True, "skysub": True, "skymethod": "match", "combine_type": "minmed",
          "combine_nhigh": 1, "driz_cr_snr": "3.5 3.0", "driz_cr_scale": "1.5 1.2",
          "final_bits": "336", "driz_sep_bits": "336", "context": True,
          "driz_sep_kernel": "square", "final_pixfrac": 1.0}


def _arrays(inputs, out):
    """SCI/WHT/CTX of the drizzle of ``inputs`` to ``out`` and its cosmic-ray masks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = drizzle(inputs, out, params=PARAMS, log=lambda m: None, threads_per_worker=1,
                         tile_size=128)
    with fits.open(result.output) as h:
        got = {e: h[e].data.copy() for e in ("SCI", "WHT", "CTX")}
    for p in result.crmasks:
        with fits.open(p) as h:
            got[p.name] = np.stack([x.data for x in h[1:]])
    return got


def test_grow1_is_a_3x3_dilation():
    rng = np.random.default_rng(5)
    for shape in [(1, 1), (1, 7), (6, 1), (40, 33)]:
        m = rng.random(shape) < 0.05
        m.flat[0] = True
        want = ndimage.binary_dilation(m, structure=np.ones((3, 3), bool))
        np.testing.assert_array_equal(grow1(m), want)


def _done(value):
    f = Future()
    f.set_result(value)
    return f


def _parts(tmp_path, chip_map, masks, boxes):
    scratch = Scratch.create(tmp_path, "t")
    out = []
    for n, ((y0, y1, x0, x1), m) in enumerate(zip(boxes, masks, strict=True)):
        path = scratch.path(f"crmap-{n}")
        keep_cr_map(path, m, chip_map[y0:y1, x0:x1])
        out.append(((y0, y1, x0, x1), _done(load_array(path, direct=True))))
    return out


def test_kept_entries_rebuild_the_map_around_cosmic_rays(tmp_path):
    rng = np.random.default_rng(7)
    ny, nx = 90, 70
    chip_map = rng.normal(size=(ny, nx, 2)) * 100
    chip_map[3, 4] = np.nan  # a pixel that cannot be placed keeps its NaN
    cr = rng.random((ny, nx)) < 0.02
    cr[29, 10] = cr[30, 11] = True  # cosmic rays on both sides of a region border
    boxes = [(0, 30, 0, nx), (30, 61, 0, nx), (61, ny, 0, nx)]
    parts = _parts(tmp_path, chip_map, [cr[b0:b1, a0:a1] for b0, b1, a0, a1 in boxes], boxes)
    region = (20, 75, 5, 60)
    y0, y1, x0, x1 = region
    weight = np.where(cr[y0:y1, x0:x1], np.float32(2), np.float32(0))
    weight[10, 5] = 0.0  # a cosmic ray with weight 0 (bad DQ): its neighbours are not needed
    in_box = (1, y1 - y0 - 1, 1, x1 - x0 - 1)
    pm = stages._kept_pixmap(region, weight, in_box, parts, Buffer())
    assert pm is not None
    w = np.zeros(weight.shape, bool)
    w[1:-1, 1:-1] = weight[1:-1, 1:-1] != 0
    need = ndimage.binary_dilation(w, structure=np.ones((3, 3), bool))
    want = chip_map[y0:y1, x0:x1]
    np.testing.assert_array_equal(pm[need], want[need])  # the same bits (NaN included)
    # a region reaching outside every kept part (no blot task there): not served
    assert stages._kept_pixmap(region, weight, in_box, parts[:1] + parts[2:], Buffer()) is None
    # a box mostly weighted (the kernel's box-wide reach pass reads all of it): not served
    full = np.ones_like(weight)
    assert stages._kept_pixmap(region, full, in_box, parts, Buffer()) is None


def test_reuse_tiles_with_kept_maps_equal_whole_maps(trio, tmp_path, monkeypatch):
    served = []
    real = stages._kept_pixmap

    def counting(*args):
        got = real(*args)
        served.append(got is not None)
        return got

    monkeypatch.setattr(stages, "_kept_pixmap", counting)
    kept = _arrays(trio, tmp_path / "kept" / "m")
    assert sum(served) > 4
    monkeypatch.setattr(stages, "_kept_pixmap", lambda *args: None)  # whole maps read
    whole = _arrays(trio, tmp_path / "whole" / "m")
    assert set(kept) == set(whole)
    for k, v in whole.items():
        np.testing.assert_array_equal(kept[k], v, err_msg=k)

