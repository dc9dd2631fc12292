"""Demo-scale photometric check of the flux scale per chip (issue 14).

On the built-in demo data (full-size chips), one exposure per detector (ACS/WFC, WFC3/UVIS,
WFC3/IR) is drizzled alone by ``hapdask mvm`` (with the simulator's true WCS as WCS updates)
and by DrizzlePac's ``AstroDrizzle`` (final drizzle only, square kernel, pixfrac 1, EXP weights,
on a copy of the file with the true WCS written in, onto our product's grid). Aperture fluxes
(r = 7 FWHM, local background in a 10-14 FWHM annulus) of isolated bright truth-catalog stars
(apertures touching a DQ-rejected pixel are dropped) are compared per chip with the truth
catalog (corrected for the output grid's own pixel-area factor) and with DrizzlePac's product.
Medians per chip are printed, and the chip-2 / chip-1 ratio of each.

Run (once; a few minutes)::

    HAPDASK_DEMO_DIR=/tmp/demo nice python benchmarks/flux_scale_check.py --work /tmp/fluxcheck

The script only uses interfaces that existed before issue 14, so it can be run against an
older checkout too (``PYTHONPATH=<old tree>``) for a before/after comparison.
"""

from __future__ import annotations

import argparse
import shutil
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.stats import SigmaClip
from astropy.wcs import WCS
from photutils.aperture import (
    ApertureStats,
    CircularAnnulus,
    CircularAperture,
    aperture_photometry,
)

from hapdask.testing import astrodrizzle_final, astrodrizzle_refimage, sky_pixel_area

DETS = {"WFC": "acs_wfc", "UVIS": "wfc3_uvis", "IR": "wfc3_ir"}


def _pick(demo) -> dict[str, Path]:
    """First exposure of each detector."""
    out: dict[str, Path] = {}
    for p in demo.exposures:
        det = fits.getval(p, "DETECTOR")
        out.setdefault(DETS[det], p)
    return out


def _true_copy(src: Path, dst: Path, true_headers) -> None:
    root = fits.getval(src, "ROOTNAME").strip()
    with fits.open(src) as h:
        for hdu in h:
            if hdu.name == "SCI":
                hdr = hdu.header
                for k in [k for k in hdr if k[:2] in ("A_", "B_") or k[:3] in ("AP_", "BP_")]:
                    hdr.remove(k, ignore_missing=True, remove_all=True)
                hdr.update(true_headers[(root, hdu.ver)])
                hdr.setdefault("MEANDARK", 0.0)  # DrizzlePac's ACS reader requires it
        h.writeto(dst, overwrite=True)


