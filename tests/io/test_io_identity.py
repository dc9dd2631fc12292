"""content_identity: any change of a file's bytes changes it, even with the mtime put back."""

from __future__ import annotations

import os

import pytest

from hapdask.io import content_identity, identity


def _change_in_place(path, offset: int) -> None:
    st = os.stat(path)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 1]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_mtime_ns == st.st_mtime_ns and os.stat(path).st_size == st.st_size


@pytest.mark.parametrize("full", [True, False])
def test_changed_byte_changes_identity(tmp_path, monkeypatch, full):
    if not full:  # large-file path: edges checksummed, ctime and inode recorded
        monkeypatch.setattr(identity, "FULL_CHECKSUM_BYTES", 1000)
        monkeypatch.setattr(identity, "EDGE_BYTES", 100)
    path = tmp_path / "x_flt.fits"
    path.write_bytes(bytes(range(256)) * 40)
    before = content_identity(str(path))
    assert content_identity(str(path)) == before  # stable
    ctime = os.stat(path).st_ctime_ns
    _change_in_place(path, 5000)  # the middle: outside the checksummed edges when not full
    if not full and os.stat(path).st_ctime_ns == ctime:
        pytest.skip("file system ctime too coarse to see the change (same clock tick)")
    assert content_identity(str(path)) != before
