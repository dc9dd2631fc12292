"""Instrument models for the simulator: real HST headers and distortion, re-pointed on the sky.

The templates in ``templates/`` are real FLT/FLC headers with their SIP coefficients and
lookup-table extensions (see :mod:`hapdask.simulate.make_templates`). A template is moved to a new
pointing by a rotation of the celestial sphere: every chip's ``CRVAL`` is rotated and its ``CD``
matrix is turned by the angle the rotation induces in the chip's tangent plane. SIP and the
NPOL/D2IM lookup tables stay in the detector frame, which is physically right: the optical
distortion belongs to the camera, not to the sky. Relative chip geometry is preserved exactly.

Photometric, noise and cosmic-ray constants are typical instrument-handbook values (approximate;
they only need to be realistic, not calibrated):

* zero points are AB magnitudes giving 1 e-/s, converted to ``PHOTFLAM``/``PHOTPLAM``;
* sky rates are average zodiacal (+ thermal for IR) backgrounds in e-/s/pixel;
* the cosmic-ray rate is ``CR_RATE`` events per cm^2 per second of exposure on the CCDs (1.2, the
  low-Earth-orbit rate quoted in the WFC3 and ACS instrument handbooks), i.e. about
  2.7e-6 events per 15-micron pixel per second.
"""

from __future__ import annotations

import gzip
import io
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from hapdask.dqflags import DQ_FLAGS

TEMPLATE_DIR = Path(__file__).parent / "templates"

#: Cosmic-ray events per cm^2 per second (CCD detectors; IR hits are flagged, see render.py).
CR_RATE = 1.2

#: HST DQ bit values used by the simulator (from the :mod:`hapdask.dqflags` registry).
_DQ = {flag.name: flag.value for flag in DQ_FLAGS}
DQ_BAD_DETECTOR = _DQ["BAD_DETECTOR"]  # 4: bad columns
DQ_HOT = _DQ["HOT"]  # 16
DQ_SATURATED = _DQ["SATURATED"]  # 256: full well, including the bleed trail
DQ_CR_IR = _DQ["CR_CALIBRATION"]  # 8192: WFC3/IR up-the-ramp CR hit (pixel value repaired)


@dataclass(frozen=True)
class Detector:
    """Fixed properties of one HST detector."""

    key: str  # e.g. "wfc3_uvis"
    instrume: str
    detector: str
    template: str
    suffix: str  # "flc" or "flt"
    bunit: str
    fwhm: float  # PSF FWHM, arcsec
    gain: float
    readnoise: float  # e- per read (effective, per exposure)
    dark: float  # e-/s/pixel
    full_well: float  # e- (0: no saturation modelled)
    pixel_um: float  # physical pixel size, microns
    rootname_prefix: str  # "i" or "j"
    shape: tuple[int, int]  # (nx, ny) of one chip's science array
    small_window: tuple[int, int]  # (nx, ny) of each chip's subarray window in --small mode


DETECTORS: dict[str, Detector] = {
    "wfc3_uvis": Detector("wfc3_uvis", "WFC3", "UVIS", "wfc3_uvis.fits.gz", "flc", "ELECTRONS",
                          0.07, 1.5, 3.1, 0.0015, 63000.0, 15.0, "i", (4096, 2051), (512, 256)),
    "wfc3_ir": Detector("wfc3_ir", "WFC3", "IR", "wfc3_ir.fits.gz", "flt", "ELECTRONS/S",
                        0.14, 2.5, 15.0, 0.05, 0.0, 18.0, "i", (1014, 1014), (256, 256)),
    "acs_wfc": Detector("acs_wfc", "ACS", "WFC", "acs_wfc.fits.gz", "flc", "ELECTRONS",
                        0.09, 2.0, 4.0, 0.006, 84000.0, 15.0, "j", (4096, 2048), (512, 256)),
}


@dataclass(frozen=True)
class Filter:
    """A filter of a detector: AB zero point (1 e-/s), pivot wavelength (A), sky (e-/s/pix)."""

    name: str
    zp_ab: float
    pivot: float
    sky: float

    @property
    def photflam(self) -> float:
        """Inverse sensitivity (erg/cm^2/s/A per e-/s) matching the AB zero point."""
        # ZP_AB = ZP_ST - 5 log10(pivot) + 18.692, ZP_ST = -2.5 log10(PHOTFLAM) - 21.10
        zp_st = self.zp_ab + 5.0 * math.log10(self.pivot) - 18.692
        return 10.0 ** (-0.4 * (zp_st + 21.10))


