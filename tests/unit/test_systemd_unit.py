"""deploy/systemd/gwtel-capture@.service: accepted by systemd's own checker, with two capabilities and no more."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "gwtel-capture@.service"
INSTALLED = "/opt/gwtel/.venv/bin/gwtel"


def settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_systemd_analyze_verify_finds_nothing_to_say(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is missing (Debian package systemd)")
    text = UNIT.read_text()
    assert text.count(INSTALLED) == 1
    # The program is where the unit installs it, absent on a build machine, and verify checks that it exists: a
    # copy runs /bin/true instead; every other line is the unit's own.
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED, "/bin/true"))
    proc = subprocess.run([tool, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # parse warnings ("..., ignoring") do not change the exit code


def test_the_agent_gets_cap_net_raw_and_cap_net_admin_only() -> None:
    s = settings(UNIT.read_text())
    for key in ("AmbientCapabilities", "CapabilityBoundingSet"):
        assert len(s[key]) == 1, s[key]
        assert sorted(s[key][0].split()) == ["CAP_NET_ADMIN", "CAP_NET_RAW"]
    assert s["NoNewPrivileges"] == ["yes"]
    assert s["User"] == ["gwtel"]
    assert "--iface %i" in s["ExecStart"][0]
