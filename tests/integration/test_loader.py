"""The loader against the real broker and the embedded ClickHouse: everything stored once, through replays,
a crash between insert and commit, a ClickHouse outage, and malformed records (dead-lettered, counted).

Every test has its own topics, consumer group and database; expected totals are computed from the records
the test produced.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from gwtel.config import GwtelConfig
from gwtel.services.clickhouse import ClickHouseService
from gwtel.services.kafka import KafkaService
from processors.batcher import Batch
from processors.chclient import make_client
from processors.intent import parse_pending
from processors.landing import INPUT_SETTINGS, MAX_BATCH_ROWS
from processors.loader import PIECE_RECORDS, Decoded, Loader
from processors.loader_setup import build_loader, migrate
from schemas import codec
from tests.ports import free_port
from tests.unit.test_batcher import bandwidth, flow

pytestmark = [
    pytest.mark.integration,
    # kafka-python 3.0 loads protocol schemas lazily, on its IO thread, with a deprecated importlib call:
    # as an error there the request dies silently and the consumer never gets its partitions.
    pytest.mark.filterwarnings("ignore:read_text is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning"),
]

NOW_NS = time.time_ns() - 3600 * 10**9  # an hour ago: inside every retention period
DAY = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)


def window_ms(hour: int, minute: int, second: int = 0) -> int:
    t = dt.datetime.combine(DAY, dt.time(hour, minute, second), tzinfo=dt.UTC)
    return int(t.timestamp() * 1000)


def flow_value(i: int) -> bytes:
    first = NOW_NS + i * 10**9
    return codec.encode(
        flow(seq=i, first_ns=first, last_ns=first + 10**9, export_ns=first + 2 * 10**9, bytes_fwd=100 * i)
    )


def bw_value(minute: int, nbytes: int, window_s: int = 60, partner: str = "japan") -> bytes:
    return orjson.dumps(
        bandwidth(
            window_s=window_s, window_start_ms=window_ms(10, minute), bytes=nbytes, bytes_scaled=nbytes, partner=partner
        )
    )


@pytest.fixture
def setup(
    kafka_service: KafkaService, kafka_topic: Callable[..., str], clickhouse_service: ClickHouseService
) -> Iterator[Callable[..., GwtelConfig]]:
    """Make a configuration with fresh topics, group and database (dropped afterwards)."""
    dbs: list[GwtelConfig] = []

    def make(partitions: int = 2, url: str | None = None, **loader: Any) -> GwtelConfig:
        topics = {
            "flows": kafka_topic("flows", partitions=partitions),
            "aggregates": kafka_topic("aggs", partitions=partitions),
            "late": kafka_topic("late", partitions=1),
            "dead_letter": kafka_topic("dlq", partitions=1),
        }
        cfg = GwtelConfig.model_validate(
            {
                "kafka": {"bootstrap": kafka_service.endpoint(), "topics": topics},
                "clickhouse": {
                    "url": url or clickhouse_service.endpoint(),
                    "database": f"test_ld_{uuid.uuid4().hex[:10]}",
                },
                "loader": {
                    "group_id": f"test-loader-{uuid.uuid4().hex[:8]}",
                    "retry_initial_s": 0.1,
                    "retry_max_s": 1.0,
                    "lag_interval_s": 0.2,
                    **loader,
                },
            }
        )
        dbs.append(cfg)
        return cfg

    yield make
    admin = clickhouse_service.client()
    try:
        for cfg in dbs:
            admin.command(f"DROP DATABASE IF EXISTS {cfg.clickhouse.database}")
    finally:
        admin.close()


def with_group(cfg: GwtelConfig, group: str | None = None, **loader: Any) -> GwtelConfig:
    changes = {"group_id": group or cfg.loader.group_id, **loader}
    return cfg.model_copy(update={"loader": cfg.loader.model_copy(update=changes)})


def produce(cfg: GwtelConfig, topic: str, values: list[tuple[int, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=cfg.kafka.bootstrap, acks="all", enable_idempotence=True)
    try:
        for partition, value in values:
            producer.send(topic, value=value, key=b"k", partition=partition)
        producer.flush(30)
    finally:
        producer.close()


def group_done(cfg: GwtelConfig) -> bool:
    """True when the loader group's committed offsets reached the end of every partition it reads."""
    topics = [cfg.kafka.topics.flows, cfg.kafka.topics.aggregates, cfg.kafka.topics.late]
    # Reading a group's committed offsets does not join the group.
    peek = KafkaConsumer(
        bootstrap_servers=cfg.kafka.bootstrap,
        group_id=cfg.loader.group_id,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(peek.partitions_for_topic(t) or ())]
        ends = peek.end_offsets(tps)
        return all(ends[tp] == 0 or peek.committed(tp) == ends[tp] for tp in tps)
    finally:
        peek.close()


