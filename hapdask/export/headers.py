"""HAP MVM product headers: combined PRIMARY keywords, per-input D### keywords and HDRTAB.

Implements, as far as practical, the ``*_mvm_header_hap.rules`` semantics summarised in
``design/hap_pipeline_inventory.md`` section 4.5:

* identity keywords take the first input's value; keywords that can differ between inputs
  (APERTURE, FILTER, FGSLOCK, ...) keep the common value or become ``'MULTIPLE'``;
* EXPTIME and TEXPTIME are the summed exposure time, EXPSTART the minimum, EXPEND the maximum,
  DATE-BEG/DATE-END their ISO dates; PA_APER and PA_V3 are 0; PHOT* keywords go to SCI as means;
* the keywords MVM deletes (IPPPSSOO, ASN_*, calibration switches and reference files, ...)
  are not copied; every input's PRIMARY and SCI keywords are kept row by row in HDRTAB;
* HAPLEVEL 4, SCELLID, PROPOSID (sorted unique values joined by ``'; '``), NUMEXP, NDRIZIM.

Deviations: S_REGION is the outline of the layer's output array, not a trace of the drizzled
data; fitsblender's ``stddev`` rules are not reproduced.
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.time import Time

__all__ = ["combine_primary", "drizzle_cards", "hdrtab", "FIRST", "MULTI", "DELETE"]

FIRST = (
    "TELESCOP", "INSTRUME", "DETECTOR", "EQUINOX", "OBSTYPE", "OBSMODE", "PRIMESI", "IMAGETYP",
    "SUBARRAY", "CAL_VER", "OPUS_VER", "CSYS_VER", "RADESYS", "BUNIT_IN", "CCDAMP", "CCDGAIN",
    "CCDOFSAB", "CCDOFSCD", "SAMP_SEQ", "NSAMP", "SAMPZERO", "SUBTYPE", "ATODGNA", "ATODGNB",
    "ATODGNC", "ATODGND", "READNSEA", "READNSEB", "READNSEC", "READNSED", "PHOTMODE",
)
MULTI = (
    "APERTURE", "FILTER", "FILTER1", "FILTER2", "FILTNAM1", "FILTNAM2", "FGSLOCK", "QUALITY",
    "TARGNAME", "PROPAPER", "OBSMODE", "SCAN_TYP", "MTFLAG", "CHINJECT", "PR_INV_L",
)
PHOT_MEAN = ("PHOTFLAM", "PHOTFNU", "PHOTPLAM", "PHOTBW", "PHOTZPT")
DELETE = {
    "IPPPSSOO", "ASN_ID", "ASN_TAB", "ASN_MTYPE", "LINENUM", "PR_INV_L", "PR_INV_F", "PR_INV_M",
    "GYROMODE", "SUNANGLE", "MOONANGL", "EXPFLAG", "QUALCOM1", "QUALCOM2", "QUALCOM3",
}


def _values(headers: list[fits.Header], key: str) -> list:
    return [h[key] for h in headers if key in h]


def _mjd_iso(mjd: float) -> str:
    return Time(float(mjd), format="mjd", scale="utc").isot


def combine_primary(primaries: list[fits.Header], *, filename: str, skycell: str,
                    ndrizim: int) -> fits.Header:
    """Combined PRIMARY header of a layer from the inputs' PRIMARY headers (input order).

    Parameters
    ----------
    primaries : list of Header
        One PRIMARY header per input exposure, in the layer's fixed input order.
    filename : str
        The layer's file name (sets FILENAME and ROOTNAME).
    skycell : str
        SkyCell name with or without ``skycell-``.
    ndrizim : int
        Number of input chips drizzled.
    """
    out = fits.Header()
    stem = filename[:-5] if filename.endswith(".fits") else filename
    out["ROOTNAME"] = (stem.rsplit("_", 1)[0], "rootname of the product")
    out["FILENAME"] = (filename, "name of this file")
    out["HAPLEVEL"] = (4, "HAP processing level: 4 = multi-visit mosaic (MVM)")
    out["SCELLID"] = (skycell.replace("skycell-", ""), "SkyCell of this product")
    for key in FIRST:
        vals = _values(primaries, key)
        if vals:
            out[key] = vals[0]
    for key in MULTI:
        vals = _values(primaries, key)
        if vals:
            uniq = list(dict.fromkeys(str(v) for v in vals))
            out[key] = vals[0] if len(uniq) == 1 else "MULTIPLE"
    props = sorted({str(v).strip() for v in _values(primaries, "PROPOSID") if str(v).strip()},
                   key=lambda s: (len(s), s))
    out["PROPOSID"] = ("; ".join(props), "proposals of the inputs")
    exps = [float(v) for v in _values(primaries, "EXPTIME")]
    out["EXPTIME"] = (float(np.sum(exps)) if exps else 0.0, "summed exposure time of inputs (s)")
    out["TEXPTIME"] = (out["EXPTIME"], "total exposure time (s)")
    starts = [float(v) for v in _values(primaries, "EXPSTART")]
    ends = [float(v) for v in _values(primaries, "EXPEND")]
    if starts:
        out["EXPSTART"] = (min(starts), "first input's exposure start (MJD)")
        out["DATE-BEG"] = (_mjd_iso(min(starts)), "start of the first input (UTC)")
    if ends:
        out["EXPEND"] = (max(ends), "last input's exposure end (MJD)")
        out["DATE-END"] = (_mjd_iso(max(ends)), "end of the last input (UTC)")
    roots = {str(h.get("ROOTNAME", "")).lower() for h in primaries}
    out["NUMEXP"] = (len(roots), "number of distinct input exposures")
    out["NDRIZIM"] = (int(ndrizim), "number of input chips drizzled")
    out["PA_APER"] = (0.0, "set to 0 for MVM products")
    out["PA_V3"] = (0.0, "set to 0 for MVM products")
    return out


def phot_cards(scis: list[fits.Header], primaries: list[fits.Header]) -> fits.Header:
    """PHOT* keywords for SCI: mean over inputs, taken from SCI or else PRIMARY."""
    out = fits.Header()
    for key in PHOT_MEAN:
        vals = []
        for s, p in zip(scis, primaries, strict=True):
            if key in s:
                vals.append(float(s[key]))
            elif key in p:
                vals.append(float(p[key]))
        if vals:
            out[key] = float(np.mean(vals))
    return out


def drizzle_cards(chips: list[dict]) -> fits.Header:
    """Per-input ``D###`` keywords (AstroDrizzle style) for the PRIMARY header.

    Parameters
    ----------
    chips : list of dict
        One dict per drizzled chip, in drizzle order, with keys ``data`` (``file[sci,N]``),
        ``exptime``, ``sky``, ``in_scale`` (nominal input arcsec/pixel, the chip's
        ``IDCSCALE``), ``scale`` (output arcsec/pixel), ``bits``, ``wcsname``, ``outname``.
        As in AstroDrizzle, ``D###SCAL`` is the output and ``D###ISCL`` the input pixel scale;
        the flux scale applied is ``(D###SCAL / D###ISCL) ** 2``.
    """
    out = fits.Header()
    for i, c in enumerate(chips, start=1):
        p = f"D{i:03d}"
        out[p + "VER"] = ("hapdask", "drizzle task version")
        out[p + "GEOM"] = ("WCS", "geometry source: input WCS incl. distortion")
        out[p + "DATA"] = (c["data"], "input image")
        out[p + "DEXP"] = (float(c["exptime"]), "input exposure time (s)")
        out[p + "OUDA"] = (c["outname"] + "[SCI]", "output science image")
        out[p + "OUWE"] = (c["outname"] + "[WHT]", "output weight image")
        out[p + "OUCO"] = (c["outname"] + "[CTX]" if c.get("ctx", True) else " ",
                           "output context image")
        out[p + "MASK"] = (str(c["bits"]), "DQ bits treated as good")
        out[p + "WTSC"] = ("EXPTIME", "weighting factor of input")
        out[p + "KERN"] = ("square", "drizzle kernel")
        out[p + "PIXF"] = (1.0, "drizzle pixfrac")
        out[p + "COEF"] = ("SIP+lookup", "distortion model")
        out[p + "OUUN"] = ("cps", "units of output image")
        out[p + "FVAL"] = ("NaN", "fill value for empty pixels")
        out[p + "WKEY"] = (str(c.get("wcsname", "")), "input WCS name")
        out[p + "SCAL"] = (float(c["scale"]), "Drizzle, pixel size (arcsec) of output image")
        out[p + "ISCL"] = (float(c["in_scale"]), "Drizzle, default IDCTAB pixel size(arcsec)")
        out[p + "SKY"] = (float(c["sky"]), "sky level subtracted (input units)")
    return out


def _column(values: list) -> list | np.ndarray:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (bool, np.bool_)) for v in present):
        return [("T" if v else "F") if v is not None else "" for v in values]
    if present and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                       for v in present) and len(present) == len(values):
        return np.array(values, dtype=np.int64)
    if present and all(isinstance(v, (int, float, np.integer, np.floating))
                       and not isinstance(v, bool) for v in present):
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return ["" if v is None else str(v) for v in values]


def hdrtab(rows: list[dict[str, object]]) -> bytes:
    """HDRTAB: one row per input chip holding its PRIMARY and SCI keywords.

    Written directly as a FITS ``BINTABLE`` extension (header + big-endian rows, padded to
    2880 bytes): astropy's table machinery takes ~1 s for the ~300 columns of HST headers.

    Parameters
    ----------
    rows : list of dict
        Keyword -> value per input chip; the first keys of the first row lead (SVMROOTNAME,
        GENDATE, HAPEXPNAME ...). Keywords missing from a row are blank / NaN (integers: 0).

    Returns
    -------
    bytes
        The complete extension (header and data).
    """
    keys: list[str] = []
    seen: set[str] = set()
    for r in rows:
        for k in r:
            if k not in seen:
                seen.add(k)
                keys.append(k)
    dtype = []
    forms = []
    columns = []
    for k in keys:
        col = _column([r.get(k) for r in rows])
        if isinstance(col, np.ndarray) and col.dtype.kind == "i":
            dtype.append((k, ">i8"))
            forms.append("K")
        elif isinstance(col, np.ndarray):
            dtype.append((k, ">f8"))
            forms.append("D")
        else:
            enc = [v.encode("ascii", "replace") for v in col]
            n = max(1, max((len(v) for v in enc), default=1))
            col = enc
            dtype.append((k, f"S{n}"))
            forms.append(f"{n}A")
        columns.append(col)
    rec = np.zeros(len(rows), dtype=dtype)
    for (k, _), col in zip(dtype, columns, strict=True):
        rec[k] = col
    cards = [fits.Card("XTENSION", "BINTABLE", "binary table extension"),
             fits.Card("BITPIX", 8), fits.Card("NAXIS", 2),
             fits.Card("NAXIS1", rec.dtype.itemsize), fits.Card("NAXIS2", len(rows)),
             fits.Card("PCOUNT", 0), fits.Card("GCOUNT", 1), fits.Card("TFIELDS", len(keys))]
    for i, (k, f) in enumerate(zip(keys, forms, strict=True), start=1):
        cards.append(fits.Card(f"TTYPE{i}", k))
        cards.append(fits.Card(f"TFORM{i}", f))
    cards.append(fits.Card("EXTNAME", "HDRTAB", "headers of the input chips"))
    header = fits.Header(cards).tostring().encode("ascii")
    data = rec.tobytes()
    pad = -len(data) % 2880
    return header + data + b"\0" * pad


def header_row(primary: fits.Header, sci: fits.Header, lead: dict[str, object]) -> dict:
    """One HDRTAB row: ``lead`` columns, then PRIMARY and SCI keywords (SCI wins on clashes)."""
    skip = {"", "COMMENT", "HISTORY", "SIMPLE", "BITPIX", "EXTEND", "XTENSION", "PCOUNT",
            "GCOUNT", "NEXTEND"}
    row: dict[str, object] = dict(lead)
    for hdr in (primary, sci):
        for card in hdr.cards:
            k = card.keyword
            if k in skip or k.startswith("NAXIS") or k in lead or "." in k:
                continue
            v = card.value
            if isinstance(v, fits.card.Undefined):
                continue
            row[k] = v
    return row
