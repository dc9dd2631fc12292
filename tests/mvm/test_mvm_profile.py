"""``hapdask mvm --profile``: the per-stage breakdown is printed and adds up."""

from __future__ import annotations

import re
import resource

import pytest

from hapdask.cli import main
from hapdask.profile import Profile

SKYCELL = "p1889x07y19"
ROW = re.compile(r"^  (\s*)(\S[^\d]*?)\s+(\d+\.\d+)\s+(\d+\.\d)%\s+(\d+\.\d+)\s*(\d*)$")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def test_mvm_profile_is_printed_and_sums(sim, verdicts, tmp_path, capsys):
    cpu0 = _cpu()
    code = main(["mvm", SKYCELL, "--input", str(sim.mvm_poller), "--output", str(tmp_path),
                 "--tile-size", "512", "--layer", "f160w", "--threads-per-worker", "2",
                 "--format", "fits,zarr", "--profile"])
    cpu = _cpu() - cpu0
    assert code == 0
    out = capsys.readouterr().out
    text = out[out.index("profile: wall"):]
    rows = []
    for line in text.splitlines()[2:]:
        m = ROW.match(line)
        if m:
            rows.append((len(m.group(1)) // 2, m.group(2).strip(), float(m.group(3)),
                         float(m.group(5))))
    names = [r[1] for r in rows]
    for stage in ("analyze", "sky", "drizzle", "read", "pixmap", "kernel", "write", "fits",
                  "zarr", "total task time"):
        assert stage in names, (stage, text)
    over = re.search(r"scheduler overhead\s+(\d+\.\d+)\s+(\d+\.\d)%", text)
    assert over is not None, text
    total = next(r for r in rows if r[1] == "total task time")
    stages = [r for r in rows if r[0] == 0 and r[1] != "total task time"]
    # stages add up to the total (printed to 0.01 s), operations to their stage
    assert sum(r[2] for r in stages) == pytest.approx(total[2], abs=0.01 * len(stages) + 0.01)
    for k, r in enumerate(rows):
        if r[0] == 0 and k + 1 < len(rows) and rows[k + 1][0] == 1:
            ops = []
            for s in rows[k + 1:]:
                if s[0] != 1:
                    break
                ops.append(s)
            assert sum(s[2] for s in ops) == pytest.approx(r[2], abs=0.01 * len(ops) + 0.01)
    # the CPU time of the tasks is CPU time this process really spent
    assert 0 < total[3] <= cpu + 0.05
    head = re.search(r"profile: wall (\d+\.\d+) s = Dask computes (\d+\.\d+) s .*\+ client "
                     r"(\d+\.\d+) s", text)
    wall, computes, client = map(float, head.groups())
    assert computes + client == pytest.approx(wall, abs=0.02)
    assert "plan" in text.splitlines()[-1]


def test_profile_counts_follow_the_plan(sim, true_wcs, verdicts, tmp_path):
    """Task and operation counts against the plan: one drizzle and one write task per tile,
    one read/pixmap/kernel per (tile, chip) contribution drizzled."""
    from hapdask.mvm import run

    with Profile() as prof:
        res = run(SKYCELL, str(sim.mvm_poller), output=tmp_path, tile_size=512,
                  wcs_updates=true_wcs, threads_per_worker=2, log=lambda m: None,
                  verdicts=verdicts, layers=["f160w"], formats=["fits"])
    rows = {(r.depth, r.name): r for r in prof.stages()}
    ntiles = sum(len(lay.tiles) for lay in res.plan.layers.values())
    contribs = sum(len(t.contribs) for lay in res.plan.layers.values() for t in lay.tiles)
    assert rows[(0, "drizzle")].tasks == ntiles == res.tiles_computed
    assert rows[(0, "write")].tasks == ntiles
    assert rows[(0, "sky")].tasks == len({c.key for lay in res.plan.layers.values()
                                          for c in lay.chips})
    assert 0 < rows[(1, "kernel")].tasks <= contribs
    assert rows[(1, "read")].tasks == rows[(1, "pixmap")].tasks == rows[(1, "kernel")].tasks
    assert (0, "analyze") not in rows  # verdicts were given: no analyze tasks
    assert "plan" in prof.steps


def test_drizzle_profile_has_the_astrodrizzle_stages(sim, tmp_path, capsys):
    """``hapdask drizzle --profile``: the AstroDrizzle stages of the same engine are named."""
    pair = sorted(str(p) for p in sim.exposures if "jf3t03a1q" in str(p) or "jf3t03a2q" in str(p))
    assert len(pair) == 2
    code = main(["drizzle", *pair, "--output", str(tmp_path / "pair"), "--tile-size", "256",
                 "--threads-per-worker", "2", "--profile"])
    assert code == 0
    out = capsys.readouterr().out
    text = out[out.index("profile: wall"):]
    for stage in ("static", "sky", "median", "driz_cr", "drizzle", "write", "kernel",
                  "scheduler overhead"):
        assert re.search(rf"^\s+{stage}\s+\d", text, re.M), (stage, text)
