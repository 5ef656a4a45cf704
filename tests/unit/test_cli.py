"""Every subcommand has --help; operator mistakes end in one line on stderr, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gwtel.cli import build_parser, main


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)  # type: ignore[arg-type]


def test_core_subcommands_exist() -> None:
    assert {"up", "down", "status"} <= set(_subcommands())


@pytest.mark.parametrize("name", _subcommands())
def test_help_for_each_subcommand(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    assert "usage: gwtel" in capsys.readouterr().out


def test_bad_config_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka:\n  nope: 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "gwtel.cli", "--config", str(bad), "status"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "kafka.nope: unknown key" in proc.stderr
