"""Malformed Kafka records through the Flink job and the loader: each is dead-lettered with a reason by both
stages, counted, and neither stops; the aggregates hold exactly the valid records.

One record lies a year ahead and comes first: if it moved the watermark, every valid record after it would
be late and the aggregates empty. The mix is what a malicious producer might send: bad addresses of both
families, ports and counts out of range, null and out-of-range histogram bins, other versions, cut JSON, and
the values a lenient JSON reader converts (a float in an integer field, a number in a string field, text after
the object, repeated keys), and a value left open inside a string before another; both stages must keep the
same records and name the codec's reason.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from gwtel.config import GwtelConfig
from gwtel.services.clickhouse import ClickHouseService
from gwtel.services.flink import FlinkRuntime
from gwtel.services.kafka import KafkaService
from processors.job import run_job
from processors.loader_setup import migrate
from schemas import checks, codec
from schemas.addresses import optional_text_sql, text_sql
from tests.faults import support as s
from tests.records import sample_flow

pytestmark = [pytest.mark.integration, pytest.mark.slow, *(pytest.mark.filterwarnings(w) for w in s.KAFKA_WARNINGS)]

SEC = 10**9
YEAR = 365 * 86_400 * SEC


def _value(**changes: Any) -> dict[str, Any]:
    return codec.to_dict(sample_flow(**changes))


def test_malformed_records_are_dead_lettered_by_job_and_loader(
    kafka_service: KafkaService,
    clickhouse_service: ClickHouseService,
    flink_runtime: FlinkRuntime,
    kafka_config: GwtelConfig,
) -> None:
    tag = s.new_tag()
    cfg = s.fault_config(
        kafka_config, bootstrap=kafka_service.endpoint(), ch_url=clickhouse_service.endpoint(), tag=tag
    )
    kafka_service.ensure_topics(list(cfg.kafka.topics.model_dump().values()), partitions=1)
    agent = f"mal-{tag}"
    base = (time.time_ns() // (60 * SEC) - 120) * 60 * SEC  # two hours ago, on a minute
    valid = [_value(agent_id=agent, seq=i, first_ns=base + i * SEC, last_ns=base + i * SEC + SEC // 2,
                    export_ns=base + i * SEC + SEC) for i in range(10)]  # fmt: skip
    # Valid as both stages read them: an IPv6 flow with a mapped IPv4 address, export fields of either family.
    valid[3].update(ip_version=6, src_ip="2001:db8::7", dst_ip="::ffff:203.0.113.9")
    valid[4].update(exporter="::ffff:192.0.2.1", next_hop="2001:db8::fe", in_if=3)
    # The largest rate the loader stores (UInt32): the job reads rates as BIGINT, so it aggregates this one too.
    valid[8].update(sampling_rate=2**32 - 1)
    future = base + YEAR
    missing = _value(agent_id=agent, seq=103)
    del missing["bytes_rev"]
    past, later = 631_152_000 * SEC, 5_680_281_600 * SEC

    def bad_value(seq: int, **changes: Any) -> bytes:
        return orjson.dumps(_value(agent_id=agent, seq=seq, **changes))

    def hist(seq: int, name: str, bins: list[dict[str, Any]]) -> bytes:
        return orjson.dumps({**_value(agent_id=agent, seq=seq), name: bins})

    sample = orjson.dumps(_value(agent_id=agent, seq=122))

    def spliced(seq: int, text: str, drop: str) -> bytes:
        """A record with `drop` removed and `text` spliced in last (repeated keys, which orjson cannot write)."""
        d = _value(agent_id=agent, seq=seq)
        del d[drop]
        return orjson.dumps(d)[:-1] + b"," + text.encode() + b"}"

    # (kind, value, reason, field): what the codec says (checked below), and so what both stages must say.
    bad: list[tuple[str, bytes, str, str]] = [
        ("year_ahead", bad_value(100, first_ns=future, last_ns=future, export_ns=future), "bad_value", "last_ns"),
        ("garbage", b"\x00\xff not a record", "not_json", ""),
        ("wrong_version", orjson.dumps({**_value(agent_id=agent, seq=102), "schema_version": 2}), "wrong_version",
         "schema_version"),
        ("missing_field", orjson.dumps(missing), "missing_field", "bytes_rev"),
        ("negative_bytes", bad_value(104, bytes_fwd=-5), "bad_value", "bytes_fwd"),
        ("year_1990", bad_value(105, first_ns=past, last_ns=past, export_ns=past), "bad_value", "first_ns"),
        ("year_2150", bad_value(106, first_ns=later, last_ns=later, export_ns=later), "bad_value", "first_ns"),
        ("wrong_type", orjson.dumps({**_value(agent_id=agent, seq=107), "bytes_fwd": "lots"}), "bad_type",
         "bytes_fwd"),
        ("src_ip_999", bad_value(108, src_ip="999.1.2.3"), "bad_value", "src_ip"),
        ("port_70000", bad_value(109, dst_port=70_000), "out_of_range", "dst_port"),
        ("null_bin", hist(110, "ts_rtt_hist", [{"b": None, "c": None}]), "bad_type", "ts_rtt_hist"),
        ("null_bin_count", hist(111, "dns_rtt_hist", [{"b": 3, "c": None}]), "bad_type", "dns_rtt_hist"),
        ("bucket_70000", hist(112, "icmp_rtt_hist", [{"b": 70_000, "c": 1}]), "out_of_range", "icmp_rtt_hist"),
        ("negative_bin_count", hist(113, "ts_rtt_hist", [{"b": 3, "c": -1}]), "bad_value", "ts_rtt_hist"),
        ("huge_count", bad_value(114, packets_fwd=2**63), "bad_value", "packets_fwd"),
        ("bad_ipv6", bad_value(115, ip_version=6, src_ip="1::2::3", dst_ip="::1"), "bad_value", "src_ip"),
        ("ipv6_triple_colon", bad_value(116, ip_version=6, src_ip="::1", dst_ip="1:::2"), "bad_value", "dst_ip"),
        ("ipv4_on_ipv6", bad_value(117, ip_version=6, src_ip="10.0.0.1", dst_ip="::1"), "bad_value", "src_ip"),
        ("exporter_300", bad_value(118, exporter="300.1.1.1"), "bad_value", "exporter"),
        ("protocol_256", bad_value(119, protocol=256), "out_of_range", "protocol"),
        ("no_packets", bad_value(120, packets_fwd=0, packets_rev=0), "bad_value", "packets_fwd"),
        ("truncated", bad_value(121)[:-25], "not_json", ""),
        # What Flink's JSON format used to convert before the job's checks saw it.
        ("float_in_int", bad_value(123, bytes_fwd=1.5), "bad_type", "bytes_fwd"),
        ("version_float", bad_value(124, schema_version=1.0), "bad_type", "schema_version"),
        ("number_in_string", bad_value(125, src_ip=167772161), "bad_type", "src_ip"),
        ("bool_in_string", bad_value(126, partner=True), "bad_type", "partner"),
        ("object_in_optional", bad_value(127, exporter={"ip": "192.0.2.1"}), "bad_type", "exporter"),
        ("bin_extra_key", hist(128, "ts_rtt_hist", [{"b": 3, "c": 1, "x": 0}]), "bad_type", "ts_rtt_hist"),
        ("text_after", sample + b" x", "not_json", ""),
        ("two_objects", sample + sample, "not_json", ""),
        ("duplicate_last_bad", spliced(129, '"bytes_fwd": 5, "bytes_fwd": "x"', "bytes_fwd"), "bad_type", "bytes_fwd"),
        ("rate_2_32", bad_value(130, sampling_rate=2**32), "out_of_range", "sampling_rate"),
        # A value ending inside a string, then the value it would swallow (ClickHouse read them as one row), a
        # repeated key after every field (ClickHouse's reader kept the first value), a raw control byte in a string
        # (ClickHouse's reader takes it): refused as the codec says.
        ("string_left_open", bad_value(131)[:-1] + b',"x":"a', "not_json", ""),
        ("swallowed", b'{","zz":3}', "not_json", ""),
        ("repeat_after_every_field", bad_value(132)[:-1] + b',"src_port":70000}', "out_of_range", "src_port"),
        ("raw_tab_in_string", bad_value(133).replace(b'"link_id":"', b'"link_id":"\t', 1), "not_json", ""),
    ]  # fmt: skip
    # Kept by the codec, so by both stages: an integer in quotes, nested junk in an unknown field, a repeated key
    # whose last value is good.
    valid[5]["bytes_fwd"] = str(valid[5]["bytes_fwd"])
    valid[6]["extra"] = {"x": [1, {"y": None, "z": [True, "s", 2.5]}]}
    valid_values = [orjson.dumps(v) for v in valid]
    valid_values[7] = (
        valid_values[7][:-1] + b',"bytes_rev": "x", "bytes_rev": ' + str(valid[7]["bytes_rev"]).encode() + b"}"
    )
    latest = time.time_ns() + cfg.job.max_future_skew_s * SEC
    for kind, value, reason, field in bad:  # the codec is the oracle for every verdict written above
        try:
            checks.checked(orjson.loads(value), latest)
            raise AssertionError(f"{kind}: the codec takes it")
        except orjson.JSONDecodeError:
            assert (reason, field) == ("not_json", ""), kind
        except checks.CheckError as exc:
            assert (exc.reason, exc.field) == (reason, field), kind
    for v in valid_values:
        codec.decode(v, latest)
    values = [
        bad[0][1],
        *valid_values[:5],
        *(v for _, v, _, _ in bad[1:]),
        *valid_values[5:],
    ]
    producer = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap, acks="all", enable_idempotence=True)
    try:
        for v in values:
            producer.send(cfg.kafka.topics.flows, value=v, key=b"k", partition=0)
        producer.flush(30)
    finally:
        producer.close()

    run_job(cfg, bounded=True)
    migrate(cfg)
    registry = CollectorRegistry()
    try:
        s.load_all(cfg, registry)
        letters = s.raw_values(cfg.kafka.bootstrap, cfg.kafka.topics.dead_letter)
        job_reasons: Counter[tuple[str, str]] = Counter()
        loader_reasons: Counter[str] = Counter()
        for rec in letters:
            headers = {k: v.decode() for k, v in rec.headers}
            if headers.get("stage") == "loader":
                loader_reasons[headers["reason"]] += 1
            else:
                d = orjson.loads(rec.value)
                job_reasons[(d["reason"], d["field"])] += 1
        print(f"job dead letters {dict(job_reasons)}; loader dead letters {dict(loader_reasons)}")
        # Every refused record is dead-lettered once by each stage, with the codec's reason (and field).
        assert job_reasons == Counter((reason, field) for _, _, reason, field in bad)
        assert loader_reasons == Counter(reason for _, _, reason, _ in bad)
        for reason, n in loader_reasons.items():
            assert registry.get_sample_value("gwtel_loader_dead_lettered_total", {"reason": reason}) == n
        expected_bytes = sum((int(v["bytes_fwd"]) + v["bytes_rev"]) * v["sampling_rate"] for v in valid)
        assert s.query(cfg, "SELECT sum(bytes_scaled), sum(flows) FROM DB.bandwidth_window WHERE window_s = 10") == [
            (expected_bytes, len(valid))
        ]
        # The same records stored by the loader and aggregated by the job: exactly the valid ones.
        assert s.query(cfg, "SELECT groupArraySorted(1000)(seq) FROM DB.flows_raw") == [(list(range(len(valid))),)]
        # addresses as the readers print them: the mapped exporter is IPv4 192.0.2.1, an unknown one ""
        sql = f"SELECT {text_sql('src_ip')}, {optional_text_sql('exporter')} FROM DB.flows_raw WHERE seq IN (3, 4)"
        assert s.query(cfg, sql + " ORDER BY seq") == [("2001:db8::7", ""), ("10.0.0.1", "192.0.2.1")]
    finally:
        admin = clickhouse_service.client()
        try:
            admin.command(f"DROP DATABASE IF EXISTS {cfg.clickhouse.database}")
        finally:
            admin.close()
