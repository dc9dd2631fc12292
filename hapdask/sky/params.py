"""AstroDrizzle's sky and static-mask parameters (names, defaults, meaning: drizzlepac 3.11).

:class:`SkyParams` holds the ``Subtract Sky`` step's parameters plus ``static``/``static_sig``
of the ``Create static mask`` step, with AstroDrizzle's defaults (``astrodrizzle.cfg``). HAP's
values per instrument, detector and number of exposures are in
``design/hap_parameters.md`` (e.g. ``skymethod='match'``, ``skystat='median'``,
``skylower=-100``, ``sky_bits=80`` for ACS/WFC and WFC3/UVIS layers).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from hapdask.dqflags import interpret_bits

__all__ = ["SKYMETHODS", "SKYSTATS", "SkyParams"]

#: AstroDrizzle's ``skymethod`` choices
SKYMETHODS = ("localmin", "globalmin", "match", "globalmin+match")
#: AstroDrizzle's ``skystat`` choices (``mode`` is stsci.imagestats' histogram mode, see
#: :mod:`hapdask.sky.stats`)
SKYSTATS = ("median", "mode", "mean")


@dataclass(frozen=True)
class SkyParams:
    """Parameters of AstroDrizzle's sky step (and of its static mask).

    Attributes
    ----------
    skysub : bool
        Measure and subtract the sky (default True). False: no measurement; every level is 0,
        or the value of the ``skyuser`` header keyword (recorded as MDRIZSKY, not subtracted).
    skymethod : {'localmin', 'globalmin', 'match', 'globalmin+match'}
        ``localmin`` (default): per exposure, the minimum of its chips' sky (in surface
        brightness) applied to all its chips; ``globalmin``: the minimum over all chips of all
        exposures; ``match``: relative offsets from the overlaps of exposure pairs, the lowest
        exposure at 0; ``globalmin+match``: ``match`` plus a common baseline.
    skystat : {'median', 'mode', 'mean'}
        Statistic of the clipped pixel distribution (default ``median``).
    skywidth : float
        Histogram bin width in sigma, used by ``mode`` (default 0.1).
    skylower, skyupper : float or None
        Usable pixel value range in the chip's SCI units (default None: unbounded).
    skyclip : int
        Clipping iterations (default 5).
    skylsigma, skyusigma : float
        Lower/upper clipping limits in sigma (default 4.0).
    skyuser : str
        Header keyword holding a sky already subtracted by the user; used only when
        ``skysub`` is False (default "": none).
    sky_bits : int, str or None
        DQ flags treated as good for sky statistics (default 0: only DQ == 0; None: ignore
        DQ); any form :func:`hapdask.dqflags.interpret_bits` accepts.
    use_static : bool
        Exclude static-mask pixels from sky statistics (default True).
    skymask_cat : str
        AstroDrizzle's catalog of user masks; not supported (must be "").
    skyfile : str
        AstroDrizzle's file of user sky values; not supported (must be "").
    static : bool
        Build the static mask (default True).
    static_sig : float
        Static mask threshold: pixels below ``mode - static_sig * sigma`` (default 4.0).
    """

    skysub: bool = True
    skymethod: str = "localmin"
    skystat: str = "median"
    skywidth: float = 0.1
    skylower: float | None = None
    skyupper: float | None = None
    skyclip: int = 5
    skylsigma: float = 4.0
    skyusigma: float = 4.0
    skyuser: str = ""
    sky_bits: int | str | None = 0
    use_static: bool = True
    skymask_cat: str = ""
    skyfile: str = ""
    static: bool = True
    static_sig: float = 4.0

    def __post_init__(self) -> None:
        _check_bool(self, "skysub", "use_static", "static")
        if self.skymethod not in SKYMETHODS:
            raise ValueError(f"skymethod={self.skymethod!r}: must be one of {SKYMETHODS}")
        if self.skystat not in SKYSTATS:
            raise ValueError(f"skystat={self.skystat!r}: must be one of {SKYSTATS}")
        for name in ("skywidth", "skylsigma", "skyusigma", "static_sig"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
                    math.isfinite(v) and v > 0):
                raise ValueError(f"{name}={v!r}: must be a positive finite number")
        if isinstance(self.skyclip, bool) or not isinstance(self.skyclip, int) \
                or self.skyclip < 0:
            raise ValueError(f"skyclip={self.skyclip!r}: must be a non-negative integer")
        for name in ("skylower", "skyupper"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not math.isfinite(v)):
                raise ValueError(f"{name}={v!r}: must be a finite number or None")
        if self.skylower is not None and self.skyupper is not None \
                and self.skylower > self.skyupper:
            raise ValueError(f"skylower={self.skylower} is above skyupper={self.skyupper}")
        if not isinstance(self.skyuser, str):
            raise ValueError(f"skyuser={self.skyuser!r}: must be a header keyword name (str)")
        if self.skyuser.strip().startswith("@"):
            raise ValueError(f"skyuser={self.skyuser!r}: sky values from a file ('@file') "
                             "are not supported; give a header keyword")
        try:
            interpret_bits(self.sky_bits)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"sky_bits={self.sky_bits!r}: {exc}") from exc
        for name in ("skymask_cat", "skyfile"):
            v = getattr(self, name)
            if v not in ("", None):
                raise ValueError(f"{name}={v!r}: not supported by hapdask (user mask "
                                 "catalogs and sky files); leave it empty")

    @property
    def bits(self) -> int | None:
        """``sky_bits`` as an integer (None: DQ ignored)."""
        return interpret_bits(self.sky_bits)

    @classmethod
    def from_dict(cls, values: dict) -> SkyParams:
        """Build from a mapping of AstroDrizzle names; unknown names are an error naming them.

        Names of other AstroDrizzle steps are not accepted here: pass only the sky/static ones.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown sky parameter(s): {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(known))})")
        return cls(**values)

    def to_dict(self) -> dict:
        """The parameters as a plain dict (AstroDrizzle names)."""
        return asdict(self)


def _check_bool(p: SkyParams, *names: str) -> None:
    for name in names:
        v = getattr(p, name)
        if not isinstance(v, bool):
            raise ValueError(f"{name}={v!r}: must be True or False")
