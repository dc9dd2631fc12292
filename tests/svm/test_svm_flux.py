"""Flux across SVM product levels (HAP's ``final_wht_type="EXP"``, ``final_units="cps"``: every
level in e-/s on one grid, each input weighted by its exposure time).

Where no input pixel was left out (cosmic-ray masks, DQ flags), a filter product is its exposure
products' mean weighted by their WHT, and the total its filter products' mean weighted by theirs,
up to one sky constant per input (the relative skies 'match' subtracts). So there:
``WHT = sum(WHT_i)`` and ``SCI * WHT = sum(WHT_i * (SCI_i - k_i))`` with fitted constants ``k_i``.
The relation is exact (float32 rounding), so a level with its own flux scale, weights, units or
a non-constant sky breaks it, and the share of pixels where it applies shows how much the masks
take. This is what bounds the comparison with ``runsinglehap`` (``benchmarks/bench_svm.py``; run 4
of ``benchmarks/runsinglehap_reference.md``): runsinglehap's filter products are the same mean of
its exposure products, and ours agree with its products on 99.6-99.8 % of the bright pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with fits.open(path) as h:
        return (np.nan_to_num(h["SCI"].data.astype(np.float64)),
                h["WHT"].data.astype(np.float64))


def _levels(out: Path) -> tuple[Path, dict, dict]:
    """The detector's products by HAP name (inventory 2.2): the total, {filter: filter
    product}, {filter: [exposure products]}."""
    total, filt, expo = None, {}, {}
    for path in sorted(out.glob("hst_*_dr[cz].fits")):
        level, ident = path.name.split("_")[-3:-1]
        if level == "total":
            total = path
        elif len(ident) == 6:
            filt[level] = path
        else:
            expo.setdefault(level, []).append(path)
    return total, filt, expo


def _check_weighted_mean(name: str, product: tuple, parts: list[tuple]) -> None:
    sci, wht = product
    wsum = sum(w for _, w in parts)
    covered = wht > 0
    kept = covered & np.isclose(wht, wsum, rtol=1e-4, atol=0.0)
    # cosmic-ray masks and DQ flags leave out a few % of the covered pixels, not more
    assert kept.sum() >= 0.9 * covered.sum(), (name, kept.sum() / covered.sum())
    a = np.column_stack([w[kept] for _, w in parts])
    b = sum(w[kept] * s[kept] for s, w in parts) - sci[kept] * wht[kept]
    k, *_ = np.linalg.lstsq(a, b, rcond=None)  # one sky constant per input (e-/s)
    assert np.all(np.abs(k) < 0.1), (name, k)  # below the sky level itself
    model = sum(w[kept] * (s[kept] - kk) for (s, w), kk in zip(parts, k, strict=True))
    model /= wht[kept]
    v = sci[kept]
    sky = np.median(v)
    sigma = 1.4826 * np.median(np.abs(v - sky))
    bright = v > sky + 20 * sigma
    assert bright.sum() > 100, name
    rel = np.abs(v[bright] / model[bright] - 1.0)
    assert np.percentile(rel, 99.9) < 1e-3, (name, np.percentile(rel, [50, 99, 99.9]))
    assert abs(v[bright].sum() / model[bright].sum() - 1.0) < 1e-4, name


def test_filter_and_total_are_weighted_means_of_the_level_below(acs_run):
    _res, _poller, out = acs_run
    total, filt, expo = _levels(out)
    assert total is not None and len(filt) == 2 and sorted(filt) == sorted(expo)
    for f, path in filt.items():
        assert len(expo[f]) == 2
        _check_weighted_mean(path.name, _read(path), [_read(p) for p in expo[f]])
    _check_weighted_mean(total.name, _read(total), [_read(p) for p in filt.values()])
