"""sFlow counter samples through the whole path: UDP -> collector -> Kafka (counters and flows topics) -> loader ->
ClickHouse (link_counters, flows_raw) -> the report's counters-against-flows check.

Hand-built sFlow v5 datagrams (tests/exports.py) with known cumulative counters and known flow samples. The
expected increases, wraps, restarts and the flows' frame octets are worked out by hand below from what was sent.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from contextlib import ExitStack

import pytest
from prometheus_client import CollectorRegistry

from gwtel.agent_run import open_output
from gwtel.commands.collect import open_counter_output
from gwtel.config import GwtelConfig
from gwtel.services.clickhouse import ClickHouseService
from gwtel.services.kafka import KafkaService
from ingest.classify import PartnerClassifier
from ingest.collect.config import parse_listen
from ingest.collect.listener import Listeners
from ingest.collect.records import RecordBuilder
from ingest.collect.service import CollectorService
from processors.chclient import make_client
from processors.link_counters import link_checks
from processors.loader_setup import build_loader
from processors.report import report
from tests.exports import sflow_counters, sflow_samples
from tests.integration.test_collect_pipeline import collect_setup

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AGENT = "192.0.2.1"
EXPORTER = bytes([192, 0, 2, 1])
RATE = 1000
HUNDRED_G = 100_000_000_000
IP_LENS = (1500, 40, 576, 1000)
DATAGRAMS = 4
PER_DATAGRAM = 100  # flow samples per datagram, each in on ifIndex 1 and out on ifIndex 2
# what the flow samples stand for on the wire: each sampled frame is its IP length + 14 (Ethernet) + 4 (FCS)
# (the builder's frame_length), times the rate: 4 x 25 x (1518 + 58 + 594 + 1018) x 1000
FRAME_OCTETS = DATAGRAMS * (PER_DATAGRAM // len(IP_LENS)) * (1518 + 58 + 594 + 1018) * RATE
assert FRAME_OCTETS == 318_800_000


def _flows(d: int) -> bytes:
    packets = [("10.0.0.1", "203.0.113.9", 1000 * d + i, 443, IP_LENS[i % len(IP_LENS)]) for i in range(PER_DATAGRAM)]
    return sflow_samples(packets, rate=RATE, agent=AGENT)


def _sample_counters() -> list[bytes]:
    """Counter datagrams: before the flows, after them, and an agent restart."""
    first = sflow_counters(
        [(1, 1_000_000, 500), (2, 5_000_000_000, 2**32 - 340_000), (3, 7_000_000_000, 9)],
        agent=AGENT, seq=10, speed_bps=HUNDRED_G,
    )  # fmt: skip
    after = sflow_counters(
        # if 1 in: exactly the flows' frames; if 2 out: a 32-bit wrap, 340_000 + 637_260_000 = twice the frames
        # (flagged); if 2 in: 5e9 -> 1_000 with the sequence rising fits no wrap at 100 Gb/s: a reset
        [(1, 1_000_000 + FRAME_OCTETS, 500), (2, 1_000, 2 * FRAME_OCTETS - 340_000)],
        agent=AGENT, seq=13, speed_bps=HUNDRED_G,
    )  # fmt: skip
    # if 3: sequence back to 0 and counters below the last ones: the agent restarted, 2_000 octets counted since
    restart = sflow_counters([(3, 2_000, 9)], agent=AGENT, seq=0, speed_bps=HUNDRED_G)
    return [first, after, restart]


def test_counter_samples_reach_clickhouse_and_the_report(
    kafka_service: KafkaService, clickhouse_service: ClickHouseService, kafka_config: GwtelConfig
) -> None:
    cfg, ccfg = collect_setup(kafka_service, clickhouse_service, kafka_config, "counters", AGENT)
    start_ms = time.time_ns() // 1_000_000 - 60_000
    first, after, restart = _sample_counters()
    with ExitStack() as stack:
        listeners = Listeners([parse_listen("sflow://127.0.0.1:0")], sockets_per_listener=1, receive_buffer=1 << 22)
        stack.callback(listeners.close)
        out_cfg = cfg.model_copy(update={"agent": cfg.agent.model_copy(update={"agent_id": ccfg.agent_id})})
        write, producer = open_output(out_cfg, "kafka", stack)
        counters = open_counter_output(out_cfg, "kafka", stack)
        assert producer is not None and counters is not None
        svc = CollectorService(ccfg, listeners, RecordBuilder(ccfg, PartnerClassifier(cfg.partners)), write, None,
                               counters=counters)  # fmt: skip
        port = int(listeners.stats[0].listen.rsplit(":", 1)[1])

        def send(datagrams: list[bytes], done: Callable[[], bool]) -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for d in datagrams:
                    s.sendto(d, ("127.0.0.1", port))
            deadline = time.monotonic() + 30
            while not done() and time.monotonic() < deadline:
                svc.step(0.1)
            assert done(), svc.engine.counters()

        send([first], lambda: len(svc.state.links) == 3)
        time.sleep(0.6)  # the flows fall strictly between the two samples, and the wrap fits 100 Gb/s x 1.2 s
        send([_flows(d) for d in range(DATAGRAMS)], lambda: svc.state.records_sent == DATAGRAMS * PER_DATAGRAM)
        time.sleep(0.6)
        send([after], lambda: svc.state.links[(EXPORTER, 1)].seq == 13)
        send([restart], lambda: svc.state.links[(EXPORTER, 3)].seq == 0)
    loader = build_loader(cfg, CollectorRegistry())
    client = make_client(cfg.clickhouse)
    db = cfg.clickhouse.database
    try:
        deadline = time.monotonic() + 120
        stored = flows = 0
        while time.monotonic() < deadline and (stored < 12 or flows < DATAGRAMS * PER_DATAGRAM):
            loader.step()
            stored = client.query(f"SELECT count() FROM {db}.link_counters").result_rows[0][0]
            flows = client.query(f"SELECT count() FROM {db}.flows_raw").result_rows[0][0]
        # 3 + 2 + 1 counter samples, in and out each, stored once
        assert (stored, flows) == (12, DATAGRAMS * PER_DATAGRAM)
        rows = client.query(
            f"SELECT source_id, direction, octets, packets, speed_bps, sequence FROM {db}.link_counters "
            "WHERE exporter = {x:String} ORDER BY sample_ns, source_id, direction",
            parameters={"x": AGENT},
        ).result_rows
        assert [tuple(r) for r in rows] == [
            (1, "in", 1_000_000, 100, HUNDRED_G, 10), (1, "out", 500, 90, HUNDRED_G, 10),
            (2, "in", 5_000_000_000, 100, HUNDRED_G, 11), (2, "out", 2**32 - 340_000, 90, HUNDRED_G, 11),
            (3, "in", 7_000_000_000, 100, HUNDRED_G, 12), (3, "out", 9, 90, HUNDRED_G, 12),
            (1, "in", 1_000_000 + FRAME_OCTETS, 100, HUNDRED_G, 13), (1, "out", 500, 90, HUNDRED_G, 13),
            (2, "in", 1_000, 100, HUNDRED_G, 14), (2, "out", 2 * FRAME_OCTETS - 340_000, 90, HUNDRED_G, 14),
            (3, "in", 2_000, 100, HUNDRED_G, 0), (3, "out", 9, 90, HUNDRED_G, 0),
        ]  # fmt: skip

        end_ms = time.time_ns() // 1_000_000 + 60_000
        checks = {(c.if_index, c.direction): c for c in link_checks(client, db, start_ms, end_ms)}
        ip_octets = DATAGRAMS * (PER_DATAGRAM // len(IP_LENS)) * sum(IP_LENS) * RATE  # 311_600_000
        got = {
            k: (c.samples, c.counter_octets, c.wraps, c.resets, c.flow_octets, c.sampled_packets, c.frame_octets)
            for k, c in checks.items()
        }
        assert got == {
            (1, "in"): (2, FRAME_OCTETS, 0, 0, ip_octets, 400, FRAME_OCTETS),
            (1, "out"): (2, 0, 0, 0, 0, 0, 0),
            (2, "in"): (2, 1_000, 0, 1, 0, 0, 0),
            (2, "out"): (2, 2 * FRAME_OCTETS, 1, 0, ip_octets, 400, FRAME_OCTETS),
            (3, "in"): (2, 2_000, 0, 1, 0, 0, 0),
            (3, "out"): (2, 0, 0, 0, 0, 0, 0),
        }
        # 400 sampled packets: 1.96 / 20 = 9.8% expected; if 1 in agrees exactly, if 2 out is off by half
        assert checks[(1, "in")].ratio == 1.0 and checks[(1, "in")].agrees is True
        assert checks[(2, "out")].ratio == 0.5 and checks[(2, "out")].agrees is False
        assert checks[(1, "in")].spread == pytest.approx(0.098)
        assert checks[(3, "in")].agrees is None

        text = report(client, db, start_ms, end_ms, 10)
        lines = {tuple(line.split()[:3]): line for line in text.splitlines() if line.startswith(AGENT)}
        assert lines[(AGENT, "1", "in")].split()[-1] == "ok"
        assert "CHECK 1 wrap" in lines[(AGENT, "2", "out")]
        assert "1 restart" in lines[(AGENT, "3", "in")]
    finally:
        loader.close()
        client.close()
        admin = make_client(cfg.clickhouse.model_copy(update={"database": "default"}))
        admin.command(f"DROP DATABASE IF EXISTS {db}")
        admin.close()
