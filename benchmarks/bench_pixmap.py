"""Benchmark: hapdask calc_pixmap / blot_image against drizzle 3.0 (C + astropy), one thread.

Run from the repository root::

    python benchmarks/bench_pixmap.py [--runs 5]

Cases:

* calc_pixmap of a full WFC3/UVIS chip (``sample_svm_flc.fits`` SCI,1: SIP + NPOL + D2IM,
  NAXIS set to 4096x2051) onto a north-up 0.04"/pix TAN grid, against
  ``drizzle.utils.calc_pixmap`` (astropy);
* the same for the fully distorted ACS/WFC chip ``j94f05bgq`` SCI,1 (SIP + NPOL + D2IM from
  ``stwcs.updatewcs`` with ``jref`` pointing at the reference files beside it, made in a temp
  dir);
* region maps, as the tile tasks compute them: 32 regions of 256 x 512 input pixels of the
  ACS/WFC chip, one ``calc_pixmap(..., region=...)`` call each, against astropy's transform
  of the same pixels (``wcs_to.world_to_pixel_values(*wcs_from.pixel_to_world_values(x, y))``,
  what drizzle's calc_pixmap does for a whole chip);
* one full UVIS chip with ``threads=2`` against ``threads=1`` (wall; same values), and two
  chips one after the other against two threads;
* blot_image (poly5, lanczos3) of a 0.04" image back onto the full UVIS chip, against
  ``drizzle.resample.blot_image``.

Times are medians of ``--runs`` runs after a warm-up call (numba compilation and the first
whole-chip allocation excluded); both
wall-clock and process CPU times are printed, since the machine is shared. ``ratio =
reference_time / our_time``. Errors are the maximum distance, in output pixels, between our
pixmap and astropy's exact transform (which is what drizzle computes) over the whole chip.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hapdask.drizzle import blot_image, calc_pixmap  # noqa: E402
from hapdask.drizzle.pixmap import fast_path_reason  # noqa: E402
from hapdask.io import apply_reference_distortion  # noqa: E402

DATA = Path(os.environ.get("HAPDASK_SHARED_DATA", ROOT.parent / "shared" / "data"))


def timed(fn, runs):
    walls, cpus = [], []
    result = None
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), result


def north_up(wcs: WCS, scale_arcsec: float, shape: tuple[int, int]) -> WCS:
    ny, nx = wcs.array_shape
    ra, dec = wcs.all_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
    out = WCS(naxis=2)
    out.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    out.wcs.crval = [ra, dec]
    out.wcs.crpix = [shape[1] / 2 + 0.5, shape[0] / 2 + 0.5]
    out.wcs.cdelt = [-scale_arcsec / 3600.0, scale_arcsec / 3600.0]
    out.pixel_shape = shape[::-1]
    return out


def acs_full_distortion(tmpdir: Path) -> Path:
    """Copy of j94f05bgq_flt.fits with SIP + NPOL + D2IM rebuilt from its reference files."""
    real = DATA / "real"
    return apply_reference_distortion(
        real / "j94f05bgq_flt.fits.gz", tmpdir / "j94f05bgq_flt.fits", real
    )


def bench_pixmap(label: str, wfrom: WCS, wto: WCS, runs: int) -> np.ndarray:
    from drizzle.utils import calc_pixmap as ref_calc_pixmap

    reason = fast_path_reason(wfrom, wto)
    # warm-up: numba compile / cache load, and the process's first whole-chip allocation (the
    # OS sets up its huge pages then: up to ~0.8 s of system time on a busy machine)
    calc_pixmap(wfrom, wto)
    t_ours, c_ours, ours = timed(lambda: calc_pixmap(wfrom, wto), runs)
    t_ref, c_ref, ref = timed(lambda: ref_calc_pixmap(wfrom, wto), runs)
    err = np.hypot(ours[..., 0] - ref[..., 0], ours[..., 1] - ref[..., 1])
    ny, nx = ours.shape[:2]
    print(f"calc_pixmap {label} ({nx}x{ny}, path: {'numba' if reason is None else reason})")
    print(f"  ours    wall {t_ours:7.3f} s   cpu {c_ours:7.3f} s   ({c_ours / (nx * ny) * 1e9:.2f} "
          "CPU-ns per pixel)")  # fmt: skip
    print(f"  drizzle wall {t_ref:7.3f} s   cpu {c_ref:7.3f} s")
    print(f"  ratio = {t_ref / t_ours:.1f} (wall), {c_ref / c_ours:.1f} (cpu)")
    print(f"  max error vs astropy = {np.nanmax(err):.3g} px; NaN ours/ref = "
          f"{np.isnan(ours).sum()}/{np.isnan(ref).sum()}")  # fmt: skip
    return ours


def bench_blot(pixmap: np.ndarray, src_shape: tuple[int, int], runs: int) -> None:
    from drizzle.resample import blot_image as ref_blot

    rng = np.random.default_rng(0)
    ny, nx = src_shape
    yy, xx = np.ogrid[0:ny, 0:nx]
    data = (100 + 20 * np.sin(xx / 7.0) * np.cos(yy / 5.0)).astype(np.float32)
    data += rng.normal(0, 1, data.shape).astype(np.float32)
    pm32 = pixmap.astype(np.float32).astype(np.float64)  # same positions for both
    for interp in ("poly5", "lanczos3"):
        blot_image(data, pm32[:2, :2], interp=interp)  # warm-up
        t_ours, c_ours, ours = timed(lambda i=interp: blot_image(data, pm32, interp=i), runs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_ref, c_ref, ref = timed(lambda i=interp: ref_blot(data, pm32, interp=i), runs)
        x, y = pm32[..., 0], pm32[..., 1]
        inner = (x > 6) & (x < nx - 7) & (y > 6) & (y < ny - 7)
        diff = np.abs(ours - ref)[inner].max() / np.abs(data).max()
        print(f"blot_image {interp} ({pixmap.shape[1]}x{pixmap.shape[0]} from {nx}x{ny})")
        print(f"  ours    wall {t_ours:7.3f} s   cpu {c_ours:7.3f} s")
        print(f"  drizzle wall {t_ref:7.3f} s   cpu {c_ref:7.3f} s")
        print(f"  ratio = {t_ref / t_ours:.1f} (wall), {c_ref / c_ours:.1f} (cpu)")
        print(f"  max |ours - C| / max|data| (interior) = {diff:.3g}")


def bench_regions(label: str, wfrom: WCS, wto: WCS, runs: int) -> None:
    """32 region maps of 256 x 512 pixels (one call each) vs astropy on the same pixels."""
    regions = [(y, y + 256, x, x + 512) for y in range(0, 2048, 256) for x in (0, 1024, 2048, 3072)]

    def ours():
        return [calc_pixmap(wfrom, wto, region=r) for r in regions]

    def ref():
        out = []
        for y0, y1, x0, x1 in regions:
            y, x = np.mgrid[y0:y1, x0:x1].astype(np.float64)
            out.append(np.stack(wto.world_to_pixel_values(*wfrom.pixel_to_world_values(x, y)), -1))
        return out

    t_ours, c_ours, a = timed(ours, runs)
    t_ref, c_ref, b = timed(ref, runs)
    err = max(
        float(np.nanmax(np.hypot(p[..., 0] - q[..., 0], p[..., 1] - q[..., 1])))
        for p, q in zip(a, b, strict=True)
    )
    print(f"calc_pixmap {label}: 32 regions of 256x512, one call each")
    print(f"  ours    wall {t_ours:7.3f} s   cpu {c_ours:7.3f} s   ({c_ours / 32 * 1e3:.2f} CPU-ms "
          "per region)")  # fmt: skip
    print(f"  astropy wall {t_ref:7.3f} s   cpu {c_ref:7.3f} s")
    print(f"  ratio = {t_ref / t_ours:.1f} (wall), {c_ref / c_ours:.1f} (cpu)")
    print(f"  max error vs astropy = {err:.3g} px")


def bench_threads(wfrom: WCS, wto: WCS, runs: int) -> None:
    """One chip with threads=2 vs 1; two chips one after the other vs in 2 threads."""
    from concurrent.futures import ThreadPoolExecutor

    t1, _, one = timed(lambda: calc_pixmap(wfrom, wto), runs)
    t2, _, two = timed(lambda: calc_pixmap(wfrom, wto, threads=2), runs)
    same = np.array_equal(one, two, equal_nan=True)
    print("calc_pixmap, 1 full UVIS chip: threads=1 vs threads=2")
    print(f"  threads=1 wall {t1:7.3f} s   threads=2 wall {t2:7.3f} s   speed-up {t1 / t2:.2f}"
          f"   (same values: {same})")  # fmt: skip

    def serial():
        return [calc_pixmap(wfrom, wto) for _ in range(2)]

    def threaded():
        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(lambda _: calc_pixmap(wfrom, wto), range(2)))

    t1, _, _ = timed(serial, runs)
    t2, _, _ = timed(threaded, runs)
    print("calc_pixmap, 2 full UVIS chips: 1 thread vs 2 threads")
    print(f"  1 thread wall {t1:7.3f} s   2 threads wall {t2:7.3f} s   speed-up {t1 / t2:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per case (median)")
    args = parser.parse_args()
    warnings.simplefilter("ignore", category=UserWarning)
    from astropy.wcs import FITSFixedWarning

    warnings.simplefilter("ignore", category=FITSFixedWarning)

    with fits.open(DATA / "headers" / "sample_svm_flc.fits") as hdul:
        uvis = WCS(hdul["SCI", 1].header, hdul)
    uvis.pixel_shape = (4096, 2051)
    grid = north_up(uvis, 0.04, (5000, 5000))
    pm_uvis = bench_pixmap('WFC3/UVIS SCI,1 -> 0.04" TAN', uvis, grid, args.runs)

    with tempfile.TemporaryDirectory() as tmp:
        path = acs_full_distortion(Path(tmp))
        with fits.open(path) as hdul:
            acs = WCS(hdul["SCI", 1].header, hdul)
    acs_grid = north_up(acs, 0.04, (5600, 5600))
    bench_pixmap('ACS/WFC SCI,1 (SIP+NPOL+D2IM) -> 0.04" TAN', acs, acs_grid, args.runs)
    bench_regions("ACS/WFC SCI,1", acs, acs_grid, args.runs)

    bench_threads(uvis, grid, args.runs)
    bench_blot(pm_uvis, (5000, 5000), args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
