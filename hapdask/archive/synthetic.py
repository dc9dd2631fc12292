"""Synthetic archive-like inventories (for tests and ``benchmarks/bench_fullsky.py``).

Exposures come in visits of a few dithered exposures around fields; fields are concentrated
in a few hundred "popular" regions (like the real archive's deep fields and nearby galaxies)
plus a uniform sprinkle over the sphere. Chips are the real detectors' sizes: ACS/WFC two
202" x 100" chips, WFC3/UVIS two 162" x 80" chips, WFC3/IR one 136" x 123" chip; each chip is
one ``POLYGON ICRS`` in ``s_region`` (4 vertices, great-circle sides).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["DETECTORS", "chip_polygons", "synthetic_inventory"]

#: instrument_name -> (filters, chips as (x offset, y offset, width, height) arcsec)
DETECTORS: dict[str, tuple[tuple[str, ...], tuple[tuple[float, float, float, float], ...]]] = {
    "ACS/WFC": (("F606W;CLEAR2L", "CLEAR1L;F814W", "F435W;CLEAR2L", "CLEAR1L;F850LP"),
                ((0.0, 51.0, 202.0, 100.0), (0.0, -51.0, 202.0, 100.0))),
    "WFC3/UVIS": (("F606W", "F814W", "F475W", "F275W"),
                  ((0.0, 41.0, 162.0, 80.0), (0.0, -41.0, 162.0, 80.0))),
    "WFC3/IR": (("F160W", "F125W", "F110W", "F105W"), ((0.0, 0.0, 136.0, 123.0),)),
}


def _tangent_to_radec(ra0: np.ndarray, dec0: np.ndarray, xi: np.ndarray, eta: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Inverse gnomonic projection; xi (east), eta (north) in degrees about (ra0, dec0)."""
    a0, d0 = np.radians(ra0), np.radians(dec0)
    x, y = np.radians(xi), np.radians(eta)
    den = np.cos(d0) - y * np.sin(d0)
    ra = a0 + np.arctan2(x, den)
    dec = np.arctan2(np.sin(d0) + y * np.cos(d0), np.hypot(x, den))
    return np.mod(np.degrees(ra), 360.0), np.degrees(dec)


def chip_polygons(ra: np.ndarray, dec: np.ndarray, pa: np.ndarray,
                  chips: tuple[tuple[float, float, float, float], ...]) -> np.ndarray:
    """(N, nchips, 4, 2) RA/Dec vertices of rectangular chips about N pointings."""
    out = np.empty((len(ra), len(chips), 4, 2))
    c, s = np.cos(np.radians(pa)), np.sin(np.radians(pa))
    for k, (ox, oy, w, h) in enumerate(chips):
        px = ox + np.array([-w, w, w, -w]) / 2.0
        py = oy + np.array([-h, -h, h, h]) / 2.0
        xi = (c[:, None] * px - s[:, None] * py) / 3600.0
        eta = (s[:, None] * px + c[:, None] * py) / 3600.0
        r, d = _tangent_to_radec(ra[:, None], dec[:, None], xi, eta)
        out[:, k, :, 0] = r
        out[:, k, :, 1] = d
    return out


def synthetic_inventory(n: int, *, seed: int = 0, popular: int = 300,
                        popular_fraction: float = 0.7, path_prefix: str = "") -> pd.DataFrame:
    """An archive-like inventory of ``n`` exposures (columns of ``read_inventory``).

    Parameters
    ----------
    n : int
        Exposures.
    seed : int
        Random seed (the table is a deterministic function of the arguments).
    popular : int
        Number of popular fields.
    popular_fraction : float
        Fraction of the visits in popular fields (within ~0.3 deg of their centres).
    path_prefix : str
        ``path`` column: ``<prefix><obs_id>_flt.fits`` when given, else empty.
    """
    rng = np.random.default_rng(seed)
    per_visit = 4
    nvis = -(-n // per_visit)
    fra = rng.uniform(0, 360, popular)
    fdec = np.degrees(np.arcsin(rng.uniform(-1, 1, popular)))
    in_pop = rng.random(nvis) < popular_fraction
    which = rng.integers(0, popular, nvis)
    u_ra = rng.uniform(0, 360, nvis)
    u_dec = np.degrees(np.arcsin(rng.uniform(-1, 1, nvis)))
    off = rng.normal(0, 0.15, (nvis, 2))
    p_ra, p_dec = _tangent_to_radec(fra[which], fdec[which], off[:, 0], off[:, 1])
    vra = np.where(in_pop, p_ra, u_ra)
    vdec = np.where(in_pop, p_dec, u_dec)
    vpa = rng.uniform(0, 360, nvis)
    names = list(DETECTORS)
    vdet = rng.choice(len(names), nvis, p=[0.45, 0.3, 0.25])
    vidx = np.repeat(np.arange(nvis), per_visit)[:n]
    dith = rng.normal(0, 2.0, (n, 2)) / 3600.0
    ra, dec = _tangent_to_radec(vra[vidx], vdec[vidx], dith[:, 0], dith[:, 1])
    pa = vpa[vidx]
    det = vdet[vidx]
    s_region = np.empty(n, dtype=object)
    filters = np.empty(n, dtype=object)
    instrument = np.empty(n, dtype=object)
    for d, name in enumerate(names):
        sel = np.flatnonzero(det == d)
        if sel.size == 0:
            continue
        filt, chips = DETECTORS[name]
        polys = chip_polygons(ra[sel], dec[sel], pa[sel], chips)
        flat = polys.reshape(len(sel), -1)
        per_chip = 8
        fmt = " ".join(["POLYGON ICRS" + " %.7f" * per_chip] * len(chips))
        s_region[sel] = [fmt % tuple(v) for v in flat.tolist()]
        filters[sel] = np.array(filt, dtype=object)[rng.integers(0, len(filt), sel.size)]
        instrument[sel] = name
    # unique ipppssoot ids: program (3 base-36 digits) and obset (2) from the visit number
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"

    def b36(v: int, width: int) -> str:
        out = ""
        for _ in range(width):
            v, r = divmod(v, 36)
            out = digits[r] + out
        return out

    obs_id = [f"{'j' if instrument[i] == 'ACS/WFC' else 'i'}{b36(v, 5)}"
              f"{i % per_visit + 1:02d}q" for i, v in enumerate(vidx.tolist())]
    df = pd.DataFrame({
        "obs_id": obs_id,
        "instrument_name": instrument,
        "filters": filters,
        "t_exptime": rng.uniform(100, 1500, n).round(1),
        "t_min": 50000.0 + rng.uniform(0, 10000, n),
        "proposal_id": 10000 + vidx % 7000,
        "s_region": s_region,
    })
    df["path"] = [f"{path_prefix}{o}_flt.fits" for o in obs_id] if path_prefix else ""
    return df
