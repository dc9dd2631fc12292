"""Cosmic-ray detection against the simulator's truth: ``hapdask drizzle`` vs AstroDrizzle.

For N = 2, 3, 4, 8 dithered exposures of one filter (ACS/WFC F775W, 500 s; the simulator's
``exposures_per_filter=N, filters=["F775W"]``: line pattern for 2-3, box for 4, box x 2-point
line for 8) both tools run AstroDrizzle's steps with the same parameters -- HAP's SVM ACS/WFC
filter-product settings for N (n=2-5: minmed, driz_cr_scale 1.5 1.2; n>=6: median,
driz_cr_scale 1.2 0.7, final_pixfrac 0.8; ../shared/design/hap_parameters.md) -- on the same
explicit north-up 0.05"/px grid, one after the other in this process. Each tool's masks
(``<rootname>_crmask.fits``; AstroDrizzle's DQ bit 4096 in its copies of the inputs) are scored
with :mod:`hapdask.simulate.score`:

* found: % of the truth's cosmic-ray pixels flagged (issue target >= 99.5 %);
* false: flagged pixels without cosmic-ray charge, % of the truth's CR pixel count (<= 0.1 %);
* cores: star cores (pixel of the true centre of stars >= 1000 e-) flagged without a cosmic ray
  on them (target 0), out of the cores examined.

hapdask runs twice: AstroDrizzle's driz_cr (row ``hapdask``, the default, expected to equal
AstroDrizzle's masks) and the hysteresis detector (row ``hapdask hysteresis``,
``driz_cr_method="hysteresis"``, a hapdask extension: :mod:`hapdask.combine.crdetect`). The
false flags are split: ``clean`` on DQ-0 pixels, the rest (``false - clean``) on hot pixels
(DQ 16, used by the final drizzle under HAP's final_bits 336: real outliers, rejected on
purpose). The effect on the final product: 7x7-pixel box fluxes of the truth's stars (>= 1000
e-) in the hysteresis product relative to the default's (median and largest |change|).

AstroDrizzle's ``skymethod="match"`` fails in this environment (stsci.skypac 1.0.12 calls
``SphericalPolygon.iter_polygons_flat``, missing from spherical_geometry 1.4) and AstroDrizzle
silently reverts to ``localmin``. As the sky tests' oracle does (tests/sky/skycases.py), the
missing method is added as iteration over the polygon's parts before AstroDrizzle runs, so it
really matches skies. Should its log still show the fallback ("Reverting sky computation"),
hapdask also runs with ``localmin`` (row ``hapdask (localmin)``, the like-for-like one): the
sky method changes driz_cr's threshold (its noise term counts the subtracted sky on top of the
sky-added blot).

Run::

    python benchmarks/cr_detection.py [--small] [--n 2 3 4 8] [--workdir DIR] [--threads N]

(full-size chips by default: 2 x 4096x2048 per exposure; ``--small`` uses 2 x 512x256 sub-arrays).
Prints one table row per N and tool, the wall time of both, and
``ratio = reference_time / our_time`` per N.
"""

from __future__ import annotations

import argparse
import math
import shutil
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

from bench_drizzle import PARAMS as HAP_N2  # noqa: E402  (benchmarks/ is sys.path[0])

from hapdask.mosaic import drizzle  # noqa: E402
from hapdask.mosaic.products import read_crmask  # noqa: E402
from hapdask.simulate import simulate_visits  # noqa: E402
from hapdask.simulate import sky as simsky  # noqa: E402
from hapdask.simulate.score import CRScore, score_masks, truth_context  # noqa: E402
from hapdask.testing import astrodrizzle_run, grid_params  # noqa: E402

#: HAP SVM acs_wfc filter product, n >= 6 (acs_wfc_any_n6) differs from n = 2-5 in these.
HAP_N6 = {**HAP_N2, "combine_type": "median", "driz_cr_scale": "1.2 0.7", "final_pixfrac": 0.8}


def hap_params(n: int) -> dict:
    """HAP's SVM ACS/WFC filter-product AstroDrizzle parameters for ``n`` exposures (n >= 2)."""
    return dict(HAP_N6 if n >= 6 else HAP_N2)


def run_astrodrizzle(inputs: list[Path], workdir: Path, params: dict) -> Path:
    """AstroDrizzle on copies of ``inputs`` in ``workdir`` (it flags CRs in their DQ)."""
    return astrodrizzle_run(inputs, workdir, clean=True, in_memory=True, **params)


def astrodrizzle_masks(workdir: Path, exposure: Path) -> dict:
    """AstroDrizzle's CR flags (DQ bit 4096) of its copy of ``exposure``."""
    with fits.open(workdir / exposure.name) as h:
        return {x.ver: (h["DQ", x.ver].data & 4096) != 0 for x in h if x.name == "SCI"}


def score_set(contexts: dict, masks_of) -> CRScore:
    """Summed score of ``masks_of(exposure) -> {extver: bool}`` over the exposures."""
    total = CRScore()
    for p, ctx in contexts.items():
        total = total + score_masks(masks_of(p), ctx)
    return total


