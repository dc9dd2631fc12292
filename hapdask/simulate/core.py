"""Simulated multi-visit HST data sets overlapping a SkyCell (``hapdask simulate``).

What one run writes into ``outdir`` (all names final only when the whole set is complete):

* ``<rootname>_flc.fits`` (WFC3/UVIS, ACS/WFC) and ``<rootname>_flt.fits`` (WFC3/IR): MEF files with
  PRIMARY + SCI/ERR/DQ per chip (+ SAMP/TIME for IR) + the WCSDVARR/D2IMARR lookup tables. The
  headers are real instrument headers (see :mod:`hapdask.simulate.instruments`) carrying the
  *uncorrected* pointing; the pixels were rendered with the *true* pointing (header WCS plus a
  per-visit shift of 0.1-0.5" and a rotation of up to 0.01 deg about the visit centre).
* ``<instr>_<program>_<visit>_input.out``: one 8-column SVM poller per visit.
* ``skycell-<cell>_input.out``: the 10-column MVM poller for the whole set (all rows ``NEW``).
* ``truth_catalog.ecsv``: stars and galaxies, see :func:`hapdask.simulate.sky.make_truth_catalog`.
* ``true_wcs.fits``: the true WCS of every chip; read it with :func:`read_true_wcs`.
* ``<rootname>_crtruth.fits``: the cosmic-ray truth of every exposure, the layout of AstroDrizzle's
  CR masks: PRIMARY + one uint8 image HDU per SCI chip, EXTNAME ``CRMASK``, EXTVER = the chip's SCI
  EXTVER, 1 = the pixel holds cosmic-ray charge (every pixel a track crosses receives at least
  :data:`CR_MIN_DEPOSIT_E` electrons, so that is the threshold). WFC3/IR masks are all 0: the ramp
  fit removed the hits from SCI (they are flagged in DQ instead).
* ``simulate.json``: parameters, file list and sizes; written last, it marks the set complete.

Overwriting rules: ``outdir`` may not exist, may be empty, or may hold a complete set made by an
earlier run with the *same* parameters (which is then reused as is). Anything else raises
``FileExistsError``; nothing the user had is ever deleted or overwritten. The set is built in a
temporary sibling directory and renamed into place.

Flat-fielding convention (as in real FLT/FLC files): pixels are calibrated to a uniform surface
brightness per *nominal* pixel of ``IDCSCALE`` arcsec, not per true (distorted) pixel area. So a
uniform sky is uniform in counts per pixel, and a source's counts carry the pixel-area factor of
where it falls: FLT counts = true counts / PAM, with ``PAM = true pixel area / IDCSCALE**2`` (what a
pixel-area map corrects; the true area comes from the true WCS with its full distortion, evaluated
at the source's centre, which is exact to < 0.05 % over a galaxy's extent). Aperture photometry of
an FLT/FLC needs multiplying by PAM to give the truth catalog's flux; a drizzle with ``iscale =
(output scale / IDCSCALE)**2`` gives it directly. The truth catalog holds true fluxes (magnitudes).

Everything is a deterministic function of (skycell, visits, small, seed): files contain no
wall-clock time and every random number comes from a generator seeded by the seed plus a fixed
tag, so repeated runs produce identical bytes (pollers differ only by their absolute paths).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time
from astropy.wcs import WCS

from hapdask.archive.sregion import format_s_region
from hapdask.simulate import instruments as ins
from hapdask.simulate import render, sky
from skycells import SkyCell

#: 2: adds <rootname>_crtruth.fits; 3: sources carry the pixel-area factor (flat-fielding)
FORMAT_VERSION = 3
MARKER = "simulate.json"
TRUTH_NAME = "truth_catalog.ecsv"
TRUE_WCS_NAME = "true_wcs.fits"
REFCAT_NAME = "gaia_refcat.ecsv"
CRTRUTH_SUFFIX = "_crtruth.fits"
#: Smallest charge (e-) a cosmic-ray track leaves in a pixel it crosses; the CR truth threshold.
CR_MIN_DEPOSIT_E = 80.0

#: Visit recipes, cycled over the visits: (detector, filter, exposure time) per filter, with
#: ``exposures_per_filter`` (default 2) dithered exposures per filter (:func:`dither_pattern`).
#: The filters follow the docs' p1889x07y19 example.
VISIT_RECIPES: tuple[tuple[tuple[str, str, float], ...], ...] = (
    (("wfc3_uvis", "F475W", 600.0), ("wfc3_ir", "F160W", 402.9)),
    (("wfc3_ir", "F105W", 352.9), ("wfc3_ir", "F125W", 352.9)),
    (("acs_wfc", "F775W", 500.0), ("acs_wfc", "F850LP", 560.0)),
    (("wfc3_uvis", "F475W", 650.0), ("wfc3_ir", "F125W", 302.9), ("wfc3_ir", "F160W", 302.9)),
)
#: Dither offsets (arcsec along the detector x/y axes) of the default two exposures of one filter:
#: HAP's 2-point line pattern (ACS-WFC-DITHER-LINE: half-pixel steps in x and y); for ``small``
#: sets the offsets are scaled down to fit the sub-array chips.
DITHERS = ((0.0, 0.0), (2.415, 1.575))
DITHERS_SMALL = ((0.0, 0.0), (0.62, 0.41))
#: The 4-point box pattern (ACS-WFC-DITHER-BOX, arcsec along the detector axes), used for 4 or more
#: exposures per filter.
DITHER_BOX = ((0.0, 0.0), (5.0, 1.5), (2.5, 4.0), (-2.5, 2.5))
#: Most exposures per filter (rootname exposure ids run to 90 per visit).
MAX_EXPOSURES_PER_FILTER = 30

#: Programs: (proposal id, program id) per instrument.
PROGRAMS = {"WFC3": (16801, "f3s"), "ACS": (16802, "f3t")}

#: ACS filter wheel layout: filter -> (FILTER1, FILTER2).
ACS_WHEELS = {"F775W": ("CLEAR1L", "F775W"), "F850LP": ("CLEAR1L", "F850LP"),
              "F606W": ("F606W", "CLEAR2L")}

#: Source densities per arcmin^2: (stars, galaxies) for the default and --small sets.
DENSITY = {False: (30.0, 80.0), True: (150.0, 120.0)}


class SimulationError(ValueError):
    """A simulation request that cannot be honoured (bad parameters, occupied output directory)."""


def dither_pattern(n: int, small: bool = False) -> tuple[tuple[float, float], ...]:
    """Offsets (arcsec along the detector x/y axes) of ``n`` dithered exposures of one filter.

    Patterns like HAP's: 1 exposure undithered; 2 or 3 exposures on a line of half-pixel steps
    (ACS-WFC-DITHER-LINE, ``DITHERS``); 4 or more on the 4-point box (``DITHER_BOX``), repeated
    with a secondary line offset of half the line step for every further group of four (so 8
    exposures = box x 2-point line). ``small`` scales the offsets to the sub-array chips (the
    2-exposure pattern is then exactly ``DITHERS_SMALL``).

    Parameters
    ----------
    n : int
        Number of exposures (>= 1).
    small : bool
        Offsets for the ``small`` sub-array sets.

    Returns
    -------
    tuple of (dx, dy)
    """
    if n < 1:
        raise SimulationError(f"exposures per filter must be >= 1, got {n}")
    step = (DITHERS_SMALL if small else DITHERS)[1]
    if n <= 3:
        return tuple((k * step[0], k * step[1]) for k in range(n))
    f = DITHERS_SMALL[1][0] / DITHERS[1][0] if small else 1.0
    return tuple((f * DITHER_BOX[k % 4][0] + (k // 4) * step[0] / 2,
                  f * DITHER_BOX[k % 4][1] + (k // 4) * step[1] / 2) for k in range(n))


@dataclass(frozen=True)
class _Layout:
    """What a set holds beyond the defaults: exposures per filter, filters kept.

    ``None`` means the default (2 exposures; every filter of :data:`VISIT_RECIPES`); only given
    values enter the marker, so default sets keep their identity and bytes.
    """

    exposures_per_filter: int | None = None
    filters: tuple[str, ...] | None = None

    @property
    def nexp(self) -> int:
        return 2 if self.exposures_per_filter is None else self.exposures_per_filter

    def keeps(self, filt: str) -> bool:
        return self.filters is None or filt in self.filters


@dataclass
class SimulatedSet:
    """Paths (absolute) and parameters of a simulated data set."""

    outdir: Path
    skycell: str
    visits: int
    small: bool
    seed: int
    exposures: list[Path]
    svm_pollers: list[Path]
    mvm_poller: Path
    truth_catalog: Path
    true_wcs: Path
    marker: Path
    center: tuple[float, float] = (0.0, 0.0)
    rootnames: list[str] = field(default_factory=list)
    star_density: float | None = None
    crtruth: list[Path] = field(default_factory=list)  # <rootname>_crtruth.fits per exposure
    exposures_per_filter: int | None = None  # None: the default two
    filters: tuple[str, ...] | None = None  # None: every filter of the visit recipes

    @property
    def refcat(self) -> Path:
        """The Gaia-like reference catalog of the set's sky (``gaia_refcat.ecsv``).

        Sets made before the catalog existed get it written on first use (a deterministic
        function of the truth catalog and the seed; temporary name, then renamed).
        """
        path = self.outdir / REFCAT_NAME
        if not path.is_file():
            _write_refcat(self.truth(), self.seed, path)
        return path

    def true_wcs_headers(self) -> dict[tuple[str, int], fits.Header]:
        """The true WCS of every chip, see :func:`read_true_wcs`."""
        return read_true_wcs(self.true_wcs)

    def truth(self) -> Table:
        """The truth catalog."""
        return Table.read(self.truth_catalog, format="ascii.ecsv")


@dataclass(frozen=True)
class _Exposure:
    index: int
    visit: int
    det: str
    filter: str
    exptime: float
    rootname: str
    proposal: int
    program: str
    obset: str
    dither: tuple[float, float]
    expstart: float  # MJD
    linenum: str


@dataclass(frozen=True)
class _Visit:
    index: int
    ra: float
    dec: float
    pa: float
    mjd: float
    err_dx: float  # arcsec east
    err_dy: float  # arcsec north
    err_rot: float  # deg


# --------------------------------------------------------------------------------------------
# skycell geometry


def _normalise_cell(name: str) -> str:
    """``'p1889x07y19'`` for any valid SkyCell name; ``SimulationError`` otherwise."""
    if not isinstance(name, str):
        raise SimulationError(f"SkyCell name must be a string, got {name!r}")
    try:
        cell = SkyCell.from_name(name.strip())
    except ValueError as exc:
        raise SimulationError(str(exc)) from None
    return cell.name.removeprefix("skycell-")


def skycell_center(name: str) -> tuple[float, float]:
    """(ra, dec) in degrees of the centre of SkyCell ``name`` (fine grid)."""
    w = SkyCell.from_name(_normalise_cell(name)).wcs
    nx, ny = w.pixel_shape
    ra, dec = w.all_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
    return float(ra), float(dec)


# --------------------------------------------------------------------------------------------
# planning


def _plan(visits: int, small: bool, seed: int, center: tuple[float, float],
          layout: _Layout = _Layout()) -> tuple[list[_Visit], list[_Exposure]]:
    rng = np.random.default_rng([seed, 2])
    vlist: list[_Visit] = []
    elist: list[_Exposure] = []
    spread = 3.0 if small else 35.0
    per_program: dict[str, int] = {}
    dithers = dither_pattern(layout.nexp, small)
    for v in range(visits):
        dx, dy = rng.uniform(-spread, spread, 2)
        ra, dec = ins.offset_position(center[0], center[1], float(dx), float(dy))
        pa = float(rng.uniform(0.0, 360.0))
        mjd = 57000.0 + 397.0 * v + float(rng.uniform(0.0, 60.0))
        amp = float(rng.uniform(0.1, 0.5))
        ang = float(rng.uniform(0.0, 2 * math.pi))
        rot = float(rng.uniform(-0.01, 0.01))
        vlist.append(_Visit(v, ra, dec, pa, mjd, amp * math.sin(ang), amp * math.cos(ang), rot))
        recipe = VISIT_RECIPES[v % len(VISIT_RECIPES)]
        t = mjd
        k = 0
        for det_key, filt, exptime in recipe:
            if not layout.keeps(filt):
                continue
            instr = ins.DETECTORS[det_key].instrume
            proposal, program = PROGRAMS[instr]
            for d in dithers:
                per_program[program] = per_program.get(program, 0) + 1
                obset = f"{v + 1:02d}"
                expid = f"{'abcdefghjk'[k // 9]}{k % 9 + 1}"
                root = f"{ins.DETECTORS[det_key].rootname_prefix}{program}{obset}{expid}q"
                elist.append(_Exposure(len(elist), v, det_key, filt, exptime, root, proposal,
                                       program, obset, d, t, f"{obset}.{k + 1:03d}"))
                t += (exptime + 150.0) / 86400.0
                k += 1
    return vlist, elist


def _exposure_headers(tmpl: ins.Template, exp: _Exposure, visit: _Visit, *, small: bool,
                      nchips: int) -> tuple[list[fits.Header], list[fits.Header], float]:
    """Nominal (header) and true chip headers for ``exp``; also the PA_V3 to record."""
    # dithered pointing: offset along the detector axes of chip 1 at the visit roll
    p = math.radians(visit.pa)
    ddx, ddy = exp.dither
    east = ddx * math.cos(p) + ddy * math.sin(p)
    north = -ddx * math.sin(p) + ddy * math.cos(p)
    ra, dec = ins.offset_position(visit.ra, visit.dec, east, north)
    rot = ins.rotation_between(tmpl.ref_radec[0], tmpl.ref_radec[1], tmpl.ref_pa, ra, dec, visit.pa)
    # pointing error: shift + rotation about the visit centre
    tra, tdec = ins.offset_position(visit.ra, visit.dec, visit.err_dx, visit.err_dy)
    err = ins.rotation_between(visit.ra, visit.dec, 0.0, tra, tdec, visit.err_rot)
    nominal, true = [], []
    for c in range(nchips):
        h = tmpl.sci[c].copy()
        ins.rotate_header_wcs(h, rot)
        nominal.append(h)
        t = h.copy()
        ins.rotate_header_wcs(t, err)
        true.append(t)
    pa_v3 = (float(tmpl.primary.get("PA_V3", 0.0)) + visit.pa - tmpl.ref_pa) % 360.0
    return nominal, true, pa_v3


# --------------------------------------------------------------------------------------------
# rendering


def _psf_covs(det: ins.Detector) -> list[tuple[float, float]]:
    """PSF components as (fraction, variance in arcsec^2)."""
    return [(frac, (det.fwhm * w / 2.354820045) ** 2) for frac, w in sky.PSF_COMPONENTS]


def _render_chip(shape: tuple[int, int], wcs_true: WCS, cat: Table, ra: np.ndarray,
                 dec: np.ndarray, det: ins.Detector, filt: ins.Filter,
                 exptime: float, nominal_scale: float) -> np.ndarray:
    """Noise-free, flat-fielded source image (electrons in ``exptime``) of one chip.

    Each source's counts are its true counts divided by the pixel-area factor where it falls,
    ``PAM = (true pixel area) / nominal_scale**2`` (see the module docstring); ``nominal_scale``
    is the chip's ``IDCSCALE`` (arcsec).
    """
    ny, nx = shape
    image = np.zeros(shape, dtype=np.float64)
    # preselect sources near the chip
    cra, cdec = wcs_true.all_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
    scale = math.sqrt(abs(np.linalg.det(wcs_true.pixel_scale_matrix))) * 3600.0
    radius = 0.5 * math.hypot(nx, ny) * scale + 10.0
    d0 = math.radians(cdec)
    cosd = np.cos(np.radians(dec)) * math.cos(d0) * np.cos(np.radians(ra - cra)) + np.sin(
        np.radians(dec)) * math.sin(d0)
    sel = np.flatnonzero(np.degrees(np.arccos(np.clip(cosd, -1, 1))) * 3600.0 < radius)
    if sel.size == 0:
        return image
    r, d = ra[sel], dec[sel]
    step = 0.5 / 3600.0
    xy = wcs_true.all_world2pix(np.column_stack([r, d]), 0, tolerance=1e-8, maxiter=60,
                                quiet=True)
    xe = wcs_true.all_world2pix(np.column_stack([r + step / np.cos(np.radians(d)), d]), 0,
                                tolerance=1e-8, maxiter=60, quiet=True)
    xn = wcs_true.all_world2pix(np.column_stack([r, d + step]), 0, tolerance=1e-8, maxiter=60,
                                quiet=True)
    jac = np.stack([(xe - xy) / 0.5, (xn - xy) / 0.5], axis=2)  # (n, 2[x,y], 2[east,north])
    margin = 30
    inside = ((xy[:, 0] > -margin) & (xy[:, 0] < nx + margin) & (xy[:, 1] > -margin)
              & (xy[:, 1] < ny + margin) & np.isfinite(xy).all(axis=1))
    sel, xy, jac = sel[inside], xy[inside], jac[inside]
    if sel.size == 0:
        return image
    mag = np.asarray(cat[f"mag_{filt.name.lower()}"], dtype=float)[sel]
    flux = 10.0 ** (-0.4 * (mag - filt.zp_ab)) * exptime
    # flat-fielding convention: true pixel area (arcsec^2) at the source = 1 / |det jac|
    pam = 1.0 / (np.abs(np.linalg.det(jac)) * nominal_scale ** 2)
    flux = flux / pam
    is_gal = np.asarray(cat["type"])[sel] == "galaxy"

    covs, fracs, owner = [], [], []
    psf = _psf_covs(det)
    eye = np.eye(2)
    for k in np.flatnonzero(~is_gal):
        for frac, var in psf:
            covs.append(var * eye)
            fracs.append(frac)
            owner.append(k)
    n_all = np.asarray(cat["sersic_n"], dtype=float)[sel]
    re_all = np.asarray(cat["r_eff"], dtype=float)[sel]
    q_all = np.asarray(cat["axis_ratio"], dtype=float)[sel]
    pa_all = np.radians(np.asarray(cat["pa"], dtype=float)[sel])
    for k in np.flatnonzero(is_gal):
        mfrac, msig = sky.sersic_mixture(float(n_all[k]))
        u = np.array([math.sin(pa_all[k]), math.cos(pa_all[k])])
        w = np.array([u[1], -u[0]])
        shape_m = np.outer(u, u) + q_all[k] ** 2 * np.outer(w, w)
        for fm, sm in zip(mfrac, msig, strict=True):
            base = (sm * re_all[k]) ** 2 * shape_m
            for frac, var in psf:
                covs.append(base + var * eye)
                fracs.append(fm * frac)
                owner.append(k)
    owner_a = np.asarray(owner)
    cov = np.asarray(covs)
    ia, ib, ic, norm, smax = render.pixel_components(cov, jac[owner_a])
    halfsize = np.minimum(np.ceil(4.0 * smax), 200).astype(np.int64)
    smin = 1.0 / np.sqrt(np.maximum(ia, ic))  # ~ smallest width along the axes
    nsub = np.where(smin < 1.0, 5, np.where(smin < 2.0, 3, 1)).astype(np.int64)
    render.render_gaussians(image, np.ascontiguousarray(xy[owner_a, 0]),
                            np.ascontiguousarray(xy[owner_a, 1]),
                            flux[owner_a] * np.asarray(fracs), ia, ib, ic, norm, halfsize, nsub)
    return image


def _defects(det: ins.Detector, chip: int, window: tuple[int, int, int, int], seed: int,
             det_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hot pixels (x, y, excess e-/s) and bad columns of a chip, in window pixel coordinates.

    Defects are a property of the detector: they are drawn for the full chip (so every exposure and
    every window of a chip shares them) and then cut to ``window``.
    """
    x0, y0, nx, ny = window
    full = det.shape
    rng = np.random.default_rng([seed, 4, det_index, chip])
    nhot = int(0.002 * full[0] * full[1])
    hx = rng.integers(0, full[0], nhot)
    hy = rng.integers(0, full[1], nhot)
    rate = rng.exponential(0.2, nhot)
    badcols = rng.integers(0, full[0], 3)
    keep = (hx >= x0) & (hx < x0 + nx) & (hy >= y0) & (hy < y0 + ny)
    cols = badcols[(badcols >= x0) & (badcols < x0 + nx)] - x0
    return np.column_stack([hx[keep] - x0, hy[keep] - y0]), rate[keep], cols


