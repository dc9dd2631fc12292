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
"""

from hapdask.svm.params import svm_drizzle_params
from hapdask.svm.planning import NoViableData, SvmPlan, plan
from hapdask.svm.runner import SvmResult, run

__all__ = ["NoViableData", "SvmPlan", "SvmResult", "plan", "run", "svm_drizzle_params"]
