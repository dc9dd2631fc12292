"""The simulated sky: a truth catalog of stars and galaxies, and their light profiles.

Stars carry proper motions; every position in the catalog is at ``REF_EPOCH`` (Gaia DR3's 2016.0),
so the catalog can serve as the reference astrometric catalog for alignment. Galaxies are Sersic
n=1 (exponential) or n=4 (de Vaucouleurs) profiles, represented as fixed mixtures of concentric
elliptical Gaussians fitted once (non-negative least squares on the radial profile out to 6
half-light radii). Gaussian mixtures make the convolution with the (two-Gaussian) PSF exact and
the rendering cheap.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from astropy.table import Table
from scipy.optimize import nnls

REF_EPOCH = 2016.0

#: PSF model: (fraction of flux, FWHM in units of the instrument FWHM). Core plus a faint halo.
PSF_COMPONENTS = ((0.85, 1.0), (0.15, 3.0))

#: Mixture component widths (sigma / r_eff) used for the Sersic fits.
_MOG_SIGMAS = np.geomspace(0.02, 3.0, 9)


def _sersic_b(n: float) -> float:
    return 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n)


@lru_cache(maxsize=4)
def sersic_mixture(n: float) -> tuple[np.ndarray, np.ndarray]:
    """Return (fractions, sigmas/r_eff) of a Gaussian mixture approximating a Sersic profile.

    The fractions sum to 1 (the mixture's total flux is the source's flux by definition).
    """
    r = np.linspace(0.0, 6.0, 600)[1:]
    target = np.exp(-_sersic_b(n) * (r ** (1.0 / n) - 1.0))
    sig = _MOG_SIGMAS
    basis = np.exp(-0.5 * (r[:, None] / sig[None, :]) ** 2) / (2 * np.pi * sig[None, :] ** 2)
    weight = np.sqrt(r)  # emphasise flux-carrying radii
    amp, _ = nnls(basis * weight[:, None], target * weight)
    keep = amp > 0
    frac = amp[keep] / amp[keep].sum()
    return frac, sig[keep]


def catalog_columns(filters: list[str]) -> list[str]:
    """Names of the magnitude columns for ``filters`` (e.g. ``mag_f475w``)."""
    return [f"mag_{f.lower()}" for f in filters]


def make_truth_catalog(rng: np.random.Generator, ra0: float, dec0: float, radius: float,
                       filters: dict[str, float], *, star_density: float,
                       galaxy_density: float) -> Table:
    """Draw a truth catalog inside a circle.

    Parameters
    ----------
    rng : numpy.random.Generator
        Random generator (the catalog is a deterministic function of its state).
    ra0, dec0 : float
        Centre of the circle, degrees.
    radius : float
        Radius of the circle, arcsec.
    filters : dict
        Filter name -> pivot wavelength (Angstrom); one ``mag_<filter>`` column each.
    star_density, galaxy_density : float
        Sources per square arcminute.

    Returns
    -------
    astropy.table.Table
        Columns: id, type ('star'/'galaxy'), ra, dec (deg, ICRS, at ``REF_EPOCH``), pm_ra
        (mu_alpha* = mu_alpha cos(dec), mas/yr), pm_dec (mas/yr), ref_epoch, mag (AB at 6000 A),
        color (mag per micron of wavelength), mag_<filter> (AB), sersic_n, r_eff (arcsec),
        axis_ratio, pa (deg E of N); the last four are 0 for stars.
    """
    area = math.pi * (radius / 60.0) ** 2
    nstar = int(rng.poisson(star_density * area))
    ngal = int(rng.poisson(galaxy_density * area))
    n = nstar + ngal

    # uniform in the circle (tangent-plane offsets)
    rr = radius * np.sqrt(rng.uniform(0.0, 1.0, n))
    th = rng.uniform(0.0, 2 * np.pi, n)
    dx, dy = rr * np.sin(th), rr * np.cos(th)
    ra, dec = _offsets_to_radec(ra0, dec0, dx, dy)

    # magnitudes: N(<m) ~ 10^(0.3 m) for stars, 10^(0.35 m) for galaxies (faint-end slopes)
    mag = np.empty(n)
    mag[:nstar] = _powerlaw_mags(rng, nstar, 17.5, 26.0, 0.3)
    mag[nstar:] = _powerlaw_mags(rng, ngal, 19.0, 26.5, 0.35)
    color = np.concatenate([rng.normal(0.0, 1.2, nstar), rng.normal(-0.5, 1.0, ngal)])

    pm_ra = np.zeros(n)
    pm_dec = np.zeros(n)
    fast = rng.uniform(size=nstar) < 0.05
    sig = np.where(fast, 25.0, 4.0)
    pm_ra[:nstar] = rng.normal(0.0, 1.0, nstar) * sig
    pm_dec[:nstar] = rng.normal(0.0, 1.0, nstar) * sig - 3.0

    sersic = np.zeros(n)
    reff = np.zeros(n)
    q = np.zeros(n)
    pa = np.zeros(n)
    sersic[nstar:] = np.where(rng.uniform(size=ngal) < 0.7, 1.0, 4.0)
    reff[nstar:] = np.clip(np.exp(rng.normal(math.log(0.25), 0.5, ngal)), 0.05, 1.2)
    # brighter galaxies are bigger
    reff[nstar:] *= np.clip(10 ** (-0.1 * (mag[nstar:] - 23.0)), 0.5, 2.0)
    q[nstar:] = rng.uniform(0.3, 1.0, ngal)
    pa[nstar:] = rng.uniform(0.0, 180.0, ngal)

    kind = np.array(["star"] * nstar + ["galaxy"] * ngal)
    order = np.lexsort((ra, dec))  # spatially sorted, independent of generation order
    t = Table()
    t["id"] = np.arange(1, n + 1)
    t["type"] = kind[order]
    t["ra"] = ra[order]
    t["dec"] = dec[order]
    t["pm_ra"] = pm_ra[order]
    t["pm_dec"] = pm_dec[order]
    t["ref_epoch"] = np.full(n, REF_EPOCH)
    t["mag"] = mag[order]
    t["color"] = color[order]
    for fname, pivot in filters.items():
        t[f"mag_{fname.lower()}"] = (mag + color * (pivot / 1e4 - 0.6))[order]
    t["sersic_n"] = sersic[order]
    t["r_eff"] = reff[order]
    t["axis_ratio"] = q[order]
    t["pa"] = pa[order]
    for col, unit in (("ra", "deg"), ("dec", "deg"), ("pm_ra", "mas / yr"), ("pm_dec", "mas / yr"),
                      ("r_eff", "arcsec"), ("pa", "deg"), ("ref_epoch", "yr")):
        t[col].unit = unit
    t.meta["comments"] = [
        "hapdask simulated truth catalog; positions ICRS at ref_epoch (Julian year)",
        "pm_ra is mu_alpha* = mu_alpha cos(dec); magnitudes AB; galaxies: Sersic profiles",
    ]
    t.meta["ref_epoch"] = REF_EPOCH
    return t


def _powerlaw_mags(rng: np.random.Generator, n: int, lo: float, hi: float,
                   slope: float) -> np.ndarray:
    u = rng.uniform(0.0, 1.0, n)
    a, b = 10 ** (slope * lo), 10 ** (slope * hi)
    return np.log10(a + u * (b - a)) / slope


def _offsets_to_radec(ra0: float, dec0: float, dx: np.ndarray,
                      dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic inverse: tangent-plane offsets (arcsec east, north) -> ra, dec (deg)."""
    xi = np.radians(dx / 3600.0)
    eta = np.radians(dy / 3600.0)
    d0 = math.radians(dec0)
    den = math.cos(d0) - eta * math.sin(d0)
    ra = ra0 + np.degrees(np.arctan2(xi, den))
    dec = np.degrees(np.arctan2(math.sin(d0) + eta * math.cos(d0), np.hypot(xi, den)))
    return ra % 360.0, dec


