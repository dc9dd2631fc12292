"""Per-SkyCell cost model of an MVM run: wall seconds (one core) from pixel counts.

``seconds = per_skycell + per_output_mpix * output Mpix + per_input_mpix * input Mpix`` where
output pixels are the bounded layer arrays (all layers, fine and coarse) and input pixels the
exposure areas drizzled into them (each exposure's overlap with the SkyCell, once per layer
scale, in output pixels). ``benchmarks/bench_fullsky.py`` measures the coefficients by running
small simulated SkyCells and fitting them; the defaults below are what it measured on the 2-core
development machine (one core per SkyCell).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CostModel"]


@dataclass(frozen=True)
class CostModel:
    """Linear cost model (seconds on one core; memory in bytes per tile thread)."""

    per_skycell: float = 3.0
    per_output_mpix: float = 0.9
    per_input_mpix: float = 1.6

    def seconds(self, output_pixels: np.ndarray, input_pixels: np.ndarray) -> np.ndarray:
        """Estimated single-core seconds per SkyCell."""
        return (self.per_skycell + self.per_output_mpix * np.asarray(output_pixels) / 1e6
                + self.per_input_mpix * np.asarray(input_pixels) / 1e6)
