"""The SVM product tree and HAP's file names (inventory 2.1, 2.2).

A visit's tree is detector -> filter -> exposures: one :class:`DetectorProducts` (the total
"detection" product) per detector, one :class:`FilterProduct` per (detector, filter), one
:class:`ExposureItem` per usable input. Names (all lower case, ``<prop>`` as given, not padded)::

    hst_<prop>_<visit>_<instr>_<det>_<filter>_<ipppssoo>_dr[cz].fits     exposure drizzle
    hst_<prop>_<visit>_<instr>_<det>_<filter>_<ipppssoo>_hlet.fits       headerlet
    hst_<prop>_<visit>_<instr>_<det>_<filter>_<ipppssoo>_fl[ct].fits     renamed input
    hst_<prop>_<visit>_<instr>_<det>_<filter>_<ipppss>_dr[cz].fits       filter drizzle
    hst_<prop>_<visit>_<instr>_<det>_total_<ipppss>_dr[cz].fits          total drizzle
    <stem>_trl.txt, <stem>_point-cat.ecsv, <stem>_segment-cat.ecsv      trailers, catalogs
    <instr>_<ppp>_<visit>_manifest.txt                                   manifest

Rules: in a filter group with any FLC member only the FLCs are members and the suffix is
``drc``, otherwise ``drz`` (WFC3/IR always ``drz``); a non-member FLT still gets its exposure
drizzle with the flipped suffix. The total takes the suffix of the detector's first filter and
leaves out single-exposure filters whenever one filter has two or more exposures. Ramp (``fr*``)
and quad (``fq*``) filters are aligned but get no drizzles; grism/prism frames get none either.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from skycells import name_component

__all__ = ["DetectorProducts", "ExposureItem", "FilterProduct", "build_detector", "manifest_name",
           "output_names", "product_prefix", "sort_key"]


def product_prefix(proposal: object, visit: object, instrument: str, detector: str) -> str:
    """``hst_<prop>_<visit>_<instr>_<det>`` (each part checked by ``name_component``)."""
    prop = name_component(str(proposal).strip(), "proposal_id")
    vis = name_component(str(visit).strip(), "obset_id")
    return f"hst_{prop}_{vis}_{instrument.lower()}_{detector.lower()}"


def manifest_name(instrument: str, first_rootname: str, visit: object) -> str:
    """``<instr>_<ppp>_<visit>_manifest.txt`` (``ppp`` = characters 2-4 of the rootname)."""
    ppp = name_component(first_rootname[1:4], "ROOTNAME")
    vis = name_component(str(visit).strip(), "obset_id")
    return f"{instrument.lower()}_{ppp}_{vis}_manifest.txt"


class _Named:
    """The drizzle product and trailer names every product level derives from its ``stem``
    and ``suffix`` (``drz``/``drc``), inventory 2.2."""

    stem: str
    suffix: str

    @property
    def drizzle_name(self) -> str:
        """``<stem>_dr[cz].fits``."""
        return f"{self.stem}_{self.suffix}.fits"

    @property
    def trailer_name(self) -> str:
        """``<stem>_trl.txt``."""
        return f"{self.stem}_trl.txt"


@dataclass
class ExposureItem(_Named):
    """One input exposure of the visit.

    Attributes
    ----------
    path, rootname, instrument, detector : str
        Input file, lower-case rootname, upper-case instrument/detector as in the header.
    filter : str
        HAP filter name (lower case, e.g. ``f606w-pol60v``).
    exptime, expstart, photflam : float
    flc : bool
        CTE-corrected input (``_flc``).
    kind : {"direct", "grism", "ramp"}
        ``ramp`` covers ramp (``fr*``) and quad (``fq*``) filters.
    line : int
        Poller line (1-based).
    """

    path: str
    rootname: str
    instrument: str
    detector: str
    filter: str
    exptime: float
    expstart: float
    photflam: float
    flc: bool
    kind: str
    line: int
    prefix: str = ""
    suffix: str = ""   # dr[cz] of its exposure drizzle
    member: bool = True

    @property
    def stem(self) -> str:
        """``<prefix>_<filter>_<ipppssoo>``."""
        return f"{self.prefix}_{self.filter}_{self.rootname[:8]}"

    @property
    def headerlet_name(self) -> str:
        return f"{self.stem}_hlet.fits"

    @property
    def renamed_input(self) -> str:
        """``<stem>_fl[ct].fits``: the renamed copy ``--update-inputs`` writes."""
        return f"{self.stem}_{'flc' if self.flc else 'flt'}.fits"


def sort_key(e: ExposureItem) -> tuple[float, float, str]:
    """HAP's poller order: EXPTIME ascending, then PHOTFLAM descending (inventory 1.3)."""
    return (e.exptime, -e.photflam, e.rootname)


