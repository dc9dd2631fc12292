"""Per-SkyCell cost model of an MVM run: wall seconds (one core) from pixel counts.

``seconds = per_skycell + per_output_mpix * output Mpix + per_input_mpix * input Mpix`` where
output pixels are the bounded layer arrays (all layers, fine and coarse) and input pixels the
exposure areas drizzled into them (each exposure's overlap with the SkyCell, once per layer
scale, in output pixels). ``benchmarks/bench_fullsky.py`` measures the coefficients by running
small simulated SkyCells on one thread and fitting their CPU seconds (non-negative least squares).
The defaults are its fit on the 2-core development machine (2026-12-02): on those sets input and
output pixels grow together, so the fit puts the whole cost on output pixels (4.37 CPU-s per
output Mpix, 0 per input Mpix, 0 per SkyCell). Pass your own model for deep fields, where the
input depth matters more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CostModel"]


@dataclass(frozen=True)
class CostModel:
    """Linear cost model: CPU seconds of one SkyCell on one core."""

    per_skycell: float = 0.0
    per_output_mpix: float = 4.37
    per_input_mpix: float = 0.0

    def seconds(self, output_pixels: np.ndarray, input_pixels: np.ndarray) -> np.ndarray:
        """Estimated single-core seconds per SkyCell."""
        return (self.per_skycell + self.per_output_mpix * np.asarray(output_pixels) / 1e6
                + self.per_input_mpix * np.asarray(input_pixels) / 1e6)
