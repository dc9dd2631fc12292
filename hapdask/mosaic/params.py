"""Drizzle parameters: :class:`DrizzleParams` (one drizzle pass) and :class:`AstroDrizzleParams`
(every AstroDrizzle step, by AstroDrizzle's parameter names and with its defaults).

``AstroDrizzleParams.from_mapping({"final_pixfrac": 0.8, "combine_type": "median"})`` checks
every name and value and raises :class:`ParameterError` naming the parameter; values may be given
as Python values or as the strings of a JSON/``--param NAME=VALUE`` (``"None"``, ``"4 3"``,
``"16,64"``). The parameters of each step come out as a typed record: :attr:`final`,
:attr:`separate` (:class:`DrizzleParams`), :meth:`combine` / :meth:`cr` / :meth:`sky` (the
combine and sky packages' records).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hapdask.combine.crdetect import CR_METHODS, HysteresisParams
from hapdask.combine.crrej import CRParams
from hapdask.dqflags import interpret_bits

__all__ = ["DEFAULTS", "AstroDrizzleParams", "DrizzleParams", "ParameterError", "load_config"]

KERNELS = ("square", "point", "turbo", "gaussian", "lanczos2", "lanczos3")
WHT_TYPES = ("EXP", "ERR", "IVM")
UNITS = ("cps", "counts")


class ParameterError(ValueError):
    """A parameter name or value that cannot be used (the message names it)."""


@dataclass(frozen=True)
class DrizzleParams:
    """One drizzle pass (AstroDrizzle's ``final_*`` or ``driz_sep_*`` group).

    Attributes
    ----------
    kernel : str
        ``square``, ``point``, ``turbo``, ``gaussian``, ``lanczos2``, ``lanczos3``
        (``tophat`` is not offered).
    pixfrac : float
        Linear drop size in input pixels.
    fillval : float
        SCI value where nothing landed (NaN for AstroDrizzle's ``None``).
    wht_type : str
        ``EXP`` (weight = ``wt_scl``, the exposure time by default, per good pixel), ``ERR``
        (1 / ERR**2 in rate units) or ``IVM`` (1 / variance of sky + dark + read noise,
        in rate units).
    bits : int or None
        DQ bits treated as good (None: ignore DQ).
    units : str
        ``cps`` (per second, default) or ``counts`` (SCI multiplied by the total exposure time
        at write time).
    wt_scl : str or float
        ``exptime`` (default), ``expsq`` or a number; the EXP weight per good pixel.
    """

    kernel: str = "square"
    pixfrac: float = 1.0
    fillval: float = math.nan
    wht_type: str = "EXP"
    bits: int | None = 0
    units: str = "cps"
    wt_scl: str | float = "exptime"

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ParameterError(f"kernel: {self.kernel!r} is not one of {', '.join(KERNELS)}")
        if not (math.isfinite(self.pixfrac) and 0 < self.pixfrac <= 10):
            raise ParameterError(f"pixfrac: must be in (0, 10], got {self.pixfrac!r}")
        if self.wht_type not in WHT_TYPES:
            raise ParameterError(f"wht_type: {self.wht_type!r} is not one of EXP, ERR, IVM")
        if self.units not in UNITS:
            raise ParameterError(f"units: {self.units!r} is not cps or counts")
        if isinstance(self.wt_scl, str):
            if self.wt_scl not in ("exptime", "expsq"):
                raise ParameterError(f"wt_scl: {self.wt_scl!r} is not exptime, expsq or a number")
        elif not (math.isfinite(float(self.wt_scl)) and float(self.wt_scl) > 0):
            raise ParameterError(f"wt_scl: must be positive, got {self.wt_scl!r}")

    def exp_weight(self, exptime: float) -> float:
        """The EXP weight per good pixel of an exposure."""
        if self.wt_scl == "exptime":
            return float(exptime)
        if self.wt_scl == "expsq":
            return float(exptime) ** 2
        return float(self.wt_scl)


# name -> (kind, default[, choices]); kinds: bool, int, float, float?, int?, str, opt, bits,
# pair (one or two floats, "4 3")
_SPEC: dict[str, tuple] = {
    "output": ("str", ""), "wcskey": ("str", ""), "proc_unit": ("opt", "native",
                                                                 ("native", "electrons")),
    "coeffs": ("bool", True), "context": ("bool", True), "group": ("str", ""),
    "build": ("bool", False), "crbit": ("int", 4096), "stepsize": ("int", 10),
    "resetbits": ("bits", "4096"), "num_cores": ("int?", None), "in_memory": ("bool", False),
    "rules_file": ("str", ""), "runfile": ("str", "astrodrizzle.log"),
    "restore": ("bool", False), "preserve": ("bool", True), "overwrite": ("bool", False),
    "clean": ("bool", False),
    "static": ("bool", True), "static_sig": ("float", 4.0),
    "skysub": ("bool", True),
    "skymethod": ("opt", "localmin", ("localmin", "globalmin", "match", "globalmin+match")),
    "skystat": ("opt", "median", ("median", "mode", "mean")), "skywidth": ("float?", 0.1),
    "skylower": ("float?", None), "skyupper": ("float?", None), "skyclip": ("int", 5),
    "skylsigma": ("float", 4.0), "skyusigma": ("float", 4.0), "skymask_cat": ("str", ""),
    "use_static": ("bool", True), "sky_bits": ("bits", "0"), "skyfile": ("str", ""),
    "skyuser": ("str", ""),
    "driz_separate": ("bool", True), "driz_sep_kernel": ("opt", "turbo", KERNELS),
    "driz_sep_wt_scl": ("str", "exptime"), "driz_sep_pixfrac": ("float", 1.0),
    "driz_sep_fillval": ("float?", None), "driz_sep_bits": ("bits", "0"),
    "driz_sep_compress": ("bool", False), "driz_sep_wcs": ("bool", False),
    "driz_sep_refimage": ("str", ""), "driz_sep_rot": ("float?", None),
    "driz_sep_scale": ("float?", None), "driz_sep_outnx": ("int?", None),
    "driz_sep_outny": ("int?", None), "driz_sep_ra": ("float?", None),
    "driz_sep_dec": ("float?", None), "driz_sep_crpix1": ("float?", None),
    "driz_sep_crpix2": ("float?", None),
    "median": ("bool", True), "median_newmasks": ("bool", True),
    "combine_maskpt": ("float", 0.3),
    "combine_type": ("opt", "minmed", ("minmed", "iminmed", "median", "imedian", "mean",
                                       "imean", "sum")),
    "combine_nsigma": ("pair", "4 3"), "combine_nlow": ("int", 0), "combine_nhigh": ("int", 0),
    "combine_lthresh": ("float?", None), "combine_hthresh": ("float?", None),
    "combine_grow": ("int", 1), "combine_bufsize": ("float?", None),
    "blot": ("bool", True),
    "blot_interp": ("opt", "poly5", ("nearest", "linear", "poly3", "poly5", "lanczos3",
                                     "lanczos5")),
    "blot_sinscl": ("float", 1.0), "blot_addsky": ("bool", True), "blot_skyval": ("float", 0.0),
    "driz_cr": ("bool", True), "driz_cr_corr": ("bool", False), "driz_cr_snr": ("pair", "3.5 3.0"),
    "driz_cr_grow": ("int", 1), "driz_cr_ctegrow": ("int", 0), "driz_cr_scale": ("pair", "1.2 0.7"),
    # hapdask extension (not AstroDrizzle's): the cosmic-ray detector, hapdask.combine.crdetect
    "driz_cr_method": ("opt", "astrodrizzle", CR_METHODS),
    "driz_cr_hyst_snr": ("pair", "5.0 4.0"),
    "driz_combine": ("bool", True), "final_wht_type": ("opt", "EXP", WHT_TYPES),
    "final_kernel": ("opt", "square", KERNELS), "final_wt_scl": ("str", "exptime"),
    "final_pixfrac": ("float", 1.0), "final_fillval": ("float?", None),
    "final_maskval": ("float?", None), "final_bits": ("bits", "0"),
    "final_units": ("opt", "cps", UNITS), "final_wcs": ("bool", False),
    "final_refimage": ("str", ""), "final_rot": ("float?", None), "final_scale": ("float?", None),
    "final_outnx": ("int?", None), "final_outny": ("int?", None), "final_ra": ("float?", None),
    "final_dec": ("float?", None), "final_crpix1": ("float?", None),
    "final_crpix2": ("float?", None),
    "gain": ("str", ""), "gnkeyword": ("str", ""), "rdnoise": ("str", ""), "rnkeyword": ("str", ""),
    "exptime": ("str", ""), "expkeyword": ("str", ""),
}

#: AstroDrizzle's defaults, by name
DEFAULTS: dict[str, Any] = {k: v[1] for k, v in _SPEC.items()}

_NONE = ("", "none", "indef")


def _parse(name: str, value: Any) -> Any:
    spec = _SPEC[name]
    kind = spec[0]
    text = value.strip() if isinstance(value, str) else None

    def bad(what: str) -> ParameterError:
        return ParameterError(f"parameter {name}: {value!r} is not {what}")

    if kind == "bool":
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in ("true", "yes", "1", "false", "no", "0"):
            return text.lower() in ("true", "yes", "1")
        raise bad("a boolean (True/False)")
    if kind in ("int", "int?"):
        if kind == "int?" and (value is None or (text is not None and text.lower() in _NONE)):
            return None
        try:
            if isinstance(value, bool):
                raise ValueError
            f = float(value)
            if not f.is_integer():
                raise ValueError
            return int(f)
        except (TypeError, ValueError):
            raise bad("an integer" + (" or None" if kind == "int?" else "")) from None
    if kind in ("float", "float?"):
        if kind == "float?" and (value is None or (text is not None and text.lower() in _NONE)):
            return None
        if text is not None and text.lower() == "nan":
            return math.nan
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise bad("a number" + (" or None" if kind == "float?" else "")) from None
    if kind == "opt":
        choices = spec[2]
        if isinstance(value, str) and value.strip() in choices:
            return value.strip()
        if isinstance(value, str) and value.strip().upper() in choices:  # EXP, ERR, IVM
            return value.strip().upper()
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise bad(f"one of {', '.join(choices)}")
    if kind == "bits":
        try:
            bits = interpret_bits(value if not isinstance(value, float) else int(value))
        except ValueError as exc:
            raise ParameterError(f"parameter {name}: {exc}") from None
        return bits
    if kind == "pair":
        try:
            if isinstance(value, int | float) and not isinstance(value, bool):
                parts = [float(value)]
            elif isinstance(value, list | tuple):
                parts = [float(v) for v in value]
            else:
                parts = [float(v) for v in str(value).replace(",", " ").split()]
        except (TypeError, ValueError):
            raise bad("one or two numbers (e.g. '3.5 3.0')") from None
        if len(parts) not in (1, 2):
            raise bad("one or two numbers (e.g. '3.5 3.0')")
        return (parts[0], parts[-1])
    if value is None:
        return ""
    if not isinstance(value, str | int | float):
        raise bad("a string")
    return str(value)


@dataclass(frozen=True)
class AstroDrizzleParams:
    """Every AstroDrizzle parameter (validated values by name).

    Build with :meth:`from_mapping`; read any value as ``params["final_pixfrac"]``.
    """

    values: dict[str, Any] = field(default_factory=lambda: {k: _parse(k, v)
                                                            for k, v in DEFAULTS.items()})

    @classmethod
    def from_mapping(cls, given: Mapping[str, Any] | None = None, **more: Any
                     ) -> AstroDrizzleParams:
        """Defaults updated by ``given`` and keyword arguments (AstroDrizzle names).

        Raises
        ------
        ParameterError
            For an unknown name (with the closest known names) or a bad value.
        """
        import difflib

        values = {k: _parse(k, v) for k, v in DEFAULTS.items()}
        for name, value in {**dict(given or {}), **more}.items():
            key = str(name).strip().lower()
            if key in ("input", "_task_name_"):
                continue
            if key not in _SPEC:
                close = difflib.get_close_matches(key, list(_SPEC), n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise ParameterError(f"unknown AstroDrizzle parameter {name!r}{hint}")
            values[key] = _parse(key, value)
        for key in ("combine_nlow", "combine_nhigh", "combine_grow", "driz_cr_grow",
                    "driz_cr_ctegrow", "skyclip", "crbit", "stepsize"):
            if values[key] < 0:
                raise ParameterError(f"parameter {key}: must be >= 0, got {values[key]}")
        for key in ("final_pixfrac", "driz_sep_pixfrac", "static_sig"):
            if not values[key] > 0:
                raise ParameterError(f"parameter {key}: must be positive, got {values[key]}")
        if not 0 <= values["combine_maskpt"] <= 1:
            raise ParameterError(f"parameter combine_maskpt: must be in [0, 1], got "
                                 f"{values['combine_maskpt']}")
        for key in ("final_wt_scl", "driz_sep_wt_scl"):
            _wt_scl(key, values[key])
        return cls(values)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def changed(self) -> dict[str, Any]:
        """The parameters that differ from AstroDrizzle's defaults."""
        base = AstroDrizzleParams().values
        return {k: v for k, v in self.values.items()
                if not (v == base[k] or (isinstance(v, float) and isinstance(base[k], float)
                                         and math.isnan(v) and math.isnan(base[k])))}

    def good_bits(self, name: str) -> int | None:
        """DQ bits treated as good by a step (``final_bits``, ``driz_sep_bits``, ``sky_bits``)
        with ``resetbits`` added: AstroDrizzle clears those bits in its working copies of the
        inputs before processing, which is the same as treating them as good here."""
        bits = self.values[name]
        reset = self.values["resetbits"] or 0
        return None if bits is None else int(bits) | int(reset)

    def _drizzle(self, prefix: str, wht_type: str) -> DrizzleParams:
        v = self.values
        fill = v[f"{prefix}_fillval"]
        return DrizzleParams(
            kernel=v[f"{prefix}_kernel"], pixfrac=float(v[f"{prefix}_pixfrac"]),
            fillval=math.nan if fill is None else float(fill), wht_type=wht_type,
            bits=self.good_bits(f"{prefix}_bits"), units=v.get(f"{prefix}_units", "cps"),
            wt_scl=_wt_scl(f"{prefix}_wt_scl", v[f"{prefix}_wt_scl"]))

    @property
    def final(self) -> DrizzleParams:
        """The final drizzle (``final_*``)."""
        return self._drizzle("final", self.values["final_wht_type"])

    @property
    def separate(self) -> DrizzleParams:
        """The separate drizzles (``driz_sep_*``; EXP weights, counts never)."""
        return self._drizzle("driz_sep", "EXP")

    def cr(self) -> CRParams | HysteresisParams:
        """The driz_cr step's record: AstroDrizzle's (:class:`CRParams`) or, with
        ``driz_cr_method="hysteresis"`` (a hapdask extension), :class:`HysteresisParams`
        (``driz_cr_hyst_snr`` replaces ``driz_cr_snr``)."""
        v = self.values
        common = {"driz_cr_scale": " ".join(map(str, v["driz_cr_scale"])),
                  "driz_cr_grow": v["driz_cr_grow"], "driz_cr_ctegrow": v["driz_cr_ctegrow"],
                  "driz_cr_corr": v["driz_cr_corr"]}
        try:
            if v["driz_cr_method"] == "hysteresis":
                return HysteresisParams(
                    driz_cr_hyst_snr=" ".join(map(str, v["driz_cr_hyst_snr"])), **common)
            return CRParams(driz_cr_snr=" ".join(map(str, v["driz_cr_snr"])), **common)
        except ValueError as exc:
            raise ParameterError(f"parameter {exc}") from None

    def grid_args(self, prefix: str) -> dict[str, Any]:
        """Keyword arguments of :func:`hapdask.mosaic.grid.astrodrizzle_grid` for ``final`` or
        ``driz_sep`` (empty when ``<prefix>_wcs`` is False)."""
        v = self.values
        if not v[f"{prefix}_wcs"]:
            return {}
        return {k: v[f"{prefix}_{k}"] for k in ("scale", "rot", "outnx", "outny", "ra", "dec",
                                                 "crpix1", "crpix2")}


def _wt_scl(name: str, value: Any) -> str | float:
    text = str(value).strip().lower()
    if text in ("exptime", "expsq", ""):
        return text or "exptime"
    try:
        f = float(text)
    except ValueError:
        raise ParameterError(f"parameter {name}: {value!r} is not exptime, expsq or a number"
                             ) from None
    if not (math.isfinite(f) and f > 0):
        raise ParameterError(f"parameter {name}: must be positive, got {value!r}")
    return f


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON configuration of AstroDrizzle parameters.

    Accepts a flat ``{"name": value}`` object or HAP's layout (sections whose values are
    objects are merged, e.g. ``{"STEP 7: DRIZZLE FINAL COMBINED IMAGE": {...}}``).

    Raises
    ------
    ParameterError
        When the file cannot be read or parsed (naming the file and line).
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise ParameterError(f"{path}: cannot read the configuration: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ParameterError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: the configuration must be a JSON object")
    flat: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            flat.update(v)
        else:
            flat[k] = v
    return flat
