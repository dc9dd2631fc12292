"""Oracle tests against DrizzlePac's ``haputils.cell_utils`` (skipped if it cannot be imported)."""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from skycells import SkyCell, cells_for_footprint

cell_utils = pytest.importorskip("drizzlepac.haputils.cell_utils")

NAMES = ["p1889x07y19", "p0000x01y01", "p0000x11y11", "p0009x21y01", "p2643x21y21",
         "p1100x11y03", "p1929x01y21", "p0046x04y19"]  # fmt: skip


@pytest.mark.parametrize("scale", ["fine", "coarse", 0.08])
def test_from_name_wcs_is_bit_identical(scale):
    for name in NAMES:
        ref = cell_utils.SkyCell.from_name(f"skycell-{name}", scale=scale).wcs
        ours = SkyCell.from_name(name, scale=scale).wcs
        assert list(ours.wcs.crpix) == list(ref.wcs.crpix), name
        assert list(ours.wcs.crval) == list(ref.wcs.crval), name
        assert ours.wcs.cd.tolist() == ref.wcs.cd.tolist(), name
        assert tuple(ours.pixel_shape) == tuple(ref.pixel_shape), name


def _tan_header(ra, dec, nx, ny, scale, rot):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    s = scale / 3600.0
    c, si = math.cos(math.radians(rot)), math.sin(math.radians(rot))
    w.wcs.cd = np.array([[-s * c, s * si], [s * si, s * c]])
    return w.to_header()


def _write_ir(path, ra, dec, rot, root):
    ph = fits.PrimaryHDU()
    ph.header.update(INSTRUME="WFC3", DETECTOR="IR", ROOTNAME=root, EXPTIME=100.0)
    h = _tan_header(ra, dec, 1014, 1014, 0.128, rot)
    h.update(WCSNAME="TEST", EXPNAME=root, EXTVER=1, EXPTIME=100.0)
    fits.HDUList([ph, fits.ImageHDU(np.zeros((1014, 1014), np.float32), h, name="SCI")]).writeto(
        path
    )
    w = WCS(h)
    w.pixel_shape = (1014, 1014)
    return w


def _edge_distance(name, w, n=200):
    """min over footprint samples of the signed distance (fine px, > 0 outside) to the cell."""
    cell = SkyCell.from_name(name).wcs
    gx, gy = np.meshgrid(np.linspace(-0.5, 1013.5, n), np.linspace(-0.5, 1013.5, n))
    ra, dec = w.all_pix2world(gx.ravel(), gy.ravel(), 0)
    x, y = cell.wcs_world2pix(ra, dec, 0)
    d = np.maximum.reduce([-0.5 - x, x - 21953.5, -0.5 - y, y - 21953.5])
    return d.min()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_get_sky_cells_agrees_away_from_documented_deviations(tmp_path, monkeypatch):
    """A WFC3/IR-size exposure on the corner shared by 4 skycells."""
    logging.getLogger("drizzlepac").setLevel(logging.WARNING)
    corner = SkyCell.from_name("p1889x07y19").wcs
    ra, dec = corner.wcs_pix2world([21700.0], [21700.0], 0)  # inside the 512-px x/y overlap
    monkeypatch.chdir(tmp_path)
    w1 = _write_ir("ib4606cpq_flt.fits", float(ra[0]), float(dec[0]), 17.0, "ib4606cpq")
    ref = set(cell_utils.get_sky_cells([os.fspath(tmp_path / "ib4606cpq_flt.fits")]))
    ours = set(cells_for_footprint(w1))
    assert {f"skycell-p1889x{x:02d}y{y:02d}" for x in (7, 8) for y in (19, 20)} <= ours
    assert any(n.startswith("skycell-p1970") for n in ours)  # ring 30 overlaps here too
    tol = 3.0 + 0.128 / 0.04 * 1014 / 199  # 3 fine px + the sample spacing
    for name in ours - ref:  # we say overlap: it must be a sliver of at most ~3 px
        assert _edge_distance(name, w1) > -tol, name
    for name in ref - ours:  # drizzlepac says overlap: footprint must be within ~3 px
        assert _edge_distance(name, w1) < tol, name
    assert len(ours ^ ref) <= 1, (sorted(ours), sorted(ref))
