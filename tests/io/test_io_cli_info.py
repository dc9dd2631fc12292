"""``hapdask info`` through :func:`hapdask.cli.main`."""

from __future__ import annotations

import re

from hapdask.cli import main


def test_io_info_prints_what_the_pipeline_sees(shared_data, capsys):
    files = [
        str(shared_data / "headers/sample_svm_flc.fits"),
        str(shared_data / "real/j94f05bgq_flt.fits.gz"),
    ]
    assert main(["info", *files]) == 0
    out = capsys.readouterr().out
    blocks = out.split("\n\n")
    assert len(blocks) == 2
    flc, wfc = blocks
    assert "instrument : WFC3/UVIS  (flc, rootname ib4606c6q)" in flc
    assert "filter     : f555w  (raw F555W)" in flc
    assert "exptime    : 170 s" in flc
    assert "units      : ELECTRONS  (counts" in flc
    assert flc.count("chip       : SCI,") == 2
    assert "SCI,1: IDC_2731450pi-FIT_SVM_GAIAeDR3  [SIP+NPOL+D2IM]" in flc
    corners = re.findall(r"SCI,1 corners RA, Dec \[deg\]: (.*)", flc)[0]
    assert len(re.findall(r"\(137\.86\d+, -64\.878\d+\)", corners)) == 4
    assert "analyze    : MVM: keep" in flc
    # SkyCells from the exposure footprint, the same set the chip WCSs give skycells directly
    from astropy.io import fits
    from astropy.wcs import WCS

    from skycells import cells_for_footprint

    with fits.open(files[0]) as hdul:
        wcs = [WCS(hdul["SCI", v].header, fobj=hdul) for v in (1, 2)]
        for w in wcs:
            w.pixel_shape = (10, 10)
    expected = cells_for_footprint(wcs)
    assert expected
    assert f"skycells   : {len(expected)}: {' '.join(expected)}" in flc
    assert "skycells   : 5: skycell-p0046x04y19 " in wfc
    assert "4096 x 2048 pixels (nx x ny)  (ERR constant, DQ constant)" in wfc
    assert "analyze    : MVM: reject, rule Z" in wfc
    assert "CTYPE says -SIP but there are no SIP coefficients" in wfc


def test_io_info_svm_mode_and_header_only(shared_data, capsys):
    path = str(shared_data / "headers/j8bt06nyq_sip_flt.fits")
    assert main(["info", "--mode", "svm", path]) == 0
    out = capsys.readouterr().out
    assert "header only, no pixels" in out
    assert "analyze    : SVM: keep" in out
    assert "rule Z) was skipped" in out


def test_io_info_bad_file_exit_code(shared_data, tmp_path, capsys):
    bad = tmp_path / "broken_flt.fits"
    bad.write_bytes(b"not a fits file" * 300)
    good = str(shared_data / "real/j8bt06nyq_flt.fits")
    code = main(["info", str(bad), good, str(tmp_path / "absent_flc.fits")])
    assert code == 1
    captured = capsys.readouterr()
    err_lines = captured.err.strip().splitlines()
    assert len(err_lines) == 2
    assert "broken_flt.fits" in err_lines[0] and "cannot open as FITS" in err_lines[0]
    assert "absent_flc.fits: no such file" in err_lines[1]
    assert "j8bt06nyq_flt.fits" in captured.out  # the good file is still described


def test_io_info_not_an_exposure(shared_data, capsys):
    assert main(["info", str(shared_data / "real/qbu16424j_npl.fits")]) == 1
    assert "qbu16424j_npl.fits: no SCI extension" in capsys.readouterr().err


def test_io_info_no_data_reads_headers_only(shared_data, capsys, monkeypatch):
    from hapdask.io.exposure import Chip

    def no_pixels(*args, **kwargs):
        raise AssertionError("pixels were read")

    monkeypatch.setattr(Chip, "_read_one", no_pixels)
    path = str(shared_data / "real/j94f05bgq_flt.fits.gz")
    assert main(["info", "--no-data", path]) == 0
    out = capsys.readouterr().out
    assert "analyze    : MVM: keep" in out  # rule Z needs the (all-zero) pixels
    assert "rule Z) not run" in out
