"""hapdask.io.read_poller / resolve_inputs."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from astropy.io import fits

from hapdask.io import POLLER_COLUMNS, read_poller, resolve_inputs

EXPECTED = {
    "acs_97e_06_input.out": ("svm", 18),
    "acs_b37_23_input.out": ("svm", 8),
    "acs_e28_1u_input.out": ("svm", 3),
    "acs_hrc_sbc_input.out": ("list", 11),
    "wfc3_bqk_07_input.out": ("svm", 8),
    "wfc3_by0_01_input.out": ("svm", 5),
    "wfc3_by0_1s_input.out": ("svm", 4),
    "wfc3_byt_50_input.out": ("svm", 4),
    "wfc3_ir_ib6807_input.out": ("list", 4),
    "wfpc2_2as_01_input.out": ("list", 8),
}


def test_io_every_shared_poller_parses(shared_data):
    found = sorted(p.name for p in (shared_data / "pollers").glob("*.out"))
    assert found == sorted(EXPECTED)
    for name in found:
        table = read_poller(shared_data / "pollers" / name)
        kind, nrows = EXPECTED[name]
        assert table.colnames == list(POLLER_COLUMNS)
        assert table.meta["poller_type"] == kind
        assert len(table) == nrows
        assert list(table["line"]) == list(range(1, nrows + 1))
        assert all(f.endswith("_flt.fits") or f.endswith("_flc.fits") for f in table["filename"])


def test_io_svm_poller_values(shared_data):
    table = read_poller(shared_data / "pollers/acs_97e_06_input.out")
    row = table[4]
    assert row["filename"] == "j97e06j5q_flt.fits"
    assert row["proposal_id"] == 10374
    assert row["program_id"] == "97E" and row["obset_id"] == "06"  # leading zero kept
    assert row["exptime"] == 45.0
    assert row["filters"] == "G800L;F814W" and row["filter"] == "g800l-f814w"
    assert row["detector"] == "WFC" and row["instrument"] == "ACS"
    assert row["pathname"] == "/ifs/operations/hst/public/j97e/j97e06j5q/j97e06j5q_flt.fits"
    assert row["skycell_new"] == "NEW" and row["skycell_id"] == ""
    assert table[0]["filter"] == "f814w"  # CLEAR1L;F814W
    # quirks of the other pollers: alphanumeric obset, long float exptime, mixed flt/flc
    ir = read_poller(shared_data / "pollers/wfc3_by0_1s_input.out")
    assert list(ir["obset_id"]) == ["1S"] * 4
    assert ir["exptime"][0] == pytest.approx(499.231873)
    mixed = read_poller(shared_data / "pollers/wfc3_bqk_07_input.out")
    assert set(mixed["detector"]) == {"IR", "UVIS"}
    assert set(mixed["instrument"]) == {"WFC3"}


def test_io_list_poller_derives_ids(shared_data):
    table = read_poller(shared_data / "pollers/wfpc2_2as_01_input.out")
    assert table.meta["poller_type"] == "list"
    assert list(table["program_id"]) == ["2AS"] * 8
    assert list(table["obset_id"]) == ["01"] * 8
    assert set(table["instrument"]) == {"WFPC2"}
    # files absent: header-derived values are unknown
    assert all(p == -1 for p in table["proposal_id"])
    assert all(math.isnan(x) for x in table["exptime"])
    assert table["pathname"][0] == str(shared_data / "pollers" / "u2as0101t_flt.fits")


def test_io_list_poller_reads_headers_of_present_files(tmp_path, shared_data):
    src = shared_data / "real/j8bt06nyq_flt.fits"
    os.symlink(src, tmp_path / "j8bt06nyq_flt.fits")
    (tmp_path / "list.out").write_text("j8bt06nyq_flt.fits\n")
    row = read_poller(tmp_path / "list.out")[0]
    assert row["proposal_id"] == fits.getheader(src)["PROPOSID"]
    assert row["exptime"] == 60.0
    assert row["filters"] == "F606W;CLEAR2S" and row["filter"] == "f606w"
    assert row["detector"] == "HRC"
    assert row["program_id"] == "8BT" and row["obset_id"] == "06"


def test_io_list_poller_headers_read_once_per_file_version(tmp_path, shared_data,
                                                          monkeypatch):
    """A list read twice opens each header once; a rewritten file is read again."""
    import hapdask.io.pollers as pollers

    path = tmp_path / "j8bt06nyq_flt.fits"
    with fits.open(shared_data / "real/j8bt06nyq_flt.fits") as h:
        fits.HDUList([fits.PrimaryHDU(header=h[0].header)]).writeto(path)
    (tmp_path / "list.out").write_text("j8bt06nyq_flt.fits\n")
    calls = []
    real = pollers.fits.getheader
    monkeypatch.setattr(pollers.fits, "getheader", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert read_poller(tmp_path / "list.out")[0]["exptime"] == 60.0
    assert read_poller(tmp_path / "list.out")[0]["exptime"] == 60.0
    assert len(calls) == 1
    with fits.open(path, mode="update") as h:
        h[0].header["EXPTIME"] = 61.5
        h[0].header["HISTORY"] = "x" * 70 * 40  # another size as well as another mtime
    assert read_poller(tmp_path / "list.out")[0]["exptime"] == 61.5
    assert len(calls) == 2


def test_io_mvm_poller(tmp_path):
    text = (
        "hst_12286_0r_acs_wfc_f775w_jbl70rtv_flc.fits,12286,BL7,0R,486.0,F775W,WFC,"
        "skycell-p1889x07y19,NEW,/data/hst_12286_0r_acs_wfc_f775w_jbl70rtv_flc.fits\n"
        "\n"
        "hst_12286_0r_wfc3_ir_f160w_ibl70rtx_flt.fits,12286,BL7,0R,302.9,F160W,IR,"
        "skycell-p1889x07y19,old,rel/hst_12286_0r_wfc3_ir_f160w_ibl70rtx_flt.fits\n"
    )
    (tmp_path / "mvm.out").write_text(text)
    table = read_poller(tmp_path / "mvm.out")
    assert table.meta["poller_type"] == "mvm"
    assert table.colnames == list(POLLER_COLUMNS)
    assert list(table["skycell_id"]) == ["skycell-p1889x07y19"] * 2
    assert list(table["skycell_new"]) == ["NEW", "OLD"]
    assert list(table["instrument"]) == ["ACS", "WFC3"]
    assert list(table["line"]) == [1, 3]  # the blank line is skipped, numbers stay true
    assert table["program_id"][0] == "BL7" and table["obset_id"][0] == "0R"


def test_io_wfpc2_two_column_poller(tmp_path):
    (tmp_path / "w.out").write_text("u2as0101t_flt.fits,PC1-FIX;F160BN15\n")
    table = read_poller(tmp_path / "w.out")
    assert table.meta["poller_type"] == "wfpc2"
    assert table["aperture"][0] == "PC1-FIX;F160BN15"


BAD_LINES = [
    ("a_flt.fits,1,2,3\n", 1, "4 comma-separated columns"),
    ("ib1_flt.fits,1,B1,01,1.0,F606W,UVIS,/x/ib1_flt.fits\nib2_flt.fits,1,B1\n", 2,
     "3 comma-separated columns, expected 8"),
    ("ib1_flt.fits,12X,B1,01,1.0,F606W,UVIS,/x/ib1_flt.fits\n", 1, "proposal_id '12X'"),
    ("ib1_flt.fits,1,B1,01,fast,F606W,UVIS,/x/ib1_flt.fits\n", 1, "exptime 'fast'"),
    ("ib1_flt.fits,1,B1,01,1.0,F606W,UVIS,skycell-p1889x07y19,1,/x/ib1_flt.fits\n", 1,
     "skycell_new '1' must be NEW or OLD"),
    ("ib1_flt.fits,1,B1,01,1.0,F606W,UVIS,p1889x07y19,NEW,/x/ib1_flt.fits\n", 1,
     "skycell_id 'p1889x07y19'"),
    ("ib1_flt.fits\n\nnotes.txt\n", 3, "not a FITS file name"),
    ("ib1_flt.fits,1,B1,01,1.0,F606W,,/x/ib1_flt.fits\n", 1, "detector is empty"),
]  # fmt: skip


@pytest.mark.parametrize("text,lineno,message", BAD_LINES)
def test_io_malformed_poller_line(tmp_path, text, lineno, message):
    path = tmp_path / "bad_input.out"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        read_poller(path)
    msg = str(info.value)
    assert f"bad_input.out, line {lineno}:" in msg
    assert message in msg


def test_io_poller_lists_are_not_pollers(shared_data):
    with pytest.raises(ValueError, match=r"svm_input\.lst, line 1: .*not a FITS file name"):
        read_poller(shared_data / "pollers/svm_input.lst")


def test_io_empty_poller(tmp_path):
    (tmp_path / "empty.out").write_text("\n\n")
    with pytest.raises(ValueError, match=r"empty\.out: poller file is empty"):
        read_poller(tmp_path / "empty.out")


def test_io_missing_poller(tmp_path):
    with pytest.raises(OSError, match=r"none\.out: cannot read poller file"):
        read_poller(tmp_path / "none.out")


# -- resolve_inputs ----------------------------------------------------------------------------


def _fake_fits(path):
    fits.PrimaryHDU(np.zeros((1,), np.int16)).writeto(path)
    return str(path)


def test_io_resolve_directory_sorted(tmp_path):
    for name in ("ib2_flc.fits", "ib1_flt.fits", "ib3_drz.fits", "notes.txt", "ib0_flt.fits.gz"):
        (tmp_path / name).write_bytes(b"x")
    got = resolve_inputs(tmp_path)
    assert [os.path.basename(p) for p in got] == ["ib0_flt.fits.gz", "ib1_flt.fits", "ib2_flc.fits"]
    assert all(os.path.isabs(p) for p in got)


def test_io_resolve_poller_rows(tmp_path):
    beside = _fake_fits(tmp_path / "ib1_flt.fits")
    (tmp_path / "sub").mkdir()
    relative = _fake_fits(tmp_path / "sub" / "ib2_flt.fits")
    elsewhere = tmp_path / "store"
    elsewhere.mkdir()
    absolute = _fake_fits(elsewhere / "ib3_flt.fits")
    (tmp_path / "p.out").write_text(
        "ib1_flt.fits,1,B1,01,1.0,F606W,UVIS,/nowhere/ib1_flt.fits\n"
        "ib2_flt.fits,1,B1,01,1.0,F606W,UVIS,sub/ib2_flt.fits\n"
        f"ib3_flt.fits,1,B1,01,1.0,F606W,UVIS,{absolute}\n"
    )
    assert resolve_inputs(tmp_path / "p.out") == [beside, relative, absolute]
    (tmp_path / "q.out").write_text("ib9_flt.fits,1,B1,01,1.0,F606W,UVIS,/nowhere/ib9_flt.fits\n")
    with pytest.raises(OSError, match=r"q\.out, line 1: ib9_flt\.fits not found"):
        resolve_inputs(tmp_path / "q.out")


def test_io_resolve_list_of_paths_and_urls(tmp_path):
    a = _fake_fits(tmp_path / "ia_flt.fits")
    url = "s3://stpubdata/hst/public/j8bt/j8bt06nyq/j8bt06nyq_flt.fits"
    assert resolve_inputs([a, url, a]) == [a, url]
    with pytest.raises(OSError, match=r"missing_flt\.fits: no such file"):
        resolve_inputs([a, tmp_path / "missing_flt.fits"])


def test_io_resolve_list_poller(shared_data, tmp_path):
    os.symlink(shared_data / "real/j8bt06nyq_flt.fits", tmp_path / "j8bt06nyq_flt.fits")
    (tmp_path / "l.out").write_text("j8bt06nyq_flt.fits\n")
    assert resolve_inputs(str(tmp_path / "l.out")) == [str(tmp_path / "j8bt06nyq_flt.fits")]


def test_io_filter_normalisation_rules():
    from hapdask.io import normalize_filter

    assert normalize_filter("F850LP;CLEAR2L") == "f850lp"
    assert normalize_filter("CLEAR1L;F814W") == "f814w"
    assert normalize_filter("G800L;F814W") == "g800l-f814w"
    assert normalize_filter("POL60V;F606W") == "f606w-pol60v"
    assert normalize_filter("F606W;POL120V") == "f606w-pol120v"
    assert normalize_filter("CLEAR1L;CLEAR2L") == "clear"
    assert normalize_filter("F122M;N/A;N/A") == "f122m"  # SBC's third token dropped
    assert normalize_filter("F555W;") == "f555w"  # blank WFPC2 FILTNAM2
