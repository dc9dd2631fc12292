"""apply_reference_distortion: refusing to overwrite, and naming a missing reference file."""

from __future__ import annotations

import shutil

import pytest

from hapdask.io import apply_reference_distortion


def test_refuses_to_overwrite(shared_data, tmp_path):
    dest = tmp_path / "out.fits"
    dest.write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="out.fits"):
        apply_reference_distortion(shared_data / "real" / "j94f05bgq_flt.fits.gz", dest, tmp_path)
    assert dest.read_bytes() == b"mine"


def test_missing_reference_file_is_named(shared_data, tmp_path):
    pytest.importorskip("stwcs.updatewcs")
    refdir = tmp_path / "ref"
    refdir.mkdir()
    shutil.copy(shared_data / "real" / "postsm4_idc.fits", refdir)  # NPOLFILE/D2IMFILE absent
    with pytest.raises(ValueError, match=r"NPOLFILE.*qbu16424j_npl\.fits"):
        apply_reference_distortion(
            shared_data / "real" / "j94f05bgq_flt.fits.gz", tmp_path / "out.fits", refdir
        )
    assert not list(tmp_path.glob("out.fits*"))  # nothing half-made is left behind
