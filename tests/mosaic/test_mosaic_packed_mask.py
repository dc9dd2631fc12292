"""PackedMask (static and cosmic-ray masks held as bits) gives back exactly numpy's slices of
the bool mask."""

import numpy as np

from hapdask.mosaic.stages import PackedMask, _sub, assemble_mask, region_mask


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


def test_packed_mask_at_pixels_equals_bool_indexing():
    rng = np.random.default_rng(5)
    mask = rng.random((29, 83)) < 0.4
    packed = PackedMask.pack(mask)
    rows = rng.integers(0, 29, 500)
    cols = rng.integers(0, 83, 500)
    rows = np.r_[rows, 0, 28, 28]
    cols = np.r_[cols, 0, 82, 80]  # the last, partly used byte of a row
    got = packed.at(rows, cols)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, mask[rows, cols])


def test_packed_region_masks_combine_as_bool_ones():
    """Cosmic-ray region masks are held packed: ORed over a region and assembled into a whole
    chip exactly as the bool masks are (expected values from plain numpy on the bool masks)."""
    rng = np.random.default_rng(4)
    shape = (50, 70)
    boxes = [(0, 25, 0, 35), (0, 25, 35, 70), (25, 50, 0, 35), (25, 50, 35, 70)]
    masks = [rng.random((b[1] - b[0], b[3] - b[2])) < 0.1 for b in boxes]
    whole = np.zeros(shape, bool)
    for (y0, y1, x0, x1), m in zip(boxes, masks, strict=True):
        whole[y0:y1, x0:x1] = m
    packed = [PackedMask.pack(m) for m in masks]
    np.testing.assert_array_equal(assemble_mask(shape, boxes, packed), whole.astype(np.uint8))
    for region in [(0, 50, 0, 70), (20, 31, 30, 41), (3, 4, 60, 70), (24, 26, 0, 70)]:
        y0, y1, x0, x1 = region
        got = region_mask(list(zip(boxes, packed, strict=True)), region)
        np.testing.assert_array_equal(got, whole[y0:y1, x0:x1])
        # a mix of packed and plain masks (masks read from given crmask files are plain)
        mixed = list(zip(boxes, [packed[0], masks[1], packed[2], masks[3]], strict=True))
        np.testing.assert_array_equal(region_mask(mixed, region), whole[y0:y1, x0:x1])
