"""``python -m hapdask`` runs the ``hapdask`` command."""

import sys

from hapdask.cli import main

sys.exit(main())
