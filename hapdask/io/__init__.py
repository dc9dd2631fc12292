"""HST exposures, pollers and input lists in.

* :func:`open_exposure` opens an FLT/FLC/DRZ/DRC file (local, gzip or fsspec URL) lazily and
  returns an :class:`Exposure` with one :class:`Chip` per SCI extension.
* :func:`read_poller` reads SVM/MVM poller files and plain file lists into an astropy Table;
  :func:`resolve_inputs` turns a poller, a directory or a list of paths/URLs into file names.
* :func:`normalize_filter` gives the HAP filter name of raw filter keywords.
* :func:`content_identity` changes whenever a file's content does (resume fingerprints).
* :func:`apply_reference_distortion` writes a copy of an exposure with the full distortion
  (SIP + NPOL + D2IM) rebuilt from its reference files.
"""

from hapdask.io.distortion import apply_reference_distortion
from hapdask.io.exposure import Chip, Exposure, linear_pixel_scale, open_exposure
from hapdask.io.filters import normalize_filter, raw_filters
from hapdask.io.identity import content_identity
from hapdask.io.pollers import POLLER_COLUMNS, read_poller, resolve_inputs

__all__ = [
    "POLLER_COLUMNS",
    "Chip",
    "Exposure",
    "apply_reference_distortion",
    "content_identity",
    "linear_pixel_scale",
    "normalize_filter",
    "open_exposure",
    "raw_filters",
    "read_poller",
    "resolve_inputs",
]
