"""Passive latency: exact microseconds from hand-built exchanges with known timings."""

from __future__ import annotations

from ingest.flowmeter import MeterConfig
from ingest.latency import ns_to_us
from ingest.packet import DecodedPacket
from schemas.flow_record import HistBin
from schemas.histogram import bucket_of_us
from tests.unit.test_flowmeter import ACK, DOM, MS, PSH, REM, SEC, SYN, T0, make_meter, pkt, run, tcp


def test_ns_to_us_rounds_to_nearest_halves_up() -> None:
    assert [ns_to_us(v) for v in (0, 499, 500, 1_499, 1_500, 2_500, 35_250_400)] == [0, 0, 1, 1, 2, 3, 35_250]


def test_handshake_egress_remote_is_responder() -> None:
    # domestic client -> partner server: SYN->SYN-ACK is beyond the observation point (external).
    recs = run(
        [
            tcp(T0, DOM, REM, 40000, 443, SYN, seq=1000),
            tcp(T0 + 35_250_400, REM, DOM, 443, 40000, SYN | ACK, seq=9000, ack=1001),
            tcp(T0 + 35_250_400 + 1_499_600, DOM, REM, 40000, 443, ACK, seq=1001, ack=9001),
        ]
    )
    (r,) = recs
    assert (r.src_ip, r.src_port, r.dst_ip, r.dst_port) == (DOM, 40000, REM, 443)
    assert r.direction == "egress"
    assert r.hs_rtt_ext_us == 35_250
    assert r.hs_rtt_int_us == 1_500


def test_handshake_ingress_remote_is_initiator() -> None:
    # partner client -> domestic server: SYN->SYN-ACK is on the domestic side (internal), SYN-ACK->ACK external.
    recs = run(
        [
            tcp(T0, REM, DOM, 51000, 22, SYN, seq=7),
            tcp(T0 + 800_500, DOM, REM, 22, 51000, SYN | ACK, seq=0xFFFFFFFF, ack=8),
            # ack = SYN-ACK seq + 1 wraps to 0
            tcp(T0 + 800_500 + 60 * MS, REM, DOM, 51000, 22, ACK, seq=8, ack=0),
        ]
    )
    (r,) = recs
    assert (r.src_ip, r.dst_ip, r.direction) == (REM, DOM, "ingress")
    assert r.hs_rtt_int_us == 801
    assert r.hs_rtt_ext_us == 60_000


def test_synack_before_syn_reorients_and_gives_no_sample() -> None:
    m, out, clf = make_meter()
    for p in [
        tcp(T0, REM, DOM, 443, 40000, SYN | ACK, seq=9000, ack=1001),
        tcp(T0 + 10_000, DOM, REM, 40000, 443, SYN, seq=1000),
        tcp(T0 + 20 * MS, DOM, REM, 40000, 443, ACK, seq=1001, ack=9001),
        tcp(T0 + 1 * SEC, REM, DOM, 443, 40000, SYN | ACK, seq=9000, ack=1001),  # retransmitted SYN-ACK
        tcp(T0 + 1 * SEC + 5 * MS, DOM, REM, 40000, 443, ACK | PSH, seq=1001, ack=9001, payload=10),
    ]:
        m.add(p)
    m.flush()
    (r,) = out
    assert (r.src_ip, r.src_port, r.dst_ip, r.dst_port) == (DOM, 40000, REM, 443)
    assert (r.packets_fwd, r.packets_rev) == (3, 2)
    assert (r.bytes_fwd, r.bytes_rev) == (130, 80)
    assert r.tcp_flags_fwd == SYN | ACK | PSH and r.tcp_flags_rev == SYN | ACK
    assert r.hs_rtt_ext_us is None and r.hs_rtt_int_us is None
    assert r.direction == "egress"
    # classified once at creation (wrong way round), once more after re-orientation
    assert clf.calls == [(REM, DOM), (DOM, REM)]
    assert m.stats.reoriented == 1


def test_retransmitted_syn_measures_from_last_syn() -> None:
    recs = run(
        [
            tcp(T0, DOM, REM, 40000, 443, SYN, seq=1000),
            tcp(T0 + 1 * SEC, DOM, REM, 40000, 443, SYN, seq=1000),
            tcp(T0 + 1 * SEC + 20 * MS, REM, DOM, 443, 40000, SYN | ACK, seq=5, ack=1001),
            tcp(T0 + 1 * SEC + 21 * MS, DOM, REM, 40000, 443, ACK, seq=1001, ack=6),
        ]
    )
    (r,) = recs
    assert r.hs_rtt_ext_us == 20_000
    assert r.hs_rtt_int_us == 1_000
    assert r.retrans_fwd == 1  # the repeated SYN


