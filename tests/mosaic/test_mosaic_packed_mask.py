"""PackedMask (static masks held as bits) gives back exactly numpy's slices of the bool mask."""

import numpy as np

from hapdask.mosaic.stages import PackedMask, _sub


def test_packed_mask_regions_equal_bool_slices():
    rng = np.random.default_rng(3)
    mask = rng.random((37, 61)) < 0.7
    packed = PackedMask.pack(mask)
    assert packed.shape == mask.shape
    assert packed.bits.nbytes == 37 * 8  # ceil(61 / 8) bytes per row
    regions = [(0, 37, 0, 61), (5, 6, 7, 8), (1, 30, 8, 16), (2, 9, 3, 61), (0, 37, 59, 61)]
    regions += [tuple(sorted(rng.integers(0, 37, 2) + [0, 1])) + tuple(sorted(
        rng.integers(0, 61, 2) + [0, 1])) for _ in range(50)]
    for y0, y1, x0, x1 in regions:
        got = packed.region((y0, y1, x0, x1))
        assert got.dtype == bool
        np.testing.assert_array_equal(got, mask[y0:y1, x0:x1])
        np.testing.assert_array_equal(_sub(packed, (y0, y1, x0, x1)), mask[y0:y1, x0:x1])
