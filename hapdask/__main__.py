"""``python -m hapdask`` runs the ``hapdask`` command."""

import gc
import sys

from hapdask.cli import main

rc = main()
# The command is done (products written and closed). The interpreter's final garbage
# collections over the ~200 k objects a run leaves behind take 0.5-1.5 s on one core after an
# ``mvm`` run of 4 ACS/WFC exposures, for memory the operating system takes back with the
# process anyway: they skip the objects frozen here. Exit handlers and flushing still run.
gc.disable()
gc.freeze()
sys.exit(rc)