def test_synack_not_acking_the_syn_gives_no_leg() -> None:
    recs = run(
        [
            tcp(T0, DOM, REM, 40000, 443, SYN, seq=1000),
            tcp(T0 + 20 * MS, REM, DOM, 443, 40000, SYN | ACK, seq=5, ack=777),
            tcp(T0 + 21 * MS, DOM, REM, 40000, 443, ACK, seq=1001, ack=6),
        ]
    )
    assert (recs[0].hs_rtt_ext_us, recs[0].hs_rtt_int_us) == (None, None)


def test_tcp_timestamp_rtt_remote_side_only() -> None:
    d, r = (DOM, REM)

    def out(ts: int, tsval: int, tsecr: int) -> DecodedPacket:
        return tcp(ts, d, r, 40000, 443, ACK | PSH, seq=1, ack=1, payload=100, tsval=tsval, tsecr=tsecr)

    def back(ts: int, tsval: int, tsecr: int) -> DecodedPacket:
        return tcp(ts, r, d, 443, 40000, ACK, seq=1, ack=101, tsval=tsval, tsecr=tsecr)

    pk = [
        out(T0, 100, 500),
        out(T0 + 1 * MS, 100, 500),  # same TSval again: not a first occurrence
        back(T0 + 30 * MS, 501, 100),  # sample 30 ms
        out(T0 + 30 * MS + 500_000, 100, 501),  # TSval 100 still (same clock tick): not a new first sighting
        back(T0 + 31 * MS, 502, 100),  # echo again: already matched
        out(T0 + 40 * MS, 101, 502),  # domestic echoes 502 (domestic side): never sampled
        out(T0 + 45 * MS, 102, 502),
        back(T0 + 70 * MS + 400, 503, 102),  # sample 25.0004 ms -> 25000 us; 101 becomes stale
        back(T0 + 71 * MS, 504, 101),  # stale echo: no sample
    ]
    recs = run(pk)
    (rec,) = recs
    assert rec.ts_rtt_count == 2
    assert (rec.ts_rtt_min_us, rec.ts_rtt_max_us, rec.ts_rtt_sum_us) == (25_000, 30_000, 55_000)
    assert bucket_of_us(25_000) != bucket_of_us(30_000)
    assert rec.ts_rtt_hist == (HistBin(bucket_of_us(25_000), 1), HistBin(bucket_of_us(30_000), 1))


def test_tcp_timestamp_rtt_ingress_flow_uses_responder_tsvals() -> None:
    # Remote opened the flow: the domestic server's TSvals go toward the remote, echoes come from it.
    recs = run(
        [
            tcp(T0, REM, DOM, 51000, 80, ACK, seq=1, ack=1, payload=10, tsval=7, tsecr=1),
            tcp(T0 + 1 * MS, DOM, REM, 80, 51000, ACK, seq=1, ack=11, payload=10, tsval=900, tsecr=7),
            tcp(T0 + 9 * MS, REM, DOM, 51000, 80, ACK, seq=11, ack=11, tsval=8, tsecr=900),
        ]
    )
    (r,) = recs
    assert (r.ts_rtt_count, r.ts_rtt_min_us, r.ts_rtt_max_us) == (1, 8_000, 8_000)


def test_tcp_timestamp_pending_is_bounded() -> None:
    cfg = MeterConfig(max_pending_ts=2)
    pk = [tcp(T0 + i * MS, DOM, REM, 1, 2, ACK, seq=1 + i, payload=1, tsval=10 + i, tsecr=1) for i in range(3)]
    # TSval 12 was not remembered (cap 2): its echo gives nothing; then 11 echoed: 12 ms - 1 ms.
    pk.append(tcp(T0 + 10 * MS, REM, DOM, 2, 1, ACK, seq=1, tsval=5, tsecr=12))
    pk.append(tcp(T0 + 12 * MS, REM, DOM, 2, 1, ACK, seq=1, tsval=6, tsecr=11))
    (r,) = run(pk, cfg)
    assert (r.ts_rtt_count, r.ts_rtt_min_us) == (1, 11_000)


