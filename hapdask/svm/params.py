"""HAP's SVM AstroDrizzle parameters per product level (``../shared/design/hap_parameters.md``).

HAP merges its JSON files per product (``config_utils.HapConfig``, inventory 4.1): exposure
products use ``single_basic`` (+ ``any_n1`` when the filter has one exposure), filter products
``filter_basic`` + the detector's ``_n2``/``_n6`` (WFC3/IR ``_n2``/``_n4``; WFC3/UVIS split at
EXPSTART 2012-11-08T02:59:15 = MJD 56239.1245) or ``any_n1``, totals ``total_basic`` (UVIS
``total_basic_pre``/``_post``; + ``any_n1`` for one exposure). The merged values of the
parameters that differ between the sets are tabulated below; :data:`COMMON` holds those shared
by all. HAP's code then forces ``resetbits=0`` on exposure, total and single-exposure filter
products (inventory 4.2), applied by :func:`svm_drizzle_params`.

Detectors without a table here (ACS/HRC, ACS/SBC, WFPC2) raise :class:`ValueError`: their
products are not made (the run reports it).
"""

from __future__ import annotations

from typing import Any

__all__ = ["COMMON", "UVIS_DATE_MJD", "level_key", "svm_drizzle_params"]

#: WFC3/UVIS pre/post parameter split: EXPSTART 2012-11-08T02:59:15 UTC (MJD).
UVIS_DATE_MJD = 56239.1245

#: Parameters every HAP SVM product shares (inventory 4.2).
COMMON: dict[str, Any] = {
    "build": True, "coeffs": True, "proc_unit": "native", "crbit": 4096, "stepsize": 10,
    "final_wht_type": "EXP", "final_wt_scl": "exptime", "final_units": "cps",
    "final_kernel": "square", "final_rot": 0.0, "skymethod": "match", "skystat": "median",
    "skywidth": 0.1, "skylower": -100.0, "skyclip": 5, "skylsigma": 4.0, "skyusigma": 4.0,
    "use_static": True, "static_sig": 4.0, "combine_nsigma": "4 3", "combine_nlow": 0,
    "combine_nhigh": 1, "combine_maskpt": 0.3, "combine_grow": 1, "blot_interp": "poly5",
    "driz_cr_grow": 1, "driz_cr_ctegrow": 0, "context": True, "clean": True,
    "driz_combine": True, "preserve": False,
}

_KEYS = ("static", "skysub", "sky_bits", "driz_separate", "driz_sep_kernel", "driz_sep_bits",
         "median", "combine_type", "blot", "driz_cr", "driz_cr_snr", "driz_cr_scale",
         "final_pixfrac", "final_bits", "final_fillval", "resetbits")


def _row(*values: Any) -> dict[str, Any]:
    return dict(zip(_KEYS, values, strict=True))


#        static skysub sky_bits sep  sep_kernel sep_bits median combine   blot  cr
#        cr_snr     cr_scale   pixfrac final_bits fillval resetbits
_SINGLE = _row(False, False, 0, False, "turbo", 528, False, "median", False, False,
               "5.0 4.0", "3.0 2.4", 1.0, 65535, None, 0)
