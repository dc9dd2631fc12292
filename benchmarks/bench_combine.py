"""Benchmark: hapdask.combine (median step, driz_cr) against AstroDrizzle's own functions.

* median step: a 4 x 2048 x 2048 stack of singly-drizzled-like images (stars, sky, noise, cosmic
  rays, EXP weights) combined with ``minmed`` (``drizzlepac.minmed.min_med``) and ``median``
  nhigh=1 (``stsci.image.numcombine.num_combine``), weight masks built as createMedian does;
* driz_cr: a 4096 x 2048 chip against its blot (``drizzlepac.drizCR._driz_cr`` on in-memory
  arrays, which includes ``quickDeriv.qderiv``), HAP ACS settings.

Same inputs, same process, one thread; times are medians of ``--repeat`` runs after a warm-up
(numba compilation excluded), measured as process CPU time (``time.process_time``: the machine is
shared, wall time swings with other users' load; both sides are single-threaded). Outputs are
checked to be identical. Run from the repository root::

    nice python benchmarks/bench_combine.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "combine"))  # the drizCR harness of the tests

from hapdask.combine import CombineParams, CRParams, combine_stack, driz_cr_mask  # noqa: E402


def _stars(shape, rng, n):
    ny, nx = shape
    img = np.zeros(shape)
    ys, xs = rng.integers(5, ny - 5, n), rng.integers(5, nx - 5, n)
    flux = 10 ** rng.uniform(2.5, 5.0, n)
    k = np.exp(-(np.arange(-4, 5)[:, None] ** 2 + np.arange(-4, 5)[None] ** 2) / 2.6)
    k /= k.sum()
    for y, x, f in zip(ys, xs, flux, strict=True):
        img[y - 4:y + 5, x - 4:x + 5] += f * k
    return img


def _timed(fn, repeat):
    fn()  # warm-up (numba compile / caches)
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        times.append(time.process_time() - t0)
    return statistics.median(times), out


def bench_median(repeat):
    from drizzlepac.minmed import min_med
    from stsci.image import numcombine
    from stsci.imagestats import ImageStats

    rng = np.random.default_rng(0)
    n, shape = 4, (2048, 2048)
    model = _stars(shape, rng, 3000)
    et = np.array([500.0, 520.0, 480.0, 510.0])
    skies, rn = np.array([60.0, 65.0, 58.0, 62.0]), np.full(4, 4.5)
    images = np.empty((n, *shape), np.float32)
    weights = np.empty((n, *shape), np.float32)
    for i in range(n):
        c = rng.poisson(model + skies[i]) + rng.normal(0, 4.5, shape)
        hit = rng.random(shape) < 0.01
        c[hit] += 80 + rng.lognormal(np.log(500), 0.7, hit.sum())
        images[i] = (c - skies[i]) / et[i]
        weights[i] = et[i]
        weights[i, :, : 10 + 5 * i] = 0
        images[i][weights[i] == 0] = 0

    def masks():  # createMedian's weight masks (part of its work for the step, timed with it)
        means = [ImageStats(w, lower=1e-8, fields="mean", nclip=0).mean * 0.3 for w in weights]
        return np.less(weights, np.asarray(means)[:, None, None]).astype(np.uint8)

    for ctype in ("minmed", "median"):
        p = CombineParams(combine_type=ctype, combine_nhigh=1)
        if ctype == "minmed":
            ref_fn = lambda: min_med(images, weights, list(rn), list(et), list(skies),  # noqa: E731
                                     weight_masks=masks(), combine_grow=1, combine_nsigma1=4,
                                     combine_nsigma2=3)
        else:
            ref_fn = lambda: numcombine.num_combine(images, masks=masks(),  # noqa: E731
                                                    combination_type="median", nlow=0, nhigh=1)
        t_ref, ref = _timed(ref_fn, repeat)
        t_our, our = _timed(lambda p=p: combine_stack(images, weights, p, skies=skies,
                                                      readnoise=rn, exptimes=et), repeat)
        same = np.array_equal(ref, our)
        print(f"{ctype:7s} 4x2048x2048: AstroDrizzle {t_ref:7.3f} s  hapdask {t_our:7.3f} s  "
              f"ratio = {t_ref / t_our:6.1f}  identical={same}")


def bench_crrej(repeat):
    from oracles import drizzlepac_crmask

    rng = np.random.default_rng(1)
    shape = (4096, 2048)
    model = _stars(shape, rng, 6000)
    blot = (model + 60.0).astype(np.float32)
    sci = rng.poisson(model + 60.0) + rng.normal(0, 4.5, shape)
    hit = rng.random(shape) < 0.01
    sci[hit] += 80 + rng.lognormal(np.log(500), 0.7, hit.sum())
    sci = sci.astype(np.float32)
    kw = dict(sky=60.0, gain=1.0, readnoise=4.5)
    t_ref, ref = _timed(lambda: drizzlepac_crmask(sci, blot, snr="3.5 3.0", scale="1.5 1.2",
                                                  grow=1, ctegrow=0, **kw), repeat)
    p = CRParams(driz_cr_snr="3.5 3.0", driz_cr_scale="1.5 1.2")
    t_our, our = _timed(lambda: driz_cr_mask(sci, blot, None, exptime=1.0, params=p, **kw),
                        repeat)
    print(f"driz_cr 4096x2048 chip: AstroDrizzle {t_ref:7.3f} s  hapdask {t_our:7.3f} s  "
          f"ratio = {t_ref / t_our:6.1f}  identical={np.array_equal(ref, our)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    bench_median(args.repeat)
    bench_crrej(args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
