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
