"""Single-Visit Mosaics (HAP SVM): a visit's exposure, filter and total products, catalogs and
previews on the alignment and AstroDrizzle graphs.

=============  ==================================================================================
module         concept
=============  ==================================================================================
params         HAP's SVM AstroDrizzle parameter sets per detector and product level
products       the product tree (detector -> filter -> exposures) and HAP's file names
planning       :func:`plan`: poller -> checked inputs -> :class:`SvmPlan`
runner         :func:`run`: the visit's Dask graph, staging, trailers, manifest
=============  ==================================================================================

Choices where DrizzlePac's code and docs disagree, or where hapdask differs (inventory 9):

* Single-image CR cleaning of one-exposure CCD filters is dead code in DrizzlePac (quirk 18):
  nothing is done, and the run says so ("cosmic-ray rejection skipped").
* Ramp (``fr*``) and quad (``fq*``) filters are aligned with the visit but get no drizzles
  (quirk 17, as DrizzlePac's SVM); grism/prism frames get no products. DrizzlePac's grism WCS
  reconciliation (quirk 16: direct images end on the a-priori WCS) is not done: direct images
  keep their FIT_SVM solution.
* Inputs are never modified: the aligned WCS goes to ``wcs_updates.fits`` and headerlets, the CR
  flags to ``<rootname>_crmask.fits``; the exposure and total drizzles read them (the total
  treats a mask like DQ 4096, which HAP's total ``final_bits`` exclude; exposure products use
  ``final_bits`` 65535 as HAP, i.e. keep them). ``update_inputs`` writes HAP's renamed copies.
  ``D###DATA`` therefore names the original inputs, not the renamed copies.
* Headerlets (``_hlet.fits``) are written, as by DrizzlePac, only for exposures fitted to the
  reference catalog; exposures that keep their a-priori WCS or are only aligned relative to each
  other (hapdask's ``FIT_SVM_NONE``, which DrizzlePac does not make) get none.
* ``S_REGION`` of a product is traced from its SCI data as DrizzlePac does, one
  ``POLYGON ICRS`` per region (exposure products of two-chip cameras: two;
  :mod:`hapdask.svm.keywords`, within DrizzlePac's 10-pixel simplification tolerance).
  HDRTAB ends with DrizzlePac's ``HAPEXPNAME`` column (the exposure's product name).
* WCSNAME ``...-FIT_SVM_<catalog>``: DrizzlePac names the catalog by its service's list
  (``GAIAeDR3``, else ``GSC242``, else ``2MASS``); hapdask reads a local catalog file and names
  what it read: ``--catalog-name`` (``catalog_name``), else the file's ``catalog`` meta value
  (the simulator's Gaia-like catalog says ``GAIASIM``), else the file stem. A Gaia DR3 extract
  run with ``--catalog-name GAIAeDR3`` gets DrizzlePac's WCSNAME.
* Footprint keywords: MEANWHT/MEDWHT over pixels with C > 0 and WHT > 0 (DrizzlePac: C > 0).
* Previews (not made by DrizzlePac): ``_dr[cz].jpg`` + ``_thumb.jpg`` per product and one colour
  JPEG per total with two or more filters (bluest, middle, reddest when more than three).
* Each drizzle product is one task of the visit graph running its own AstroDrizzle graph on one
  thread; products run in parallel. Catalogs (whole images in memory) run one at a time, once
  their total and filter products are made (the exposure products go on beside them).
"""

from hapdask.svm.params import svm_drizzle_params
from hapdask.svm.planning import NoViableData, SvmPlan, plan
from hapdask.svm.runner import SvmResult, run

__all__ = ["NoViableData", "SvmPlan", "SvmResult", "plan", "run", "svm_drizzle_params"]
