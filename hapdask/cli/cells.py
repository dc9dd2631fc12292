"""``hapdask cells``: SkyCell geometry and footprint look-ups (issue: foundation / skycells)."""

from __future__ import annotations

import argparse
import re
import warnings
from pathlib import Path

from hapdask.cli import CLIError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hapdask cells``."""
    p = sub.add_parser("cells", help="show a SkyCell, or list the SkyCells an exposure touches")
    p.add_argument("name", nargs="?", help="SkyCell name, e.g. p1889x07y19 or skycell-p1889x07y19")
    p.add_argument("--scale", default="fine", help="fine, coarse or arcsec/pixel (default fine)")
    p.add_argument("--footprint", metavar="FILE", help="FITS exposure whose SkyCells to list")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``hapdask cells``."""
    if args.footprint and args.name:
        raise CLIError("give either a SkyCell NAME or --footprint FILE, not both")
    if args.footprint:
        for name in footprint_cells(args.footprint):
            print(name)
        return 0
    if not args.name:
        raise CLIError("give a SkyCell NAME (e.g. p1889x07y19) or --footprint FILE")
    print(describe_cell(args.name, args.scale))
    return 0


def describe_cell(name: str, scale: str = "fine") -> str:
    """Text report of a SkyCell: WCS keywords (FITS 1-based CRPIX), size and corners."""
    from skycells import SkyCell

    cell = SkyCell.from_name(name, scale=scale)
    pc = cell.projection_cell
    ny, nx = cell.shape
    size_x = nx * cell.scale / 60.0
    size_y = ny * cell.scale / 60.0
    label = {0.04: " (fine)", 0.12: " (coarse)"}.get(cell.scale, "")
    lines = [
        f"{cell.name}  projection cell {pc.name} (ring {pc.ring}), x={cell.x}, y={cell.y}",
        f"scale     {cell.scale!r} arcsec/pixel{label}",
        f"size      {nx} x {ny} pixels = {size_x:.4f} x {size_y:.4f} arcmin",
        "WCS (FITS, 1-based CRPIX):",
        f"  NAXIS1  = {nx}",
        f"  NAXIS2  = {ny}",
        "  CTYPE1  = 'RA---TAN'",
        "  CTYPE2  = 'DEC--TAN'",
        f"  CRVAL1  = {cell.crval[0]!r}",
        f"  CRVAL2  = {cell.crval[1]!r}",
        f"  CRPIX1  = {cell.crpix[0]!r}",
        f"  CRPIX2  = {cell.crpix[1]!r}",
        f"  CD1_1   = {float(cell.cd[0, 0])!r}",
        f"  CD1_2   = {float(cell.cd[0, 1])!r}",
        f"  CD2_1   = {float(cell.cd[1, 0])!r}",
        f"  CD2_2   = {float(cell.cd[1, 1])!r}",
        "corners (outer pixel edges; RA, Dec in deg):",
    ]
    labels = ("x min, y min", "x max, y min", "x max, y max", "x min, y max")
    for lab, (ra, dec) in zip(labels, cell.corners, strict=True):
        lines.append(f"  {lab}:  {ra:12.7f} {dec:+12.7f}")
    return "\n".join(lines)


#: Header keywords the primary WCS (with SIP, NPOL and D2IM distortion) is built from.
_WCS_KEY = re.compile(
    r"(WCSAXES|NAXIS[12]?|CTYPE[12]|CRVAL[12]|CRPIX[12]|CD[12]_[12]|PC[12]_[12]|CDELT[12]"
    r"|CUNIT[12]|CROTA[12]|PV[12]_\d+|LONPOLE|LATPOLE|RADESYS|EQUINOX|MJD-OBS|DATE-OBS"
    r"|[AB]P?_\d_\d|[AB]P?_ORDER|[AB]_DMAX|CPDIS[12]|CPERR[12]|DP[12]|D2IMDIS[12]|D2IMERR[12]"
    r"|D2IM[12]|D2IMEXT|NPOLEXT|EXTNAME|EXTVER)"
)


def _wcs_header(hdr):
    """The primary-WCS cards of ``hdr`` (astropy's WCS parser is slow on 200-card headers)."""
    from astropy.io import fits

    return fits.Header(
        [c for c in hdr.cards if _WCS_KEY.fullmatch(c.keyword.split(".", 1)[0])]
    )


def footprint_cells(path: str | Path) -> list[str]:
    """SkyCells touched by all SCI chips of a FITS exposure (full distortion when present).

    Raises
    ------
    OSError
        If the file cannot be opened as FITS.
    ValueError
        If it has no usable SCI chip WCS.
    """
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    from skycells import cells_for_footprint

    path = str(path)
    try:
        hdul = fits.open(path, memmap=False)
    except FileNotFoundError:
        raise OSError(f"{path}: no such file") from None
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError... on bad files
        raise OSError(f"{path}: cannot read as FITS: {exc}") from None
    with hdul:
        try:
            sci = [h for h in hdul if h.name == "SCI" and h.is_image]
        except Exception as exc:
            raise OSError(f"{path}: cannot read as FITS: {exc}") from None
        if not sci:
            if len(hdul) == 1 and hdul[0].header.get("NAXIS", 0) == 2:
                sci = [hdul[0]]
            else:
                raise ValueError(f"{path}: no SCI image extensions")
        wcss = []
        for h in sci:
            where = f"{path}[{h.name},{h.ver}]"
            hdr = h.header
            nx = hdr.get("NAXIS1") or hdr.get("SIZAXIS1")
            ny = hdr.get("NAXIS2") or hdr.get("SIZAXIS2")
            if not nx or not ny:
                raise ValueError(f"{where}: no NAXIS1/NAXIS2: cannot tell the chip size")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FITSFixedWarning)
                    w = WCS(_wcs_header(hdr), fobj=hdul)
            except Exception as exc:
                raise ValueError(f"{where}: invalid WCS: {exc}") from None
            if not w.has_celestial:
                raise ValueError(f"{where}: no celestial WCS")
            w.pixel_shape = (int(nx), int(ny))
            wcss.append(w)
        try:
            return cells_for_footprint(wcss)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
