"""Bad input for ``hapdask svm``: one exposure, grism only, unknown filter, missing file, no
reference stars, an occupied output directory. Products are made where possible, reasons are
reported, nothing is overwritten."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from hapdask.cli import main
from hapdask.svm import NoViableData, plan


def _rows(sim, visit: str) -> list[list[str]]:
    poller = next(p for p in sim.svm_pollers if p.name.endswith(f"_{visit}_input.out"))
    return [line.split(",") for line in poller.read_text().splitlines()]


def _write_poller(path: Path, rows: list[list[str]]) -> Path:
    path.write_text("".join(",".join(r) + "\n" for r in rows))
    return path


def _copy(src: str, dst_dir: Path, **primary) -> str:
    dst = dst_dir / Path(src).name
    shutil.copy(src, dst)
    with fits.open(dst, mode="update") as hdul:
        for k, v in primary.items():
            hdul[0].header[k] = v
    return str(dst)


def test_one_exposure_no_reference_stars(sim, tmp_path, run_svm):
    """One UVIS exposure and a reference catalog without a star in the field: the exposure,
    filter and total products and catalogs are made; no CR rejection (reported), the a-priori
    WCS is kept (reported)."""
    row = _rows(sim, "01")[0]
    poller = _write_poller(tmp_path / "one_input.out", [row])
    empty = tmp_path / "elsewhere_refcat.ecsv"
    ref = Table.read(sim.refcat, format="ascii.ecsv")
    ra = next(c for c in ref.colnames if c.lower() == "ra")
    ref[ra] = ref[ra] + 1.0  # every reference star 1 degree away from the field
    ref.write(empty, format="ascii.ecsv")
    out = tmp_path / "out"
    result = run_svm(poller, out, refcat=empty, previews=False)
    names = {p.name for p in out.iterdir()}
    stem = "hst_16801_01_wfc3_uvis"
    assert {f"{stem}_f475w_if3s01a1_drc.fits", f"{stem}_f475w_if3s01_drc.fits",
            f"{stem}_total_if3s01_drc.fits", f"{stem}_total_if3s01_point-cat.ecsv",
            f"{stem}_f475w_if3s01_segment-cat.ecsv"} <= names
    # no headerlet without a fit (DrizzlePac writes them only after a successful fit)
    assert not any(n.endswith("_hlet.fits") for n in names)
    assert not any(n.endswith("_crmask.fits") for n in names)
    assert any("one exposure: cosmic-ray rejection skipped" in n for n in result.notes)
    fit = result.alignment.exposures[0]
    assert fit.status == "apriori" and fit.reason and not fit.updates
    trailer = (out / f"{stem}_total_if3s01_trl.txt").read_text()
    assert fit.reason in trailer and "cosmic-ray rejection skipped" in trailer
    with fits.open(out / f"{stem}_total_if3s01_drc.fits") as hdul:
        assert hdul[0].header["PARAMSET"] == "wfc3_uvis:total_n1"
        assert np.isfinite(hdul["SCI"].data).any()


def test_grism_only(sim, tmp_path, capsys):
    """Only grism frames: no product is possible; the reason names them; exit code 65 (HAP's
    NO_VIABLE_DATA) and nothing is written."""
    rows = _rows(sim, "02")[:2]
    for r in rows:
        r[-1] = _copy(r[-1], tmp_path, FILTER="G141")
        r[5] = "G141"
    poller = _write_poller(tmp_path / "grism_input.out", rows)
    with pytest.raises(NoViableData, match="grism"):
        plan(poller)
    out = tmp_path / "out"
    assert main(["svm", str(poller), "--output", str(out)]) == 65
    assert "no usable direct image" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_unknown_and_invalid_filter_and_missing_file(sim, tmp_path):
    """An unknown (well-formed) filter is processed under its own name; a filter that cannot
    form a HAP name and a missing file are left out with their poller lines named; the rest is
    planned."""
    rows = _rows(sim, "01")
    rows[1][-1] = _copy(rows[1][-1], tmp_path, FILTER="F999W")
    rows[1][5] = "F999W"
    rows[2][-1] = _copy(rows[2][-1], tmp_path, FILTER="F1 60W")
    rows[3][-1] = str(tmp_path / "nowhere" / Path(rows[3][-1]).name)
    rows[3][0] = "missing_flt.fits"
    p = plan(_write_poller(tmp_path / "mixed_input.out", rows))
    reasons = dict(p.rejected)
    assert len(reasons) == 2
    bad_filter = next(r for f, r in reasons.items() if "line 3" in f)
    assert "product name" in bad_filter and "FILTER" in bad_filter
    missing = next(r for f, r in reasons.items() if "line 4" in f)
    assert "file not found" in missing
    names = {f.drizzle_name for d in p.detectors for f in d.filters}
    assert names == {"hst_16801_01_wfc3_uvis_f475w_if3s01_drc.fits",
                     "hst_16801_01_wfc3_uvis_f999w_if3s01_drc.fits"}
    assert all("rejected" in line or "  " in line for line in p.describe()[1:])


def test_nothing_overwritten(wfc3_run, run_svm):
    """A second run into the same directory refuses before writing and leaves no trace."""
    _result, poller, out = wfc3_run
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(FileExistsError, match="already exist"):
        run_svm(poller, out)
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert {k: v for k, v in after.items() if not k.startswith(".hapdask")} == \
        {k: v for k, v in before.items() if not k.startswith(".hapdask")}
    assert not [p for p in out.iterdir() if p.name.startswith(".hapdask-svm-")]


def test_mvm_poller_is_refused(sim):
    with pytest.raises(ValueError, match="mvm poller"):
        plan(sim.mvm_poller)