def test_icmp_echo_one_flow_and_rtt() -> None:
    pk = [
        pkt(T0, DOM, REM, proto=1, ip_len=84, icmp_type=8, icmp_code=0, icmp_id=7, icmp_seq=1),
        pkt(T0 + 12_345_600, REM, DOM, proto=1, ip_len=84, icmp_type=0, icmp_code=0, icmp_id=7, icmp_seq=1),
        pkt(T0 + 1 * SEC, DOM, REM, proto=1, ip_len=84, icmp_type=8, icmp_code=0, icmp_id=7, icmp_seq=2),
        pkt(T0 + 1 * SEC + 10 * MS, REM, DOM, proto=1, ip_len=84, icmp_type=0, icmp_code=0, icmp_id=7, icmp_seq=2),
        # another echo id: another flow, unanswered
        pkt(T0 + 2 * SEC, DOM, REM, proto=1, ip_len=84, icmp_type=8, icmp_code=0, icmp_id=8, icmp_seq=1),
    ]
    recs = run(pk)
    assert len(recs) == 2
    r = recs[0]
    assert (r.src_ip, r.src_port, r.dst_ip, r.dst_port, r.protocol) == (DOM, 0, REM, 8 << 8, 1)
    assert (r.packets_fwd, r.packets_rev, r.bytes_fwd, r.bytes_rev) == (2, 2, 168, 168)
    assert (r.icmp_rtt_count, r.icmp_rtt_min_us, r.icmp_rtt_max_us, r.icmp_rtt_sum_us) == (2, 10_000, 12_346, 22_346)
    assert recs[1].icmp_rtt_count == 0 and recs[1].icmp_rtt_min_us is None


def test_icmpv6_echo_and_remote_pings_are_not_sampled() -> None:
    d6, r6 = "fd00::1", "2001:db8::5"
    pk = [
        pkt(T0, d6, r6, proto=58, icmp_type=128, icmp_code=0, icmp_id=1, icmp_seq=1),
        pkt(T0 + 2_000_500, r6, d6, proto=58, icmp_type=129, icmp_code=0, icmp_id=1, icmp_seq=1),
        # the partner pings us: the round trip is on our side, not sampled
        pkt(T0, r6, d6, proto=58, icmp_type=128, icmp_code=0, icmp_id=2, icmp_seq=1),
        pkt(T0 + 1 * MS, d6, r6, proto=58, icmp_type=129, icmp_code=0, icmp_id=2, icmp_seq=1),
    ]
    a, b = run(pk)
    assert (a.ip_version, a.dst_port, a.icmp_rtt_count, a.icmp_rtt_min_us) == (6, 128 << 8, 1, 2_001)
    assert (b.src_ip, b.direction, b.icmp_rtt_count) == (r6, "ingress", 0)


def test_dns_query_response() -> None:
    pk = [
        pkt(T0, DOM, REM, sport=5353, dport=53, dns_id=0x1234),
        pkt(T0 + 25_000_500, REM, DOM, sport=53, dport=5353, dns_id=0x1234, dns_is_response=True),
        pkt(T0 + 30 * MS, REM, DOM, sport=53, dport=5353, dns_id=0x1234, dns_is_response=True),  # duplicate
        pkt(T0 + 40 * MS, DOM, REM, sport=5353, dport=53, dns_id=0x9999),  # unanswered
        # partner asks a domestic server: not sampled
        pkt(T0, REM, DOM, sport=4000, dport=53, dns_id=1),
        pkt(T0 + 1 * MS, DOM, REM, sport=53, dport=4000, dns_id=1, dns_is_response=True),
    ]
    a, b = run(pk)
    assert (a.dns_rtt_count, a.dns_rtt_min_us, a.dns_rtt_max_us, a.dns_rtt_sum_us) == (1, 25_001, 25_001, 25_001)
    assert a.dns_rtt_hist == (HistBin(bucket_of_us(25_001), 1),)
    assert (b.src_ip, b.dns_rtt_count) == (REM, 0)


def test_reply_before_request_gives_no_sample() -> None:
    pk = [
        pkt(T0, REM, DOM, sport=53, dport=5353, dns_id=5, dns_is_response=True),
        pkt(T0 + 1 * MS, DOM, REM, sport=5353, dport=53, dns_id=5),
    ]
    (r,) = run(pk)
    assert r.dns_rtt_count == 0
