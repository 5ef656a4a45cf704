"""Flow state -> FlowRecord.

Latency attribution: ``hs_rtt_ext_us`` is the handshake leg on the partner's side of the observation point.
SYN -> SYN-ACK is measured on the responder's side, SYN-ACK -> ACK on the initiator's side, so when the
remote (partner) host is the responder the first leg is external, and when the remote host opened the
connection the second leg is. The TS, ICMP and DNS trackers only ever sample the remote side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ingest.applications import AppClassifier
from ingest.flowkey import PROTO_ICMP, PROTO_ICMPV6, KeyParts, ip_text
from ingest.latency import RttSummary, ns_to_us
from schemas.flow_record import FLOW_SCHEMA_VERSION, FlowRecord, HistBin

if TYPE_CHECKING:
    from ingest.flowmeter import Flow


def _summary(s: RttSummary | None) -> tuple[int, int | None, int | None, int, tuple[HistBin, ...]]:
    if s is None or s.count == 0:
        return 0, None, None, 0, ()
    return s.count, s.min_us, s.max_us, s.sum_us, s.bins()


def _us(ns: int | None) -> int | None:
    return None if ns is None else ns_to_us(ns)


def build_record(
    flow: Flow,
    *,
    seq: int,
    export_ns: int,
    end_reason: str,
    agent_id: str,
    link_id: str,
    sampling_rate: int,
    apps: AppClassifier,
) -> FlowRecord:
    """One record for the current slice of ``flow`` (the caller resets the slice afterwards)."""
    k = KeyParts(flow.key)
    if flow.lo_init:
        src_ip, src_port, dst_ip, dst_port = k.lo_ip, k.lo_port, k.hi_ip, k.hi_port
    else:
        src_ip, src_port, dst_ip, dst_port = k.hi_ip, k.hi_port, k.lo_ip, k.lo_port
    if k.protocol in (PROTO_ICMP, PROTO_ICMPV6):
        src_port, dst_port = 0, flow.aux  # type<<8|code of the flow's first packet
    cls = flow.cls
    tcp = flow.tcp
    lat = flow.lat
    ext = inner = None
    ts = icmp = dns = _summary(None)
    if lat is not None:
        resp_ns, init_ns = lat.hs_legs()
        resp, init = _us(resp_ns), _us(init_ns)
        ext, inner = (init, resp) if cls.remote_is_initiator else (resp, init)
        ts, icmp, dns = _summary(lat.ts_sum), _summary(lat.icmp_sum), _summary(lat.dns_sum)
    src_text, dst_text = ip_text(src_ip), ip_text(dst_ip)
    app_class = apps.classify(
        protocol=k.protocol,
        server_port=dst_port,
        dscp=flow.dscp,
        src_ip=src_text,
        dst_ip=dst_text,
        remote_is_initiator=cls.remote_is_initiator,
        remote_asn=cls.remote_asn,
        link_id=link_id,
    )
    return FlowRecord(
        schema_version=FLOW_SCHEMA_VERSION,
        agent_id=agent_id,
        seq=seq,
        link_id=link_id,
        sampling_rate=sampling_rate,
        ip_version=k.ip_version,
        src_ip=src_text,
        src_port=src_port,
        dst_ip=dst_text,
        dst_port=dst_port,
        protocol=k.protocol,
        vlan=k.vlan,
        first_ns=flow.first_ns,
        last_ns=flow.last_ns,
        export_ns=export_ns,
        end_reason=end_reason,
        bytes_fwd=flow.bytes_f,
        packets_fwd=flow.pkts_f,
        bytes_rev=flow.bytes_r,
        packets_rev=flow.pkts_r,
        tcp_flags_fwd=flow.flags_f,
        tcp_flags_rev=flow.flags_r,
        retrans_fwd=0 if tcp is None else tcp.retrans_f,
        retrans_rev=0 if tcp is None else tcp.retrans_r,
        hs_rtt_ext_us=ext,
        hs_rtt_int_us=inner,
        ts_rtt_count=ts[0],
        ts_rtt_min_us=ts[1],
        ts_rtt_max_us=ts[2],
        ts_rtt_sum_us=ts[3],
        ts_rtt_hist=ts[4],
        icmp_rtt_count=icmp[0],
        icmp_rtt_min_us=icmp[1],
        icmp_rtt_max_us=icmp[2],
        icmp_rtt_sum_us=icmp[3],
        icmp_rtt_hist=icmp[4],
        dns_rtt_count=dns[0],
        dns_rtt_min_us=dns[1],
        dns_rtt_max_us=dns[2],
        dns_rtt_sum_us=dns[3],
        dns_rtt_hist=dns[4],
        direction=cls.direction,
        partner=cls.partner,
        remote_country=cls.remote_country,
        remote_asn=cls.remote_asn,
        dscp=flow.dscp,
        app_class=app_class,
    )
