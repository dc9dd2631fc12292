"""SkyParams: AstroDrizzle's names and defaults; bad values named."""

from __future__ import annotations

import importlib.util
import os

import pytest
from stsci.tools.configobj import ConfigObj

from hapdask.sky import SkyParams

NAMES = ("skysub", "skymethod", "skystat", "skywidth", "skylower", "skyupper", "skyclip",
         "skylsigma", "skyusigma", "skyuser", "sky_bits", "use_static", "skymask_cat",
         "static", "static_sig")


def _astrodrizzle_defaults() -> dict:
    """AstroDrizzle's defaults from drizzlepac's own astrodrizzle.cfg (the oracle)."""
    pkg = os.path.dirname(importlib.util.find_spec("drizzlepac").origin)  # no slow import
    cfg = ConfigObj(os.path.join(pkg, "pars", "astrodrizzle.cfg"))
    flat = {}
    for section in cfg.values():
        if isinstance(section, dict):
            flat.update(section)
    return flat


def _convert(text: str):
    if text in ("None", ""):
        return None if text == "None" else ""
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def test_defaults_are_astrodrizzle_defaults():
    ref = _astrodrizzle_defaults()
    p = SkyParams()
    for name in NAMES:
        want = _convert(ref[name])
        got = getattr(p, name)
        if name == "sky_bits":  # AstroDrizzle stores it as the string "0"
            assert p.bits == int(want)
        else:
            assert got == want, name


@pytest.mark.parametrize(("kw", "name"), [
    ({"skymethod": "local"}, "skymethod"),
    ({"skystat": "midpt"}, "skystat"),
    ({"skywidth": 0.0}, "skywidth"),
    ({"skyclip": -1}, "skyclip"),
    ({"skyclip": 2.5}, "skyclip"),
    ({"skylsigma": float("nan")}, "skylsigma"),
    ({"skylower": 10.0, "skyupper": 5.0}, "skylower"),
    ({"sky_bits": "NOSUCHFLAG"}, "sky_bits"),
    ({"skysub": "yes"}, "skysub"),
    ({"skymask_cat": "masks.cat"}, "skymask_cat"),
    ({"skyuser": "@skyfile.txt"}, "skyuser"),
    ({"static_sig": -4.0}, "static_sig"),
])
def test_bad_values_name_the_parameter(kw, name):
    with pytest.raises(ValueError, match=name):
        SkyParams(**kw)


def test_from_dict_rejects_unknown_names():
    with pytest.raises(ValueError, match="skymetod"):
        SkyParams.from_dict({"skymetod": "match"})
    p = SkyParams.from_dict({"skymethod": "match", "sky_bits": "16,64", "skylower": -100.0})
    assert p.bits == 80 and p.skymethod == "match" and p.to_dict()["skylower"] == -100.0