FILTERS: dict[tuple[str, str], Filter] = {
    ("wfc3_uvis", "F475W"): Filter("F475W", 25.69, 4773.1, 0.06),
    ("wfc3_uvis", "F606W"): Filter("F606W", 26.08, 5889.2, 0.12),
    ("wfc3_ir", "F105W"): Filter("F105W", 26.27, 10552.0, 0.80),
    ("wfc3_ir", "F125W"): Filter("F125W", 26.23, 12486.0, 0.70),
    ("wfc3_ir", "F160W"): Filter("F160W", 25.95, 15369.0, 0.60),
    ("acs_wfc", "F775W"): Filter("F775W", 25.66, 7693.0, 0.09),
    ("acs_wfc", "F850LP"): Filter("F850LP", 24.87, 9033.0, 0.05),
}


# --------------------------------------------------------------------------------------------
# sphere geometry


def unit_vector(ra: float, dec: float) -> np.ndarray:
    """Unit vector of (ra, dec) in degrees."""
    a, d = math.radians(ra), math.radians(dec)
    return np.array([math.cos(d) * math.cos(a), math.cos(d) * math.sin(a), math.sin(d)])


def radec_of(vec: np.ndarray) -> tuple[float, float]:
    """(ra, dec) in degrees of a (not necessarily unit) vector; ra in [0, 360)."""
    x, y, z = vec / np.linalg.norm(vec)
    return math.degrees(math.atan2(y, x)) % 360.0, math.degrees(math.asin(max(-1.0, min(1.0, z))))


def _east_north(ra: float, dec: float) -> tuple[np.ndarray, np.ndarray]:
    a, d = math.radians(ra), math.radians(dec)
    east = np.array([-math.sin(a), math.cos(a), 0.0])
    north = np.array([-math.sin(d) * math.cos(a), -math.sin(d) * math.sin(a), math.cos(d)])
    return east, north


def frame(ra: float, dec: float, pa: float) -> np.ndarray:
    """Orthonormal frame (columns r, u, v) at (ra, dec), u at position angle ``pa`` (deg E of N)."""
    r = unit_vector(ra, dec)
    east, north = _east_north(ra, dec)
    p = math.radians(pa)
    u = math.cos(p) * north + math.sin(p) * east
    return np.column_stack([r, u, np.cross(r, u)])


def offset_position(ra: float, dec: float, dx: float, dy: float) -> tuple[float, float]:
    """Move (ra, dec) by (dx east, dy north) arcsec along great circles (tangent-plane offsets)."""
    r = unit_vector(ra, dec)
    east, north = _east_north(ra, dec)
    t = math.radians(1.0 / 3600.0)
    return radec_of(r + math.tan(dx * t) * east + math.tan(dy * t) * north)


def rotation_between(ra0: float, dec0: float, pa0: float, ra1: float, dec1: float,
                     pa1: float) -> np.ndarray:
    """Rotation matrix taking (ra0, dec0) to (ra1, dec1) and position angle pa0 there to pa1."""
    return frame(ra1, dec1, pa1) @ frame(ra0, dec0, pa0).T


def rotate_header_wcs(header: fits.Header, rot: np.ndarray) -> None:
    """Apply the sky rotation ``rot`` to a chip header's CRVAL/CD in place (SIP/LUTs unchanged)."""
    ra, dec = header["CRVAL1"], header["CRVAL2"]
    new_ra, new_dec = radec_of(rot @ unit_vector(ra, dec))
    east, _ = _east_north(ra, dec)
    e1, n1 = _east_north(new_ra, new_dec)
    moved = rot @ east
    phi = math.atan2(float(moved @ n1), float(moved @ e1))
    c, s = math.cos(phi), math.sin(phi)
    cd = np.array([[header["CD1_1"], header["CD1_2"]], [header["CD2_1"], header["CD2_2"]]])
    cd = np.array([[c, -s], [s, c]]) @ cd
    header["CRVAL1"], header["CRVAL2"] = new_ra, new_dec
    header["CD1_1"], header["CD1_2"] = float(cd[0, 0]), float(cd[0, 1])
    header["CD2_1"], header["CD2_2"] = float(cd[1, 0]), float(cd[1, 1])


