"""Hand-written FlowRecords for tests: one valid record whose every field is chosen, changed per test."""

from __future__ import annotations

import dataclasses
from typing import Any

from schemas.flow_record import FlowRecord, HistBin


def sample_flow(**changes: Any) -> FlowRecord:
    base = FlowRecord(
        schema_version=1, agent_id="a1", seq=7, link_id="jp-1", sampling_rate=1, ip_version=4,
        src_ip="10.0.0.1", src_port=40000, dst_ip="203.0.113.9", dst_port=443, protocol=6, vlan=0,
        first_ns=1_700_000_000_000_000_000, last_ns=1_700_000_001_000_000_000, export_ns=1_700_000_002_000_000_000,
        end_reason="fin", bytes_fwd=1200, packets_fwd=10, bytes_rev=9000, packets_rev=8, tcp_flags_fwd=0x1B,
        tcp_flags_rev=0x1B, retrans_fwd=0, retrans_rev=1, hs_rtt_ext_us=35_000, hs_rtt_int_us=120,
        ts_rtt_count=2, ts_rtt_min_us=34_000, ts_rtt_max_us=36_000, ts_rtt_sum_us=70_000,
        ts_rtt_hist=(HistBin(529, 1), HistBin(531, 1)), icmp_rtt_count=0, icmp_rtt_min_us=None,
        icmp_rtt_max_us=None, icmp_rtt_sum_us=0, icmp_rtt_hist=(), dns_rtt_count=0, dns_rtt_min_us=None,
        dns_rtt_max_us=None, dns_rtt_sum_us=0, dns_rtt_hist=(), direction="egress", partner="japan",
        remote_country="JP", remote_asn=0,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)
