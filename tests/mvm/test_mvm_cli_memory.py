"""``hapdask mvm`` keeps freed memory for reuse (hapdask._memory) before its run starts."""

from __future__ import annotations

import hapdask.mvm
from hapdask.cli import main
from hapdask.cli import mvm as cli_mvm


def test_mvm_command_keeps_freed_memory_before_the_run(monkeypatch, tmp_path):
    calls: list[str] = []

    class Result:
        def summary(self) -> str:
            return "done"

    def fake_run(*args, **kwargs):
        calls.append("run")
        return Result()

    monkeypatch.setattr(cli_mvm, "keep_freed_memory", lambda: calls.append("keep") or True)
    monkeypatch.setattr(hapdask.mvm, "run", fake_run)
    assert main(["mvm", "p1889x07y19", "--input", str(tmp_path / "none.txt"),
                 "--output", str(tmp_path / "out")]) == 0
    assert calls == ["keep", "run"]