def _photometry(product: Path, ra, dec, fwhm: float) -> tuple[np.ndarray, np.ndarray]:
    """Aperture fluxes (e-/s) and the output pixel-area factor at each position."""
    with fits.open(product) as h:
        data = h["SCI"].data.astype(np.float64)
        w = WCS(h["SCI"].header)
    scale = np.sqrt(abs(np.linalg.det(w.pixel_scale_matrix))) * 3600.0
    x, y = w.all_world2pix(np.column_stack([ra, dec]), 0).T
    pos = np.column_stack([x, y])
    ap = CircularAperture(pos, 7 * fwhm / scale)
    ann = CircularAnnulus(pos, 10 * fwhm / scale, 14 * fwhm / scale)
    bkg = ApertureStats(data, ann, sigma_clip=SigmaClip(3.0)).median
    flux = np.asarray(aperture_photometry(data, ap)["aperture_sum"]) - bkg * ap.area
    pam = sky_pixel_area(w, x, y) / (scale ** 2)
    return flux, pam


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skycell", default="p1889x07y19")
    ap.add_argument("--work", default="/tmp/hapdask_flux_check")
    ap.add_argument("--maglim", type=float, default=23.5)
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    from hapdask import mvm
    from hapdask.simulate import demo_dataset, instruments, read_true_wcs, sky, true_chip_wcs

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    demo = demo_dataset(args.skycell)
    true = read_true_wcs(demo.true_wcs)
    cat = demo.truth()
    picks = _pick(demo)
    result = mvm.run(args.skycell, [str(p) for p in picks.values()], output=work / "ours",
                     formats=["fits"], wcs_updates=true, log=lambda m: None)
    products = {}
    for lay in result.plan.layers.values():
        if "coarse" in lay.name:
            continue
        products[lay.chips[0].key[0]] = work / "ours" / lay.filename
    print(f"demo set {demo.outdir}")
    for det_key, path in picks.items():
        root = fits.getval(path, "ROOTNAME").strip()
        det = instruments.DETECTORS[det_key]
        with fits.open(path) as h:
            prim = h[0].header
            filt = prim.get("FILTER") or prim["FILTER2"]
            nchip = sum(1 for x in h if x.name == "SCI")
            shapes = {v: h["SCI", v].data.shape for v in range(1, nchip + 1)}
        f = instruments.FILTERS[(det_key, filt)]
        epoch = 2000.0 + (prim["EXPSTART"] - 51544.5) / 365.25
        ra, dec = sky.positions_at_epoch(cat, epoch)
        mag = np.asarray(cat[f"mag_{filt.lower()}"], float)
        is_star = np.asarray(cat["type"]) == "star"
        chip_of = np.zeros(len(cat), int)
        for v, (ny, nx) in shapes.items():
            w = true_chip_wcs(path, v, true)
            x, y = w.all_world2pix(np.column_stack([ra, dec]), 0, quiet=True).T
            m = 16 * det.fwhm / float(fits.getval(path, "IDCSCALE", ("SCI", v)))
            inside = np.isfinite(x) & (x > m) & (x < nx - 1 - m) & (y > m) & (y < ny - 1 - m)
            chip_of[inside & is_star & (mag < args.maglim)] = v
        sel = np.flatnonzero(chip_of > 0)
        # isolation: no source brighter than mag + 5 within 20 FWHM
        cosd = np.cos(np.radians(dec))
        keep = []
        for k in sel:
            d = np.hypot((ra - ra[k]) * cosd[k], dec - dec[k]) * 3600.0
            if not ((d > 0) & (d < 20 * det.fwhm) & (mag < mag[k] + 5)).any():
                keep.append(k)
        sel = np.asarray(keep, int)
        truth = 10 ** (-0.4 * (mag[sel] - f.zp_ab))
        ours, pam = _photometry(products[root], ra[sel], dec[sel], det.fwhm)
        dpw = work / f"dp_{root}"
        dpw.mkdir()
        _true_copy(path, dpw / path.name, true)
        dp_prod = astrodrizzle_final(
            [path.name], astrodrizzle_refimage(products[root], dpw / "ref.fits"), dpw)
        theirs, _ = _photometry(dp_prod, ra[sel], dec[sel], det.fwhm)
        ok = np.isfinite(ours) & np.isfinite(theirs)  # apertures with DQ holes are dropped
        sel, ours, theirs, pam, truth = sel[ok], ours[ok], theirs[ok], pam[ok], truth[ok]
        chips = chip_of[sel]
        print(f"\n{det_key} {root} {filt}: {len(sel)} isolated stars < {args.maglim} mag "
              "(medians per chip)")
        rows = {}
        for v in sorted(set(chips)):
            s = chips == v
            rows[v] = (np.median(ours[s] * pam[s] / truth[s]),
                       np.median(theirs[s] * pam[s] / truth[s]),
                       np.median(ours[s] / theirs[s]), int(s.sum()))
            print(f"  chip {v}: n={rows[v][3]:4d}  ours/truth {rows[v][0]:.4f}  "
                  f"DrizzlePac/truth {rows[v][1]:.4f}  ours/DrizzlePac {rows[v][2]:.4f}")
        if len(rows) == 2:
            r1, r2 = rows[1], rows[2]
            print(f"  chip2/chip1: ours vs truth {r2[0] / r1[0]:.4f}  DrizzlePac vs truth "
                  f"{r2[1] / r1[1]:.4f}  ours/DrizzlePac {r2[2] / r1[2]:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
