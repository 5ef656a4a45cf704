"""Live capture without root: `gwtel capture` as user nobody holding only CAP_NET_RAW and CAP_NET_ADMIN (given
by setpriv as ambient capabilities, as the systemd unit does) meters real traffic on a veth pair; the same
user without them is refused with a message naming the capabilities.

The kernel's view is checked, not the agent's: /proc/<pid>/status of the running capture shows uid 65534 and
an effective capability set of exactly the two.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.netns import VethPair, send, veth_pair
from tests.integration.test_live_capture import gateway_traffic, poll, running_capture

pytestmark = pytest.mark.integration

NOBODY = 65534
CAP_NET_ADMIN, CAP_NET_RAW = 12, 13
CAPS = "+net_raw,+net_admin"


@pytest.fixture
def pair() -> Iterator[VethPair]:
    with veth_pair() as p:
        yield p


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A folder user nobody may write (pytest's own tmp folders are the test user's only)."""
    path = Path(tempfile.mkdtemp(prefix="gwtel-unpriv-"))
    for sub in (path, path / "home"):
        sub.mkdir(exist_ok=True)
        sub.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def setpriv(with_caps: bool) -> tuple[str, ...]:
    tool = shutil.which("setpriv")
    if tool is None:
        pytest.fail("this test needs setpriv (util-linux)")
    caps = CAPS if with_caps else ""
    return (
        tool, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
        f"--inh-caps=-all{',' + caps if caps else ''}", f"--ambient-caps=-all{',' + caps if caps else ''}",
        f"--bounding-set=-all{',' + caps if caps else ''}", "--",
    )  # fmt: skip


def env_for(workdir: Path) -> dict[str, str]:
    return {**os.environ, "GWTEL_HOME": str(workdir / "home"), "HOME": str(workdir)}


def status_of(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def test_capture_as_nobody_with_only_net_raw_and_net_admin(pair: VethPair, workdir: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test drops from root to nobody: run it as root (CI does)")
    tr = gateway_traffic()
    with running_capture(pair, workdir, prefix=setpriv(True), env=env_for(workdir)) as cap:
        st = status_of(cap.proc.pid)
        assert st["Uid"].split()[:2] == [str(NOBODY), str(NOBODY)]
        assert int(st["CapEff"], 16) == (1 << CAP_NET_RAW) | (1 << CAP_NET_ADMIN)
        send(pair, tr.frames, workdir)
        poll(lambda: cap.total("gwtel_agent_packets_seen_total"), lambda n: n >= len(tr.frames), "all packets read")
        poll(lambda: cap.total("gwtel_agent_flows_exported_total"), lambda n: n >= len(tr.flows), "flows exported")
        rc, stderr = cap.stop()
        records = cap.records()
    assert rc == 0, stderr
    assert cap.records_path.stat().st_uid == NOBODY  # written by the capture itself
    got = {(r["partner"], r["direction"]) for r in records}
    assert got == {(f["partner"], f["direction"]) for f in tr.flows.values()}
    assert sum(r["bytes_fwd"] + r["bytes_rev"] for r in records) == sum(v[0] for v in tr.by_partner().values())


def test_capture_as_nobody_without_capabilities_is_refused_clearly(pair: VethPair, workdir: Path) -> None:
    config = workdir / "agent.yaml"
    config.write_text("agent: {agent_id: unpriv, metrics_port: 0}\n", encoding="utf-8")
    argv = [sys.executable, "-m", "gwtel.cli", "--config", str(config), "capture", "--iface", pair.host_if,
            "--to", f"jsonl:{workdir / 'r.jsonl'}", "--duration", "5"]  # fmt: skip
    out = subprocess.run(
        [*setpriv(False), *argv], capture_output=True, text=True, timeout=120, env=env_for(workdir), check=False
    )
    assert out.returncode != 0
    assert "needs CAP_NET_RAW" in out.stderr and "Traceback" not in out.stderr
