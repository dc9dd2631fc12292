"""Run DrizzlePac's ``runsinglehap`` (or ``runmultihap``) offline, with a local reference catalog.

DrizzlePac asks a web service for its astrometric reference catalog
(``drizzlepac.haputils.astrometric_utils.get_catalog`` / ``get_catalog_from_footprint``, a
``requests.get`` of ``<ASTROMETRIC_CATALOG_URL>/vo/CatalogSearch.aspx``) and, through
``stwcs.updatewcs``, an astrometry database for a-priori WCS solutions. This wrapper, meant to
run in the side environment of ``benchmarks/setup_drizzlepac_env.sh`` (drizzlepac 3.11 with
photutils < 3):

* answers every catalog request from a local file (``--refcat``, e.g. the simulator's
  ``gaia_refcat.ecsv``) through :class:`hapdask.align.catalog.FileCatalog`, the same code that
  answers ``hapdask svm --refcat``: same selection polygon rule, same proper-motion propagation
  and the same per-source weights (``RA_error = DEC_error = sqrt(1 / (2 weight))``, so
  DrizzlePac's ``1 / (RA_error**2 + DEC_error**2)`` equals hapdask's weight);
* switches the astrometry database off (``ASTROMETRY_STEP_CONTROL=OFF``);
* refuses every other network connection (socket level: anything but loopback), so a run that
  silently depended on the network fails loudly instead;
* with ``--sky-repair``, repairs AstroDrizzle's sky matching: stsci.skypac 1.0.12 calls
  ``SphericalPolygon.iter_polygons_flat``, which spherical_geometry 1.4 lacks; the AttributeError
  is caught by ``drizzlepac.sky`` and ``skymethod="match"`` silently becomes ``"localmin"``,
  which subtracts the absolute sky from HAP's filter and total products (run 3 of
  ``runsinglehap_reference.md``). The repair adds the method as iteration over the polygon's
  parts, as ``benchmarks/bench_drizzle.py`` and ``hapdask.testing.astrodrizzle_run`` do.

Only catalogs whose name starts with ``--serve-prefix`` (default ``GAIA``) are answered from the
file; other catalogs (GSC242, 2MASS) get an empty answer, as a service without that sky would
give.

Usage (cwd = the directory runsinglehap should work and write in; inputs already there)::

    /work/venvs/dp311/bin/python benchmarks/_runsinglehap_offline.py POLLER --refcat CAT
    ... --multi POLLER --refcat CAT        # runmultihap instead

Not a module of the package: it is imported by nothing and only run as a script.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from pathlib import Path

import numpy as np
from astropy.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hapdask.align.catalog import FileCatalog  # noqa: E402  (after the path set-up above)

#: Columns of the catalog web service's CSV answer for the Gaia catalogs (what
#: ``astrometric_utils.SUPPORTED_CATALOGS['GAIAEDR3']`` renames).
SERVICE_COLUMNS = ("ra", "dec", "ra_error", "dec_error", "pmra", "pmra_error", "pmdec",
                   "pmdec_error", "mag", "objID", "epoch")

#: Catalog requests seen, printed at the end (catalog, epoch, number of rows served).
REQUESTS: list[tuple[str, float | None, int]] = []


def _is_local(address: object) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return isinstance(host, str) and host.startswith("/")  # unix socket path


def block_network() -> None:
    """Make every non-loopback socket connection fail with a message naming the address."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: object) -> None:
        if self.family == socket.AF_UNIX or _is_local(address):
            return real_connect(self, address)
        raise ConnectionRefusedError(f"offline wrapper: network connection to {address} refused")

    def connect_ex(self: socket.socket, address: object) -> int:
        if self.family == socket.AF_UNIX or _is_local(address):
            return real_connect_ex(self, address)
        raise ConnectionRefusedError(f"offline wrapper: network connection to {address} refused")

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]


def _circle(ra: float, dec: float, radius: float, n: int = 90) -> np.ndarray:
    """Polygon (n, 2) ra/dec approximating a cone of ``radius`` degrees (circumscribed)."""
    r = radius / np.cos(np.pi / n)
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.column_stack([ra + r * np.sin(t) / np.cos(np.radians(dec)), dec + r * np.cos(t)])