def cosmic_ray_events(rng: np.random.Generator, shape: tuple[int, int], exptime: float,
                      pixel_um: float, rate: float = ins.CR_RATE) -> dict[str, np.ndarray]:
    """Draw the cosmic-ray events of one chip exposure.

    The number of events is Poisson with mean ``rate`` (events/cm^2/s) x chip area x ``exptime``.
    Tracks start uniformly on the chip, have random directions, lengths 1 + Exp(2.5) pixels (capped
    at 40) and deposit :data:`CR_MIN_DEPOSIT_E` (80) + LogNormal(median 500 e-, sigma 0.7) electrons
    in each pixel they cross.
    """
    ny, nx = shape
    area_cm2 = nx * ny * (pixel_um * 1e-4) ** 2
    n = int(rng.poisson(rate * area_cm2 * exptime))
    return {
        "x0": rng.uniform(-0.5, nx - 0.5, n),
        "y0": rng.uniform(-0.5, ny - 0.5, n),
        "length": np.minimum(rng.exponential(2.5, n), 39.0),
        "angle": rng.uniform(0.0, 2 * math.pi, n),
        "deposit": CR_MIN_DEPOSIT_E + np.exp(rng.normal(math.log(500.0), 0.7, n)),
    }


def _noisy_chip(model_e: np.ndarray, det: ins.Detector, filt: ins.Filter, exptime: float,
                hot: np.ndarray, hot_rate: np.ndarray, badcols: np.ndarray,
                rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Turn a noise-free source image (e-) into calibrated SCI, ERR (BUNIT units), DQ and the
    cosmic-ray truth (uint8, 1 = CR charge in SCI; all 0 for IR, whose ramp fit removed the hits).

    ``model_e`` is overwritten (it becomes the collected counts); the noise is drawn in blocks of
    rows so that no full-chip temporaries beyond the outputs are needed.
    """
    ny, nx = model_e.shape
    counts = model_e
    dq = np.zeros((ny, nx), dtype=np.int16)
    counts += (filt.sky + det.dark) * exptime
    if hot.size:
        counts[hot[:, 1], hot[:, 0]] += hot_rate * exptime
        dq[hot[:, 1], hot[:, 0]] |= ins.DQ_HOT
    for y0 in range(0, ny, 256):
        blk = counts[y0:y0 + 256]
        blk[...] = rng.poisson(blk) + rng.normal(0.0, det.readnoise, blk.shape)
    events = cosmic_ray_events(rng, (ny, nx), exptime, det.pixel_um)
    hit = np.zeros((ny, nx), dtype=np.uint8)
    is_ir = det.bunit.endswith("/S")
    render.cosmic_ray_tracks(counts, hit, events["x0"], events["y0"], events["length"],
                             events["angle"], events["deposit"], not is_ir)
    if is_ir:
        dq[hit.view(bool)] |= ins.DQ_CR_IR  # up-the-ramp fitting removed the hit, flagged it
        hit[...] = 0
    if det.full_well > 0 and (counts > det.full_well).any():
        sat = np.zeros((ny, nx), dtype=np.uint8)
        render.bleed_saturated(counts, det.full_well, sat)
        dq[sat.view(bool)] |= ins.DQ_SATURATED
        del sat
    if badcols.size:
        counts[:, badcols] *= 0.3
        dq[:, badcols] |= ins.DQ_BAD_DETECTOR
    scale = 1.0 / exptime if is_ir else 1.0
    # bias and (mean) dark removed, sky kept
    sci = np.subtract(counts, det.dark * exptime, dtype=np.float32)
    if is_ir:
        sci *= np.float32(scale)
    np.maximum(counts, 0.0, out=counts)
    counts += det.readnoise ** 2
    np.sqrt(counts, out=counts)
    err = counts.astype(np.float32)
    if is_ir:
        err *= np.float32(scale)
    return sci, err, dq, hit


# --------------------------------------------------------------------------------------------
# headers and files


def _mjd_to_date_time(mjd: float) -> tuple[str, str]:
    iso = Time(mjd, format="mjd", scale="utc").isot
    return iso[:10], iso[11:19]


def _s_region(w: WCS, nx: int, ny: int) -> str:
    corners = np.array([[-0.5, -0.5], [nx - 0.5, -0.5], [nx - 0.5, ny - 0.5], [-0.5, ny - 0.5]])
    radec = w.all_pix2world(corners, 0)
    return format_s_region([radec], digits=9)


_LINEAR_WCS = ("WCSAXES", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CD1_1", "CD1_2", "CD2_1",
               "CD2_2")


def _primary_header(tmpl: ins.Template, exp: _Exposure, visit: _Visit, pa_v3: float,
                    nextend: int, filt: ins.Filter, cell: str, small: bool) -> fits.Header:
    det = tmpl.det
    h = tmpl.primary.copy()
    date_obs, time_obs = _mjd_to_date_time(exp.expstart)
    fname = f"{exp.rootname}_{det.suffix}.fits"
    values = {
        "ORIGIN": "hapdask.simulate", "DATE": _mjd_to_date_time(exp.expstart + 3.0)[0],
        "NEXTEND": nextend, "FILENAME": fname, "FILETYPE": "SCI", "TELESCOP": "HST",
        "INSTRUME": det.instrume, "ROOTNAME": exp.rootname, "IMAGETYP": "EXT",
        "PRIMESI": det.instrume, "TARGNAME": f"SIM-{cell.upper()}",
        "RA_TARG": visit.ra, "DEC_TARG": visit.dec, "PROPOSID": exp.proposal,
        "LINENUM": exp.linenum, "FGSLOCK": "FINE", "GYROMODE": "T", "MTFLAG": "",
        "DATE-OBS": date_obs, "TIME-OBS": time_obs, "EXPSTART": exp.expstart,
        "EXPEND": exp.expstart + exp.exptime / 86400.0, "EXPTIME": exp.exptime,
        "EXPFLAG": "NORMAL", "QUALITY": "", "PA_V3": pa_v3,
        "POSTARG1": exp.dither[0], "POSTARG2": exp.dither[1], "OBSTYPE": "IMAGING",
        "OBSMODE": "ACCUM" if det.detector != "IR" else "MULTIACCUM",
        "SUBARRAY": small, "DETECTOR": det.detector,
        "APERTURE": f"{det.detector}{'-SIM-SUB' if small else ''}",
        "DRIZCORR": "COMPLETE", "CCDGAIN": det.gain, "ASN_ID": "NONE", "ASN_TAB": "NONE",
        "PHOTFLAM": filt.photflam, "PHOTPLAM": filt.pivot, "PHOTZPT": -21.1,
    }
    if det.instrume == "WFC3":
        values["FILTER"] = filt.name
        values["SCAN_TYP"] = "N"
        if det.detector == "UVIS":
            values["CHINJECT"] = "NONE"
    else:
        f1, f2 = ACS_WHEELS[filt.name]
        values["FILTER1"] = f1
        values["FILTER2"] = f2
    if det.detector == "IR":
        values["SAMP_SEQ"] = "SPARS25"
        values["NSAMP"] = max(2, int(round(exp.exptime / 25.0)) + 1)
    for amp in "ABCD":
        values[f"READNSE{amp}"] = det.readnoise
        values[f"ATODGN{amp}"] = det.gain
    for key, val in values.items():
        h[key] = val
    h["SIMULATD"] = (True, "simulated by hapdask; pixels use the true WCS")
    return h


def _build_hdul(tmpl: ins.Template, exp: _Exposure, visit: _Visit, nominal: list[fits.Header],
                true: list[fits.Header], pa_v3: float, cat: Table, cell: str, small: bool,
                seed: int, det_index: int) -> tuple[fits.HDUList, fits.HDUList]:
    """The exposure's MEF and its cosmic-ray truth file (see the module docstring)."""
    det = tmpl.det
    filt = ins.FILTERS[(det.key, exp.filter)]
    nchips = len(nominal)
    extra_names = list(tmpl.extra[0].keys())
    nextend = nchips * (3 + len(extra_names)) + len(tmpl.luts)
    primary = _primary_header(tmpl, exp, visit, pa_v3, nextend, filt, cell, small)
    hdus: list[fits.hdu.base.ExtensionHDU | fits.PrimaryHDU] = [fits.PrimaryHDU(header=primary)]
    truth_hdr = fits.Header()
    truth_hdr["ROOTNAME"] = exp.rootname
    truth_hdr["CRTRUTH"] = (True, "hapdask simulated cosmic-ray truth, 1 = CR")
    truth_hdr["CRMINE"] = (CR_MIN_DEPOSIT_E, "[e-] smallest CR charge in a flagged pixel")
    truth: list[fits.hdu.base.ExtensionHDU | fits.PrimaryHDU] = [fits.PrimaryHDU(header=truth_hdr)]
    epoch = 2000.0 + (exp.expstart - 51544.5) / 365.25
    ra, dec = sky.positions_at_epoch(cat, epoch)
    for c in range(nchips):
        x0, y0, nx, ny = tmpl.windows[c]
        w_true = tmpl.repointed_wcs(c, true[c])
        model = _render_chip((ny, nx), w_true, cat, ra, dec, det, filt, exp.exptime,
                             float(true[c]["IDCSCALE"]))
        hot, hot_rate, cols = _defects(det, c, tmpl.windows[c], seed, det_index)
        rng = np.random.default_rng([seed, 3, exp.index, c])
        sci, err, dq, crhit = _noisy_chip(model, det, filt, exp.exptime, hot, hot_rate, cols, rng)
        del model
        thdr = fits.Header()
        thdr["EXTNAME"] = "CRMASK"
        thdr["EXTVER"] = c + 1
        truth.append(fits.ImageHDU(crhit, header=thdr))
        del crhit
        shdr = nominal[c].copy()
        w_nom = tmpl.repointed_wcs(c, shdr)
        shdr["EXTNAME"] = "SCI"
        shdr["EXTVER"] = c + 1
        shdr["ROOTNAME"] = exp.rootname
        shdr["EXPNAME"] = exp.rootname
        shdr["BUNIT"] = det.bunit
        if "CCDCHIP" not in shdr:  # WFC3/IR headers have none; readers default to 1
            shdr.set("CCDCHIP", 1, "CCD chip (simulator: single-chip detector)", after="BUNIT")
        shdr["ORIENTAT"] = ins.orientat(shdr)
        shdr["PA_APER"] = shdr["ORIENTAT"]
        ra_c, dec_c = w_nom.all_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
        shdr["RA_APER"] = float(ra_c)
        shdr["DEC_APER"] = float(dec_c)
        shdr["PHOTMODE"] = f"{det.instrume} {det.detector} {filt.name}"
        shdr["PHOTFLAM"] = filt.photflam
        shdr["PHOTPLAM"] = filt.pivot
        shdr["PHOTZPT"] = -21.1
        shdr["S_REGION"] = _s_region(w_nom, nx, ny)
        shdr["SKYLEVEL"] = (filt.sky if det.detector == "IR" else filt.sky * exp.exptime,
                            "simulated sky level in BUNIT")
        good = (dq & int(shdr.get("SDQFLAGS", 31743))) == 0
        ngood = int(good.sum())
        _set_stats(shdr, sci, good, ngood, snr=sci / np.maximum(err, 1e-30))
        hdus.append(fits.ImageHDU(sci, header=shdr))
        for name, data in (("ERR", err), ("DQ", dq)):
            hdr = (tmpl.err if name == "ERR" else tmpl.dq)[c].copy()
            hdr["EXTNAME"] = name
            hdr["EXTVER"] = c + 1
            hdr["ROOTNAME"] = exp.rootname
            hdr["EXPNAME"] = exp.rootname
            hdr["BUNIT"] = det.bunit if name == "ERR" else "UNITLESS"
            for key in _LINEAR_WCS:
                hdr[key] = shdr[key]
            hdr["CTYPE1"], hdr["CTYPE2"] = "RA---TAN", "DEC--TAN"
            hdr["LTV1"], hdr["LTV2"] = shdr["LTV1"], shdr["LTV2"]
            if name == "ERR":
                _set_stats(hdr, err, good, ngood)
            hdus.append(fits.ImageHDU(data, header=hdr))
        for name, hdr0 in tmpl.extra[c].items():
            hdr = hdr0.copy()
            hdr["EXTNAME"] = name
            hdr["EXTVER"] = c + 1
            hdr["ROOTNAME"] = exp.rootname
            if name == "SAMP":
                data = np.full((ny, nx), primary["NSAMP"] - 1, dtype=np.int16)
            else:
                data = np.full((ny, nx), exp.exptime, dtype=np.float32)
            hdus.append(fits.ImageHDU(data, header=hdr))
    for lut in tmpl.luts:
        hdus.append(lut.copy())
    return fits.HDUList(hdus), fits.HDUList(truth)


def _write_refcat(truth: Table, seed: int, path: Path) -> None:
    """Write the Gaia-like catalog of ``truth`` to ``path`` (temporary name, then rename)."""
    refcat = sky.gaia_like_catalog(truth, np.random.default_rng([seed, 5]))
    part = path.with_name(path.name + ".part")
    refcat.write(part, format="ascii.ecsv", overwrite=True)
    os.replace(part, path)


def _set_stats(hdr: fits.Header, data: np.ndarray, good: np.ndarray, ngood: int,
               snr: np.ndarray | None = None) -> None:
    """The calwf3/calacs image statistics keywords (NGOODPIX, GOODMIN/MAX/MEAN, SNR*)."""
    hdr["NGOODPIX"] = (ngood, "number of good pixels")
    vals = data[good] if ngood else np.zeros(1, dtype=np.float32)
    hdr["GOODMIN"] = (float(vals.min()), "minimum value of good pixels")
    hdr["GOODMAX"] = (float(vals.max()), "maximum value of good pixels")
    hdr["GOODMEAN"] = (float(vals.mean(dtype=np.float64)), "mean value of good pixels")
    if snr is not None:
        s = snr[good] if ngood else np.zeros(1)
        hdr["SNRMIN"] = (float(s.min()), "minimum signal to noise of good pixels")
        hdr["SNRMAX"] = (float(s.max()), "maximum signal to noise of good pixels")
        hdr["SNRMEAN"] = (float(s.mean(dtype=np.float64)), "mean value of signal to noise")


_TRUE_KEYS_FIXED = ("WCSAXES", "CTYPE1", "CTYPE2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2",
                    "CD1_1", "CD1_2", "CD2_1", "CD2_2", "A_ORDER", "B_ORDER", "AP_ORDER",
                    "BP_ORDER")


def _true_wcs_keys(hdr: fits.Header) -> fits.Header:
    out = fits.Header()
    for key in hdr:
        if key in _TRUE_KEYS_FIXED or key[:2] in ("A_", "B_") or key[:3] in ("AP_", "BP_"):
            out[key] = hdr[key]
    out["WCSNAME"] = "SIMULATED-TRUE"
    return out


def read_true_wcs(path: str | os.PathLike[str]) -> dict[tuple[str, int], fits.Header]:
    """Read the true WCS side file of a simulated set.

    Parameters
    ----------
    path : path-like
        The set's ``true_wcs.fits``.

    Returns
    -------
    dict
        ``(rootname, sci_extver) -> Header`` holding the chip's true linear WCS and SIP keywords
        (CTYPE, CRPIX [1-based, FITS], CRVAL, CD, A_*/B_*) with ``WCSNAME = 'SIMULATED-TRUE'``.
        The NPOL/D2IM lookup tables are unchanged by pointing errors, so the chip's full true WCS is
        its file header updated with these keywords, read with the file's lookup extensions (see
        :func:`true_chip_wcs`).
    """
    path = Path(path)
    out: dict[tuple[str, int], fits.Header] = {}
    try:
        with fits.open(path) as hdul:
            if hdul[0].header.get("SIMWCS") is not True:
                raise ValueError(f"{path}: not a hapdask true-WCS file (PRIMARY lacks SIMWCS = T)")
            for i, hdu in enumerate(hdul[1:], start=1):
                h = hdu.header
                if h.get("EXTNAME") != "TRUEWCS" or "ROOTNAME" not in h or "SCIEXT" not in h:
                    raise ValueError(
                        f"{path}: HDU {i} is not a TRUEWCS header with ROOTNAME/SCIEXT")
                out[(str(h["ROOTNAME"]).strip(), int(h["SCIEXT"]))] = _true_wcs_keys(h)
    except OSError as exc:
        raise OSError(f"{path}: cannot read the true-WCS file: {exc}") from exc
    return out


def true_chip_wcs(exposure: str | os.PathLike[str], extver: int,
                  true_headers: dict[tuple[str, int], fits.Header]) -> WCS:
    """Full-distortion true WCS of chip ``('SCI', extver)`` of a simulated exposure."""
    with fits.open(exposure) as hdul:
        root = str(hdul[0].header["ROOTNAME"]).strip()
        key = (root, int(extver))
        if key not in true_headers:
            raise KeyError(f"{exposure}: no true WCS for {key}")
        hdr = hdul["SCI", extver].header.copy()
        for k in [k for k in hdr if k[:2] in ("A_", "B_") or k[:3] in ("AP_", "BP_")]:
            hdr.remove(k, ignore_missing=True, remove_all=True)
        hdr.update(true_headers[key])
        return WCS(hdr, fobj=hdul)


# --------------------------------------------------------------------------------------------
# the public entry points


def _params(skycell: str, visits: int, small: bool, seed: int,
            star_density: float | None = None, layout: _Layout = _Layout()) -> dict:
    out = {"skycell": skycell, "visits": visits, "small": small, "seed": seed,
           "format_version": FORMAT_VERSION}
    # optional ones only when given: sets made without them keep their identity (and bytes)
    if star_density is not None:
        out["star_density"] = float(star_density)
    if layout.exposures_per_filter is not None:
        out["exposures_per_filter"] = int(layout.exposures_per_filter)
    if layout.filters is not None:
        out["filters"] = list(layout.filters)
    return out


def _set_params(s: SimulatedSet) -> dict:
    """The marker parameters of a loaded set (to compare with a request)."""
    layout = _Layout(s.exposures_per_filter, s.filters)
    return _params(s.skycell, s.visits, s.small, s.seed, s.star_density, layout)


def _check_layout(exposures_per_filter: int | None, filters) -> _Layout:
    """Validate the layout options of :func:`simulate_visits` (``SimulationError`` naming them)."""
    if exposures_per_filter is not None:
        n = exposures_per_filter
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or not (
                1 <= n <= MAX_EXPOSURES_PER_FILTER):
            raise SimulationError(
                f"exposures_per_filter must be an integer from 1 to {MAX_EXPOSURES_PER_FILTER}, "
                f"got {n!r}")
        exposures_per_filter = int(n)
    if filters is not None:
        if isinstance(filters, str):
            filters = [f for f in filters.split(",") if f.strip()]
        known = sorted({f for recipe in VISIT_RECIPES for _, f, _ in recipe})
        wanted = tuple(sorted({str(f).strip().upper() for f in filters}))
        bad = [f for f in wanted if f not in known]
        if bad or not wanted:
            raise SimulationError(f"filters: unknown filter(s) {bad or list(filters)}; the visit "
                                  f"recipes have {', '.join(known)}")
        filters = wanted
    return _Layout(exposures_per_filter, filters)


def _check_args(skycell: str, visits: int, seed: int) -> str:
    cell = _normalise_cell(skycell)
    if isinstance(visits, bool) or not isinstance(visits, int | np.integer) or visits < 1:
        raise SimulationError(f"visits must be a positive integer, got {visits!r}")
    if visits > 99:
        raise SimulationError(f"visits must be at most 99 (2-digit visit ids), got {visits}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise SimulationError(f"seed must be a non-negative integer, got {seed!r}")
    return cell


def load_set(outdir: str | os.PathLike[str]) -> SimulatedSet:
    """Load a complete simulated set from its directory (checks the marker and the files).

    Raises
    ------
    FileNotFoundError
        No ``simulate.json`` marker.
    ValueError
        The marker is unreadable, or a listed file is missing or has the wrong size.
    """
    outdir = Path(outdir).resolve()
    marker = outdir / MARKER
    if not marker.is_file():
        raise FileNotFoundError(f"{outdir}: not a hapdask simulated set (no {MARKER})")
    try:
        info = json.loads(marker.read_text())
        params = info["params"]
        sizes = info["sizes"]
        if not info.get("complete"):
            raise ValueError("the set is marked incomplete")
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{marker}: invalid simulate marker: {exc}") from exc
    for name, size in sizes.items():
        p = outdir / name
        if not p.is_file() or p.stat().st_size != size:
            raise ValueError(f"{marker}: listed file {p} is missing or has changed size")
    return SimulatedSet(
        outdir=outdir, skycell=params["skycell"], visits=params["visits"], small=params["small"],
        seed=params["seed"], exposures=[outdir / n for n in info["exposures"]],
        svm_pollers=[outdir / n for n in info["svm_pollers"]],
        mvm_poller=outdir / info["mvm_poller"], truth_catalog=outdir / TRUTH_NAME,
        true_wcs=outdir / TRUE_WCS_NAME, marker=marker, center=tuple(info["center"]),
        rootnames=list(info["rootnames"]), star_density=params.get("star_density"),
        crtruth=[outdir / n for n in info.get("crtruth", [])],
        exposures_per_filter=params.get("exposures_per_filter"),
        filters=tuple(params["filters"]) if params.get("filters") else None,
    )


def simulate_visits(skycell: str, outdir: str | os.PathLike[str], *, visits: int = 4,
                    small: bool = False, seed: int = 0,
                    star_density: float | None = None,
                    exposures_per_filter: int | None = None,
                    filters: Iterable[str] | str | None = None) -> SimulatedSet:
    """Simulate ``visits`` HST visits overlapping ``skycell`` and write them to ``outdir``.

    Parameters
    ----------
    skycell : str
        SkyCell name, ``'p1889x07y19'`` or ``'skycell-p1889x07y19'``.
    outdir : path-like
        Output directory. It must not exist, be empty, or hold a complete set made with the same
        parameters (then that set is returned unchanged). Anything else raises ``FileExistsError``.
    visits : int
        Number of visits (1-99). Visits cycle through :data:`VISIT_RECIPES`: WFC3 UVIS F475W + IR
        F160W; IR F105W + F125W; ACS/WFC F775W + F850LP; UVIS F475W + IR F125W + F160W; two dithered
        exposures per filter (see ``exposures_per_filter``); each visit has its own roll, epoch
        (about 13 months apart from 2014-12) and pointing error.
    small : bool
        Sub-array chips (UVIS/ACS 2 x 512x256, IR 256x256) and a compact field, for tests.
    seed : int
        Random seed; the output is a deterministic function of all the parameters.
    star_density : float, optional
        Stars per square arcminute, all magnitudes (17.5-26 AB); default 30 (150 with
        ``small``). About 3 % of them are brighter than G = 21 and enter ``gaia_refcat.ecsv``.
    exposures_per_filter : int, optional
        Dithered exposures of each filter in a visit (1-30; default 2), on the offsets of
        :func:`dither_pattern` (HAP-like line / box patterns). Each exposure has its own noise and
        cosmic rays (and CR truth). Default sets are unchanged by this option.
    filters : iterable of str or comma-separated str, optional
        Keep only these filters of the visit recipes (e.g. ``["F775W"]``: the ACS/WFC F775W
        exposures of visit 3); visits left without a filter have no exposures. The sky, visit
        pointings and the kept exposures' geometry are those of the full set.

    Returns
    -------
    SimulatedSet
    """
    cell = _check_args(skycell, visits, seed)
    layout = _check_layout(exposures_per_filter, filters)
    if star_density is not None and not (isinstance(star_density, int | float)
                                         and math.isfinite(star_density) and star_density >= 0):
        raise SimulationError(f"star_density must be a non-negative number, got {star_density!r}")
    outdir = Path(outdir).expanduser().resolve()
    params = _params(cell, int(visits), bool(small), int(seed), star_density, layout)
    if outdir.exists():
        if not outdir.is_dir():
            raise FileExistsError(f"{outdir}: exists and is not a directory")
        if any(outdir.iterdir()):
            try:
                existing = load_set(outdir)
            except FileNotFoundError:
                raise FileExistsError(
                    f"{outdir}: directory is not empty and was not made by 'hapdask simulate'; "
                    "choose an empty or new directory") from None
            except ValueError as exc:
                raise FileExistsError(
                    f"{outdir}: holds an incomplete or modified simulated set ({exc}); remove it "
                    "or choose another directory") from None
            old = _set_params(existing)
            if old != params:
                raise FileExistsError(
                    f"{outdir}: holds a simulated set with different parameters {old}; "
                    f"requested {params}")
            return existing
    outdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.tmp-", dir=outdir.parent))
    try:
        _write_set(tmp, outdir, cell, int(visits), bool(small), int(seed), star_density, layout)
        try:
            if outdir.exists():
                outdir.rmdir()  # empty (checked above); fails if something appeared meanwhile
            os.rename(tmp, outdir)
        except OSError:
            # another process (e.g. a concurrent demo_dataset) may have finished the same set
            try:
                other = load_set(outdir)
            except (OSError, ValueError):
                raise FileExistsError(
                    f"{outdir}: files appeared in the output directory while simulating; "
                    "nothing was overwritten") from None
            if _set_params(other) != params:
                raise FileExistsError(
                    f"{outdir}: another simulated set appeared while simulating") from None
            shutil.rmtree(tmp, ignore_errors=True)
            return other
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_set(outdir)


def _write_set(tmp: Path, final: Path, cell: str, visits: int, small: bool, seed: int,
               star_density: float | None = None, layout: _Layout = _Layout()) -> None:
    center = skycell_center(cell)
    vlist, elist = _plan(visits, small, seed, center, layout)
    if not elist:
        raise SimulationError(f"filters {list(layout.filters or [])}: no visit of {visits} has "
                              "them (visits cycle through VISIT_RECIPES)")
    templates = {key: ins.load_template(key, small=small) for key in ins.DETECTORS}
    det_index = {key: i for i, key in enumerate(ins.DETECTORS)}

    # nominal/true headers first: they decide the catalog's extent
    geo = []
    far = 0.0
    for exp in elist:
        tmpl = templates[exp.det]
        nominal, true, pa_v3 = _exposure_headers(tmpl, exp, vlist[exp.visit], small=small,
                                                 nchips=len(tmpl.sci))
        geo.append((nominal, true, pa_v3))
        for c, (h, (_, _, nx, ny)) in enumerate(zip(nominal, tmpl.windows, strict=True)):
            w = tmpl.repointed_wcs(c, h)
            corners = w.all_pix2world(np.array([[0, 0], [nx, 0], [nx, ny], [0, ny]]), 0)
            for ra, dec in corners:
                v = ins.unit_vector(ra, dec) @ ins.unit_vector(*center)
                far = max(far, math.degrees(math.acos(min(1.0, v))) * 3600.0)
    filters = {f.name: f.pivot for f in ins.FILTERS.values()}
    stars, gals = DENSITY[small]
    if star_density is not None:
        stars = float(star_density)
    cat = sky.make_truth_catalog(np.random.default_rng([seed, 1]), center[0], center[1],
                                 far + 15.0, filters, star_density=stars, galaxy_density=gals)
    cat.meta["skycell"] = cell
    cat.meta["seed"] = seed
    cat.write(tmp / TRUTH_NAME, format="ascii.ecsv")
    _write_refcat(cat, seed, tmp / REFCAT_NAME)

    true_hdus: list[fits.ImageHDU] = []
    names: list[str] = []
    crnames: list[str] = []
    for exp, (nominal, true, pa_v3) in zip(elist, geo, strict=True):
        tmpl = templates[exp.det]
        hdul, crtruth = _build_hdul(tmpl, exp, vlist[exp.visit], nominal, true, pa_v3, cat, cell,
                                    small, seed, det_index[exp.det])
        name = f"{exp.rootname}_{tmpl.det.suffix}.fits"
        hdul.writeto(tmp / name)
        names.append(name)
        crtruth.writeto(tmp / f"{exp.rootname}{CRTRUTH_SUFFIX}")
        crnames.append(f"{exp.rootname}{CRTRUTH_SUFFIX}")
        visit = vlist[exp.visit]
        for c, h in enumerate(true):
            th = _true_wcs_keys(h)
            th["EXTNAME"] = "TRUEWCS"
            th["ROOTNAME"] = exp.rootname
            th["SCIEXT"] = (c + 1, "EXTVER of the SCI extension")
            th["CCDCHIP"] = h.get("CCDCHIP", 1)
            th["FILENAME"] = name
            th["ERR_DX"] = (visit.err_dx, "pointing error, arcsec east (visit centre)")
            th["ERR_DY"] = (visit.err_dy, "pointing error, arcsec north")
            th["ERR_ROT"] = (visit.err_rot, "pointing error, rotation deg about visit centre")
            th["EPOCH"] = (2000.0 + (exp.expstart - 51544.5) / 365.25, "Julian year")
            true_hdus.append(fits.ImageHDU(header=th))
    phdr = fits.Header()
    phdr["SIMWCS"] = (True, "hapdask simulated set: true chip WCS")
    phdr["SKYCELL"] = cell
    phdr["SEED"] = seed
    fits.HDUList([fits.PrimaryHDU(header=phdr), *true_hdus]).writeto(tmp / TRUE_WCS_NAME)

    # pollers (absolute final paths)
    svm_names = []
    by_visit: dict[int, list[int]] = {}
    for i, exp in enumerate(elist):
        by_visit.setdefault(exp.visit, []).append(i)
    mvm_rows = []
    for v, idx in sorted(by_visit.items()):
        instr_groups: dict[str, list[str]] = {}
        for i in idx:
            exp = elist[i]
            det = ins.DETECTORS[exp.det]
            filt = exp.filter if det.instrume == "WFC3" else ";".join(ACS_WHEELS[exp.filter])
            base = [names[i], str(exp.proposal), exp.program.upper(), exp.obset,
                    f"{exp.exptime:g}", filt, det.detector]
            path = str(final / names[i])
            instr_groups.setdefault(f"{det.instrume.lower()}_{exp.program}_{exp.obset}", []).append(
                ",".join([*base, path]))
            mvm_rows.append(",".join([*base, f"skycell-{cell}", "NEW", path]))
        for stem, rows in instr_groups.items():
            pname = f"{stem}_input.out"
            (tmp / pname).write_text("\n".join(rows) + "\n")
            svm_names.append(pname)
        del v
    mvm_name = f"skycell-{cell}_input.out"
    (tmp / mvm_name).write_text("\n".join(mvm_rows) + "\n")

    files = [*names, *crnames, *svm_names, mvm_name, TRUTH_NAME, TRUE_WCS_NAME, REFCAT_NAME]
    info = {
        "format": "hapdask-simulate",
        "params": _params(cell, visits, small, seed, star_density, layout),
        "center": list(center),
        "exposures": names,
        "rootnames": [e.rootname for e in elist],
        "crtruth": crnames,
        "svm_pollers": svm_names,
        "mvm_poller": mvm_name,
        "visits": [asdict(v) for v in vlist],
        "sizes": {n: (tmp / n).stat().st_size for n in files},
        "complete": True,
    }
    (tmp / MARKER).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")


#: Parameters of the built-in demo set (see :func:`demo_dataset`).
DEMO_PARAMS = {"visits": 4, "small": False, "seed": 0}


def default_demo_dir(skycell: str) -> Path:
    """Cache folder of the demo set.

    ``$HAPDASK_DEMO_DIR/<cell>-v<FORMAT_VERSION>`` if that variable is set, else
    ``~/.cache/hapdask/demo/<cell>-v<FORMAT_VERSION>``.
    """
    base = os.environ.get("HAPDASK_DEMO_DIR")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "hapdask" / "demo"
    return root / f"{_normalise_cell(skycell)}-v{FORMAT_VERSION}"


def demo_dataset(skycell: str = "p1889x07y19",
                 cache_dir: str | os.PathLike[str] | None = None) -> SimulatedSet:
    """The built-in demo data for ``hapdask mvm``: simulated once, then reused from a cache.

    Parameters
    ----------
    skycell : str
        SkyCell to simulate for (default the docs' example ``p1889x07y19``).
    cache_dir : path-like, optional
        Folder holding the set; default :func:`default_demo_dir`. A complete set with the demo
        parameters (:data:`DEMO_PARAMS`: 4 visits, full size, seed 0) found there is reused. A
        damaged set (our marker present, but files missing or changed) is removed and simulated
        again. A folder with foreign content, or with a set of other parameters, raises
        ``FileExistsError`` and is left alone.

    Returns
    -------
    SimulatedSet
    """
    cell = _normalise_cell(skycell)
    target = Path(cache_dir).expanduser().resolve() if cache_dir else default_demo_dir(cell)
    demo = DEMO_PARAMS
    params = _params(cell, demo["visits"], demo["small"], demo["seed"])
    if target.is_dir() and any(target.iterdir()):
        try:
            existing = load_set(target)
        except FileNotFoundError:
            raise FileExistsError(
                f"{target}: demo cache folder holds files not made by hapdask simulate") from None
        except ValueError:
            shutil.rmtree(target)  # our own set, damaged: simulate it again
        else:
            old = _set_params(existing)
            if old == params:
                return existing
            raise FileExistsError(
                f"{target}: demo cache folder holds a simulated set with other parameters {old}")
    try:
        return simulate_visits(cell, target, visits=demo["visits"], small=demo["small"],
                               seed=demo["seed"])
    except FileExistsError:
        # another process finished the same set first
        return load_set(target)
