"""Retransmission / out-of-order heuristic on hand-built segment sequences."""

from __future__ import annotations

from ingest.tcpstate import DEFAULT_OOO_NS, TcpState
from tests.unit.test_flowmeter import ACK, DOM, FIN, MS, PSH, REM, RST, SYN, T0, run, tcp

DATA = ACK | PSH


def _feed(segs: list[tuple[bool, int, int, int, int]]) -> TcpState:
    """segments: (fwd, flags, seq, payload_len, ts_ns)."""
    st = TcpState()
    for fwd, flags, seq, plen, ts in segs:
        st.segment(fwd, flags, seq, plen, ts_ns=ts, ooo_ns=DEFAULT_OOO_NS)
    return st


def test_in_order_stream_has_no_retransmission() -> None:
    st = _feed([(True, DATA, 1 + 100 * i, 100, T0 + i * MS) for i in range(50)])
    assert (st.retrans_f, st.ooo_f, st.retrans_r) == (0, 0, 0)


def test_exact_repeat_after_a_while_is_a_retransmission() -> None:
    st = _feed(
        [
            (True, DATA, 1, 100, T0),
            (True, DATA, 101, 100, T0 + 1 * MS),
            (True, DATA, 101, 100, T0 + 200 * MS),  # same range again
            (True, DATA, 1, 100, T0 + 201 * MS),  # older range again
            (True, DATA, 201, 100, T0 + 202 * MS),
        ]
    )
    assert (st.retrans_f, st.ooo_f, st.hi_f) == (2, 0, 301)


def test_repeat_of_last_segment_soon_is_still_a_retransmission() -> None:
    # Ending exactly at the highest end is never out-of-order, however soon.
    st = _feed([(True, DATA, 1, 100, T0), (True, DATA, 1, 100, T0 + 10_000)])
    assert (st.retrans_f, st.ooo_f) == (1, 0)


def test_late_hole_filler_within_threshold_is_out_of_order() -> None:
    st = _feed(
        [
            (True, DATA, 1, 100, T0),
            (True, DATA, 201, 100, T0 + 1 * MS),  # 101..200 missing
            (True, DATA, 101, 100, T0 + 2 * MS),  # 1 ms later: out-of-order
            (True, DATA, 301, 100, T0 + 3 * MS),
            (True, DATA, 501, 100, T0 + 4 * MS),  # 401..500 missing
            (True, DATA, 401, 100, T0 + 4 * MS + DEFAULT_OOO_NS),  # at the threshold: retransmission
        ]
    )
    assert (st.ooo_f, st.retrans_f) == (1, 1)


def test_handshake_rtt_becomes_the_ooo_threshold() -> None:
    st = TcpState()
    st.irtt_ns = 50 * MS
    for seq, ts in ((1, T0), (201, T0 + 1 * MS), (101, T0 + 40 * MS)):
        st.segment(True, DATA, seq, 100, ts_ns=ts, ooo_ns=DEFAULT_OOO_NS)
    assert (st.ooo_f, st.retrans_f) == (1, 0)


def test_repeated_syn_and_fin_count_keepalive_and_pure_ack_do_not() -> None:
    st = _feed(
        [
            (True, SYN, 1000, 0, T0),
            (True, SYN, 1000, 0, T0 + 1_000 * MS),  # repeated SYN
            (False, SYN | ACK, 5000, 0, T0 + 1_010 * MS),
            (True, ACK, 1001, 0, T0 + 1_011 * MS),
            (True, ACK, 1001, 0, T0 + 1_012 * MS),  # duplicate pure ACK: no sequence space
            (True, DATA, 1001, 10, T0 + 1_020 * MS),
            (True, ACK, 1010, 1, T0 + 60_000 * MS),  # keep-alive: 1 byte at highest - 1
            (True, FIN | ACK, 1011, 0, T0 + 61_000 * MS),
            (True, FIN | ACK, 1011, 0, T0 + 61_500 * MS),  # repeated FIN
            (False, SYN | ACK, 5000, 0, T0 + 2_000 * MS),  # repeated SYN-ACK
        ]
    )
    assert (st.retrans_f, st.retrans_r) == (2, 1)
    assert st.closing is None  # FIN from one side only


def test_partial_overlap_advances_without_counting() -> None:
    st = _feed([(True, DATA, 1, 100, T0), (True, DATA, 51, 100, T0 + 500 * MS)])
    assert (st.retrans_f, st.ooo_f, st.hi_f) == (0, 0, 151)


def test_sequence_wraparound() -> None:
    top = 0xFFFFFFFF - 49  # 50 bytes before the wrap
    st = _feed(
        [
            (True, DATA, top, 100, T0),  # ends at 50 after wrapping
            (True, DATA, 50, 100, T0 + 1 * MS),
            (True, DATA, top, 100, T0 + 300 * MS),  # retransmission across the wrap
        ]
    )
    assert (st.retrans_f, st.hi_f) == (1, 150)


def test_end_states() -> None:
    fin = _feed([(True, FIN | ACK, 1, 0, T0), (False, FIN | ACK, 9, 0, T0 + 1)])
    rst = _feed([(False, RST, 9, 0, T0)])
    assert (fin.closing, rst.closing) == ("fin", "rst")


def test_meter_reports_retransmissions_per_direction() -> None:
    d, r = DOM, REM
    pk = [
        tcp(T0, d, r, 40000, 80, SYN, seq=0),
        tcp(T0 + 10 * MS, r, d, 80, 40000, SYN | ACK, seq=0, ack=1),
        tcp(T0 + 11 * MS, d, r, 40000, 80, ACK, seq=1, ack=1),
        tcp(T0 + 12 * MS, d, r, 40000, 80, DATA, seq=1, ack=1, payload=100),
        tcp(T0 + 30 * MS, r, d, 80, 40000, DATA, seq=1, ack=101, payload=1000),
        tcp(T0 + 31 * MS, r, d, 80, 40000, DATA, seq=1001, ack=101, payload=1000),
        tcp(T0 + 300 * MS, r, d, 80, 40000, DATA, seq=1, ack=101, payload=1000),  # rev retransmission
        tcp(T0 + 301 * MS, r, d, 80, 40000, DATA, seq=1001, ack=101, payload=1000),  # rev retransmission
        tcp(T0 + 700 * MS, d, r, 40000, 80, DATA, seq=1, ack=2001, payload=100),  # fwd retransmission
    ]
    (rec,) = run(pk)
    assert (rec.retrans_fwd, rec.retrans_rev) == (1, 2)


def test_reorientation_swaps_retransmission_counts() -> None:
    # SYN-ACK first (and repeated), then the SYN: the SYN-ACK repeat belongs to the responder.
    pk = [
        tcp(T0, REM, DOM, 80, 40000, SYN | ACK, seq=0, ack=1),
        tcp(T0 + 500 * MS, REM, DOM, 80, 40000, SYN | ACK, seq=0, ack=1),
        tcp(T0 + 501 * MS, DOM, REM, 40000, 80, SYN, seq=0),
    ]
    (rec,) = run(pk)
    assert (rec.src_ip, rec.retrans_fwd, rec.retrans_rev) == (DOM, 0, 1)
