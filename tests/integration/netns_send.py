"""Send the frames of a pcap on one interface with Scapy, waiting at least each recorded gap (run in a namespace).

Usage: netns_send.py IFACE PCAP. Pcap times are cumulative: the gap before a frame is its time minus the previous
frame's. Sleeping after each send makes every gap at least as long as asked, whatever the machine's load.
Prints the number of frames sent.
"""

from __future__ import annotations

import sys
import time

from scapy.arch.linux import L2Socket
from scapy.layers.l2 import Ether  # noqa: F401  (registers link type 1, so frames are read as Ethernet)
from scapy.utils import rdpcap


def main(iface: str, path: str) -> int:
    frames = rdpcap(path)
    sock = L2Socket(iface=iface)
    try:
        prev: float | None = None
        for frame in frames:
            t = float(frame.time)
            if prev is not None and t > prev:
                time.sleep(t - prev)
            sock.send(frame)
            prev = t
    finally:
        sock.close()
    print(len(frames))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
