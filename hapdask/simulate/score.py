"""Cosmic-ray masks scored against a simulated set's truth (CR pixels found, false flags, star
cores flagged).

Used by ``benchmarks/cr_detection.py`` and the engine's detection tests, for any tool's masks
(``hapdask drizzle``'s ``<rootname>_crmask.fits`` or AstroDrizzle's DQ bit 4096)::

    cores = star_cores(sim, exposure)             # {extver: (y, x)} of bright stars' centres
    score = score_masks(masks, read_crmask(truth), cores)
    score.found_pct, score.false_pct, score.cores_flagged

A *star core* is the pixel holding the true centre of a star (truth catalog, true WCS, position
at the exposure's epoch) expected to collect at least ``min_counts`` electrons in the exposure,
at least ``edge`` pixels from the chip's border. A core counts as flagged when the mask flags it
and no cosmic ray hit it (truth).

Two refinements make the figures meaningful on dithered data (both tools see the same limits):

* *detectable* cosmic-ray pixels: those whose sky position falls on a good pixel (DQ within
  ``good_bits``) of at least one *other* exposure; elsewhere the median has only the exposure
  itself and no tool can tell a cosmic ray from a source;
* *clean* false flags: false flags on pixels with DQ 0 in the input. Flags on hot pixels (DQ 16,
  which HAP's bits 336 treat as good) are genuine outliers against the dithered median -- the
  detector defect moves on the sky -- and desirable; the truth holds only cosmic rays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from hapdask.io import open_exposure
from hapdask.mosaic.products import read_crmask
from hapdask.simulate import instruments as ins
from hapdask.simulate import sky
from hapdask.simulate.core import CRTRUTH_SUFFIX, SimulatedSet, true_chip_wcs

__all__ = ["CRScore", "TruthContext", "score_masks", "star_cores", "truth_context"]


@dataclass
class CRScore:
    """Counts of one or more chips' masks against the truth (add scores with ``+``)."""

    truth_pixels: int = 0  # pixels holding cosmic-ray charge
    found: int = 0  # of those, flagged
    false: int = 0  # flagged pixels without cosmic-ray charge
    cores: int = 0  # star cores examined
    cores_flagged: int = 0  # star cores flagged (no cosmic ray on them)
    detectable: int = 0  # truth pixels seen by another exposure's good pixel
    found_detectable: int = 0  # of those, flagged
    false_clean: int = 0  # false flags on pixels with input DQ 0

    def __add__(self, other: CRScore) -> CRScore:
        return CRScore(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    def astuple(self) -> tuple[int, ...]:
        return (self.truth_pixels, self.found, self.false, self.cores, self.cores_flagged,
                self.detectable, self.found_detectable, self.false_clean)

    @property
    def found_detectable_pct(self) -> float:
        """Detectable cosmic-ray pixels found, %."""
        return 100.0 * self.found_detectable / max(self.detectable, 1)

    @property
    def false_clean_pct(self) -> float:
        """False flags on DQ-0 pixels, % of the truth's cosmic-ray pixel count."""
        return 100.0 * self.false_clean / max(self.truth_pixels, 1)

    @property
    def found_pct(self) -> float:
        """Cosmic-ray pixels found, % of the truth's."""
        return 100.0 * self.found / max(self.truth_pixels, 1)

    @property
    def false_pct(self) -> float:
        """False flags as % of the truth's cosmic-ray pixel count (the issue's measure)."""
        return 100.0 * self.false / max(self.truth_pixels, 1)


def star_cores(sim: SimulatedSet, exposure, *, min_counts: float = 1000.0,
               edge: int = 3) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Pixels (0-based ``(y, x)`` index arrays per SCI EXTVER) holding bright stars' centres.

    Parameters
    ----------
    sim : SimulatedSet
        The set ``exposure`` belongs to (truth catalog and true WCS).
    exposure : path-like
        One of ``sim.exposures`` (UVIS/ACS/IR).
    min_counts : float
        Least expected electrons of the star in the exposure (whole PSF).
    edge : int
        Least distance (pixels) of a core from the chip's border.
    """
    truth = sim.truth()
    true_headers = sim.true_wcs_headers()
    with fits.open(exposure) as h:
        prim = h[0].header
        exptime = float(prim["EXPTIME"])
        det = next(d for d in ins.DETECTORS.values()
                   if d.instrume == prim["INSTRUME"] and d.detector == prim["DETECTOR"])
        names = [prim.get("FILTER", "")] if det.instrume == "WFC3" else [
            prim["FILTER1"], prim["FILTER2"]]
        filt = next(ins.FILTERS[(det.key, f)] for f in names if (det.key, f) in ins.FILTERS)
        epoch = 2000.0 + (float(prim["EXPSTART"]) - 51544.5) / 365.25
        chips = [(x.ver, x.data.shape) for x in h if x.name == "SCI"]
    stars = truth[np.asarray(truth["type"]) == "star"]
    mag = np.asarray(stars[f"mag_{filt.name.lower()}"], dtype=float)
    counts = 10.0 ** (-0.4 * (mag - filt.zp_ab)) * exptime
    stars = stars[counts >= min_counts]
    ra, dec = sky.positions_at_epoch(stars, epoch)
    out = {}
    for extver, (ny, nx) in chips:
        w = true_chip_wcs(exposure, extver, true_headers)
        xy = w.all_world2pix(np.column_stack([ra, dec]), 0, quiet=True)
        x, y = np.round(xy[:, 0]).astype(int), np.round(xy[:, 1]).astype(int)
        ok = ((x >= edge) & (x < nx - edge) & (y >= edge) & (y < ny - edge)
              & np.isfinite(xy).all(axis=1))
        out[extver] = (y[ok], x[ok])
    return out


@dataclass
class TruthContext:
    """What scoring one exposure needs (``{extver: ...}`` per SCI chip)."""

    truth: dict[int, np.ndarray]  # bool, True = cosmic-ray charge
    clean: dict[int, np.ndarray] | None = None  # bool, input DQ == 0
    detectable: dict[int, np.ndarray] | None = None  # bool, True at detectable truth pixels
    cores: dict[int, tuple[np.ndarray, np.ndarray]] | None = None  # star cores (y, x)


def truth_context(sim: SimulatedSet, exposure, others=(), *, good_bits: int = 336,
                  min_counts: float = 1000.0, edge: int = 3) -> TruthContext:
    """The truth, clean pixels, detectable truth pixels and star cores of ``exposure``.

    Parameters
    ----------
    sim : SimulatedSet
    exposure : path-like
        One of ``sim.exposures``.
    others : iterable of path-like
        The other exposures combined with it (their good pixels make a CR detectable).
    good_bits : int
        DQ bits treated as good in the others (AstroDrizzle's ``driz_sep_bits``).
    min_counts, edge
        See :func:`star_cores`.
    """
    exp = open_exposure(str(exposure))
    truth = read_crmask(sim.outdir / f"{exp.rootname}{CRTRUTH_SUFFIX}")
    other_chips = [(c, c.wcs()) for o in others for c in open_exposure(str(o)).chips]
    clean, det = {}, {}
    for chip in exp.chips:
        _, _, dq = chip.read(err=False)
        e = chip.extver
        clean[e] = dq == 0
        t = truth[e]
        y, x = np.nonzero(t)
        sky_xy = chip.wcs().all_pix2world(np.column_stack([x, y]).astype(float), 0)
        seen = np.zeros(len(y), dtype=bool)
        for oc, ow in other_chips:
            oy, ox = oc.shape
            xy = ow.all_world2pix(sky_xy, 0, quiet=True)
            i, j = np.round(xy[:, 0]).astype(int), np.round(xy[:, 1]).astype(int)
            inside = (i >= 0) & (i < ox) & (j >= 0) & (j < oy)
            if inside.any():
                odq = oc.read()[2]
                good = np.zeros(len(y), dtype=bool)
                good[inside] = (odq[j[inside], i[inside]].astype(np.int64) & ~good_bits) == 0
                seen |= good
        d = np.zeros_like(t)
        d[y[seen], x[seen]] = True
        det[e] = d
    return TruthContext(truth, clean, det, star_cores(sim, exposure, min_counts=min_counts,
                                                      edge=edge))


def score_masks(masks: dict[int, np.ndarray], truth: dict[int, np.ndarray] | TruthContext,
                cores: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> CRScore:
    """Score one exposure's masks (``{extver: bool}``, True = cosmic ray) against its truth.

    ``truth`` is the truth masks or a :class:`TruthContext` (then ``cores`` come from it and
    the detectable / clean counts are filled). Chips missing from ``masks`` count as not
    flagged.
    """
    ctx = truth if isinstance(truth, TruthContext) else TruthContext(truth, cores=cores)
    cores = ctx.cores
    score = CRScore()
    for extver, t in ctx.truth.items():
        m = masks.get(extver)
        if m is None:
            m = np.zeros_like(t, dtype=bool)
        if m.shape != t.shape:
            raise ValueError(f"chip {extver}: mask shape {m.shape} is not the truth's {t.shape}")
        n_cores = flagged = 0
        if cores and extver in cores:
            y, x = cores[extver]
            n_cores = len(y)
            flagged = int((m[y, x] & ~t[y, x]).sum())
        det = ctx.detectable[extver] if ctx.detectable else t
        false_clean = int((m & ~t & ctx.clean[extver]).sum()) if ctx.clean else 0
        score = score + CRScore(int(t.sum()), int((m & t).sum()), int((m & ~t).sum()), n_cores,
                                flagged, int(det.sum()), int((m & det).sum()), false_clean)
    return score