def orientat(header: fits.Header) -> float:
    """Position angle (deg E of N) of the chip's +y axis at its reference pixel."""
    return math.degrees(math.atan2(header["CD1_2"], header["CD2_2"])) % 360.0


# --------------------------------------------------------------------------------------------
# templates


@dataclass
class Template:
    """A detector's re-pointable template: headers, lookup-table HDUs and chip windows."""

    det: Detector
    primary: fits.Header
    sci: list[fits.Header]  # one per chip, windowed, NAXIS1/2 set
    err: list[fits.Header]
    dq: list[fits.Header]
    extra: list[dict[str, fits.Header]]  # per chip: SAMP/TIME headers (IR)
    luts: list[fits.ImageHDU]  # WCSDVARR / D2IMARR with data
    windows: list[tuple[int, int, int, int]]  # per chip (x0, y0, nx, ny), 0-based detector pixels
    ref_radec: tuple[float, float]  # sky position of the window set's centre
    ref_pa: float  # ORIENTAT of chip 1 at that position

    def chip_wcs(self, sci: fits.Header) -> WCS:
        """Full-distortion WCS of a chip header (SIP + lookup tables from this template)."""
        return WCS(wcs_only(sci), fobj=fits.HDUList([fits.PrimaryHDU(), *self.luts]))

    def repointed_wcs(self, chip: int, sci: fits.Header) -> WCS:
        """Like :meth:`chip_wcs` for a re-pointed header of chip index ``chip`` (0-based), fast.

        Only CRVAL and CD differ from the template chip, so a copy of the template chip's WCS
        with those replaced is identical to parsing the header, at a fraction of the cost.
        """
        if not hasattr(self, "_base"):
            self._base = [self.chip_wcs(h) for h in self.sci]
        w = self._base[chip].deepcopy()
        w.wcs.crval = [sci["CRVAL1"], sci["CRVAL2"]]
        w.wcs.cd = [[sci["CD1_1"], sci["CD1_2"]], [sci["CD2_1"], sci["CD2_2"]]]
        w.wcs.set()
        return w


_WCS_KEY = re.compile(
    r"^(NAXIS\d?|WCSAXES|CTYPE\d|CRPIX\d|CRVAL\d|CD\d_\d|[AB]P?_\d_\d|[AB]P?_ORDER|CPDIS\d|DP\d|"
    r"D2IMDIS\d|D2IM\d|CPERR\d|D2IMERR\d|WCSNAME)$"
)


def wcs_only(header: fits.Header) -> fits.Header:
    """The WCS-related cards of a chip header (parsing them alone is twice as fast)."""
    return fits.Header([c for c in header.cards if _WCS_KEY.match(c.keyword.split(".")[0])])


@lru_cache(maxsize=8)
def _read_template(name: str) -> bytes:
    path = TEMPLATE_DIR / name
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise OSError(f"simulator template {path} cannot be read: {exc}") from exc


def _window_header(sci: fits.Header, window: tuple[int, int, int, int]) -> fits.Header:
    """A chip header describing the detector sub-array ``window`` (x0, y0, nx, ny; 0-based)."""
    x0, y0, nx, ny = window
    hdr = sci.copy()
    hdr["NAXIS"] = 2
    hdr.set("NAXIS1", nx, after="NAXIS")
    hdr.set("NAXIS2", ny, after="NAXIS1")
    hdr["CRPIX1"] = sci["CRPIX1"] - x0
    hdr["CRPIX2"] = sci["CRPIX2"] - y0
    hdr["LTV1"] = float(sci.get("LTV1", 0.0)) - x0
    hdr["LTV2"] = float(sci.get("LTV2", 0.0)) - y0
    hdr["LTM1_1"] = 1.0
    hdr["LTM2_2"] = 1.0
    return hdr


