"""Benchmark: hapdask numba drizzle kernels against the drizzle C package (3.0.0).

Same input, pixmap and output grid for both: a full-size WFC3/UVIS chip (4096x2051, the real SIP
distortion of ``headers/sample_svm_flc.fits`` ['SCI', 1] and ['SCI', 2]; simulated pixels) drizzled
onto a north-up 0.04"/pix TAN grid covering it; pixmap from ``drizzle.utils.calc_pixmap``. Both run
in this process on one thread; times are medians of ``--repeat`` runs after a warm-up (numba
compilation excluded). Also times 2 threads (two chips at once) against 1 thread (one after the
other) for our kernel; C cannot do this since it holds the GIL.

``--mvm-scale`` drizzles onto a finer grid, 0.8 times the input pixel size (0.0317"/pix), the
ratio of an ACS/WFC exposure (0.05") on the 0.04" MVM SkyCell grid: the square kernel's footprints
then cover mostly 3x3 output pixels (2x2 to 3x3 at the default 0.04").

Run from the repository root::

    python benchmarks/bench_kernels.py [--repeat 5] [--kernels square,point,...] [--mvm-scale]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hapdask.drizzle.tile import add_to_tile, finalize_tile  # noqa: E402

# ``../shared/data`` beside the repository, or $HAPDASK_SHARED_DATA (as tests/conftest.py)
SHARED_DATA = Path(os.environ.get("HAPDASK_SHARED_DATA") or REPO.parent / "shared" / "data")
HEADER = SHARED_DATA / "headers" / "sample_svm_flc.fits"
SHAPE = (2051, 4096)  # numpy (ny, nx)
IN_SCALE = 0.0396  # arcsec / pixel (WFC3/UVIS)
OUT_SCALE = 0.04  # arcsec / pixel
MVM_RATIO = 0.04 / 0.05  # output / input pixel size of ACS/WFC on the MVM grid


def chip_wcs(ext: int):
    """SIP-only WCS of chip ``ext``, full-size pixel shape (the lookup tables are 10x10 stubs)."""
    from astropy.io import fits
    from astropy.wcs import WCS

    with fits.open(HEADER) as hdul:
        hdr = hdul["SCI", ext].header.copy()
    for key in list(hdr):
        if key.startswith(("CPDIS", "DP1", "DP2", "D2IM", "CPERR")):
            del hdr[key]
    hdr["NAXIS1"], hdr["NAXIS2"] = SHAPE[1], SHAPE[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wcs = WCS(hdr)
    wcs.pixel_shape = (SHAPE[1], SHAPE[0])
    return wcs


def output_wcs(wcss, scale=OUT_SCALE):
    """North-up TAN grid at ``scale`` (arcsec/pix) covering all the given chip WCSs (with a 5 px
    margin)."""
    from astropy.wcs import WCS

    corners = np.vstack([w.calc_footprint() for w in wcss])
    ra0, dec0 = corners.mean(axis=0)
    out = WCS(naxis=2)
    out.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    out.wcs.crval = [ra0, dec0]
    out.wcs.cdelt = [-scale / 3600.0, scale / 3600.0]
    out.wcs.crpix = [1.0, 1.0]
    x, y = out.world_to_pixel_values(corners[:, 0], corners[:, 1])
    out.wcs.crpix = [1.0 - np.floor(x.min()) + 5, 1.0 - np.floor(y.min()) + 5]
    nx = int(np.ceil(x.max() - x.min())) + 11
    ny = int(np.ceil(y.max() - y.min())) + 11
    out.pixel_shape = (nx, ny)
    return out, (ny, nx)


def median_time(fn, repeat, clock=time.process_time):
    """Median run time of ``fn``. Single-thread comparisons use the process CPU time, which the
    other jobs sharing this 2-core machine disturb much less than the wall clock."""
    times = []
    for _ in range(repeat):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return float(np.median(times))


def interleaved_medians(fns, repeat, clock=time.process_time):
    """Median run time of each of ``fns``, run in turn ``repeat`` times (interleaved)."""
    times = [[] for _ in fns]
    for _ in range(repeat):
        for k, fn in enumerate(fns):
            t0 = clock()
            fn()
            times[k].append(clock() - t0)
    return [float(np.median(t)) for t in times]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--kernels", default="square,point,turbo,gaussian,lanczos3")
    ap.add_argument("--pixfrac", type=float, default=1.0)
    ap.add_argument(
        "--mvm-scale",
        action="store_true",
        help="output pixels 0.8 x the input ones, as ACS/WFC (0.05 arcsec) on the MVM grid (0.04)",
    )
    ap.add_argument(
        "--skip-threads", action="store_true", help="skip the 2-thread (two chips) timing"
    )
    args = ap.parse_args(argv)

    from drizzle.resample import Drizzle as CDrizzle
    from drizzle.utils import calc_pixmap

    print("load average (1, 5, 15 min) at the start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    w1, w2 = chip_wcs(1), chip_wcs(2)
    out_scale = IN_SCALE * MVM_RATIO if args.mvm_scale else OUT_SCALE
    wout, out_shape = output_wcs([w1, w2], out_scale)
    t0 = time.perf_counter()
    pm1 = calc_pixmap(w1, wout)
    pm2 = calc_pixmap(w2, wout)
    print(
        f"pixmaps (drizzle.utils.calc_pixmap, 2 chips): {time.perf_counter() - t0:.1f} s; "
        f'output grid {out_shape} at {out_scale:.4f}"/pix'
    )
    rng = np.random.default_rng(0)
    data = rng.normal(100.0, 10.0, SHAPE).astype(np.float32)
    wht = np.ones(SHAPE, np.float32)
    npix = SHAPE[0] * SHAPE[1]
    ratio_ps = out_scale / IN_SCALE  # output / input pixel scale

    print(
        f"chip {SHAPE[1]}x{SHAPE[0]} = {npix / 1e6:.2f} Mpix, pixfrac={args.pixfrac}, "
        f"median of {args.repeat}, 1 thread"
    )
    print(
        "kernel: C add_image into pre-allocated outputs vs our add_to_tile into pre-allocated "
        "float64 accumulators (whole output frame as one tile)"
    )
    print(
        "API (whole call): C Drizzle(...).add_image vs hapdask Drizzle(...).add_image, output "
        "allocation included; C and ours interleaved, CPU time"
    )
    print(
        f"{'kernel':10s} {'C Mpix/s':>9s} {'ours Mpix/s':>11s} {'ratio':>6s} | "
        f"{'API C':>7s} {'API ours':>8s} {'ratio':>6s}"
    )
    from hapdask.drizzle import Drizzle

    num = np.zeros(out_shape)
    den = np.zeros(out_shape)
    ctx = np.zeros((1,) + out_shape, np.int32)
    for kernel in args.kernels.split(","):
        pf = 1.0 if kernel.startswith("lanczos") else args.pixfrac
        kw = dict(exptime=1.0, pixmap=pm1, weight_map=wht, pixfrac=pf, pixel_scale_ratio=ratio_ps)
        cd = CDrizzle(
            kernel=kernel,
            out_img=np.full(out_shape, np.nan, np.float32),
            out_wht=np.ones(out_shape, np.float32) * 0,
            out_ctx=np.ones((1,) + out_shape, np.int32) * 0,
            max_ctx_id=31,
        )

        def run_c(cd=cd, kw=kw):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cd.add_image(data, **kw)

        def run_ours(kernel=kernel, pf=pf):
            add_to_tile(
                data,
                wht,
                pm1,
                num,
                den,
                ctx,
                origin=(0, 0),
                kernel=kernel,
                pixfrac=pf,
                pixel_scale_ratio=ratio_ps,
            )

        def api_c(kernel=kernel, kw=kw):
            d = CDrizzle(kernel=kernel, out_shape=out_shape)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                d.add_image(data, **kw)

        def api_ours(kernel=kernel, kw=kw):
            d = Drizzle(kernel=kernel, out_shape=out_shape)
            d.add_image(data, **kw)

        run_ours()  # warm-up / compile
        api_ours()
        # C and ours interleaved, so that load changes on the shared machine hit both alike
        tc, to, ac, ao = interleaved_medians((run_c, run_ours, api_c, api_ours), args.repeat)
        print(
            f"{kernel:10s} {npix / tc / 1e6:9.2f} {npix / to / 1e6:11.2f} {tc / to:6.2f} | "
            f"{ac:6.2f}s {ao:7.2f}s {ac / ao:6.2f}"
        )
    print("ratio = C time / our time")
    print("load average (1, 5, 15 min) at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    t0 = time.perf_counter()
    finalize_tile(num, den)
    print(f"finalize_tile of the whole {out_shape} frame: {time.perf_counter() - t0:.2f} s")

    if args.skip_threads:
        return 0
    # threads: two chips, each into its own accumulators (as two MVM tiles/chips would)
    kernel = "square"

    accs = [
        (np.zeros(out_shape), np.zeros(out_shape), np.zeros((1,) + out_shape, np.int32))
        for _ in range(2)
    ]

    def one(k):
        num, den, ctx = accs[k]
        add_to_tile(
            data,
            wht,
            (pm1, pm2)[k],
            num,
            den,
            ctx,
            origin=(0, 0),
            kernel=kernel,
            pixfrac=args.pixfrac,
        )

    def serial():
        one(0)
        one(1)

    pool = ThreadPoolExecutor(2)

    def threaded():
        list(pool.map(one, [0, 1]))

    threaded()
    t1 = median_time(serial, args.repeat, clock=time.perf_counter)
    t2 = median_time(threaded, args.repeat, clock=time.perf_counter)
    # CPU seconds per wall second while threaded: ~2 means both threads really ran at once
    w0, c0 = time.perf_counter(), time.process_time()
    threaded()
    busy = (time.process_time() - c0) / (time.perf_counter() - w0)
    pool.shutdown()
    print(
        f"square, 2 chips (own pre-allocated accumulators each): 1 thread {t1:.2f} s, "
        f"2 threads {t2:.2f} s, speed-up {t1 / t2:.2f}x (wall clock); "
        f"CPU/wall while threaded = {busy:.2f} (other jobs on the 2 cores lower both)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
