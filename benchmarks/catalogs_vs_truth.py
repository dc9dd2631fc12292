"""Catalog accuracy on really drizzled simulated data (not a speed benchmark).

Simulates 3 small visits (the third is ACS/WFC F775W + F850LP, 2 dithered exposures each, with
cosmic rays and the real ACS distortion), drizzles the ACS layers through ``hapdask.mvm.run``
with the simulator's true WCS, builds the total (detection) image as the WHT-weighted mean of the
filter layers (what drizzling all exposures together gives), runs
:func:`hapdask.catalogs.make_catalogs` and compares with the truth catalog propagated to the
visit's epoch:

* point catalogs: completeness of stars with S/N > 50 (inside aperture 2, from the truth
  magnitude, sky and read noise), median position error (mas), MagAp2 - truth (corrected by the
  encircled energy within aperture 2 measured on the bright stars themselves: HAP applies no
  aperture correction, and the drizzled PSF's encircled energy depends on the drizzle kernel);
* segment catalog: recovered galaxies per magnitude bin.

Usage: ``PYTHONPATH=$PWD nice python benchmarks/catalogs_vs_truth.py [workdir]``
(first run ~1-2 min: simulation + drizzling; later runs reuse ``workdir``).
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.time import Time
from scipy import ndimage

from hapdask.catalogs import CatalogParams, DrizzleProduct, make_catalogs, read_product
from hapdask.mvm import plan, run
from hapdask.simulate import instruments, load_set, read_true_wcs, simulate_visits, sky

SKYCELL = "p1889x07y19"


def drizzled_layers(work: Path) -> tuple[object, dict[str, DrizzleProduct]]:
    setdir = work / "set"
    sim = load_set(setdir) if setdir.exists() else simulate_visits(SKYCELL, setdir, visits=3,
                                                                  small=True)
    wcs_updates = read_true_wcs(sim.true_wcs)
    names = [n for n in plan(SKYCELL, str(sim.mvm_poller), wcs_updates=wcs_updates).layers
             if "acs_wfc" in n and "coarse" not in n]
    out = work / "mvm"
    if not all((out / f"{n}.fits").exists() for n in names):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run(SKYCELL, str(sim.mvm_poller), output=out, formats=("fits",),
                wcs_updates=wcs_updates, layers=names, log=lambda m: None)
    layers = {}
    for n in names:
        prod = read_product(out / f"{n}.fits")
        ys, xs = np.nonzero(prod.wht > 0)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        filt = n.split("_")[-3].upper()
        hdr = prod.header.copy()
        hdr["FILTER"] = filt
        layers[filt] = DrizzleProduct(prod.sci[box], prod.wht[box], prod.wcs[box], hdr,
                                      prod.nexp[box] if prod.nexp is not None else None,
                                      name=n + ".fits")
    return sim, layers


def total_of(layers: dict[str, DrizzleProduct]) -> DrizzleProduct:
    prods = list(layers.values())
    w = sum(p.wht for p in prods)
    with np.errstate(invalid="ignore", divide="ignore"):
        sci = np.where(w > 0, sum(np.nan_to_num(p.sci) * p.wht for p in prods) / w, 0.0)
    hdr = prods[0].header.copy()
    for key in ("EXPTIME", "TEXPTIME", "NDRIZIM", "NUMEXP"):
        hdr[key] = sum(p.header[key] for p in prods)
    hdr["FILTER"] = "TOTAL"
    return DrizzleProduct(sci.astype(np.float32), w, prods[0].wcs, hdr,
                          sum(p.exposure_count for p in prods), name="total_drc.fits")


def main(work: Path) -> None:
    t0 = time.perf_counter()
    sim, layers = drizzled_layers(work)
    total = total_of(layers)
    t1 = time.perf_counter()
    params = CatalogParams.for_detector("acs_wfc")
    res = make_catalogs(total, layers, params)
    t2 = time.perf_counter()
    print(f"data {t1 - t0:.1f} s, catalogs {t2 - t1:.1f} s; image {total.sci.shape}, "
          f"{len(res.point_filters[next(iter(layers))])} point / "
          f"{len(res.segmentation.catalog)} segment detections; rejected: {res.rejected}")
    truth = sim.truth()
    epoch = Time(float(total.header["EXPSTART"]), format="mjd").jyear
    ra, dec = sky.positions_at_epoch(truth, epoch)
    x, y = total.wcs.all_world2pix(ra, dec, 0)
    inside = np.zeros(len(truth), dtype=bool)
    ok = np.isfinite(x) & np.isfinite(y)
    xi, yi = np.round(x[ok]).astype(int), np.round(y[ok]).astype(int)
    ny, nx = total.sci.shape
    valid = (xi >= 8) & (yi >= 8) & (xi < nx - 8) & (yi < ny - 8)
    idx = np.flatnonzero(ok)[valid]
    count = total.exposure_count
    # inside: every pixel within 8 px has full coverage (all exposures)
    full = count >= count.max()
    full = ndimage.binary_erosion(full, iterations=8)
    inside[idx] = full[yi[valid], xi[valid]]
    pscale = total.pixel_scale
    r2 = params.aperture_2 / pscale
    kind = np.asarray(truth["type"])
    for fname, prod in layers.items():
        cat = res.point_filters[fname]
        filt = instruments.FILTERS[("acs_wfc", fname)]
        mag = np.asarray(truth[f"mag_{fname.lower()}"])
        t_exp = float(prod.header["EXPTIME"])
        signal = 0.93 * 10 ** (-0.4 * (mag - filt.zp_ab)) * t_exp
        area = math.pi * r2 ** 2
        n_exp = int(prod.header["NUMEXP"])
        snr = signal / np.sqrt(signal + area * (filt.sky * t_exp + 4.0 ** 2 * n_exp
                                                * (pscale / 0.05) ** 2))
        bright = (kind == "star") & inside & (snr > 50)
        cx, cy = np.asarray(cat["X-Center"]), np.asarray(cat["Y-Center"])
        d = np.hypot(cx[None, :] - x[:, None], cy[None, :] - y[:, None])
        j, dist = d.argmin(axis=1), d.min(axis=1)
        found = bright & (dist < 2.0)
        dmag = np.asarray(cat["MagAp2"])[j[found]] - mag[found]
        ap_corr = np.median(dmag)  # -2.5 log10(EE(aperture 2)) of the drizzled PSF
        resid = dmag - ap_corr
        scatter = 1.482602 * np.median(np.abs(resid - np.median(resid)))
        values, counts = np.unique(np.asarray(cat["Flags"])[j[found]], return_counts=True)
        flag_counts = {int(v): int(c) for v, c in zip(values, counts, strict=True)}
        print(f"{fname}: stars S/N>50: {bright.sum()}, found {found.sum()} "
              f"({100 * found.sum() / max(bright.sum(), 1):.1f} %), median position error "
              f"{np.median(dist[found]) * pscale * 1000:.2f} mas, MagAp2 - truth median "
              f"{ap_corr:+.3f} (= -2.5 log EE, EE {10 ** (-0.4 * ap_corr):.3f}), robust scatter "
              f"{scatter:.4f} mag; flags of found bright stars (flag: count): {flag_counts}")
    # spurious detections: no truth source within 2 px; a detection seen (S/N > 5) in one
    # filter and absent (S/N < 2) in the other is a cosmic ray (MVM drizzles without CR
    # rejection)
    (f1, c1), (f2, c2) = list(res.point_filters.items())[:2]
    px, py = np.asarray(c1["X-Center"]), np.asarray(c1["Y-Center"])
    real = np.hypot(px[:, None] - x[None, :], py[:, None] - y[None, :]).min(axis=1) < 2.0
    s1 = np.asarray(c1["FluxAp2"]) / np.asarray(c1["FluxErrAp2"])
    s2 = np.asarray(c2["FluxAp2"]) / np.asarray(c2["FluxErrAp2"])
    one = ((s1 > 5) & (s2 < 2)) | ((s2 > 5) & (s1 < 2))
    flag0 = np.asarray(c1["Flags"]) == 0
    print(f"point detections: {len(c1)}, matched to truth {real.sum()}; unmatched with "
          f"{f1} flag 0: {(~real & flag0).sum()}, of which in one filter only (cosmic rays): "
          f"{(~real & flag0 & one).sum()}; matched in one filter only: {(real & one).sum()}; "
          f"total point catalog after trimming: {len(res.point_total)} rows")
    seg = res.segmentation.catalog
    sx, sy = np.asarray(seg["X-Centroid"]), np.asarray(seg["Y-Centroid"])
    dist = np.hypot(sx[None, :] - x[:, None], sy[None, :] - y[:, None]).min(axis=1)
    mag = np.asarray(truth["mag_f775w"])
    parts = []
    for lo, hi in ((18, 23), (23, 24), (24, 25), (25, 26), (26, 27)):
        sel = (kind == "galaxy") & inside & (mag >= lo) & (mag < hi)
        parts.append(f"{lo}-{hi}: {(sel & (dist < 0.2 / pscale)).sum()}/{sel.sum()}")
    print("segment galaxies found/total by F775W mag: " + ", ".join(parts)
          + f" (kernel {res.segmentation.kernel}, big island {res.segmentation.big_island})")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/hapdask_catalogs_vs_truth"))
