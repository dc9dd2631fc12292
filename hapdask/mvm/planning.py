"""The MVM plan of one SkyCell: layers, bounded output grids, tiles, and chips per tile.

:func:`plan` opens every input lazily (headers only), applies the MVM analyze rules, groups the
survivors into layers, bounds each scale's output array by the footprints of *all* inputs
(kept, rejected and ``OLD`` alike, as DrizzlePac does) and cuts the array into square tiles.
For every tile it lists the chips that touch it together with the box of input pixels whose
footprint can land in the tile: that list *is* the task graph of :func:`hapdask.mvm.layers`.

Nothing here reads pixels. Bad inputs are recorded in :attr:`MvmPlan.rejected` with a reason,
never raised: one unreadable exposure must not take the SkyCell down.

Pixel coordinates are 0-based everywhere in this module; windows and boxes are
``(y0, y1, x0, x1)``, half-open.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

import skycells
from hapdask.align.params import ALIGNED_MARKS, MVM_ALIGN_MARGIN
from hapdask.io import linear_pixel_scale
from hapdask.mosaic.grid import OutputGrid
from hapdask.mosaic.inputs import ChipKey, ChipRef, detector_noise
from hapdask.mosaic.products import find_crmask
from hapdask.mosaic.tiles import (
    SAMPLE_STEP,
    ChipPlacement,
    Tile,
    chip_tile_boxes,
    footprint_margin,
    plan_tiles,
)
from hapdask.mosaic.wcsio import (
    header_wcs,
    serialize_wcs,
    thread_header_wcs,
    thread_wcs,
    updated_wcs_bytes,
    wcs_from_bytes,
)
from skycells import SkyCell

# ChipRef, Tile, the WCS transport and chip_tile_boxes live in hapdask.mosaic (the engine);
# they are re-exported here for the MVM API.
__all__ = ["ChipRef", "InputInfo", "LayerPlan", "MvmPlan", "Rejection", "SAMPLE_STEP", "Tile",
           "chip_tile_boxes", "header_wcs", "plan", "serialize_wcs", "thread_header_wcs",
           "thread_wcs", "updated_wcs_bytes", "wcs_from_bytes"]


def _applied_header(header: fits.Header, update: WCS | fits.Header | None) -> fits.Header:
    """A chip's SCI header as drizzled: the update's keywords (WCSNAME, fit keywords) applied.

    Only a header update carries a WCSNAME; the chip header is returned as it is otherwise.
    """
    if not isinstance(update, fits.Header):
        return header
    out = header.copy()
    for card in update.cards:
        if card.keyword and card.keyword not in ("COMMENT", "HISTORY"):
            out[card.keyword] = (card.value, card.comment)
    return out


# -- plan records --------------------------------------------------------------------------
@dataclass
class InputInfo:
    """One input exposure that passed the rules."""

    path: str
    rootname: str
    instrument: str
    detector: str
    filter: str
    flc: bool
    exptime: float
    expstart: float
    expend: float
    primary: fits.Header
    sci_headers: list[fits.Header]
    chips: list[ChipRef]
    warnings: list[str] = field(default_factory=list)

    @property
    def group(self) -> tuple[str, str, str]:
        return (self.instrument, self.detector, self.filter)


@dataclass
class Rejection:
    """An input (or chip) left out of the layers, and why."""

    path: str
    rule: str
    reason: str

    def __str__(self) -> str:
        return f"{os.path.basename(self.path)}: {self.rule}: {self.reason}"


@dataclass
class LayerPlan:
    """One MVM layer (detector + filter at one scale)."""

    name: str
    filename: str
    instrument: str
    detector: str
    filter: str
    scale: str
    scale_arcsec: float
    flc: bool
    inputs: list[InputInfo]
    chips: list[ChipRef]
    wcs_header: fits.Header
    shape: tuple[int, int]
    tile_size: int
    tiles: list[Tile]
    full_cell_pixels: int
    polygons: list[np.ndarray]
    bits: int | None

    @property
    def nplanes(self) -> int:
        return max(1, math.ceil(len(self.chips) / 32))

    @property
    def ntiles(self) -> tuple[int, int]:
        return (-(-self.shape[0] // self.tile_size), -(-self.shape[1] // self.tile_size))

    def wcs(self) -> WCS:
        """A new pure-TAN WCS of the layer grid."""
        return header_wcs(self.wcs_header.tostring())

    def iscale(self, chip: ChipRef) -> float:
        """Flux scale of a chip: (output pixel scale / input pixel scale) ** 2."""
        return (self.scale_arcsec / chip.pscale) ** 2

    def task_memory(self, context: bool = True) -> int:
        """Estimated peak bytes of the largest tile task of this layer."""
        t = self.tile_size
        per_out = 8 + 8 + 4 + 4 + (4 * self.nplanes if context else 0)
        best = 0
        for tile in self.tiles:
            y0, y1, x0, x1 = tile.window
            region = 0
            for _, (a, b, c, d) in tile.contribs:
                region = max(region, (b - a + 2) * (d - c + 2))
            per_in = 4 + 4 + 2 + 16 + 4 + 4 + 1
            best = max(best, (y1 - y0) * (x1 - x0) * per_out + region * per_in)
        return best or t * t * per_out


@dataclass
class GraphAlignment:
    """Alignment computed inside the run's graph (``plan(..., refcat=...)``).

    The plan is drawn on the a-priori WCS of the chips in :attr:`chips`, with their input
    boxes and the output grids grown by :attr:`margin`; their updated WCS reaches the drizzle
    tasks as Dask keys (:func:`hapdask.mvm.graph.build_graph`), each tile waiting only for the
    visits whose chips it uses.

    Attributes
    ----------
    job : hapdask.align.AlignJob
        The alignment graph of every readable input (the fit of a visit uses all of its
        exposures, rejected ones included, as in a separate alignment run).
    margin : float
        Largest accepted correction (arcsec); larger ones keep the a-priori WCS
        (:func:`hapdask.align.pipeline.limit_corrections`).
    chips : frozenset
        ``(rootname, extver)`` of the chips whose WCS the graph's alignment sets (inputs
        already holding a FIT_SVM/FIT_MVM solution, or given a ``wcs_updates`` entry, are not).
    identity : str
        The catalog's identity (file, size, modification time), margin and fit label: part of
        the plan and tile fingerprints, since the updates are not known when planning.
    step : int
        Sampling step of the tile boxes (the tile tasks narrow the grown boxes of the aligned
        chips to those of their aligned WCS, :func:`hapdask.mvm.graph.aligned_boxes`).
    result : hapdask.align.AlignResult or None
        Set once the graph has run (:func:`hapdask.mvm.runner.write_layers`).
    """

    job: object
    margin: float
    chips: frozenset
    identity: str
    step: int = SAMPLE_STEP
    result: object | None = None

    def visit_of(self, key: ChipKey) -> int | None:
        """Index of the fitted visit (key of :meth:`AlignJob.checked_tasks`) of a graph-aligned
        chip, None for any other chip."""
        if key not in self.chips:
            return None
        return self.job.visit_of().get(key[0])


def _catalog_identity(refcat) -> str:
    path = getattr(refcat, "path", None)
    if path is None and isinstance(refcat, str | os.PathLike):
        path = refcat
    if path is not None:
        try:
            st = os.stat(path)
            return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"
        except OSError:
            return str(path)
    return f"{type(refcat).__name__}|{getattr(refcat, 'name', '')}"


@dataclass
class MvmPlan:
    """Everything :func:`hapdask.mvm.layers` and the exporters need.

    Attributes
    ----------
    skycell : str
        SkyCell name (``skycell-p1889x07y19``).
    layers : dict
        Layer name (product file stem) -> :class:`LayerPlan`, sorted by name.
    inputs : list of InputInfo
        Inputs used, in the fixed drizzle order (EXPSTART, rootname).
    rejected : list of Rejection
        Inputs left out, with the reason.
    tile_size : int
    context : bool
        Whether CTX is built.
    crmasks : dict
        ``(rootname, extver) -> path`` of the cosmic-ray mask file (``<rootname>_crmask.fits``
        of ``hapdask drizzle``) of each chip that has one; its flagged pixels get weight 0.
    alignment : GraphAlignment or None
        Alignment inside the graph (``refcat=``): the plan is drawn on the a-priori WCS of
        its chips, grown by its margin.
    """

    skycell: str
    layers: dict[str, LayerPlan]
    inputs: list[InputInfo]
    rejected: list[Rejection]
    tile_size: int
    context: bool = True
    crmasks: dict = field(default_factory=dict)
    alignment: GraphAlignment | None = None

    @property
    def fingerprint(self) -> str:
        """Hash of everything that determines the output pixels."""
        h = hashlib.sha256()
        h.update(f"{self.skycell}|{self.tile_size}|{self.context}".encode())
        for name, lay in self.layers.items():
            h.update(name.encode())
            h.update(lay.wcs_header.tostring().encode())
            for c in lay.chips:
                h.update(f"{c.chip.path}|{c.key}|{c.exptime}|{c.bits}|{c.pscale!r}|"
                         f"{c.content}".encode())
                if c.wcs_bytes is not None:
                    h.update(hashlib.sha256(c.wcs_bytes).digest())
        for key, path in sorted(self.crmasks.items()):
            st = os.stat(path)
            h.update(f"crmask|{key}|{path}|{st.st_size}|{st.st_mtime_ns}".encode())
        if self.alignment is not None:
            h.update(f"align|{self.alignment.identity}|{sorted(self.alignment.chips)}".encode())
        return h.hexdigest()[:16]

    def reject_chips(self, bad: Mapping[ChipKey, str]) -> None:
        """Drop chips found unusable while reading pixels (e.g. all NaN) from every layer.

        Tiles, context ids and polygons are rebuilt; the reasons go to :attr:`rejected`.
        """
        if not bad:
            return
        for key, reason in bad.items():
            path = next((c.chip.path for i in self.inputs for c in i.chips if c.key == key), "")
            self.rejected.append(Rejection(path, "DATA", f"SCI,{key[1]}: {reason}"))
        for name in list(self.layers):
            lay = self.layers[name]
            keep = [i for i, c in enumerate(lay.chips) if c.key not in bad]
            if not keep:
                del self.layers[name]
                continue
            if len(keep) == len(lay.chips):
                continue
            remap = {old: new for new, old in enumerate(keep)}
            lay.chips = [lay.chips[i] for i in keep]
            lay.polygons = [lay.polygons[i] for i in keep]
            for t in lay.tiles:
                t.contribs = [(remap[i], b) for i, b in t.contribs if i in remap]
            used = {c.key[0] for c in lay.chips}
            lay.inputs = [i for i in lay.inputs if i.rootname in used]
        used = {i.rootname for lay in self.layers.values() for i in lay.inputs}
        self.inputs = [i for i in self.inputs if i.rootname in used]

    def apply_alignment(self, result) -> None:
        """Record the outcome of the alignment computed in the graph: the SCI headers of the
        inputs (:attr:`InputInfo.sci_headers`, what HDRTAB and the ``D###WKEY`` cards show)
        of the graph-aligned chips take their update's keywords (WCSNAME, fit keywords).

        ``result`` is the :class:`hapdask.align.AlignResult` of :attr:`alignment`'s job.
        """
        if self.alignment is None:
            return
        got = {(str(k[0]).lower(), int(k[1])): v for k, v in result.wcs_updates().items()}
        for info in self.inputs:
            for i, c in enumerate(info.chips):
                if c.key in self.alignment.chips and c.key in got:
                    info.sci_headers[i] = _applied_header(info.sci_headers[i], got[c.key])

    def describe(self, context: bool | None = None) -> str:
        """Human-readable plan (what ``hapdask mvm --dry-run`` prints)."""
        context = self.context if context is None else context
        out = [f"SkyCell {self.skycell}: {len(self.layers)} layer(s) from "
               f"{len(self.inputs)} input exposure(s); tile size {self.tile_size}"]
        if self.alignment is not None:
            al = self.alignment
            out.append(f"  alignment to {al.job.catalog} inside the graph: "
                       f"{len(al.job.keys)} visit fit(s); {len(al.chips)} chip(s) planned on "
                       f"their a-priori WCS grown by the {al.margin:g}\" margin")
        for lay in self.layers.values():
            ny, nx = lay.shape
            nty, ntx = lay.ntiles
            hdr = lay.wcs_header
            npt = [len(t.contribs) for t in lay.tiles]
            busy = sum(1 for n in npt if n)
            out.append(
                f"  {lay.filename}\n"
                f"    {lay.scale} {lay.scale_arcsec:.2f}\"/px, {nx} x {ny} px "
                f"(CRPIX {hdr['CRPIX1']:.1f}, {hdr['CRPIX2']:.1f}), {lay.nplanes} ctx plane(s)\n"
                f"    {len(lay.inputs)} exposure(s), {len(lay.chips)} chip(s), DQ good bits "
                f"{lay.bits}\n"
                f"    tiles {nty} x {ntx} = {nty * ntx} ({busy} with data); inputs per tile "
                f"min {min(npt)} / max {max(npt)} / mean {np.mean(npt):.1f}\n"
                f"    estimated memory per tile task {lay.task_memory(context) / 2**20:.0f} MiB")
            for t in lay.tiles:
                if t.contribs and len(lay.tiles) <= 64:
                    names = ", ".join(f"{lay.chips[i].key[0]}:{lay.chips[i].key[1]}"
                                      for i, _ in t.contribs)
                    out.append(f"      tile {t.index}: {names}")
        if self.rejected:
            out.append(f"  rejected ({len(self.rejected)}):")
            out.extend(f"    {r}" for r in self.rejected)
        return "\n".join(out)


# -- helpers ------------------------------------------------------------------------------
def _to_output_pixels(cell_wcs: WCS, radec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = cell_wcs.wcs_world2pix(radec[:, 0], radec[:, 1], 0)
    return np.asarray(x), np.asarray(y)


def _header_float(h: fits.Header, key: str, default: float = 0.0) -> float:
    try:
        return float(h.get(key, default))
    except (TypeError, ValueError):
        return default


def _old_rows(items: Sequence[str]) -> set[str]:
    """Basenames of MVM poller rows flagged OLD (they only bound the output array)."""
    from hapdask.io import read_poller

    old: set[str] = set()
    for item in items:
        p = str(item)
        if os.path.isfile(p) and not p.lower().endswith((".fits", ".fits.gz", ".fit")):
            try:
                table = read_poller(p)
            except (OSError, ValueError):
                continue
            cols = {c.lower(): c for c in table.colnames}
            new_col = next((cols[c] for c in ("skycell_new", "new", "status") if c in cols), None)
            name_col = cols.get("filename")
            if new_col is None or name_col is None:
                continue
            for row in table:
                if str(row[new_col]).strip().upper() == "OLD":
                    old.add(os.path.basename(str(row[name_col])))
    return old


# -- the planner ---------------------------------------------------------------------------
def analyze_one(path: str, check_data: bool = True):
    """MVM analyze verdict of one input path; never raises (an unreadable file is rejected).
    ``check_data=False``: the header rules only (no pixel read, see
    :func:`hapdask.analyze.analyze_exposure`)."""
    from hapdask.analyze import Verdict, analyze_exposure

    try:
        return analyze_exposure(path, mode="mvm", check_data=check_data)
    except Exception as exc:
        return Verdict(False, "UNREADABLE", f"{type(exc).__name__}: {exc}")


def analyze_tasks(inputs) -> tuple[dict, list, list[str]]:
    """Dask tasks analysing every input in parallel: ``(graph, keys, paths)``.

    Compute the keys and pass ``dict(zip(paths, results))`` as ``verdicts`` to :func:`plan`.
    """
    from hapdask.io import resolve_inputs

    items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    paths = resolve_inputs(items)
    token = hashlib.sha256("|".join(paths).encode()).hexdigest()[:16]
    graph = {("mvm-analyze-" + token, i): (analyze_one, p) for i, p in enumerate(paths)}
    return graph, list(graph), paths


def plan(
    skycell: str | SkyCell,
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    tile_size: int = 2048,
    wcs_updates: Mapping[ChipKey, WCS | fits.Header] | None = None,
    context: bool = True,
    step: int = SAMPLE_STEP,
    verdicts: Mapping[str, object] | None = None,
    only: Iterable[str] | None = None,
    refcat: object | None = None,
    masks: str | os.PathLike | None = None,
    margin: float = MVM_ALIGN_MARGIN,
) -> MvmPlan:
    """Plan the MVM layers of a SkyCell.

    Parameters
    ----------
    skycell : str or SkyCell
        ``p1889x07y19`` or ``skycell-p1889x07y19``.
    inputs : poller, directory, list file, path(s) or URL(s)
        Anything :func:`hapdask.io.resolve_inputs` accepts. MVM poller rows marked ``OLD`` only
        bound the output arrays.
    tile_size : int
        Edge of the square output tiles (pixels) = task granularity and zarr shard size.
    wcs_updates : mapping, optional
        ``(rootname, extver) -> WCS or Header`` replacing a chip's WCS (alignment results, or
        the simulator's true WCS). Rootnames are matched case-insensitively.
    context : bool
        Build the CTX arrays.
    step : int
        Sampling step (input pixels) of the coarse pixel maps that find each tile's inputs.
    verdicts : mapping, optional
        ``path -> Verdict`` already computed by :func:`analyze_inputs` (e.g. in parallel on a
        cluster: the MVM guiding test reads every SCI,1 array); missing paths are analysed here.
    only : iterable of str, optional
        Keep only the layers whose name contains one of these strings (e.g. ``"f160w"``,
        ``"ir_f125w_coarse"``). The output grids still come from every input.
    refcat : RefCatalog or path, optional
        Align the inputs to this reference catalog inside the graph
        (:func:`hapdask.align.mvm_alignment_job`, corrections limited to ``margin``): nothing
        is computed here. The chips it aligns are planned on their a-priori WCS with their
        tile boxes and the output grids grown by ``margin``; their updated WCS reaches the
        drizzle tasks as Dask keys (:attr:`MvmPlan.alignment`). ``wcs_updates`` entries win.
    margin : float
        Alignment margin (arcsec) of ``refcat``; default
        :data:`hapdask.align.MVM_ALIGN_MARGIN`.
    masks : path, optional
        Directory of cosmic-ray masks (``<rootname>_crmask.fits``); a mask file beside an
        input is used too (``masks`` wins).

    Returns
    -------
    MvmPlan

    Raises
    ------
    ValueError
        For a bad SkyCell name or tile size, or when no input overlaps the SkyCell at all.
    """
    from hapdask.analyze import (
        SANITY_RULES,
        analyze_exposure,
        exposure_identity,
        find_duplicates,
        wcs_problem,
    )
    from hapdask.dqflags import mvm_final_bits
    from hapdask.io import content_identity, open_exposure, resolve_inputs

    if int(tile_size) < 16:
        raise ValueError(f"tile size must be at least 16 pixels, got {tile_size}")
    tile_size = int(tile_size)
    if not isinstance(skycell, SkyCell):
        skycell = SkyCell.from_name(str(skycell), scale="fine")
    cells = {"fine": SkyCell.from_name(skycell.name, scale="fine"),
             "coarse": SkyCell.from_name(skycell.name, scale="coarse")}
    items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    paths = resolve_inputs(items)
    old = _old_rows([str(i) for i in items])
    updates = {(str(k[0]).lower(), int(k[1])): v for k, v in (wcs_updates or {}).items()}

    rejected: list[Rejection] = []
    kept: list[InputInfo] = []
    opened: list = []  # every readable input: the alignment fits whole visits
    moving: set[ChipKey] = set()  # chips whose WCS the graph's alignment sets
    fixed_footprints: list[np.ndarray] = []
    moving_footprints: list[np.ndarray] = []
    for path in paths:
        try:
            exp = open_exposure(path)
        except (OSError, ValueError) as exc:
            rejected.append(Rejection(path, "UNREADABLE", str(exc)))
            continue
        except Exception as exc:
            rejected.append(Rejection(path, "UNREADABLE", f"{type(exc).__name__}: {exc}"))
            continue
        opened.append(exp)
        aligns = refcat is not None and not any(m in exp.wcsname.upper()
                                                for m in ALIGNED_MARKS)
        exp_moving = {(exp.rootname, c.extver) for c in exp.chips
                      if aligns and (exp.rootname, c.extver) not in updates}
        # per chip WCS (the update, when given) and footprint
        chip_wcs: dict[int, WCS] = {}
        chip_bytes: dict[int, bytes | None] = {}
        fps: list[np.ndarray] = []
        nominal = skycells.KNOWN_DETECTORS.get(exp.instrument.lower(), {}).get(
            exp.detector.lower())
        try:
            for chip in exp.chips:
                upd = updates.get((exp.rootname, chip.extver))
                if upd is not None:
                    b = updated_wcs_bytes(chip, upd)
                    w = wcs_from_bytes(b)
                    w.pixel_shape = (chip.shape[1], chip.shape[0])
                    chip_bytes[chip.extver] = b
                else:
                    w = chip.wcs()
                    chip_bytes[chip.extver] = None
                if nominal and upd is not None and (problem := wcs_problem(w, nominal)):
                    raise ValueError(f"SCI,{chip.extver} updated WCS: {problem}")
                chip_wcs[chip.extver] = w
                fps.append((skycells.wcs_outline(w), (exp.rootname, chip.extver) in exp_moving))
        except Exception as exc:
            known = (verdicts or {}).get(path)  # the sanity rules may already say why
            if known is not None and not known.keep:
                rejected.append(Rejection(path, str(known.rule), str(known.reason)))
            else:
                rejected.append(Rejection(path, "WCS", f"{exc}"))
            continue
        is_old = os.path.basename(path) in old
        verdict = None
        if not is_old:
            try:
                verdict = (verdicts or {}).get(path) or analyze_exposure(exp, mode="mvm")
            except Exception as exc:
                rejected.append(Rejection(path, "ANALYZE", f"{type(exc).__name__}: {exc}"))
                continue
        if verdict is None or verdict.keep or verdict.rule not in SANITY_RULES:
            # an insane WCS or header must not bound the grid
            fixed_footprints.extend(f for f, m in fps if not m)
            moving_footprints.extend(f for f, m in fps if m)
        if is_old:
            rejected.append(Rejection(path, "OLD", "poller row marked OLD (bounds the output "
                                      "array only)"))
            continue
        if not verdict.keep:
            rejected.append(Rejection(path, str(verdict.rule), str(verdict.reason)))
            continue
        if exp.kind not in ("flt", "flc"):
            rejected.append(Rejection(path, "KIND", f"{exp.kind.upper()} files are not MVM "
                                      "inputs (FLT/FLC expected)"))
            continue
        try:
            bits: int | None = mvm_final_bits(exp.instrument, exp.detector, 2, exp.filter)
        except ValueError:
            bits = 0
        try:
            content = content_identity(path)
        except OSError as exc:
            rejected.append(Rejection(path, "UNREADABLE", str(exc)))
            continue
        prim = exp.primary
        chips = []
        for chip in exp.chips:
            gain, rn = detector_noise(prim, chip.bunit)
            chips.append(ChipRef(
                key=(exp.rootname, chip.extver), chip=chip, exptime=float(exp.exptime),
                is_rate=bool(chip.is_rate), bits=bits,
                pscale=chip.pixel_scale,
                wcs_bytes=chip_bytes[chip.extver], gain=gain, readnoise=rn,
                signature=(exp.instrument, exp.detector, tuple(chip.shape),
                           chip.ccdchip if chip.ccdchip is not None else chip.extver),
                content=content))
        moving |= exp_moving
        expstart = _header_float(prim, "EXPSTART")
        kept.append(InputInfo(
            path=path, rootname=exp.rootname, instrument=exp.instrument, detector=exp.detector,
            filter=exp.filter, flc=exp.is_flc, exptime=float(exp.exptime), expstart=expstart,
            expend=_header_float(prim, "EXPEND", expstart), primary=prim,
            sci_headers=[_applied_header(c.header, updates.get((exp.rootname, c.extver)))
                         for c in exp.chips], chips=chips,
            warnings=list(getattr(verdict, "warnings", []) or [])))

    dups = find_duplicates((i.path, i.rootname, i.flc, exposure_identity(i.primary, i.sci_headers))
                           for i in kept)
    rejected.extend(Rejection(i.path, "D", dups[i.path]) for i in kept if i.path in dups)
    kept = [i for i in kept if i.path not in dups]
    kept.sort(key=lambda i: (i.expstart, i.rootname))
    groups: dict[tuple[str, str, str], list[InputInfo]] = {}
    for info in kept:
        groups.setdefault(info.group, []).append(info)

    bounded: dict[str, WCS] = {}
    layers: dict[str, LayerPlan] = {}
    for (instr, det, filt), members in groups.items():
        flc = any(m.flc for m in members)
        if flc:
            for m in members:
                if not m.flc:
                    rejected.append(Rejection(m.path, "FLT_WITH_FLC", "layer has FLC inputs; "
                                              "only FLC files are drizzled (drc)"))
            members = [m for m in members if m.flc]
        scales = ["fine"] + (["coarse"] if skycells.has_coarse_layer(instr, det) else [])
        for scale in scales:
            if scale not in bounded:
                bounded[scale] = _bounded_wcs(cells[scale], fixed_footprints,
                                              moving_footprints, margin)
            filename = skycells.layer_filename(cells[scale], instr, det, filt, scale, flc)
            if only is not None and not any(str(o).lower() in filename.lower() for o in only):
                continue
            layers[filename[:-5]] = _layer(
                filename, instr, det, filt, scale, flc, members, bounded[scale], cells[scale],
                tile_size, step, moving, margin)
    # a layer whose chips all fall outside the bounded grid has nothing to drizzle
    wanted = [str(o).lower() for o in only] if only is not None else None
    for name in list(layers):
        if not layers[name].chips or (wanted is not None
                                      and not any(w in name.lower() for w in wanted)):
            del layers[name]
    layers = dict(sorted(layers.items()))
    used = {i.rootname for lay in layers.values() for i in lay.inputs}
    for info in kept:
        if wanted is not None:
            break
        if info.rootname not in used and not any(r.path == info.path for r in rejected):
            rejected.append(Rejection(info.path, "NO_OVERLAP", "does not overlap the SkyCell"))
    inputs_used = [i for i in kept if i.rootname in used]
    crmasks = {}
    for info in inputs_used:
        found = find_crmask(info.path, info.rootname, masks)
        if found is not None:
            for c in info.chips:
                crmasks[c.key] = str(found)
    alignment = None
    if refcat is not None:
        # deferred: the fits import photutils, tweakwcs and gwcs (~2 s), needed only when aligning
        from hapdask.align.pipeline import mvm_alignment_job

        job = mvm_alignment_job(opened, refcat, margin=margin)
        alignment = GraphAlignment(job, float(margin), frozenset(moving),
                                   f"{_catalog_identity(refcat)}|{job.catalog}|{margin!r}|MVM",
                                   step=int(step))
    return MvmPlan(skycell=cells["fine"].name, layers=layers, inputs=inputs_used,
                   rejected=rejected, tile_size=tile_size, context=context, crmasks=crmasks,
                   alignment=alignment)


def _cell_box(cell: SkyCell, footprints: list[np.ndarray]) -> tuple[int, int, int, int] | None:
    """0-based inclusive ``(xmin, ymin, xmax, ymax)`` of :func:`skycells.bounded_wcs` (None
    when no footprint overlaps the cell)."""
    if not footprints:
        return None
    try:
        w = skycells.bounded_wcs(cell, footprints)
    except ValueError:
        return None
    xmin = round(cell.crpix[0] - w.wcs.crpix[0])
    ymin = round(cell.crpix[1] - w.wcs.crpix[1])
    return (xmin, ymin, xmin + int(w.pixel_shape[0]) - 1, ymin + int(w.pixel_shape[1]) - 1)


def _bounded_wcs(cell: SkyCell, fixed: list[np.ndarray], moving: list[np.ndarray],
                 margin: float) -> WCS:
    """:func:`skycells.bounded_wcs` of all footprints, where those of chips aligned inside the
    graph (``moving``, a-priori WCS) bound a sub-array grown by ``margin`` arcsec (clipped to
    the cell): wherever their alignment moves them, within the margin, they stay inside."""
    if not moving:
        try:
            return skycells.bounded_wcs(cell, fixed)
        except ValueError as exc:
            raise ValueError(f"{cell.name}: no input overlaps the SkyCell ({exc})") from None
    boxes = [b for b in (_cell_box(cell, fixed), _cell_box(cell, moving)) if b is not None]
    if not boxes:
        raise ValueError(f"{cell.name}: no input overlaps the SkyCell (none of the "
                         f"{len(fixed) + len(moving)} chip footprint(s) overlaps it)")
    if _cell_box(cell, moving) is not None:
        pad = math.ceil(margin / linear_pixel_scale(cell.wcs) - 1e-9)
        x0, y0, x1, y1 = boxes[-1]
        boxes[-1] = (x0 - pad, y0 - pad, x1 + pad, y1 + pad)
    ny, nx = cell.shape
    xmin = max(min(b[0] for b in boxes), 0)
    ymin = max(min(b[1] for b in boxes), 0)
    xmax = min(max(b[2] for b in boxes), nx - 1)
    ymax = min(max(b[3] for b in boxes), ny - 1)
    w = cell.wcs
    w.wcs.crpix = [cell.crpix[0] - xmin, cell.crpix[1] - ymin]
    w.pixel_shape = (xmax - xmin + 1, ymax - ymin + 1)
    w.wcs.set()
    return w


def _layer(filename, instr, det, filt, scale, flc, members, bwcs, cell, tile_size, step,
           moving=frozenset(), margin=0.0) -> LayerPlan:
    shape = (int(bwcs.pixel_shape[1]), int(bwcs.pixel_shape[0]))
    header = bwcs.to_header()
    header["NAXIS1"] = shape[1]
    header["NAXIS2"] = shape[0]
    scale_arcsec = linear_pixel_scale(bwcs)
    layer_wcs = header_wcs(header.tostring())
    chips: list[ChipRef] = []
    polys: list[np.ndarray] = []
    candidates = []
    inputs: list[InputInfo] = []
    for m in members:
        used = False
        for c in m.chips:
            w = c.wcs()
            grow = footprint_margin(c.pscale / scale_arcsec)
            if c.key in moving:  # aligned inside the graph: anywhere within the margin
                grow += margin / scale_arcsec
            boxes = chip_tile_boxes(w, c.shape, layer_wcs, shape, tile_size, grow, step)
            if not boxes:
                continue
            outline = skycells.wcs_outline(w)
            px, py = _to_output_pixels(layer_wcs, outline)
            chips.append(c)
            polys.append(np.column_stack([px, py]))
            candidates.append(boxes)
            used = True
        if used:
            inputs.append(m)
    # The sampled, conservative boxes are the drizzle boxes too: a tile task computes the pixel
    # map of its box anyway, and input pixels that land outside the tile add nothing, so the
    # products are those of exact boxes (FootprintIndex), without a full-chip pixel map per
    # chip in the client before any task runs (~0.6 s CPU per 4096 x 2048 chip).
    grid = OutputGrid(header.tostring())
    tiles = plan_tiles(grid, tile_size, [ChipPlacement(b, []) for b in candidates])
    bits = chips[0].bits if chips else None
    return LayerPlan(
        name=filename[:-5], filename=filename, instrument=instr, detector=det, filter=filt,
        scale=scale, scale_arcsec=scale_arcsec, flc=flc, inputs=inputs, chips=chips,
        wcs_header=header, shape=shape, tile_size=tile_size, tiles=tiles,
        full_cell_pixels=int(cell.shape[0]) * int(cell.shape[1]), polygons=polys, bits=bits)
