"""hapdask.dqflags: the DQ flag registry and good-pixel masks."""

from __future__ import annotations

import numpy as np
import pytest

from hapdask.dqflags import (
    DQ_FLAGS,
    MVM_FINAL_BITS,
    flag_names,
    good_pixel_mask,
    interpret_bits,
    mvm_final_bits,
)


def test_io_dq_registry_is_complete_and_unique():
    values = [f.value for f in DQ_FLAGS]
    assert values == [1 << i for i in range(16)]
    assert len({f.name for f in DQ_FLAGS}) == 16
    by_name = {f.name: f.value for f in DQ_FLAGS}
    # the values drizzlepac HAP parameters are built from
    assert by_name["HOT"] + by_name["WARM"] == 80
    assert by_name["HOT"] + by_name["BAD_FLAT"] == 528
    assert by_name["CR_DRIZZLE"] == 4096  # crbit of AstroDrizzle
    assert flag_names(4096 + 16 + 1) == ["REED_SOLOMON", "HOT", "CR_DRIZZLE"]
    assert flag_names(65536) == ["BIT65536"]


@pytest.mark.parametrize(
    "spec,expected",
    [
        (80, 80),
        ("80", 80),
        ("16,64", 80),
        ("HOT+warm", 80),
        ("16, WARM", 80),
        ("~4096", 65535 - 4096),
        (None, None),
        ("None", None),
        ("", None),
        ("INDEF", None),
        (0, 0),
        (np.int64(528), 528),
    ],
)
def test_io_interpret_bits(spec, expected):
    assert interpret_bits(spec) == expected


@pytest.mark.parametrize("spec", [-1, "HOTT", "16,,64", "-4", 1.5, True])
def test_io_interpret_bits_rejects(spec):
    with pytest.raises(ValueError):
        interpret_bits(spec)


def test_io_good_pixel_mask_semantics():
    dq = np.array([0, 16, 64, 80, 4096, 4096 + 16, 512, 32768], dtype=np.uint16)
    assert good_pixel_mask(dq, 0).tolist() == [True] + [False] * 7
    assert good_pixel_mask(dq, 80).tolist() == [True, True, True, True, False, False, False, False]
    assert good_pixel_mask(dq, "528").tolist() == [True, True, False, False, False, False, True,
                                                   False]  # fmt: skip
    assert good_pixel_mask(dq, 65535).all()  # every 16-bit flag ignored
    assert good_pixel_mask(dq, None).all()
    # HST stores DQ as signed int16: bit 15 comes back negative and must still be bit 15
    signed = dq.astype(np.int16)
    np.testing.assert_array_equal(good_pixel_mask(signed, 80), good_pixel_mask(dq, 80))
    assert not good_pixel_mask(np.array([-32768], np.int16), 65535 - 32768)[0]
    # shape preserved, 2-D and 32-bit arrays
    dq2 = np.array([[0, 1 << 17], [16, 0]], dtype=np.uint32)
    assert good_pixel_mask(dq2, 65535).tolist() == [[True, False], [True, True]]
    with pytest.raises(ValueError, match="integer"):
        good_pixel_mask(np.zeros(3, np.float32), 0)


def test_io_mvm_final_bits():
    assert mvm_final_bits("WFC3", "UVIS", 3) == 80
    assert mvm_final_bits("wfc3", "ir", 2) == 528
    assert mvm_final_bits("ACS", "WFC", 10) == 80
    assert mvm_final_bits("ACS", "WFC", 1) == 65535  # any_n1: DQ ignored
    assert mvm_final_bits("ACS", "SBC", 2, "F122M") == 0
    assert mvm_final_bits("ACS", "SBC", 2, "F165LP") == 528
    assert mvm_final_bits("WFPC2", "PC", 4) == interpret_bits("2,8,1024")
    assert MVM_FINAL_BITS[("WFC3", "IR")] == 528
    with pytest.raises(ValueError, match="STIS/CCD"):
        mvm_final_bits("STIS", "CCD", 2)
    with pytest.raises(ValueError, match="filter"):
        mvm_final_bits("ACS", "SBC", 2)


def test_big_endian_signed_dq_as_astropy_returns_it():
    """FITS DQ arrays come back from astropy as big-endian int16: bits must not be byte-swapped."""
    native = np.array([[0, 16, 4096, 16 | 4096], [64, 32768, 80, 1]], dtype=np.uint16)
    big = native.astype(">i2")  # same values, big-endian signed, as astropy reads BITPIX=16
    for bits in (0, 16, 80, 4096, 65535):
        np.testing.assert_array_equal(good_pixel_mask(big, bits), good_pixel_mask(native, bits))
    np.testing.assert_array_equal(
        good_pixel_mask(big, 16), [[True, True, False, False], [False, False, False, False]]
    )
