"""``gaia_like_catalog``: the magnitude limit chooses which truth stars a Gaia query returns."""

import numpy as np
from astropy.table import Table

from hapdask.simulate import sky


def _truth(n: int = 400) -> Table:
    rng = np.random.default_rng(3)
    t = Table()
    t["id"] = np.arange(n)
    t["type"] = np.where(rng.random(n) < 0.7, "star", "galaxy")
    t["ra"] = 181.0 + rng.random(n) * 0.05
    t["dec"] = 27.9 + rng.random(n) * 0.05
    t["pm_ra"] = rng.normal(0, 3, n)
    t["pm_dec"] = rng.normal(0, 3, n)
    t["mag"] = rng.uniform(16.0, 26.0, n)
    t["color"] = rng.uniform(-1.0, 2.0, n)
    return t


def test_g_limit_selects_stars_brighter_than_it():
    truth = _truth()
    g = np.asarray(truth["mag"]) + 0.04 * np.asarray(truth["color"])
    star = np.asarray(truth["type"]) == "star"
    for limit in (sky.GAIA_G_LIMIT, 23.0):
        kw = {} if limit == sky.GAIA_G_LIMIT else {"g_limit": limit}
        cat = sky.gaia_like_catalog(truth, np.random.default_rng(1), **kw)
        want = np.asarray(truth["id"])[star & (g < limit)]
        assert sorted(cat["source_id"]) == sorted(want.tolist())
        assert np.all(cat["phot_g_mean_mag"] < limit)
    assert (star & (g < 23.0)).sum() > (star & (g < sky.GAIA_G_LIMIT)).sum()
