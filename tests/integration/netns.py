"""A throw-away network namespace joined to this one by a veth pair, and a Scapy sender inside it.

Only the two veth ends carry the test traffic: IPv6 is off on both (no neighbour discovery or MLD frames), the
host end has no address and does not forward, and the frames are addressed to a MAC address that is not the
host end's, so the host stack drops them after the capture socket has seen them. Names are unique per run and
everything is removed in a ``finally``, also when the test fails.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.packet import Packet
from scapy.utils import wrpcap

SENDER = Path(__file__).with_name("netns_send.py")
PEER_MAC = "02:00:5e:00:53:02"  # the frames' destination: nobody's address on the host side
SENDER_MAC = "02:00:5e:00:53:01"


@dataclass(frozen=True)
class VethPair:
    netns: str
    host_if: str  # in this namespace: where the capture runs
    ns_if: str  # inside the namespace: where the sender writes


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        pytest.fail(f"`ip {' '.join(args)}` failed: {proc.stderr.strip()} (the live capture tests run as root)")


def _write(path: str, value: str) -> None:
    Path(path).write_text(value)


@contextlib.contextmanager
def veth_pair() -> Iterator[VethPair]:
    if shutil.which("ip") is None:
        pytest.fail("the live capture tests need iproute2 (`ip`): apt-get install iproute2")
    tag = uuid.uuid4().hex[:8]
    pair = VethPair(f"gwtel-{tag}", f"gwc{tag}", f"gwn{tag}")
    try:
        _ip("netns", "add", pair.netns)
        create_link(pair)
        yield pair
    finally:
        subprocess.run(["ip", "link", "del", pair.host_if], capture_output=True, timeout=30, check=False)
        subprocess.run(["ip", "netns", "del", pair.netns], capture_output=True, timeout=30, check=False)


def create_link(pair: VethPair) -> None:
    """The veth pair of ``pair`` (again, after ``ip link del``), set up as described above."""
    _ip("link", "add", pair.host_if, "type", "veth", "peer", "name", pair.ns_if, "netns", pair.netns)
    _write(f"/proc/sys/net/ipv6/conf/{pair.host_if}/disable_ipv6", "1")
    _write(f"/proc/sys/net/ipv4/conf/{pair.host_if}/forwarding", "0")
    _ip("netns", "exec", pair.netns, "sysctl", "-qw", f"net.ipv6.conf.{pair.ns_if}.disable_ipv6=1")
    _ip("link", "set", pair.host_if, "up")
    _ip("-n", pair.netns, "link", "set", pair.ns_if, "address", SENDER_MAC, "up")


def send(pair: VethPair, packets: Sequence[Packet], workdir: Path, timeout_s: float = 120.0) -> None:
    """Send ``packets`` from inside the namespace, each at least its ``time`` minus the previous one's later."""
    path = workdir / f"send-{uuid.uuid4().hex[:6]}.pcap"
    wrpcap(str(path), list(packets))
    proc = subprocess.run(
        ["ip", "netns", "exec", pair.netns, sys.executable, str(SENDER), pair.ns_if, str(path)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(len(packets))], proc.stdout + proc.stderr
