"""Router exports through the whole path: UDP -> collector -> Kafka -> Flink job -> loader -> ClickHouse.

Hand-built NetFlow v5 and IPFIX datagrams (tests/exports.py) with known totals are sent on loopback to an
in-process collector on a unique topic; the bounded job aggregates them and the loader stores rows and windows
in a unique database. The stored raw rows and the windows' scaled bytes must equal what was sent.
"""

from __future__ import annotations

import socket
import time
import uuid
from contextlib import ExitStack

import pytest
from prometheus_client import CollectorRegistry

from gwtel.agent_run import open_output
from gwtel.config import ClickHouseConfig, GwtelConfig
from gwtel.services.clickhouse import ClickHouseService
from gwtel.services.flink import FlinkRuntime
from gwtel.services.kafka import KafkaService
from ingest.classify import PartnerClassifier
from ingest.collect.config import CollectorConfig, parse_listen
from ingest.collect.listener import Listeners
from ingest.collect.records import RecordBuilder
from ingest.collect.service import CollectorService
from processors.chclient import make_client
from processors.job import run_job
from processors.loader_setup import build_loader, migrate
from schemas.addresses import optional_text_sql, text_sql
from tests.exports import ipfix_data, ipfix_template, netflow5
from tests.integration.test_end_to_end import unique_config

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:read_text is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning"),
]


def collect_setup(
    kafka_service: KafkaService,
    clickhouse_service: ClickHouseService,
    kafka_config: GwtelConfig,
    name: str,
    exporter: str,
) -> tuple[GwtelConfig, CollectorConfig]:
    """Unique topics (created) and database (migrated) for one test; a collector mapping `exporter`'s ifIndex 1
    to the external link ix-1 and 2 to the internal link core."""
    tag = uuid.uuid4().hex[:10]
    cfg = unique_config(kafka_config, tag)
    cfg = cfg.model_copy(
        update={"clickhouse": ClickHouseConfig(url=clickhouse_service.endpoint(), database=f"{name}_{tag}")}
    )
    kafka_service.ensure_topics(list(cfg.kafka.topics.model_dump().values()), partitions=2)
    migrate(cfg)
    ccfg = CollectorConfig.model_validate(
        {
            "agent_id": f"{name}-{tag}",
            "exporters": [
                {"address": exporter, "interfaces": {1: {"link": "ix-1"}, 2: {"link": "core", "side": "internal"}}}
            ],
        }
    )
    return cfg, ccfg


def test_exports_reach_clickhouse(
    kafka_service: KafkaService,
    clickhouse_service: ClickHouseService,
    flink_runtime: FlinkRuntime,
    kafka_config: GwtelConfig,
) -> None:
    cfg, ccfg = collect_setup(kafka_service, clickhouse_service, kafka_config, "collect", "127.0.0.1")
    now_s = int(time.time()) - 120
    v5 = netflow5(
        [("203.0.113.9", "10.0.0.1", 443, 40000, 6, 10, 12_000), ("10.0.0.1", "203.0.113.9", 40000, 443, 6, 8, 900)],
        sampling=0x4000 | 100,
        unix_secs=now_s,
        next_hop="192.0.2.254",
        src_as=64_500,
        dst_as=64_501,
    )
    ipfix = [ipfix_template(), ipfix_data([("198.51.100.4", "10.0.0.2", 53, 5000, 17, 700, 5, 1, 2)], export_s=now_s)]
    sent_bytes = {"203.0.113.9": (12_000, 100), "10.0.0.1": (900, 100), "198.51.100.4": (700, 1)}
    with ExitStack() as stack:
        listeners = Listeners(
            [parse_listen("netflow://127.0.0.1:0"), parse_listen("ipfix://127.0.0.1:0")],
            sockets_per_listener=1,
            receive_buffer=1 << 20,
        )
        stack.callback(listeners.close)
        out_cfg = cfg.model_copy(update={"agent": cfg.agent.model_copy(update={"agent_id": ccfg.agent_id})})
        write, producer = open_output(out_cfg, "kafka", stack)
        assert producer is not None
        builder = RecordBuilder(ccfg, PartnerClassifier(cfg.partners))
        svc = CollectorService(ccfg, listeners, builder, write, None)
        nf_port = int(listeners.stats[0].listen.rsplit(":", 1)[1])
        ipfix_port = int(listeners.stats[1].listen.rsplit(":", 1)[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(v5, ("127.0.0.1", nf_port))
            for d in ipfix:
                s.sendto(d, ("127.0.0.1", ipfix_port))
        deadline = time.monotonic() + 30
        while svc.state.records_sent < 3 and time.monotonic() < deadline:
            svc.step(0.1)
        assert svc.state.records_sent == 3, svc.engine.counters()
        producer.close()
        assert producer.spool_pending == 0
    run_job(cfg, bounded=True)
    loader = build_loader(cfg, CollectorRegistry())
    client = make_client(cfg.clickhouse)
    db = cfg.clickhouse.database
    try:
        deadline = time.monotonic() + 240
        rows: list[tuple[str, int, int, str, str]] = []
        while time.monotonic() < deadline:
            loader.step()
            rows = client.query(
                f"SELECT {text_sql('src_ip')}, bytes_fwd, sampling_rate, link_id, direction FROM {db}.flows_raw "
                "WHERE agent_id = {a:String} ORDER BY src_ip",
                parameters={"a": ccfg.agent_id},
            ).result_rows
            # the job writes each window length (10 s and 1 min by default): one of them holds every byte
            windows = client.query(
                f"SELECT sum(bytes_scaled) FROM {db}.bandwidth_window WHERE window_s = 60"
            ).result_rows[0][0]
            if len(rows) >= 3 and windows:
                break
        assert {r[0]: (r[1], r[2]) for r in rows} == sent_bytes
        assert {r[0]: (r[3], r[4]) for r in rows} == {
            "203.0.113.9": ("ix-1", "ingress"),
            "10.0.0.1": ("ix-1", "ingress"),  # the v5 builder sends every record in on interface 1
            "198.51.100.4": ("ix-1", "ingress"),
        }
        assert windows == sum(b * rate for b, rate in sent_bytes.values())
        # what the exports said, stored as sent: v5 records in on 1, out on 2, with next hop and AS numbers;
        # the IPFIX template has the interfaces only (no AS, no next hop)
        exported = client.query(
            f"SELECT {text_sql('src_ip')}, {optional_text_sql('exporter')}, in_if, out_if, src_asn, dst_asn, "
            f"{optional_text_sql('next_hop')}, one_way FROM {db}.flows_raw WHERE agent_id = {{a:String}} "
            "ORDER BY src_ip",
            parameters={"a": ccfg.agent_id},
        ).result_rows
        v5_fields = ("127.0.0.1", 1, 2, 64_500, 64_501, "192.0.2.254", 1)
        assert {r[0]: tuple(r[1:]) for r in exported} == {
            "203.0.113.9": v5_fields,
            "10.0.0.1": v5_fields,
            "198.51.100.4": ("127.0.0.1", 1, 2, 0, 0, "", 1),
        }
    finally:
        loader.close()
        client.close()
        client = make_client(cfg.clickhouse.model_copy(update={"database": "default"}))
        client.command(f"DROP DATABASE IF EXISTS {db}")
        client.close()