_TABLES: dict[str, dict[str, dict[str, Any]]] = {
    "wfc3_uvis": {
        "single": _SINGLE,
        "single_n1": _row(True, False, 80, False, "square", 336, False, "minmed", False, False,
                          "3.5 3.0", "1.5 1.2", 1.0, 65535, None, 4096),
        "filter_n1": _row(True, False, 80, False, "square", 336, False, "minmed", False, False,
                          "3.5 3.0", "1.5 1.2", 1.0, 65535, None, 4096),
        "filter_post_n2": _row(True, True, 80, True, "square", 336, True, "minmed", True, True,
                               "3.5 3.0", "1.5 1.2", 1.0, 336, None, 4096),
        "filter_post_n6": _row(True, True, 80, True, "square", 336, True, "median", True, True,
                               "3.5 3.0", "1.2 0.7", 0.8, 336, None, 4096),
        "filter_pre_n2": _row(True, True, 96, True, "square", 352, True, "minmed", True, True,
                              "3.5 3.0", "1.5 1.2", 1.0, 352, None, 4096),
        "filter_pre_n6": _row(True, True, 96, True, "square", 352, True, "median", True, True,
                              "3.5 3.0", "1.2 0.7", 0.8, 352, None, 4096),
        "total_post": _row(False, True, 16, False, "turbo", 528, False, "median", False, False,
                           "5.0 4.0", "3.0 2.4", 1.0, 336, 0.0, 0),
        "total_pre": _row(False, True, 16, False, "turbo", 528, False, "median", False, False,
                          "5.0 4.0", "3.0 2.4", 1.0, 96, 0.0, 0),
        "total_n1": _row(True, False, 80, False, "square", 336, False, "minmed", False, False,
                         "3.5 3.0", "1.5 1.2", 1.0, 65535, None, 4096),
    },
    "wfc3_ir": {
        "single": _SINGLE,
        "filter_n1": _row(True, False, 16, False, "square", 16, False, "minmed", False, False,
                          "5.0 4.0", "3.0 2.4", 1.0, 528, None, 4096),
        "filter_n2": _row(True, True, 16, True, "turbo", 65535, True, "minmed", True, True,
                          "5.0 4.0", "3.0 2.4", 1.0, 528, None, 4096),
        "filter_n4": _row(True, True, 16, True, "turbo", 528, True, "median", True, True,
                          "5.0 4.0", "3.0 2.4", 1.0, 528, None, 4096),
        "total": _row(False, True, 16, False, "turbo", 528, False, "median", False, False,
                      "5.0 4.0", "3.0 2.4", 1.0, 528, 0.0, 0),
    },
    "acs_wfc": {
        "single": _SINGLE,
        "filter_n1": _row(False, False, 16, False, "turbo", 336, False, "minmed", False, False,
                          "3.5 3.0", "1.5 1.2", 1.0, 65535, None, 4096),
        "filter_n2": _row(True, True, 80, True, "square", 336, True, "minmed", True, True,
                          "3.5 3.0", "1.5 1.2", 1.0, 336, None, 4096),
        "filter_n6": _row(True, True, 80, True, "square", 336, True, "median", True, True,
                          "3.5 3.0", "1.2 0.7", 0.8, 336, None, 4096),
        "total": _row(False, True, 16, False, "turbo", 528, False, "median", False, False,
                      "5.0 4.0", "3.0 2.4", 1.0, 336, 0.0, 0),
    },
}

# ``any_n1`` overrides every tabulated key (WFC3/UVIS: single_basic+any_n1 == total+any_n1 ==
# filter_basic+any_n1), so the one-exposure sets of WFC3/IR and ACS/WFC, which the appendix does
# not list, are their ``filter_n1`` sets.
for _t in _TABLES.values():
    _t.setdefault("single_n1", _t["filter_n1"])
    _t.setdefault("total_n1", _t["filter_n1"])

#: Detectors with HAP SVM parameter sets here.
DETECTORS = tuple(_TABLES)


def level_key(detector: str, level: str, n: int, expstart_mjd: float | None = None) -> str:
    """The parameter-set name of a product (inventory 4.1).

    Parameters
    ----------
    detector : str
        ``acs_wfc``, ``wfc3_uvis`` or ``wfc3_ir``.
    level : {"exposure", "filter", "total"}
    n : int
        Exposures of the product (exposure level: of its filter).
    expstart_mjd : float, optional
        EXPSTART of the first exposure (WFC3/UVIS pre/post split; default post).
    """
    if level == "exposure":
        return "single_n1" if n == 1 else "single"
    if n <= 1:
        return f"{level}_n1"
    if detector == "wfc3_uvis":
        era = "pre" if expstart_mjd is not None and expstart_mjd < UVIS_DATE_MJD else "post"
        if level == "total":
            return f"total_{era}"
        return f"filter_{era}_{'n6' if n >= 6 else 'n2'}"
    if level == "total":
        return "total"
    if detector == "wfc3_ir":
        return "filter_n4" if n >= 4 else "filter_n2"
    return "filter_n6" if n >= 6 else "filter_n2"


def svm_drizzle_params(detector: str, level: str, n: int,
                       expstart_mjd: float | None = None) -> dict[str, Any]:
    """AstroDrizzle parameters of an SVM product, HAP's merged set plus its code overrides.

    Returns a mapping for :meth:`hapdask.mosaic.AstroDrizzleParams.from_mapping` (without the
    output grid, which the caller adds).

    Raises
    ------
    ValueError
        For a detector HAP's SVM tables here do not cover, or an unknown level.
    """
    if level not in ("exposure", "filter", "total"):
        raise ValueError(f"SVM product level must be exposure, filter or total, got {level!r}")
    try:
        table = _TABLES[detector]
    except KeyError:
        raise ValueError(f"no HAP SVM drizzle parameters for detector {detector!r} "
                         f"(known: {', '.join(DETECTORS)})") from None
    values = {**COMMON, **table[level_key(detector, level, n, expstart_mjd)]}
    if level in ("exposure", "total") or n <= 1:
        values["resetbits"] = 0  # HAP's code override (inventory 4.2)
    return values
