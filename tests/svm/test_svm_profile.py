"""``hapdask svm --profile``: the visit runs as two computes (alignment, then every product in
one graph) and the breakdown names SVM's stages."""

from __future__ import annotations

import re

from hapdask.cli import main


def test_profile_two_computes_and_stages(sim, tmp_path, capsys):
    """Visit 02 (two WFC3/IR exposures, one filter): the exposure, filter and total drizzles
    and the catalogs are tasks of one product graph (no drizzle computes inside tasks)."""
    poller = next(p for p in sim.svm_pollers if p.name.endswith("_02_input.out"))
    out = tmp_path / "out"
    assert main(["svm", str(poller), "--refcat", str(sim.refcat), "--output", str(out),
                 "--no-previews", "--profile"]) == 0
    text = capsys.readouterr().out
    head = re.search(r"profile: wall [\d.]+ s = Dask computes [\d.]+ s \((\d+) compute", text)
    assert head and int(head.group(1)) == 2
    rows = {line.split()[0] for line in text.splitlines()[1:] if line.startswith("  ")}
    assert {"align", "sky", "drizzle", "write", "keywords", "catalogs"} <= rows
    assert "product graph (pixel maps)" in text
    assert any(p.name.endswith("_point-cat.ecsv") for p in out.iterdir())
