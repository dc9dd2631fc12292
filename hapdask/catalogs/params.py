"""HAP's catalog-generation and flagging parameters per detector (SVM ``catalog generation`` and
``quality control`` configuration, see ``../shared/design/hap_parameters.md``).

One frozen dataclass holds every value the catalog modules use; :meth:`CatalogParams.for_detector`
returns HAP's SVM values for ``acs_wfc``, ``wfc3_uvis`` and ``wfc3_ir``. Values that HAP looks up
elsewhere are given here too: the CI limits are the configuration's defaults
(``ci_lower_limit``/``ci_upper_limit``), not the per-filter ``ci_ap_cor_table_ap_20_2016.txt``
lookup (choice documented in :mod:`hapdask.catalogs.flags`), and ``crfactor`` is the
CR-contamination factor of inventory 5.6.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["CatalogParams"]


@dataclass(frozen=True)
class CatalogParams:
    """Catalog parameters (HAP names; lengths in arcsec unless stated).

    Attributes mirror the HAP JSON keys: ``fwhmpsf`` is ``TWEAK_FWHMPSF``; the ``sourcex`` block
    is flattened (``source_box``, ``segm_nsigma``, ...); ``bthresh``, ``ci_lower``, ``ci_upper``
    come from the ``ci filter`` quality-control block; ``crfactor_point``/``crfactor_segment`` are
    the CR-contamination factors; ``ir`` marks WFC3/IR (no saturation flag, no CR test,
    edge limit 0.5). ``starfinder`` is HAP's ``starfinder_algorithm`` ("psf", the SVM
    configuration's value, or "dao"), ``block_size`` its deconvolution block (square) and
    ``freq_limit`` the regularisation of that deconvolution (:mod:`hapdask.catalogs.point`).
    """

    detector: str = "acs_wfc"
    bkg_box_size: int = 27
    bkg_filter_size: int = 3
    nsigma: float = 5.0
    skyannulus_arcsec: float = 0.25
    dskyannulus_arcsec: float = 0.25
    aperture_1: float = 0.05
    aperture_2: float = 0.15
    salgorithm: str = "mode"
    scale: float = 1.5
    sensitivity: float = 0.95
    region_size: int = 11
    starfinder: str = "psf"
    block_size: int = 1024
    freq_limit: float = 0.95
    flag_trim_value: int = 5
    simple_bkg: bool = False
    zero_percent: float = 25.0
    negative_percent: float = 15.0
    nsigma_clip: float = 3.0
    maxiters: int = 3
    bkg_skew_threshold: float = 0.5
    fwhmpsf: float = 0.076
    footprint_erosion: int = 10
    kernel_size: int = 11
    source_box: int = 6
    segm_nsigma: float = 3.0
    nlevels: int = 64
    contrast: float = 0.001
    rw2d_size: int = 15
    rw2d_nsigma: float = 2.0
    rw2d_biggest_pixels: int = 25000
    rw2d_biggest_source: float = 0.015
    rw2d_source_fraction: float = 0.075
    ratio_bigsource_limit: float = 2.0
    ratio_bigsource_deblend_limit: float = 10.0
    kron_scaling_radius: float = 2.5
    kron_minimum_radius: float = 3.5
    bthresh: float = 5.0
    ci_lower: float = 0.9
    ci_upper: float = 1.23
    crfactor_point: float = 300.0
    crfactor_segment: float = 150.0
    ir: bool = False

    def __post_init__(self) -> None:
        for name in ("aperture_1", "aperture_2", "skyannulus_arcsec", "dskyannulus_arcsec",
                     "fwhmpsf", "scale", "nsigma", "segm_nsigma"):
            if not getattr(self, name) > 0:
                raise ValueError(f"CatalogParams.{name}: must be > 0, got {getattr(self, name)!r}")
        if self.aperture_1 >= self.aperture_2:
            raise ValueError(f"CatalogParams.aperture_1: must be smaller than aperture_2 "
                             f"({self.aperture_1} >= {self.aperture_2})")
        if self.salgorithm not in ("mode", "median", "mean"):
            raise ValueError(f"CatalogParams.salgorithm: 'mode', 'median' or 'mean', "
                             f"got {self.salgorithm!r}")
        if self.starfinder not in ("psf", "dao"):
            raise ValueError(f"CatalogParams.starfinder: 'psf' or 'dao', got {self.starfinder!r}")
        if not 0 < self.sensitivity < 1:
            raise ValueError(f"CatalogParams.sensitivity: must be in (0, 1), "
                             f"got {self.sensitivity}")

    @classmethod
    def for_detector(cls, detector: str, **overrides: object) -> CatalogParams:
        """HAP's SVM values for ``detector`` (``acs_wfc``, ``wfc3_uvis``, ``wfc3_ir``).

        ``overrides`` replace individual fields (e.g. CI limits measured for a given PSF).
        """
        key = detector.lower()
        if key not in _DETECTORS:
            raise ValueError(f"CatalogParams.for_detector: unknown detector {detector!r}; "
                             f"known: {', '.join(sorted(_DETECTORS))}")
        return replace(cls(detector=key, **_DETECTORS[key]), **overrides)


_DETECTORS: dict[str, dict] = {
    "acs_wfc": {},
    "wfc3_uvis": {"ci_lower": 0.75, "ci_upper": 1.0},
    "wfc3_ir": {"bkg_box_size": 13, "aperture_1": 0.15, "aperture_2": 0.45, "fwhmpsf": 0.14,
                "segm_nsigma": 5.0, "rw2d_size": 11, "rw2d_biggest_source": 0.045,
                "rw2d_source_fraction": 0.15, "ci_lower": 0.25, "ci_upper": 0.55, "ir": True,
                "crfactor_point": 0.0, "crfactor_segment": 0.0},
}
