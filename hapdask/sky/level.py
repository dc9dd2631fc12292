"""The sky of one chip as the graph passes it on (:class:`SkyLevel`); the sky-method interface."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["SkyLevel", "SkyMethod"]


@dataclass(frozen=True)
class SkyLevel:
    """Sky of one chip.

    Attributes
    ----------
    value : float
        Sky level in the chip's SCI units: AstroDrizzle's ``MDRIZSKY`` for this chip (what is
        subtracted from SCI before drizzling when ``subtract``); 0 when not ``ok``.
    rate : float
        The same in electrons/s (``value / EXPTIME`` for count data).
    ngood : int
        Good pixels the estimate used (pixels of the chip's own statistic; 0 when the value
        comes from other chips only, e.g. ``match`` or ``skysub=False``).
    ok : bool
        False when the chip is unusable (unreadable, no finite pixel): it is then left
        out of every layer and reported with ``reason``.
    reason : str
        Why not ``ok``; for an ``ok`` chip, a note when the value is a fallback (e.g. "no
        overlap with another exposure: sky offset 0").
    subtract : bool
        Subtract ``value`` before drizzling (True). False for AstroDrizzle's ``skysub=False``
        with ``skyuser``: the sky was already removed by the user; ``value`` is recorded as
        MDRIZSKY and added back only where AstroDrizzle uses the sky level (median/blot/
        driz_cr), never subtracted again.
    """

    value: float
    rate: float
    ngood: int
    ok: bool = True
    reason: str = ""
    subtract: bool = True


class SkyMethod(Protocol):
    """Interface of a sky method.

    ``tasks`` may add any tasks it needs (per-chip statistics, overlaps, one solve) as long as
    it returns one key per chip whose value is a :class:`SkyLevel`.
    """

    name: str

    def tasks(self, chips: Sequence, prefix: str) -> tuple[dict, list]:
        """Return ``(graph, keys)``: Dask tasks and, per chip (same order), the key of its
        :class:`SkyLevel`. ``chips`` are :class:`hapdask.mosaic.inputs.ChipRef`."""
        ...
