"""The ``hapdask`` command dispatcher."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hapdask.cli import COMMANDS, build_parser, main


def test_every_subcommand_is_registered():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("hapdask ")


def test_unknown_command_fails():
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2


def test_python_dash_m_runs_the_cli():
    res = subprocess.run(
        [sys.executable, "-m", "hapdask", "--help"], capture_output=True, text=True
    )
    assert res.returncode == 0
    for name in COMMANDS:
        assert name in res.stdout


@pytest.mark.parametrize("command", ["svm", "drizzle"])
def test_runs_skip_the_imports_objects_in_full_collections(command, tmp_path, monkeypatch):
    """While ``hapdask svm`` / ``drizzle`` compute, the objects alive before the run (the
    imports') are frozen out of the collector's full passes, which come after 100 young
    passes instead of 10 (each full pass holds the GIL over every object, stalling the task
    threads); the process's collector settings are back when the command returns."""
    import gc

    from hapdask import svm
    from hapdask.mosaic import job

    seen = {}

    def fake_run(*args, **kwargs):
        seen["frozen"] = gc.get_freeze_count()
        seen["full_after"] = gc.get_threshold()[2]
        raise ValueError("stop here")

    monkeypatch.setattr(svm, "run", fake_run)
    monkeypatch.setattr(job, "drizzle", fake_run)
    before = gc.get_threshold(), gc.get_freeze_count()
    argv = ([command, str(tmp_path / "visit.out"), "--output", str(tmp_path / "out")]
            if command == "svm" else
            [command, str(tmp_path / "a_flt.fits"), "--output", str(tmp_path / "out")])
    assert main(argv) == 1  # the fake run's error, reported as one line
    assert seen["frozen"] > 10_000  # the modules, classes and functions of the imports
    assert seen["full_after"] == 100
    assert (gc.get_threshold(), gc.get_freeze_count()) == before