@dataclass
class FilterProduct(_Named):
    """One filter of one detector: its member exposures (FLC-only when any is FLC)."""

    prefix: str
    filter: str
    exposures: list[ExposureItem]
    suffix: str
    extra: list[ExposureItem] = field(default_factory=list)  # non-member FLTs

    @property
    def ipppss(self) -> str:
        return self.exposures[0].rootname[:6]

    @property
    def stem(self) -> str:
        return f"{self.prefix}_{self.filter}_{self.ipppss}"

    @property
    def n(self) -> int:
        return len(self.exposures)


@dataclass
class DetectorProducts(_Named):
    """The total product of one detector and everything below it."""

    instrument: str
    detector: str
    prefix: str
    filters: list[FilterProduct]
    ramps: list[ExposureItem] = field(default_factory=list)
    grisms: list[ExposureItem] = field(default_factory=list)

    @property
    def key(self) -> str:
        """``<instr>_<det>`` lower case (HAP parameter/catalog tables)."""
        return f"{self.instrument}_{self.detector}".lower()

    @property
    def total_filters(self) -> list[FilterProduct]:
        """Filters drizzled into the total: single-exposure ones only when all are."""
        multi = [f for f in self.filters if f.n >= 2]
        return multi or list(self.filters)

    @property
    def total_exposures(self) -> list[ExposureItem]:
        return [e for f in self.total_filters for e in f.exposures]

    @property
    def all_exposures(self) -> list[ExposureItem]:
        """Every drizzled or aligned exposure (members, non-members, ramps)."""
        return [e for f in self.filters for e in f.exposures + f.extra] + self.ramps

    @property
    def ipppss(self) -> str:
        return self.total_exposures[0].rootname[:6]

    @property
    def suffix(self) -> str:
        return self.filters[0].suffix

    @property
    def stem(self) -> str:
        return f"{self.prefix}_total_{self.ipppss}"


def build_detector(instrument: str, detector: str, prefix: str,
                   items: list[ExposureItem]) -> DetectorProducts | None:
    """Group one detector's exposures into filter products (inventory 2.1); None when no
    direct image is left."""
    items = sorted(items, key=sort_key)
    ramps = [e for e in items if e.kind == "ramp"]
    grisms = [e for e in items if e.kind == "grism"]
    direct = [e for e in items if e.kind == "direct"]
    for e in items:
        e.prefix = prefix
    ir = detector.upper() == "IR"
    groups: dict[str, list[ExposureItem]] = {}
    for e in direct:
        groups.setdefault(e.filter, []).append(e)
    filters = []
    for fname, members in groups.items():
        if not ir and any(e.flc for e in members):
            use = [e for e in members if e.flc]
            extra = [e for e in members if not e.flc]
            suffix = "drc"
        else:
            use, extra, suffix = members, [], "drz"
        for e in use:
            e.suffix, e.member = suffix, True
        for e in extra:
            e.suffix, e.member = "drz" if suffix == "drc" else "drc", False
        filters.append(FilterProduct(prefix, fname, use, suffix, extra))
    for e in ramps + grisms:
        e.suffix, e.member = ("drz" if ir or not e.flc else "drc"), False
    if not filters:
        return None
    return DetectorProducts(instrument, detector, prefix, filters, ramps, grisms)


def output_names(det: DetectorProducts) -> list[str]:
    """Every file name the drizzle/catalog stages of a detector produce (for existence checks)."""
    names = [det.drizzle_name, det.trailer_name]
    for f in det.filters:
        names += [f.drizzle_name, f.trailer_name]
        for e in f.exposures + f.extra:
            names += [e.drizzle_name, e.trailer_name, e.headerlet_name]
    for e in det.ramps + det.grisms:
        names += [e.trailer_name]
    for stem in [det.stem] + [f.stem for f in det.filters]:
        names += [f"{stem}_point-cat.ecsv", f"{stem}_segment-cat.ecsv"]
    return names

