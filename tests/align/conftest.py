"""Fixtures of the alignment tests: one small, star-rich simulated visit and its alignment."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from hapdask.align import align
from hapdask.simulate import read_true_wcs, simulate_visits, true_chip_wcs

#: Stars per square arcmin of the test sky: ~3 % are G < 21, i.e. 10-30 reference stars per
#: exposure of the small (20" x 20") sub-array chips.
DENSITY = 3000.0


@pytest.fixture(scope="session")
def visit(tmp_path_factory):
    """One simulated visit (2 WFC3/UVIS + 2 WFC3/IR exposures, small chips), seed 7."""
    return simulate_visits("p1889x07y19", tmp_path_factory.mktemp("align") / "set", visits=1,
                           small=True, seed=7, star_density=DENSITY)


@pytest.fixture(scope="session")
def aligned(visit):
    """The visit aligned to its Gaia-like catalog."""
    return align(visit.mvm_poller, visit.refcat)


def fitted_wcs(path, extver: int, update: fits.Header | None) -> WCS:
    """A chip's WCS with an update applied like a headerlet (SIP replaced, lookups kept)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(path) as hdul:
            hdr = hdul["SCI", extver].header.copy()
            if update is not None:
                for k in [k for k in hdr if k[:2] in ("A_", "B_") or k[:3] in ("AP_", "BP_")]:
                    hdr.remove(k, remove_all=True)
                hdr.update(update)
            return WCS(hdr, fobj=hdul)


@pytest.fixture(scope="session")
def true_error():
    """``true_error(sset, path, extver, update, shape)`` (see :func:`true_error_mas`)."""
    return true_error_mas


def true_error_mas(sset, path, extver: int, update: fits.Header | None,
                   shape: tuple[int, int], n: int = 9) -> np.ndarray:
    """Sky distance (mas) between fitted and true WCS on an n x n grid of chip pixels."""
    truth = true_chip_wcs(path, extver, read_true_wcs(sset.true_wcs))
    w = fitted_wcs(path, extver, update)
    ny, nx = shape
    gx, gy = np.meshgrid(np.linspace(0, nx - 1, n), np.linspace(0, ny - 1, n))
    r1, d1 = w.all_pix2world(gx.ravel(), gy.ravel(), 0)
    r2, d2 = truth.all_pix2world(gx.ravel(), gy.ravel(), 0)
    dra = ((r1 - r2 + 180.0) % 360.0 - 180.0) * np.cos(np.radians(d2))
    return np.hypot(dra, d1 - d2) * 3.6e6
