"""AstroDrizzle's sky methods as Dask tasks: ``localmin``, ``globalmin``, ``match``,
``globalmin+match``, ``skyuser`` and ``skysub=False``.

:class:`AstroDrizzleSky` implements :class:`hapdask.sky.level.SkyMethod`. Its graph:

* ``(prefix + "-static", ...)``: the static mask (:mod:`hapdask.sky.static`) when
  ``static and use_static`` and the caller did not pass ``static_keys``;
* ``(prefix + "-ovl", p)``: one task per pair of chips of *different* exposures whose sky
  footprints may touch (a cheap centre-distance test at graph-build time): the pixels of each
  chip inside their overlap (:func:`hapdask.sky.overlap.chip_overlap`; WCS only);
* ``(prefix + "-meas", i)``: one task per chip, the only one reading its pixels: the chip's own
  statistic (localmin/globalmin/globalmin+match) and its statistic inside each of its overlaps
  (match), on good pixels (DQ per ``sky_bits``, static mask, finite);
* ``(prefix + "-solve",)``: one small task: minima, pairwise equations and their least-squares
  solution, the per-chip levels;
* ``(prefix, i)``: the :class:`SkyLevel` of chip ``i``.

Semantics (skypac ``skymatch`` as AstroDrizzle calls it): values are compared in surface
brightness, SCI value / (``pscale**2`` [x ``EXPTIME`` for counts]) (:func:`brightness_factor`).
An *exposure* is the chips sharing a rootname.

* ``localmin``: per exposure, the minimum over its chips of their statistic; every chip of the
  exposure gets it (converted back to its own SCI units).
* ``globalmin``: the minimum over all chips of all exposures, for every chip.
* ``match``: for each pair of exposures, the statistic of each exposure in their overlap
  (npix-weighted mean over the chip pairs); one equation ``d_e - d_f = sky_e - sky_f`` weighted
  by the mean pixel count; minimum-norm least squares (``pinv``); the offsets are shifted so
  that the lowest is 0 (the reference exposure). Exposures in no equation keep 0.
* ``globalmin+match``: the ``match`` offsets plus the minimum over all chips of (own statistic
  - own offset).
* fewer than two exposures with ``match``/``globalmin+match``: skymatch does nothing; sky 0.
* ``skysub=False``: 0, or the ``skyuser`` keyword's value with ``subtract=False``.

MDRIZSKY: :attr:`SkyLevel.value` *is* the MDRIZSKY AstroDrizzle writes into each input chip's
SCI header (SCI units of that chip: electrons for ACS/WFC3-UVIS FLT/FLC, electrons/s for
WFC3/IR). The engine records it per input chip (header of the chip / HDRTAB row) and subtracts
it from SCI (in SCI units, before the conversion to e-/s) when ``subtract`` is True.

An unusable chip (unreadable, no finite pixel) gets ``ok=False`` and a reason and is left out
of every minimum and equation; the others get their values.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from hapdask.profile import timed
from hapdask.sky.level import SkyLevel
from hapdask.sky.overlap import Overlap, chip_overlap, corners_sky
from hapdask.sky.params import SkyParams
from hapdask.sky.static import static_mask_tasks
from hapdask.sky.stats import brightness_factor, gather_first_pass, good_sky_pixels, sky_statistic

__all__ = ["AstroDrizzleSky", "ChipMeasure", "measure_chip", "solve_sky"]


@dataclass(frozen=True)
class ChipMeasure:
    """What :func:`measure_chip` found in one chip.

    Attributes
    ----------
    ok : bool
        False when the chip is unusable (``reason`` says why).
    reason : str
    own : tuple (value, npix) or None
        The chip's statistic (SCI units) over all its good pixels, when asked and measurable.
    overlaps : dict
        Pair index -> (value, npix): the statistic of the chip's good pixels inside that overlap.
    note : str
        Why ``own`` is missing when it was asked for.
    """

    ok: bool
    reason: str = ""
    own: tuple[float, int] | None = None
    overlaps: dict = field(default_factory=dict)
    note: str = ""


def measure_chip(ref, params: SkyParams, static: np.ndarray | None,
                 overlaps: Sequence[Overlap | None], sides: Sequence[int],
                 pair_ids: Sequence[int], own: bool) -> ChipMeasure:
    """Read one chip and measure its sky statistics (never raises for bad data).

    Parameters
    ----------
    ref : hapdask.mosaic.inputs.ChipRef
    params : SkyParams
    static : ndarray of bool or None
        Static mask of the chip (True = good), or None.
    overlaps, sides, pair_ids : sequences of equal length
        Overlap results of the chip's pairs, which side (0: ``a``, 1: ``b``) is this chip,
        and the pair indices to report them under.
    own : bool
        Also measure the chip's statistic over all its good pixels.
    """
    try:
        with timed("read"):
            sci, _, dq = ref.chip.read(err=False)  # ERR is not used
    except Exception as exc:  # any failure to read makes the chip unusable, not the graph
        return ChipMeasure(False, f"cannot read pixels: {exc}")
    finite = np.isfinite(sci)
    if not finite.any():
        return ChipMeasure(False, "all pixels NaN (no finite pixel)")
    if static is not None and static.shape != sci.shape:
        return ChipMeasure(False, f"static mask shape {static.shape} != chip {sci.shape}")
    with timed("mask"):
        good = good_sky_pixels(sci, dq, params.bits, static)
    mine = None
    note = ""
    if own:
        try:
            with timed("stats"):
                # sci[good] (whole rows) with the first clipping pass in the same loop
                ny, nx = sci.shape
                vals, first = gather_first_pass(sci, good, 0, np.zeros(ny, np.int64),
                                                np.full(ny, nx - 1, np.int64),
                                                params.skylower, params.skyupper)
                mine = sky_statistic(vals, params, first)
        except ValueError as exc:
            note = f"no sky statistic: {exc}"
    found = {}
    # overlaps selecting the same pixels have the same statistic: measured once (the chips of
    # exposures at one pointing, e.g. a CR-SPLIT, cover this chip alike)
    done: dict[tuple, tuple[float, int] | None] = {}
    for ov, side, pid in zip(overlaps, sides, pair_ids, strict=True):
        if ov is None:
            continue
        sp = ov.a if side == 0 else ov.b
        key = (sp.y0, sp.xlo.tobytes(), sp.xhi.tobytes())
        if key not in done:
            done[key] = _span_statistic(sci, good, sp, params)
        if done[key] is not None:
            found[int(pid)] = done[key]
    return ChipMeasure(True, "", mine, found, note)


def _span_statistic(sci: np.ndarray, good: np.ndarray, sp, params: SkyParams
                    ) -> tuple[float, int] | None:
    """The statistic of the good pixels of ``sci`` inside the spans ``sp``; None when there
    is nothing to measure."""
    with timed("gather"):  # with the statistic's first clipping pass, in the same loop
        vals, first = gather_first_pass(sci, good, sp.y0, sp.xlo, sp.xhi, params.skylower,
                                        params.skyupper)
    if vals.size == 0:
        return None
    try:
        with timed("stats"):
            return sky_statistic(vals, params, first)
    except ValueError:
        return None


@dataclass(frozen=True)
class _Meta:
    exposure: int
    factor: float
    exptime: float
    is_rate: bool


def _level(m: _Meta, brightness: float, ngood: int, note: str = "") -> SkyLevel:
    value = float(brightness / m.factor)
    rate = value if m.is_rate else (value / m.exptime if m.exptime > 0 else 0.0)
    return SkyLevel(value, float(rate), int(ngood), True, note)


def _min_brightness(meta, measures, idx, offsets=None) -> float | None:
    best = None
    for i in idx:
        ms = measures[i]
        if not ms.ok or ms.own is None:
            continue
        b = meta[i].factor * ms.own[0]
        if offsets is not None:
            b -= offsets[meta[i].exposure]
        if best is None or b < best:
            best = b
    return best


def _match_offsets(meta, measures, pairs, nexp) -> np.ndarray:
    """Sky offsets per exposure (brightness; NaN where undetermined), lowest 0."""
    ssum = np.zeros((nexp, nexp))
    wsum = np.zeros((nexp, nexp))
    for p, (i, j) in enumerate(pairs):
        ei, ej = meta[i].exposure, meta[j].exposure
        for c, e, f in ((i, ei, ej), (j, ej, ei)):
            ms = measures[c]
            if not ms.ok or p not in ms.overlaps:
                continue
            value, npix = ms.overlaps[p]
            if npix > 0:
                ssum[e, f] += meta[c].factor * value * npix
                wsum[e, f] += npix
    rows, rhs = [], []
    used = np.zeros(nexp, dtype=bool)
    for e in range(nexp):
        for f in range(e + 1, nexp):
            if wsum[e, f] > 0 and wsum[f, e] > 0:
                w = 0.5 * (wsum[e, f] + wsum[f, e])
                k = np.zeros(nexp)
                k[e], k[f] = w, -w
                rows.append(k)
                rhs.append(w * (ssum[e, f] / wsum[e, f] - ssum[f, e] / wsum[f, e]))
                used[e] = used[f] = True
    deltas = np.full(nexp, np.nan)
    if rows:
        sol = np.linalg.pinv(np.array(rows), rcond=1e-12) @ np.array(rhs)
        deltas[used] = sol[used]
    good = np.isfinite(deltas)
    deltas[good] -= np.amin(deltas[good], initial=0.0)
    return deltas


def solve_sky(meta: Sequence[_Meta], params: SkyParams, measures: Sequence[ChipMeasure],
              pairs: Sequence[tuple[int, int]]) -> list[SkyLevel]:
    """The per-chip :class:`SkyLevel` from the measurements (module docstring)."""
    n = len(meta)
    nexp = 1 + max((m.exposure for m in meta), default=-1)
    method = params.skymethod
    out: list[SkyLevel | None] = [None] * n
    for i, ms in enumerate(measures):
        if not ms.ok:
            out[i] = SkyLevel(0.0, 0.0, 0, False, ms.reason)

    def ngood(i):
        ms = measures[i]
        if ms.own is not None:
            return ms.own[1]
        return sum(v[1] for v in ms.overlaps.values())

    def fill(brightness_of, note_of):
        for i in range(n):
            if out[i] is None:
                out[i] = _level(meta[i], brightness_of(i), ngood(i), note_of(i))
        return out

    if "match" in method:
        exps_present = {meta[i].exposure for i in range(n)}
        if len(exps_present) < 2:
            return fill(lambda i: 0.0,
                        lambda i: "sky matching needs >= 2 exposures: sky 0 (as AstroDrizzle)")
        try:
            d = _match_offsets(meta, measures, pairs, nexp)
        except np.linalg.LinAlgError as exc:  # AstroDrizzle falls back to a simpler method
            method = "globalmin" if method.startswith("globalmin") else "localmin"
            fallback = f"sky matching failed ({exc}): {method}"
        else:
            solved = np.isfinite(d)
            off = np.where(solved, d, 0.0)
            base = 0.0
            if method == "globalmin+match":
                b = _min_brightness(meta, measures, range(n), off)
                base = 0.0 if b is None else b
            undetermined = "no usable overlap with another exposure: sky offset 0"
            return fill(lambda i: off[meta[i].exposure] + base,
                        lambda i: "" if solved[meta[i].exposure] else undetermined)
    else:
        fallback = ""
    if method == "globalmin":
        b = _min_brightness(meta, measures, range(n))
        note = fallback or ("" if b is not None else "no chip has a sky statistic: sky 0")
        return fill(lambda i: 0.0 if b is None else b, lambda i: note)
    # localmin
    per_exp = {}
    for e in range(nexp):
        per_exp[e] = _min_brightness(meta, measures, [i for i in range(n)
                                                      if meta[i].exposure == e])

    def note_local(i):
        if per_exp[meta[i].exposure] is None:
            return "no chip of the exposure has a sky statistic: sky 0"
        return fallback or measures[i].note
    return fill(lambda i: per_exp[meta[i].exposure] or 0.0, note_local)


def _center_radius(ref) -> tuple[np.ndarray, float] | None:
    try:
        c = corners_sky(ref)
    except Exception:  # a chip without usable WCS has no overlaps; its measure reports it
        return None
    ra, dec = np.radians(c[:, 0]), np.radians(c[:, 1])
    xyz = np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    mid = xyz.mean(axis=0)
    mid /= np.linalg.norm(mid)
    radius = float(np.max(np.arccos(np.clip(xyz @ mid, -1, 1))))
    return mid, radius


def _candidate_pairs(chips: Sequence, exposure_of: Sequence[int]) -> list[tuple[int, int]]:
    geo = [_center_radius(c) for c in chips]
    pairs = []
    for i in range(len(chips)):
        for j in range(i + 1, len(chips)):
            if exposure_of[i] == exposure_of[j] or geo[i] is None or geo[j] is None:
                continue
            sep = float(np.arccos(np.clip(geo[i][0] @ geo[j][0], -1, 1)))
            if sep <= geo[i][1] + geo[j][1]:
                pairs.append((i, j))
    return pairs


def _skyuser_levels(chips: Sequence, keyword: str) -> list[SkyLevel]:
    out = []
    for ref in chips:
        hdr = ref.chip.header
        if keyword not in hdr:
            raise ValueError(f"{ref.chip.path}: SCI,{ref.key[1]}: skyuser keyword "
                             f"{keyword!r} not in the header")
        try:
            value = float(hdr[keyword])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{ref.chip.path}: SCI,{ref.key[1]}: skyuser keyword "
                             f"{keyword}={hdr[keyword]!r} is not a number") from exc
        rate = value if ref.is_rate else (value / ref.exptime if ref.exptime > 0 else 0.0)
        out.append(SkyLevel(value, rate, 0, True, "", subtract=False))
    return out


@dataclass(frozen=True)
class AstroDrizzleSky:
    """AstroDrizzle's sky step as a :class:`hapdask.sky.level.SkyMethod`.

    Parameters
    ----------
    params : SkyParams
    static_keys : mapping chip key -> Dask key, optional
        Static masks already in the caller's graph (:func:`hapdask.sky.static_mask_tasks`);
        when None and ``params.static and params.use_static``, the static-mask tasks are built
        here (under ``prefix + "-static"``).
    """

    params: SkyParams = field(default_factory=SkyParams)
    static_keys: Mapping | None = None

    @property
    def name(self) -> str:
        return "astrodrizzle-" + (self.params.skymethod if self.params.skysub else "nosub")

    def tasks(self, chips: Sequence, prefix: str) -> tuple[dict, list]:
        """``(graph, keys)``: the tasks (module docstring) and each chip's SkyLevel key."""
        p = self.params
        chips = list(chips)
        keys = [(prefix, i) for i in range(len(chips))]
        if not p.skysub:
            if p.skyuser.strip():
                levels = _skyuser_levels(chips, p.skyuser.strip())
            else:
                levels = [SkyLevel(0.0, 0.0, 0) for _ in chips]
            return dict(zip(keys, levels, strict=True)), keys
        graph: dict = {}
        static_keys = self.static_keys
        if static_keys is None and p.static and p.use_static:
            g, static_keys = static_mask_tasks(chips, f"{prefix}-static", p.static_sig)
            graph.update(g)
        if not p.use_static:
            static_keys = None
        names: dict[str, int] = {}
        exposure_of = [names.setdefault(c.key[0], len(names)) for c in chips]
        meta = [_Meta(e, brightness_factor(c.pscale, c.exptime, c.is_rate), c.exptime,
                      c.is_rate) for c, e in zip(chips, exposure_of, strict=True)]
        pairs = _candidate_pairs(chips, exposure_of) if "match" in p.skymethod else []
        per_chip: list[list[tuple]] = [[] for _ in chips]
        for k, (i, j) in enumerate(pairs):
            okey = (f"{prefix}-ovl", k)
            graph[okey] = (chip_overlap, chips[i], chips[j])
            per_chip[i].append((okey, 0, k))
            per_chip[j].append((okey, 1, k))
        own = p.skymethod != "match"
        mkeys = []
        for i, c in enumerate(chips):
            mkey = (f"{prefix}-meas", i)
            skey = None if static_keys is None else static_keys.get(c.key)
            lst = per_chip[i]
            graph[mkey] = (measure_chip, c, p, skey, [t[0] for t in lst],
                           [t[1] for t in lst], [t[2] for t in lst], own)
            mkeys.append(mkey)
        skey = (f"{prefix}-solve",)
        graph[skey] = (solve_sky, meta, p, mkeys, pairs)
        for i, k in enumerate(keys):
            graph[k] = (operator.getitem, skey, i)
        return graph, keys
