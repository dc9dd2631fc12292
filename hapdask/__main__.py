"""``python -m hapdask`` runs the ``hapdask`` command."""

from hapdask.cli import console

console()
