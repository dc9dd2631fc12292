"""``driz_cr_method="hysteresis"`` (hapdask extension) in ``hapdask drizzle`` against the
simulator's truth: 4 dithered ACS/WFC F775W exposures (box pattern, small chips), HAP's SVM
ACS/WFC parameters for n = 2-5 with HAP's ``skymethod="match"`` -- the case where AstroDrizzle's
driz_cr flags ~2.5 % of the CR pixel count on DQ-0 pixels (tests/mosaic/test_mosaic_cr_detection).

Targets of the issue: >= 99.5 % of the (detectable) cosmic-ray pixels found, false flags on DQ-0
pixels <= 0.1 % of the CR pixel count, no star core flagged. Flags on hot pixels (DQ 16, good
under HAP's final_bits 336) are real outliers, rejected as AstroDrizzle rejects them.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from hapdask.cli import main
from hapdask.combine.crdetect import HysteresisParams
from hapdask.mosaic import AstroDrizzleParams, ParameterError, drizzle
from hapdask.mosaic.params import load_config
from hapdask.mosaic.products import read_crmask
from hapdask.simulate import simulate_visits
from hapdask.simulate.score import CRScore, score_masks, truth_context
from hapdask.testing import grid_params

#: HAP's SVM acs_wfc filter product for n = 2-5 (../shared/design/hap_parameters.md)
HAP_N2 = {
    "static": True, "skysub": True, "skymethod": "match", "skystat": "median", "sky_bits": "80",
    "driz_separate": True, "driz_sep_kernel": "square", "driz_sep_bits": "336", "median": True,
    "combine_type": "minmed", "combine_nhigh": 1, "combine_nsigma": "4 3", "blot": True,
    "driz_cr": True, "driz_cr_snr": "3.5 3.0", "driz_cr_scale": "1.5 1.2", "driz_cr_grow": 1,
    "final_kernel": "square", "final_pixfrac": 1.0, "final_bits": "336",
    "final_wht_type": "EXP", "final_units": "cps", "context": True,
}


@pytest.fixture(scope="module")
def quad(tmp_path_factory):
    return simulate_visits("p1889x07y19", tmp_path_factory.mktemp("hyst4") / "set", visits=3,
                           small=True, seed=0, exposures_per_filter=4, filters=["F775W"])


def _run(quad, out, method, size):
    inputs = sorted(quad.exposures)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = drizzle([str(p) for p in inputs], out / "cr",
                      params={**HAP_N2, **grid_params(inputs, 0.05), "driz_cr_method": method},
                      tile_size=size, region_size=size, log=lambda m: None)
    return {p: read_crmask(res.output.parent / f"{p.name.split('_')[0]}_crmask.fits")
            for p in inputs}


def test_hysteresis_meets_the_targets(quad, tmp_path):
    inputs = sorted(quad.exposures)
    hyst = _run(quad, tmp_path / "h", "hysteresis", 256)
    default = _run(quad, tmp_path / "a", "astrodrizzle", 256)
    score, base = CRScore(), CRScore()
    for p in inputs:
        ctx = truth_context(quad, p, [q for q in inputs if q != p])
        score = score + score_masks(hyst[p], ctx)
        base = base + score_masks(default[p], ctx)
    assert score.truth_pixels > 3000 and score.cores > 30
    assert score.detectable >= 0.95 * score.truth_pixels
    assert score.found_detectable_pct >= 99.5  # the targets
    assert score.cores_flagged == 0
    assert score.false_clean_pct <= 0.1
    # AstroDrizzle's driz_cr on the same data (the default): far more clean false flags, and
    # the same cosmic rays found (within 0.1 % of them: lower thresholds find a few faint
    # pixels on star wings)
    assert base.false_clean_pct > 1.0
    assert score.found >= base.found - score.truth_pixels // 1000
    # the remaining false flags are hot pixels (suspect: DQ 16, used by the final drizzle),
    # rejected as AstroDrizzle rejects them (within 10 %): their excess stays out of the product
    hot, base_hot = score.false - score.false_clean, base.false - base.false_clean
    assert abs(hot - base_hot) <= 0.1 * base_hot


def test_hysteresis_masks_do_not_depend_on_the_region_size(quad, tmp_path):
    a = _run(quad, tmp_path / "a", "hysteresis", 256)
    b = _run(quad, tmp_path / "b", "hysteresis", 96)
    for p, masks in a.items():
        for e, m in masks.items():
            np.testing.assert_array_equal(m, b[p][e])


def test_method_parameter_in_cli_and_config(quad, tmp_path, capsys):
    inputs = [str(p) for p in sorted(quad.exposures)[:2]]
    assert main(["drizzle", *inputs, "--output", str(tmp_path / "x"), "--param",
                 "driz_cr_method=lacosmic"]) == 1
    assert "driz_cr_method" in capsys.readouterr().err
    with pytest.raises(ParameterError, match="driz_cr_hyst_snr"):
        drizzle(inputs, tmp_path / "x", params={"driz_cr_method": "hysteresis",
                                                "driz_cr_hyst_snr": "4 6"})
    assert not list(tmp_path.glob("x_dr?.fits"))
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"STEP 6": {"driz_cr_method": "hysteresis",
                                          "driz_cr_hyst_snr": "6 4"}}))
    cr = AstroDrizzleParams.from_mapping(load_config(cfg)).cr()
    assert cr == HysteresisParams(driz_cr_hyst_snr="6.0 4.0")