def star_flux_change(sim, exposure: Path, base: Path, other: Path, min_counts: float = 1000.0,
                     half: int = 3) -> tuple[int, float, float]:
    """(stars, median, largest |change| in %) of the 7x7 box flux of the truth's stars (at
    least ``min_counts`` e- in one exposure) in product ``other`` relative to ``base``."""
    truth = sim.truth()
    with fits.open(exposure) as h:
        prim = h[0].header
        epoch = 2000.0 + (float(prim["EXPSTART"]) - 51544.5) / 365.25
        exptime = float(prim["EXPTIME"])
        zp = -2.5 * math.log10(float(prim["PHOTFLAM"])) - 21.10 - 5 * math.log10(
            float(prim["PHOTPLAM"])) + 18.692  # AB zero point of the filter
    stars = truth[np.asarray(truth["type"]) == "star"]
    mag = np.asarray(stars["mag_f775w"], dtype=float)
    stars = stars[10.0 ** (-0.4 * (mag - zp)) * exptime >= min_counts]
    ra, dec = simsky.positions_at_epoch(stars, epoch)
    with fits.open(base) as a, fits.open(other) as b:
        w = WCS(a["SCI"].header)
        da, db = a["SCI"].data, b["SCI"].data
        xy = np.round(w.all_world2pix(np.column_stack([ra, dec]), 0)).astype(int)
        ch = []
        for x, y in xy:
            if half <= y < da.shape[0] - half and half <= x < da.shape[1] - half:
                fa = float(np.nansum(da[y - half:y + half + 1, x - half:x + half + 1]))
                fb = float(np.nansum(db[y - half:y + half + 1, x - half:x + half + 1]))
                if fa > 0:
                    ch.append(100.0 * (fb / fa - 1.0))
    c = np.abs(np.array(ch)) if ch else np.zeros(1)
    return len(ch), float(np.median(c)), float(c.max())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[2, 3, 4, 8])
    ap.add_argument("--small", action="store_true", help="512x256 sub-array chips")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="cr_detection_"))
    tile = 512 if a.small else 1024
    rows = []
    size = "2 x 512x256 sub-array" if a.small else "full 2 x 4096x2048"
    print(f"ACS/WFC F775W, {size} chips, HAP SVM parameters; targets: found >= 99.5 %, "
          "false <= 0.1 %, 0 cores")
    print("found: % of all CR pixels | det.: % of the detectable ones (seen by another "
          "exposure's good pixel); false: all flags without CR charge (mostly hot pixels, DQ 16) "
          "| clean: on DQ-0 pixels; both % of the CR pixel count")
    print(f"{'N':>2} {'tool':<19} {'CR pix':>7} {'found %':>8} {'det. %':>7} {'false':>6} "
          f"{'false %':>8} {'clean':>6} {'clean %':>8} {'cores':>8} {'wall s':>7}", flush=True)
    for n in a.n:
        sim = simulate_visits("p1889x07y19", work / f"sim{n}{'s' if a.small else ''}", visits=3,
                              small=a.small, seed=a.seed, exposures_per_filter=n,
                              filters=["F775W"])
        inputs = sorted(sim.exposures)
        params = {**hap_params(n), **grid_params(inputs, 0.05)}
        ad = work / f"ad{n}{'s' if a.small else ''}"
        shutil.rmtree(ad, ignore_errors=True)
        t0 = time.perf_counter()
        run_astrodrizzle(inputs, ad, params)
        t_ad = time.perf_counter() - t0  # (AstroDrizzle prints its WCS to stdout)
        ctx = {p: truth_context(sim, p, [q for q in inputs if q != p]) for p in inputs}

        def ours(out: Path, params: dict, inputs=inputs, ctx=ctx):
            """Run hapdask drizzle into ``out`` (timed) and score its CR masks."""
            shutil.rmtree(out, ignore_errors=True)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                drizzle([str(p) for p in inputs], out / "cr", params=params, tile_size=tile,
                        region_size=tile, threads_per_worker=a.threads, log=lambda m: None)
            t = time.perf_counter() - t0
            return score_set(ctx, lambda p: read_crmask(
                out / f"{p.name.split('_')[0]}_crmask.fits")), t

        theirs = score_set(ctx, lambda p, ad=ad: astrodrizzle_masks(ad, p))
        rows.append((n, "AstroDrizzle", theirs, t_ad))
        score, t_ours = ours(work / f"ours{n}{'s' if a.small else ''}", params)
        rows.append((n, "hapdask", score, t_ours))
        hyst = work / f"hyst{n}{'s' if a.small else ''}"
        rows.append((n, "hapdask hysteresis",
                     *ours(hyst, {**params, "driz_cr_method": "hysteresis"})))
        base_out = work / f"ours{n}{'s' if a.small else ''}"
        prod = next(base_out.glob("cr_dr?.fits")).name
        flux = star_flux_change(sim, inputs[0], base_out / prod, hyst / prod)
        if "Reverting sky computation" in (ad / "astrodrizzle.log").read_text():
            rows.append((n, "hapdask (localmin)",
                         *ours(work / f"ours{n}{'s' if a.small else ''}_localmin",
                               {**params, "skymethod": "localmin"})))
        for n_, label, sc, t in rows[-(4 if rows[-1][1].endswith(")") else 3):]:
            print(f"{n_:>2} {label:<19} {sc.truth_pixels:>7} {sc.found_pct:>8.2f} "
                  f"{sc.found_detectable_pct:>7.2f} {sc.false:>6} {sc.false_pct:>8.2f} "
                  f"{sc.false_clean:>6} {sc.false_clean_pct:>8.3f} "
                  f"{f'{sc.cores_flagged}/{sc.cores}':>8} {t:>7.1f}", flush=True)
        print(f"N={n}: final product, hysteresis vs default: {flux[0]} stars, 7x7 box flux "
              f"|change| median {flux[1]:.4f} %, max {flux[2]:.4f} %", flush=True)
        print(f"N={n}: ratio = reference_time / our_time = {t_ad / t_ours:.2f} "
              f"({t_ad:.1f} s / {t_ours:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
