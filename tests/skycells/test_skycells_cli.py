"""``hapdask cells`` through ``hapdask.cli.main``."""

from __future__ import annotations

import numpy as np
from astropy.io import fits

from hapdask.cli import main
from skycells import SkyCell, cells_for_footprint


def test_cells_name_prints_wcs_size_corners(capsys):
    assert main(["cells", "p1889x07y19"]) == 0
    out = capsys.readouterr().out
    assert "skycell-p1889x07y19" in out
    assert "CRPIX1  = 96492.0" in out and "CRPIX2  = -160812.0" in out
    assert "CRVAL1  = 180.0" in out and "CRVAL2  = 26.0" in out
    assert "CD1_1   = -1.1111111111111112e-05" in out
    assert "21954 x 21954 pixels" in out
    ra0, dec0 = SkyCell.from_name("p1889x07y19").corners[0]
    assert f"{ra0:12.7f} {dec0:+12.7f}" in out


def test_cells_name_coarse(capsys):
    assert main(["cells", "skycell-p1889x07y19", "--scale", "coarse"]) == 0
    out = capsys.readouterr().out
    assert "CRPIX1  = 32164.000000000004" in out
    assert "CRPIX2  = -53604.00000000001" in out
    assert "7318 x 7318 pixels" in out


def test_cells_bad_name(capsys):
    assert main(["cells", "p1889x22y19"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "x index 22" in err[0] and "p1889x22y19" in err[0]
    assert main(["cells", "nonsense"]) == 1
    assert "malformed SkyCell name" in capsys.readouterr().err
    assert main(["cells", "p1889x07y19", "--scale", "big"]) == 1
    assert "invalid scale" in capsys.readouterr().err
    assert main(["cells"]) == 1
    assert "give a SkyCell NAME" in capsys.readouterr().err


def test_cells_footprint_real_file(capsys, shared_data):
    path = shared_data / "real" / "j94f05bgq_flt.fits.gz"
    assert main(["cells", "--footprint", str(path)]) == 0
    names = capsys.readouterr().out.split()
    with fits.open(path) as hdul:
        from astropy.wcs import WCS

        wcss = []
        for ext in (1, 4):
            w = WCS(hdul[ext].header, fobj=hdul)
            w.pixel_shape = (4096, 2048)
            wcss.append(w)
    assert names == cells_for_footprint(wcss)
    assert names and all(n.startswith("skycell-p") for n in names)


def test_cells_footprint_with_lookup_tables(capsys, shared_data):
    assert main(["cells", "--footprint", str(shared_data / "headers" / "sample_svm_flc.fits")]) == 0
    names = capsys.readouterr().out.split()
    assert names and all(len(n) == 19 for n in names)


def test_cells_footprint_unreadable(capsys, tmp_path):
    missing = tmp_path / "nope_flt.fits"
    assert main(["cells", "--footprint", str(missing)]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "no such file" in err
    junk = tmp_path / "junk_flt.fits"
    junk.write_text("not a fits file\n")
    assert main(["cells", "--footprint", str(junk)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(junk) in err[0]
    table = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
        [fits.Column(name="a", format="E", array=np.zeros(3))])]).writeto(table)
    assert main(["cells", "--footprint", str(table)]) == 1
    assert "no SCI image extensions" in capsys.readouterr().err
    nowcs = tmp_path / "nowcs_flt.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((4, 4)), name="SCI")]).writeto(nowcs)
    assert main(["cells", "--footprint", str(nowcs)]) == 1
    err = capsys.readouterr().err
    assert f"{nowcs}[SCI,1]" in err


def test_cells_name_and_footprint_conflict(capsys, shared_data):
    path = shared_data / "headers" / "sample_svm_flc.fits"
    assert main(["cells", "p1889x07y19", "--footprint", str(path)]) == 1
    assert "not both" in capsys.readouterr().err