def run_until_done(loader: Loader, cfg: GwtelConfig, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    checked = 0.0
    while time.monotonic() < deadline:
        loader.step(100)
        if time.monotonic() - checked > 0.5:
            checked = time.monotonic()
            if group_done(cfg):
                return
    state = {
        f"{tp.topic}:{tp.partition}": (len(st.batcher), st.committed, st.batcher.pin)
        for tp, st in loader._parts.items()
    }
    # What the group gave the consumer, to tell a stalled group join from a stalled batch.
    consumer = loader.consumer
    raise AssertionError(
        f"loader did not commit everything within {timeout_s}s; partitions in hand: {state}; "
        f"subscription {sorted(consumer.subscription() or ())}, assignment {sorted(map(str, consumer.assignment()))}"
    )


def load_all(cfg: GwtelConfig) -> CollectorRegistry:
    """Run a loader of `cfg` until its group committed everything; the loader's metrics."""
    registry = CollectorRegistry()
    loader = build_loader(cfg, registry)
    try:
        run_until_done(loader, cfg)
    finally:
        loader.close()
    return registry


def q(cfg: GwtelConfig, sql: str) -> list[tuple[Any, ...]]:
    client = make_client(cfg.clickhouse)
    try:
        return [tuple(r) for r in client.query(sql.replace("DB.", f"{cfg.clickhouse.database}.")).result_rows]
    finally:
        client.close()


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_loads_flows_and_aggregates_with_rollups_and_metrics(setup: Callable[..., GwtelConfig]) -> None:
    cfg = setup(batch_rows=3, batch_seconds=0.3)
    migrate(cfg)
    produce(cfg, cfg.kafka.topics.flows, [(i % 2, flow_value(i)) for i in range(1, 8)])
    produce(
        cfg,
        cfg.kafka.topics.aggregates,
        [
            (0, bw_value(0, 1000)),
            (1, bw_value(1, 500)),
            (0, bw_value(6, 250)),
            (1, bw_value(0, 999, window_s=10)),  # the job's 10 s windows: stored, not rolled up
            (0, orjson.dumps({**bandwidth(), "kind": "latency_bucket", "window_start_ms": window_ms(10, 0),
                              "metric": "ts_rtt", "bucket": 100, "samples": 4})),
        ],
    )  # fmt: skip
    registry = CollectorRegistry()
    loader = build_loader(cfg, registry)
    try:
        run_until_done(loader, cfg)
        time.sleep(0.3)
        loader.step(100)  # one more round publishes the final lag
    finally:
        loader.close()

    assert q(cfg, "SELECT count(), sum(bytes_fwd), uniqExact(kafka_partition, kafka_offset) FROM DB.flows_raw") == [
        (7, 2800, 7)
    ]
    assert q(cfg, "SELECT count(), sum(bytes) FROM DB.bandwidth_window") == [(4, 2749)]
    assert q(cfg, "SELECT toMinute(ts), sum(bytes), sum(windows) FROM DB.bandwidth_5m GROUP BY ts ORDER BY ts") == [
        (0, 1500, 2),
        (5, 250, 1),
    ]
    assert q(cfg, "SELECT sum(bytes) FROM DB.bandwidth_1h") == [(1750,)]
    assert q(cfg, "SELECT bucket, sum(samples) FROM DB.latency_hist_1d GROUP BY bucket") == [(100, 4)]

    t = cfg.kafka.topics
    assert metric(registry, "gwtel_loader_records_consumed_total", topic=t.flows) == 7
    assert metric(registry, "gwtel_loader_records_consumed_total", topic=t.aggregates) == 5
    assert metric(registry, "gwtel_loader_rows_inserted_total", table="flows_raw") == 7
    assert metric(registry, "gwtel_loader_rows_inserted_total", table="bandwidth_window") == 4
    assert metric(registry, "gwtel_loader_rows_inserted_total", table="latency_hist_window") == 1
    assert metric(registry, "gwtel_loader_insert_retries_total", table="flows_raw") == 0
    # Ledger: flows aggregated count the rollup window size only (the 10 s window is the same traffic again).
    rolled = q(cfg, "SELECT sum(flows) FROM DB.bandwidth_window WHERE window_s = 60")[0][0]
    assert metric(registry, "gwtel_loader_flows_aggregated_total") == rolled
    assert rolled < q(cfg, "SELECT sum(flows) FROM DB.bandwidth_window")[0][0]
    assert metric(registry, "gwtel_loader_flow_records_stored_total") == 7
    assert metric(registry, "gwtel_loader_insert_seconds_count", table="flows_raw") >= 3  # 7 rows, batches of <= 3
    assert metric(registry, "gwtel_loader_last_commit_timestamp_seconds") > time.time() - 120
    for topic in (t.flows, t.aggregates):
        for p in ("0", "1"):
            assert registry.get_sample_value("gwtel_loader_consumer_lag", {"topic": topic, "partition": p}) == 0


def test_replaying_the_same_range_stores_it_once(setup: Callable[..., GwtelConfig]) -> None:
    # Size bounds only (the time bound is far away), so both runs cut the same batches.
    cfg = setup(batch_rows=5, batch_seconds=120)
    migrate(cfg)
    produce(cfg, cfg.kafka.topics.flows, [(p, flow_value(i)) for i in range(1, 11) for p in (0, 1)])
    produce(cfg, cfg.kafka.topics.aggregates, [(0, bw_value(m, 10 * (m + 1))) for m in range(5)])
    expected_flows = [(20, 2 * 100 * 55)]
    expected_5m = [(0, 10 + 20 + 30 + 40 + 50)]  # minutes 0-4: one 5-minute bucket
    for run in range(2):
        registry = CollectorRegistry()
        # A second consumer group reads the same offsets again from the start.
        loader = build_loader(with_group(cfg, f"{cfg.loader.group_id}-{run}"), registry)
        try:
            run_until_done(loader, with_group(cfg, f"{cfg.loader.group_id}-{run}"))
        finally:
            loader.close()
        # Each run did insert everything (acknowledged by ClickHouse) ...
        assert metric(registry, "gwtel_loader_rows_inserted_total", table="flows_raw") == 20
        assert metric(registry, "gwtel_loader_rows_inserted_total", table="bandwidth_window") == 5
        # ... and ClickHouse kept one copy, in the window table and in the rollups fed by its views.
        assert q(cfg, "SELECT count(), sum(bytes_fwd) FROM DB.flows_raw") == expected_flows
        assert q(cfg, "SELECT toMinute(ts), sum(bytes) FROM DB.bandwidth_5m GROUP BY ts ORDER BY ts") == expected_5m
        assert q(cfg, "SELECT count() FROM DB.bandwidth_window") == [(5,)]


def test_partitions_land_at_once_each_record_once(setup: Callable[..., GwtelConfig]) -> None:
    # Three partitions, three insert threads: batches of different partitions are in flight together, each
    # partition's in offset order; every record is stored once with its own coordinates.
    cfg = setup(partitions=3, batch_rows=7, batch_seconds=120, insert_threads=3)
    migrate(cfg)
    produce(cfg, cfg.kafka.topics.flows, [(p, flow_value(i)) for i in range(1, 29) for p in (0, 1, 2)])
    registry = load_all(cfg)
    per_partition = q(
        cfg,
        "SELECT kafka_partition, count(), uniqExact(kafka_offset), min(kafka_offset), max(kafka_offset), "
        "sum(bytes_fwd) FROM DB.flows_raw GROUP BY kafka_partition ORDER BY kafka_partition",
    )
    assert per_partition == [(p, 28, 28, 0, 27, 100 * 28 * 29 // 2) for p in range(3)]
    assert q(cfg, "SELECT sum(stored), count() FROM DB.flows_batches") == [(84, 12)]
    assert metric(registry, "gwtel_loader_flow_records_stored_total") == 84
    assert metric(registry, "gwtel_loader_batches_total", topic=cfg.kafka.topics.flows) == 12


class InjectedCrashError(Exception):
    pass


def test_crash_between_insert_and_commit_leaves_totals_unchanged(setup: Callable[..., GwtelConfig]) -> None:
    cfg = setup(partitions=1, batch_rows=4, batch_seconds=120)
    migrate(cfg)
    produce(cfg, cfg.kafka.topics.flows, [(0, flow_value(i)) for i in range(1, 11)])
    produce(cfg, cfg.kafka.topics.aggregates, [(0, bw_value(m, m + 1)) for m in range(10)])

    crashed: list[Batch[Decoded]] = []

    def crash_after_first_insert(batch: Batch[Decoded]) -> None:
        crashed.append(batch)
        raise InjectedCrashError(batch.token)

    first = build_loader(cfg, CollectorRegistry(), after_insert=crash_after_first_insert)
    try:
        with pytest.raises(InjectedCrashError):
            for _ in range(600):
                first.step(100)
    finally:
        first.close()
    [batch] = crashed
    assert (batch.first, batch.last) == (0, 3)
    tp = TopicPartition(batch.topic, batch.partition)
    table = "flows_raw" if batch.topic == cfg.kafka.topics.flows else "bandwidth_window"
    assert q(cfg, f"SELECT count() FROM DB.{table}") == [(4,)]  # inserted, never acknowledged
    peek = KafkaConsumer(bootstrap_servers=cfg.kafka.bootstrap, group_id=cfg.loader.group_id, enable_auto_commit=False)
    try:
        meta = peek.committed(tp, metadata=True)
    finally:
        peek.close()
    assert parse_pending(meta.metadata, meta.offset) == (0, 3)  # the announced range

    # Restart with other bounds: left alone they would cut 0-9 in one batch and store offsets 0-3 twice.
    cfg2 = with_group(cfg, batch_rows=100, batch_seconds=0.2)
    registry = load_all(cfg2)
    assert metric(registry, "gwtel_loader_rows_inserted_total", table=table) == 10  # 0-3 again, then 4-9
    assert q(cfg, "SELECT count(), sum(bytes_fwd), uniqExact(kafka_offset) FROM DB.flows_raw") == [(10, 5500, 10)]
    assert q(cfg, "SELECT count(), sum(bytes) FROM DB.bandwidth_window") == [(10, 55)]
    assert q(cfg, "SELECT sum(bytes) FROM DB.bandwidth_1h") == [(55,)]  # rollups: no double count either


@pytest.mark.slow
def test_clickhouse_outage_delays_but_loses_nothing(setup: Callable[..., GwtelConfig], tmp_path: Path) -> None:
    # A private server, so stopping it disturbs no other test.
    ports = {"clickhouse": free_port(), "clickhouse_metrics": free_port()}
    private = ClickHouseService(GwtelConfig.model_validate({"local": {"ports": ports}}), tmp_path)
    private.start()
    try:
        cfg = setup(url=private.endpoint(), batch_rows=4, batch_seconds=0.2)
        migrate(cfg)
        private.stop()
        produce(cfg, cfg.kafka.topics.flows, [(i % 2, flow_value(i)) for i in range(1, 10)])
        produce(cfg, cfg.kafka.topics.aggregates, [(0, bw_value(m, 7)) for m in range(6)])
        registry = CollectorRegistry()
        loader = build_loader(cfg, registry)
        stop = threading.Event()
        worker = threading.Thread(target=loader.run, args=(stop.is_set,), daemon=True)
        worker.start()
        try:
            deadline = time.monotonic() + 30
            while (
                metric(registry, "gwtel_loader_insert_retries_total", table="flows_raw")
                + metric(registry, "gwtel_loader_insert_retries_total", table="bandwidth_window")
                < 5
            ):  # backoff 0.1, 0.2, 0.4, 0.8, 1.0 (capped): several seconds down
                assert time.monotonic() < deadline, "the loader never tried to insert while ClickHouse was down"
                time.sleep(0.2)
            assert metric(registry, "gwtel_loader_clickhouse_up") == 0
            assert not group_done(cfg)  # nothing acknowledged while nothing is stored
            private.start()
            deadline = time.monotonic() + 60
            while not group_done(cfg):
                assert time.monotonic() < deadline, "data did not arrive after ClickHouse came back"
                time.sleep(0.5)
        finally:
            stop.set()
            worker.join(30)
            loader.close()
        assert not worker.is_alive()
        assert metric(registry, "gwtel_loader_clickhouse_up") == 1
        assert q(cfg, "SELECT count(), sum(bytes_fwd) FROM DB.flows_raw") == [(9, 4500)]
        assert q(cfg, "SELECT count(), sum(bytes) FROM DB.bandwidth_window") == [(6, 42)]
        assert q(cfg, "SELECT sum(bytes) FROM DB.bandwidth_1d") == [(42,)]
    finally:
        private.stop()


def test_malformed_records_go_to_the_dead_letter_topic(setup: Callable[..., GwtelConfig]) -> None:
    cfg = setup(partitions=1, batch_rows=100, batch_seconds=0.2)
    migrate(cfg)
    wrong_version = orjson.dumps({**codec.to_dict(flow()), "schema_version": 9})
    bad_port = orjson.dumps({**orjson.loads(flow_value(5)), "dst_port": 70_000})
    values = [flow_value(1), b"{not json", wrong_version, flow_value(2), bad_port]
    registry = load_flows(cfg, values)
    assert q(cfg, "SELECT kafka_offset, bytes_fwd FROM DB.flows_raw ORDER BY kafka_offset") == [(0, 100), (3, 200)]
    for reason in ("not_json", "wrong_version", "out_of_range"):
        assert metric(registry, "gwtel_loader_dead_lettered_total", reason=reason) == 1
    # The ledger: consumed = stored + dead-lettered, and the stored records' packets are counted.
    assert metric(registry, "gwtel_loader_records_consumed_total", topic=cfg.kafka.topics.flows) == 5
    assert metric(registry, "gwtel_loader_flow_records_stored_total") == 2
    stored_packets = q(cfg, "SELECT sum(packets_fwd + packets_rev) FROM DB.flows_raw")[0][0]
    assert metric(registry, "gwtel_loader_flow_packets_stored_total") == stored_packets > 0

    letters = read_dead_letters(cfg, 3)
    assert len(letters) == 3
    expected = [(1, "not_json"), (2, "wrong_version"), (4, "out_of_range")]
    for (value, headers), (offset, reason) in zip(letters, expected, strict=True):
        assert value == values[offset]  # the original bytes
        assert headers["reason"] == reason
        assert headers["stage"] == "loader"
        assert headers["source_topic"] == cfg.kafka.topics.flows
        assert (headers["source_partition"], headers["source_offset"]) == ("0", str(offset))
    assert "dst_port" in letters[2][1]["detail"]


def load_flows(cfg: GwtelConfig, values: list[bytes]) -> CollectorRegistry:
    """Produce `values` to partition 0 of the flows topic and load them all; the loader's metrics."""
    produce(cfg, cfg.kafka.topics.flows, [(0, v) for v in values])
    return load_all(cfg)


def read_dead_letters(cfg: GwtelConfig, n: int) -> list[tuple[bytes, dict[str, str]]]:
    reader = KafkaConsumer(
        cfg.kafka.topics.dead_letter, bootstrap_servers=cfg.kafka.bootstrap, auto_offset_reset="earliest"
    )
    got: list[Any] = []
    try:
        deadline = time.monotonic() + 20
        while len(got) < n and time.monotonic() < deadline:
            for records in reader.poll(timeout_ms=500).values():
                got.extend(records)
    finally:
        reader.close()
    return [(r.value, {k: v.decode() for k, v in r.headers}) for r in got]


def test_clickhouse_checks_the_batch_and_its_quarantine_is_dead_lettered(setup: Callable[..., GwtelConfig]) -> None:
    # Every fault here parses: the batch lands whole (no slow path) and ClickHouse names each bad record.
    cfg = setup(partitions=1, batch_rows=100, batch_seconds=0.2)
    migrate(cfg)

    def changed(i: int, **change: Any) -> bytes:
        return orjson.dumps({**orjson.loads(flow_value(i)), **change})

    faults = {
        1: (changed(1, src_ip="999.1.2.3"), "bad_value", "src_ip"),
        3: (changed(3, src_port=70_000), "out_of_range", "src_port"),
        4: (changed(4, schema_version=2), "wrong_version", "schema_version"),
        6: (changed(6, packets_fwd=0, packets_rev=0), "bad_value", "packets_fwd"),
        7: (changed(7, last_ns=NOW_NS + 10 * 86_400 * 10**9), "bad_value", "last_ns"),  # days past its Kafka time
    }
    values = [faults[i][0] if i in faults else flow_value(i) for i in range(9)]
    registry = load_flows(cfg, values)
    good = [i for i in range(9) if i not in faults]
    assert q(cfg, "SELECT kafka_offset, bytes_fwd FROM DB.flows_raw ORDER BY kafka_offset") == [
        (i, 100 * i) for i in good
    ]
    assert metric(registry, "gwtel_loader_slow_batches_total", topic=cfg.kafka.topics.flows) == 0
    assert metric(registry, "gwtel_loader_flow_records_stored_total") == len(good)
    stored_packets = q(cfg, "SELECT sum(packets_fwd + packets_rev) FROM DB.flows_raw")[0][0]
    assert metric(registry, "gwtel_loader_flow_packets_stored_total") == stored_packets > 0
    assert metric(registry, "gwtel_loader_dead_lettered_total", reason="bad_value") == 3
    letters = read_dead_letters(cfg, len(faults))
    assert len(letters) == len(faults)
    for value, headers in letters:
        offset = int(headers["source_offset"])
        assert value == faults[offset][0]  # the original bytes
        assert (headers["reason"], headers["stage"]) == (faults[offset][1], "loader")
        assert faults[offset][2] in headers["detail"]


def test_a_batch_of_several_pieces_lands_each_record_at_its_offset(setup: Callable[..., GwtelConfig]) -> None:
    # 2,600 records in one batch go out as three pieces of one HTTP body (1,024, 1,024 and 552 lines); the record
    # made bad at offset 2,100, in the third piece, must be the one quarantined and every other row must carry
    # its own offset: a piece lost, doubled or out of order would move them.
    n, bad = 2 * PIECE_RECORDS + 552, 2_100
    cfg = setup(partitions=1, batch_rows=n, batch_seconds=60)  # one batch: it closes when full
    migrate(cfg)
    wrong = orjson.dumps({**orjson.loads(flow_value(bad)), "src_ip": "999.1.2.3"})
    registry = load_flows(cfg, [wrong if i == bad else flow_value(i) for i in range(n)])
    rows = q(cfg, "SELECT kafka_offset, bytes_fwd, seq FROM DB.flows_raw ORDER BY kafka_offset")
    assert rows == [(i, 100 * i, i) for i in range(n) if i != bad]
    assert q(cfg, "SELECT kafka_offset, reason FROM DB.flows_quarantine") == [(bad, "bad_value")]
    assert metric(registry, "gwtel_loader_slow_batches_total", topic=cfg.kafka.topics.flows) == 0
    assert metric(registry, "gwtel_loader_batches_total", topic=cfg.kafka.topics.flows) == 1
    [(value, headers)] = read_dead_letters(cfg, 1)
    assert (value, headers["source_offset"]) == (wrong, str(bad))


def test_a_batch_clickhouse_refuses_stores_the_others_once(setup: Callable[..., GwtelConfig]) -> None:
    # One record ClickHouse cannot parse (a boolean counter) sends its batch down the slow path; a record that
    # only ClickHouse's checks would refuse is refused there too, by the same table of checks.
    cfg = setup(partitions=1, batch_rows=100, batch_seconds=0.2)
    migrate(cfg)
    boolean = orjson.dumps({**orjson.loads(flow_value(2)), "bytes_rev": True})
    address = orjson.dumps({**orjson.loads(flow_value(5)), "dst_ip": "1.2.3.256"})
    values = [boolean if i == 2 else address if i == 5 else flow_value(i) for i in range(8)]
    registry = load_flows(cfg, values)
    good = [0, 1, 3, 4, 6, 7]
    assert q(cfg, "SELECT kafka_offset, bytes_fwd FROM DB.flows_raw ORDER BY kafka_offset") == [
        (i, 100 * i) for i in good
    ]
    assert metric(registry, "gwtel_loader_slow_batches_total", topic=cfg.kafka.topics.flows) >= 1
    assert metric(registry, "gwtel_loader_flow_records_stored_total") == len(good)
    letters = read_dead_letters(cfg, 2)
    assert [(v, h["reason"], h["source_offset"]) for v, h in letters] == [
        (boolean, "bad_type", "2"),
        (address, "bad_value", "5"),
    ]


def test_values_clickhouse_would_misnumber_take_the_slow_path(setup: Callable[..., GwtelConfig]) -> None:
    # A value ending inside a string swallows the next one (one row for two records: every later row would take
    # the next record's offset), a repeated key whose last value is out of range (ClickHouse's reader kept the
    # first), a raw tab inside a string (ClickHouse's reader takes it): ClickHouse refuses the batch, or the
    # loader does not send it, and the codec reads each record, as the job does.
    cfg = setup(partitions=1, batch_rows=100, batch_seconds=0.2)
    migrate(cfg)
    opened, closing = flow_value(1)[:-1] + b',"x":"a', b'{","zz":3}'
    repeated = flow_value(4)[:-1] + b',"src_port":70000}'
    tab = flow_value(6).replace(b'"agent_id":"', b'"agent_id":"\t', 1)  # ClickHouse stored it with the tab
    values = [flow_value(0), opened, closing, flow_value(3), repeated, flow_value(5), tab, flow_value(7)]
    registry = load_flows(cfg, values)
    assert q(cfg, "SELECT kafka_offset, seq FROM DB.flows_raw ORDER BY kafka_offset") == [
        (0, 0), (3, 3), (5, 5), (7, 7)
    ]  # fmt: skip
    assert metric(registry, "gwtel_loader_slow_batches_total", topic=cfg.kafka.topics.flows) >= 1
    letters = read_dead_letters(cfg, 4)
    assert sorted((h["source_offset"], h["reason"]) for _, h in letters) == [
        ("1", "not_json"), ("2", "not_json"), ("4", "out_of_range"), ("6", "not_json")
    ]  # fmt: skip


def test_landing_settings_keep_a_batch_in_one_block(clickhouse_client: Any) -> None:
    # The landing views number a batch's rows within a block (rowNumberInBlock), and ClickHouse cuts an HTTP
    # insert's parsed rows every max_insert_block_size rows (1,048,449 by default). Shown with a batch above
    # the default: cut without the setting, whole with it; the loader's batches are at most MAX_BATCH_ROWS.
    assert INPUT_SETTINGS["max_insert_block_size"] > MAX_BATCH_ROWS
    n = 1_100_000
    clickhouse_client.command("CREATE TABLE land (a UInt64) ENGINE = Null")
    clickhouse_client.command("CREATE TABLE out (a UInt64, r UInt64, k UInt8) ENGINE = MergeTree ORDER BY a")
    clickhouse_client.command(
        "CREATE MATERIALIZED VIEW mv TO out AS SELECT a, rowNumberInBlock() AS r, "
        "toUInt8(getSetting('max_insert_block_size') > 2000000) AS k FROM land"
    )
    body = b"\n".join(b'{"a":%d}' % i for i in range(n))
    clickhouse_client.raw_insert("land", insert_block=body, fmt="JSONEachRow")
    clickhouse_client.raw_insert(
        "land", insert_block=body, fmt="JSONEachRow", settings={"max_insert_block_size": 2_000_001}
    )
    got = clickhouse_client.query("SELECT k, count(), countIf(a != r) FROM out GROUP BY k ORDER BY k").result_rows
    assert got[0][0] == 0 and got[0][1] == n and got[0][2] > 0  # default: cut, rows renumbered from 0
    assert got[1] == (1, n, 0)