class LocalService:
    """Answers DrizzlePac's catalog requests from a local file, in the service's CSV columns."""

    def __init__(self, path: str, serve_prefix: str = "GAIA") -> None:
        self.catalog = FileCatalog(path)
        self.prefix = serve_prefix.upper()
        self._row = {int(i): k for k, i in enumerate(np.asarray(self.catalog.ids))}

    def answer(self, polygon: np.ndarray, epoch: float | None, catalog: str) -> Table:
        c = self.catalog
        served = catalog.upper().startswith(self.prefix)
        ep = float(epoch) if epoch else float(np.median(c.ref_epoch))
        q = c.query(polygon, ep) if served else c.query(polygon, ep)[:0]
        idx = np.array([self._row[int(i)] for i in q["objID"]], dtype=int)
        err = np.sqrt(1.0 / (2.0 * np.asarray(q["weight"], float)))
        t = Table()
        t["ra"] = np.asarray(q["RA"], float)
        t["dec"] = np.asarray(q["DEC"], float)
        t["ra_error"] = err
        t["dec_error"] = err
        t["pmra"] = c.pmra[idx]
        t["pmra_error"] = c.pmra_error[idx]
        t["pmdec"] = c.pmdec[idx]
        t["pmdec_error"] = c.pmdec_error[idx]
        t["mag"] = np.asarray(q["mag"], float)
        t["objID"] = np.asarray(q["objID"], dtype=np.int64)
        t["epoch"] = np.full(len(q), ep)
        REQUESTS.append((catalog, epoch, len(t)))
        print(f"offline wrapper: served {len(t)} {catalog} sources at epoch {ep:.3f} "
              f"from {c.path}", flush=True)
        return t


def repair_sky_match() -> bool:
    """Give SphericalPolygon the ``iter_polygons_flat`` stsci.skypac calls (True if added)."""
    from spherical_geometry.polygon import SphericalPolygon

    if hasattr(SphericalPolygon, "iter_polygons_flat"):
        return False
    SphericalPolygon.iter_polygons_flat = lambda self: iter(self)
    return True


def install(refcat: str, serve_prefix: str = "GAIA", sky_repair: bool = False) -> LocalService:
    """Patch drizzlepac's catalog queries and stwcs' astrometry database; block the network;
    repair the sky matching (module docstring)."""
    os.environ["ASTROMETRY_STEP_CONTROL"] = "OFF"
    block_network()
    if sky_repair and repair_sky_match():
        print("offline wrapper: SphericalPolygon.iter_polygons_flat added (skymatch 'match')",
              flush=True)
    from drizzlepac.haputils import astrometric_utils as amutils

    service = LocalService(refcat, serve_prefix)

    def get_catalog(ra: float, dec: float, sr: float = 0.1, epoch: float | None = None,
                    catalog: str = "GSC241") -> Table:
        return service.answer(_circle(float(ra), float(dec), float(sr)), epoch, catalog)

    def get_catalog_from_footprint(footprint: np.ndarray, epoch: float | None = None,
                                   catalog: str = "GSC241") -> Table:
        return service.answer(np.asarray(footprint, float), epoch, catalog)

    amutils.get_catalog = get_catalog
    amutils.get_catalog_from_footprint = get_catalog_from_footprint
    return service


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("poller", help="SVM (8-column) or MVM poller file")
    ap.add_argument("--refcat", required=True, help="local reference catalog (ECSV, FITS, CSV)")
    ap.add_argument("--serve-prefix", default="GAIA",
                    help="answer catalogs whose name starts with this from --refcat (GAIA)")
    ap.add_argument("--multi", action="store_true", help="runmultihap instead of runsinglehap")
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--sky-repair", action="store_true",
                    help="let skymatch 'match' run instead of AstroDrizzle's silent 'localmin' "
                         "fall-back (module docstring)")
    a = ap.parse_args(argv)
    install(a.refcat, a.serve_prefix, sky_repair=a.sky_repair)
    if a.multi:
        from drizzlepac import runmultihap as task
    else:
        from drizzlepac import runsinglehap as task
    rv = task.perform(a.poller, log_level=a.log_level)
    print(f"offline wrapper: catalog requests {REQUESTS}", flush=True)
    print(f"offline wrapper: return value {rv}", flush=True)
    return int(rv or 0)


if __name__ == "__main__":
    sys.exit(main())
