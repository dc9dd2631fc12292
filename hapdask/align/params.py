"""Alignment parameter sets: HAP's per-detector defaults (``hap_parameters.md``, SVM alignment).

One dataclass per step: :class:`SourceParams` (source finding on a chip), :class:`MatchParams`
(one of DrizzlePac's three fit methods), :class:`FitParams` (fit geometry, acceptance limits and
the method hierarchy).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hapdask.dqflags import DQ_FLAGS

#: WCSNAME marks of an a-posteriori solution already holding an SVM/MVM alignment.
ALIGNED_MARKS = ("-FIT_SVM", "-FIT_MVM")

#: Alignment margin (arcsec) of MVM runs: plans use the a-priori WCS, so a correction larger
#: than this is rejected (the exposure keeps its a-priori WCS, with the reason).
MVM_ALIGN_MARGIN = 3.0

_DQ = {flag.name: flag.value for flag in DQ_FLAGS}


@dataclass(frozen=True)
class SourceParams:
    """Source finding on one chip (``generate_source_catalogs``).

    Attributes
    ----------
    box_size, filter_size : int
        ``photutils.background.Background2D`` box (chip pixels) and median-filter size.
    bin_size : int
        Block size (chip pixels) of the binned image whose Background2D mesh is the background
        (:func:`hapdask.align.sources.find_sources`); 0: from ``box_size``
        (:func:`hapdask.align.sources.bin_factor`).
    bkg_estimator : {"sextractor", "median"}
        Background estimator (SExtractorBackground / MedianBackground); rms is StdBackgroundRMS.
    nsigma, threshold_scale : float
        Detection threshold = ``threshold_scale * nsigma * rms`` above the background
        (HAP: ``nsigma=3``, ``threshold=-1.1``).
    fwhmpsf : float
        PSF FWHM in arcsec (detection kernel ``fwhmpsf / pixel scale``).
    max_sources : int
        Brightest sources kept per chip (HAP ``MAX_SOURCES_PER_CHIP`` = 250).
    sharp_range, round_max : tuple, float
        DAOStarFinder sharpness limits and |roundness| limit: cosmic-ray hits (too sharp) and
        blends are dropped (HAP's ``classify``).
    reject_bits : int
        DQ bits that reject a detection when set within ``reject_radius`` FWHM of it:
        saturation (256) and cosmic-ray flags (4096 CR, 8192 CR_CALIBRATION).
    ignore_bits : int
        DQ bits treated as good when masking pixels (HAP: 256 and 2048 are not masked).
    """

    box_size: int = 27
    filter_size: int = 3
    bin_size: int = 0
    bkg_estimator: str = "sextractor"
    nsigma: float = 3.0
    threshold_scale: float = 1.1
    fwhmpsf: float = 0.13
    max_sources: int = 250
    sharp_range: tuple[float, float] = (0.2, 1.0)
    round_max: float = 1.0
    reject_bits: int = _DQ["SATURATED"] | _DQ["CR_DRIZZLE"] | _DQ["CR_CALIBRATION"]
    reject_radius: float = 1.5
    ignore_bits: int = _DQ["SATURATED"] | 2048


@dataclass(frozen=True)
class MatchParams:
    """One DrizzlePac fit method: ``tweakwcs.XYXYMatch`` settings (tangent-plane pixels)."""

    name: str
    searchrad: float
    separation: float
    tolerance: float
    use2dhist: bool


#: The three methods of ``align_utils`` (relative, 2dhist, default), ACS/WFC and UVIS values.
RELATIVE = MatchParams("relative", 125.0, 4.0, 2.0, True)
HIST2D = MatchParams("2dhist", 400.0, 4.0, 2.0, True)
DEFAULT = MatchParams("default", 250.0, 0.1, 10.0, False)


@dataclass(frozen=True)
class FitParams:
    """Fit geometry, acceptance limits and method order (``run_align``, ``determine_fit_quality``).

    Attributes
    ----------
    methods : tuple of MatchParams
        Tried in order for a visit of several exposures; the first method is dropped for a
        single exposure (as ``fit_algorithm_list_n1``).
    fitgeom_min : tuple of (geometry, min matches)
        Fit geometry by number of matches, walked from the first: ``rscale`` with >= 12 matches
        (``mosaic_fitgeom_list``), then the documented fall-backs ``rshift`` (>= 6) and ``shift``
        (>= ``min_matches``). Fewer than ``min_matches`` matches: the fit fails.
    min_matches : int
        ``MIN_FIT_MATCHES``.
    max_fit_rms : float
        ``MAX_FIT_RMS`` (mas): quality 1 below, quality 3 above.
    max_fit_limit : float
        ``MAX_FIT_LIMIT`` (mas): a fit rms above it fails.
    max_scale, max_rot, max_skew : float
        A fit with (|scale - 1| > ``max_scale`` or |rotation| > ``max_rot`` deg) and
        skew > ``max_skew`` fails.
    max_rel_shift : float
        Largest relative shift (arcsec) between exposures of one visit
        (``check_consistency``'s shift tolerance).
    nclip, sigma : int, float
        tweakwcs clipping iterations and threshold (rmse units).
    max_correction : float or None
        Largest accepted correction (arcsec) anywhere on a chip; a larger one fails with a
        reason (the MVM plan's alignment margin). None: no limit.
    apply_relative_only : bool
        When the absolute fit fails but the relative one succeeded, apply the relative
        solution (WCSNAME ``...-FIT_SVM_NONE``) instead of keeping the a-priori WCS.
    label : str
        Fit label in WCSNAME (``SVM``; ``MVM`` for in-run MVM alignment).
    """

    methods: tuple[MatchParams, ...] = (RELATIVE, HIST2D, DEFAULT)
    fitgeom_min: tuple[tuple[str, int], ...] = (("rscale", 12), ("rshift", 6), ("shift", 4))
    min_matches: int = 4
    max_fit_rms: float = 20.0
    max_fit_limit: float = 150.0
    max_scale: float = 0.01
    max_rot: float = 0.1
    max_skew: float = 0.01
    max_rel_shift: float = 1.0
    nclip: int = 1
    sigma: float = 3.0
    max_correction: float | None = None
    apply_relative_only: bool = False
    label: str = "SVM"

    def with_(self, **kw) -> FitParams:
        """A copy with some fields changed."""
        return replace(self, **kw)


def source_params(instrument: str, detector: str) -> SourceParams:
    """HAP's source-finding defaults for a detector (``generate_source_catalogs``).

    WFC3/IR, ACS/HRC, ACS/SBC and WFPC2: 13 px background box and a median estimator, no
    classification; ACS/WFC and WFC3/UVIS: 27 px box, SExtractor estimator. ``fwhmpsf`` is
    0.13" everywhere.
    """
    det = f"{instrument}/{detector}".upper()
    if det in ("WFC3/IR", "ACS/HRC", "ACS/SBC") or instrument.upper() == "WFPC2":
        return SourceParams(box_size=13, bkg_estimator="median")
    return SourceParams()


def fit_params(instrument: str, detector: str) -> FitParams:
    """HAP's fit defaults for a detector: the 2dhist search radius is 250 for IR/HRC/SBC/PC."""
    det = f"{instrument}/{detector}".upper()
    if det in ("WFC3/IR", "ACS/HRC", "ACS/SBC") or instrument.upper() == "WFPC2":
        return FitParams(methods=(RELATIVE, replace(HIST2D, searchrad=250.0), DEFAULT))
    return FitParams()