def positions_at_epoch(cat: Table, epoch: float) -> tuple[np.ndarray, np.ndarray]:
    """Catalog positions (deg) propagated linearly from ``ref_epoch`` to ``epoch`` (Julian year)."""
    dt = epoch - np.asarray(cat["ref_epoch"], dtype=float)
    dec = np.asarray(cat["dec"], dtype=float) + np.asarray(cat["pm_dec"]) * dt / 3.6e6
    cosd = np.cos(np.radians(np.asarray(cat["dec"], dtype=float)))
    ra = np.asarray(cat["ra"], dtype=float) + np.asarray(cat["pm_ra"]) * dt / 3.6e6 / cosd
    return ra, dec


#: Gaia-like reference catalog: magnitude limit and the error model (Gaia DR3-like, mas).
GAIA_G_LIMIT = 21.0


def gaia_errors(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gaia DR3-like uncertainties for G magnitudes ``g``.

    Returns (position error in mas at the reference epoch, proper-motion error in mas/yr):
    about 0.02 mas and 0.03 mas/yr for bright stars, 0.4 mas and 0.5 mas/yr at G = 20,
    1.0 mas and 1.4 mas/yr at G = 21 (Lindegren et al. 2021, fig. 9/10 in shape).
    """
    g = np.asarray(g, dtype=float)
    pos = 0.02 + 0.4 * 10 ** (0.4 * (np.maximum(g, 13.0) - 20.0))
    return pos, 1.35 * pos


def gaia_like_catalog(truth: Table, rng: np.random.Generator,
                      g_limit: float = GAIA_G_LIMIT) -> Table:
    """The reference catalog a Gaia query of the simulated sky would return.

    Stars of ``truth`` with G < ``g_limit`` (default :data:`GAIA_G_LIMIT`; G = AB magnitude at
    6400 A from the truth's ``mag``/``color``), with Gaia archive column names: ``source_id``,
    ``ra``, ``dec`` (deg, epoch ``ref_epoch`` = 2016.0), ``ra_error``/``dec_error`` (mas),
    ``pmra`` (mu_alpha*), ``pmdec``, ``pmra_error``/``pmdec_error`` (mas/yr),
    ``phot_g_mean_mag``. Positions and proper motions carry random errors drawn from
    :func:`gaia_errors` (the listed errors).
    """
    star = np.asarray(truth["type"]) == "star"
    g = np.asarray(truth["mag"], dtype=float) + np.asarray(truth["color"], dtype=float) * 0.04
    sel = np.flatnonzero(star & (g < g_limit))
    g = g[sel]
    epos, epm = gaia_errors(g)
    n = sel.size
    dec0 = np.asarray(truth["dec"], dtype=float)[sel]
    ra_err = epos * rng.normal(size=n)
    dec_err = epos * rng.normal(size=n)
    t = Table()
    t["source_id"] = np.asarray(truth["id"])[sel].astype(np.int64)
    t["ra"] = np.asarray(truth["ra"], dtype=float)[sel] + ra_err / 3.6e6 / np.cos(np.radians(dec0))
    t["dec"] = dec0 + dec_err / 3.6e6
    t["ra_error"] = epos
    t["dec_error"] = epos
    t["pmra"] = np.asarray(truth["pm_ra"], dtype=float)[sel] + epm * rng.normal(size=n)
    t["pmdec"] = np.asarray(truth["pm_dec"], dtype=float)[sel] + epm * rng.normal(size=n)
    t["pmra_error"] = epm
    t["pmdec_error"] = epm
    t["ref_epoch"] = np.full(n, REF_EPOCH)
    t["phot_g_mean_mag"] = g
    for col, unit in (("ra", "deg"), ("dec", "deg"), ("ra_error", "mas"), ("dec_error", "mas"),
                      ("pmra", "mas / yr"), ("pmdec", "mas / yr"), ("pmra_error", "mas / yr"),
                      ("pmdec_error", "mas / yr"), ("ref_epoch", "yr"), ("phot_g_mean_mag", "mag")):
        t[col].unit = unit
    t.meta["catalog"] = "GAIASIM"
    t.meta["comments"] = [f"hapdask simulated Gaia-like catalog of the truth sky "
                          f"(G < {g_limit:g})",
                          "ra/dec at ref_epoch with Gaia DR3-like errors; pmra = mu_alpha*"]
    return t
