"""resolve_inputs with remote (fsspec URL) pollers and lists: read as pollers, not exposures."""

from __future__ import annotations

import fsspec
import pytest

from hapdask.io import read_poller, resolve_inputs

MVM = ("if3s01a1q_flc.fits,16801,F3S,01,100,F475W,UVIS,skycell-p1889x10y10,NEW,"
       "if3s01a1q_flc.fits\n"
       "if3s01a2q_flc.fits,16801,F3S,01,100,F475W,UVIS,skycell-p1889x10y10,NEW,"
       "s3://bucket/x/if3s01a2q_flc.fits\n")


@pytest.fixture
def mem():
    fs = fsspec.filesystem("memory")
    fs.pipe("/hapdask-test/pollers/mvm.out", MVM.encode())
    fs.pipe("/hapdask-test/pollers/list", b"a_flt.fits\nb_flt.fits\n")
    fs.pipe("/hapdask-test/data/exposure", b"SIMPLE  =                    T")
    yield fs
    fs.rm("/hapdask-test", recursive=True)


def test_remote_poller_and_list(mem):
    got = resolve_inputs(["memory:///hapdask-test/pollers/mvm.out",
                          "memory:///hapdask-test/pollers/list",
                          "memory:///hapdask-test/data/exposure",
                          "s3://bucket/y/q_flt.fits"])
    assert got == ["memory:///hapdask-test/pollers/if3s01a1q_flc.fits",  # relative to the URL
                   "s3://bucket/x/if3s01a2q_flc.fits",                   # absolute URL kept
                   "memory:///hapdask-test/pollers/a_flt.fits",
                   "memory:///hapdask-test/pollers/b_flt.fits",
                   "memory:///hapdask-test/data/exposure",               # FITS content
                   "s3://bucket/y/q_flt.fits"]                           # FITS name: not opened
    t = read_poller("memory:///hapdask-test/pollers/mvm.out")
    assert t.meta["poller_type"] == "mvm" and list(t["skycell_id"]) == ["skycell-p1889x10y10"] * 2


def test_remote_poller_errors_name_the_url(mem):
    mem.pipe("/hapdask-test/pollers/bad.out", b"a_flt.fits,1,2\n")
    with pytest.raises(ValueError, match=r"memory:///hapdask-test/pollers/bad.out, line 1"):
        resolve_inputs("memory:///hapdask-test/pollers/bad.out")
    with pytest.raises(OSError, match="missing"):
        resolve_inputs("memory:///hapdask-test/missing")