@lru_cache(maxsize=8)
def load_template(key: str, *, small: bool) -> Template:
    """Load detector ``key``'s template; ``small`` selects sub-array windows near the chip gap.

    The result is cached and shared: callers must copy headers/HDUs before changing them.

    In small mode every chip is cut to ``Detector.small_window`` pixels, centred in x and, for
    two-chip cameras, placed against the inter-chip gap so that the windows of both chips form
    one compact field. Sub-arrays follow the HST convention: ``LTV1/2 = -offset``, ``CRPIX`` shifted
    and the lookup tables' ``CRVAL`` shifted by the offset so the distortion stays tied to the
    detector pixels.
    """
    det = DETECTORS[key]
    hdul = fits.HDUList.fromfile(io.BytesIO(_read_template(det.template)))
    primary = hdul[0].header.copy()
    nchips = sum(1 for h in hdul if h.name == "SCI")
    full = [hdul["SCI", v].header.copy() for v in range(1, nchips + 1)]
    sizes = [det.shape] * nchips
    luts = [h.copy() for h in hdul if h.name in ("WCSDVARR", "D2IMARR")]
    lut_list = fits.HDUList([fits.PrimaryHDU(), *luts])

    windows = []
    for i, (hdr, (nx_full, ny_full)) in enumerate(zip(full, sizes, strict=True)):
        if not small:
            windows.append((0, 0, nx_full, ny_full))
            continue
        nx, ny = det.small_window
        x0 = (nx_full - nx) // 2
        if nchips == 1:
            y0 = (ny_full - ny) // 2
        else:
            # put the window against the edge that faces the other chip
            other = full[1 - i]
            ow = WCS(_window_header(other, (0, 0, *sizes[1 - i])), fobj=lut_list)
            w = WCS(_window_header(hdr, (0, 0, nx_full, ny_full)), fobj=lut_list)
            centre = ow.all_pix2world([[sizes[1 - i][0] / 2, sizes[1 - i][1] / 2]], 0)
            y_other = w.all_world2pix(centre, 0)[0, 1]
            y0 = ny_full - ny if y_other > ny_full / 2 else 0
        windows.append((x0, y0, nx, ny))

    sci = [_window_header(h, w) for h, w in zip(full, windows, strict=True)]
    if small:
        # the lookup tables are indexed by image pixel: shift their origin with the window.
        # Each chip refers to its own table EXTVERs (DPj.EXTVER / D2IMj.EXTVER).
        for hdr, (x0, y0, _, _) in zip(sci, windows, strict=True):
            for key_fmt in ("DP{}.EXTVER", "D2IM{}.EXTVER"):
                for j in (1, 2):
                    kw = key_fmt.format(j)
                    if kw not in hdr:
                        continue
                    name = "WCSDVARR" if kw.startswith("DP") else "D2IMARR"
                    ver = int(hdr[kw])
                    for lut in luts:
                        if lut.name == name and lut.ver == ver and not lut.header.get("SIMSHIFT"):
                            lut.header["CRVAL1"] = lut.header.get("CRVAL1", 0.0) - x0
                            if lut.data.shape[0] > 1:
                                lut.header["CRVAL2"] = lut.header.get("CRVAL2", 0.0) - y0
                            lut.header["SIMSHIFT"] = (True, "CRVAL shifted for the sub-array")
        for hdr, (_, _, nx, ny) in zip(sci, windows, strict=True):
            hdr["SUBARRAY"] = True
            hdr["SIZAXIS1"] = nx
            hdr["SIZAXIS2"] = ny
    tmpl_luts = fits.HDUList([fits.PrimaryHDU(), *luts])
    centres = []
    for hdr, (_, _, nx, ny) in zip(sci, windows, strict=True):
        w = WCS(hdr, fobj=tmpl_luts)
        ra, dec = w.all_pix2world([[(nx - 1) / 2, (ny - 1) / 2]], 0)[0]
        centres.append(unit_vector(ra, dec))
    ref = radec_of(np.sum(centres, axis=0))

    def ext_headers(name: str) -> list[fits.Header]:
        return [hdul[name, v].header.copy() for v in range(1, nchips + 1)]

    extra: list[dict[str, fits.Header]] = [{} for _ in range(nchips)]
    for name in ("SAMP", "TIME"):
        if name in hdul:
            for v in range(nchips):
                extra[v][name] = hdul[name, v + 1].header.copy()
    return Template(det, primary, sci, ext_headers("ERR"), ext_headers("DQ"), extra, luts,
                    windows, ref, orientat(sci[0]))
