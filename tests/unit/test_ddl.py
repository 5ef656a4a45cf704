"""Source and sink DDL come from the configuration, with the delivery settings the design asks for."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from gwtel.config import GwtelConfig
from ingest.config import AgentConfig
from processors import ddl
from processors.config import JobConfig
from processors.job import warnings_for

_OPTION = re.compile(r"^\s*'([^']+)' = '((?:[^']|'')*)',?$")


def options(sql: str) -> dict[str, str]:
    found = {}
    for line in sql.split(") WITH (", 1)[1].splitlines():
        m = _OPTION.match(line)
        if m:
            found[m.group(1)] = m.group(2).replace("''", "'")
    return found


def custom() -> GwtelConfig:
    return GwtelConfig.model_validate(
        {
            "kafka": {
                "bootstrap": "kafka-a.example:19092,kafka-b.example:19092",
                "topics": {"flows": "f.v9", "aggregates": "a.v9", "late": "l.v9", "dead_letter": "d.v9"},
            },
            "job": {
                "group_id": "g1",
                "transactional_id_prefix": "tx1",
                "watermark_from": "last_ns",
                "watermark_bound_ms": 61_250,
                "idle_timeout_ms": 7_000,
                "transaction_timeout_ms": 300_000,
                "startup_mode": "group-offsets",
            },
        }
    )


def test_source_reads_committed_records_from_configured_topic() -> None:
    sql = ddl.flows_source_ddl(custom())
    opts = options(sql)
    fmt = {k: v for k, v in opts.items() if k.startswith("gwtel-flow.")}
    assert fmt == {k: v for k, v in ddl.flow_format_options().items() if k != "format"}
    assert fmt["gwtel-flow.lines"] == "false"
    assert fmt["gwtel-flow.problem-columns"] == "_reason,_field,_line,_value"
    assert fmt["gwtel-flow.fields"].startswith("schema_version|int|0|255|out_of_range|missing;agent_id|str|")
    assert {k: v for k, v in opts.items() if k not in fmt} == {
        "connector": "kafka",
        "topic": "f.v9",
        "properties.bootstrap.servers": "kafka-a.example:19092,kafka-b.example:19092",
        "properties.group.id": "g1",
        "properties.isolation.level": "read_committed",
        "scan.startup.mode": "group-offsets",
        "properties.auto.offset.reset": "earliest",
        "scan.watermark.idle-timeout": "7000 ms",
        "format": "gwtel-flow",
    }
    assert "WATERMARK FOR `rowtime` AS `rowtime` - INTERVAL '0 00:01:01.250' DAY TO SECOND(3)" in sql
    assert "127.0.0.1" not in sql


def test_bounded_source_stops_at_latest_offsets() -> None:
    assert "scan.bounded.mode" not in options(ddl.flows_source_ddl(custom()))
    assert options(ddl.flows_source_ddl(custom(), bounded=True))["scan.bounded.mode"] == "latest-offset"


def test_sinks_are_exactly_once_with_distinct_prefixes_and_short_transactions() -> None:
    cfg = custom()
    sinks = {
        "a.v9": options(ddl.aggregates_sink_ddl(cfg)),
        "l.v9": options(ddl.late_sink_ddl(cfg)),
        "d.v9": options(ddl.dead_letter_sink_ddl(cfg)),
    }
    for topic, opts in sinks.items():
        assert opts["topic"] == topic
        assert opts["sink.delivery-guarantee"] == "exactly-once"
        assert opts["properties.transaction.timeout.ms"] == "300000"
        assert opts["properties.bootstrap.servers"] == "kafka-a.example:19092,kafka-b.example:19092"
        assert opts["sink.transactional-id-prefix"].startswith("tx1-")
    assert len({o["sink.transactional-id-prefix"] for o in sinks.values()}) == 3


def test_default_transaction_timeout_is_below_the_broker_maximum() -> None:
    timeout = int(options(ddl.aggregates_sink_ddl(GwtelConfig()))["properties.transaction.timeout.ms"])
    assert 0 < timeout < 15 * 60 * 1000


def test_values_with_quotes_are_escaped() -> None:
    sql = ddl.create_table_sql("t", "  `x` INT", {"topic": "it's"})
    assert "'topic' = 'it''s'" in sql


@pytest.mark.parametrize(
    ("ms", "literal"),
    [
        (0, "INTERVAL '0 00:00:00.000' DAY TO SECOND(3)"),
        (45_000, "INTERVAL '0 00:00:45.000' DAY TO SECOND(3)"),
        (90_061_001, "INTERVAL '1 01:01:01.001' DAY TO SECOND(3)"),
    ],
)
def test_interval_literal(ms: int, literal: str) -> None:
    assert ddl.interval_sql(ms) == literal


def test_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        ddl.interval_sql(-1)


def test_job_config_defaults_and_window_validation() -> None:
    job = JobConfig()
    assert job.window_sizes_s == (10, 60)
    assert JobConfig(window_sizes_s=(60, 10, 300)).window_sizes_s == (10, 60, 300)
    for bad in [(), (7,), (10, 10), (0,)]:
        with pytest.raises(ValidationError):
            JobConfig(window_sizes_s=bad)


def test_transaction_timeout_limits() -> None:
    with pytest.raises(ValidationError):
        JobConfig(transaction_timeout_ms=15 * 60 * 1000 + 1)
    with pytest.raises(ValidationError, match="3x"):
        JobConfig(transaction_timeout_ms=20_000, checkpoint_interval_ms=10_000)
    assert JobConfig(transaction_timeout_ms=30_000, checkpoint_interval_ms=10_000).transaction_timeout_ms == 30_000


def test_warnings_when_watermark_or_windows_do_not_fit_the_agent() -> None:
    assert warnings_for(GwtelConfig()) == []
    # The bound only has to cover the idle timeout when the watermark follows last packets.
    assert warnings_for(GwtelConfig(job=JobConfig(watermark_bound_ms=20_000))) == []
    tight = GwtelConfig(job=JobConfig(watermark_bound_ms=20_000, watermark_from="last_ns"))
    assert [w for w in warnings_for(tight) if "idle_timeout_s" in w]
    long_slices = GwtelConfig(agent=AgentConfig(active_timeout_s=30.0))
    assert [w for w in warnings_for(long_slices) if "active_timeout_s" in w]
    uneven = GwtelConfig(agent=AgentConfig(active_timeout_s=7.0))
    assert [w for w in warnings_for(uneven) if "[10, 60]" in w]
    assert warnings_for(GwtelConfig(agent=AgentConfig(active_timeout_s=5.0))) == []


def test_default_startup_continues_from_the_group_offsets() -> None:
    opts = options(ddl.flows_source_ddl(GwtelConfig()))
    assert opts["scan.startup.mode"] == "group-offsets"
    # a group with no committed offset yet (first run) starts at the beginning instead of failing
    assert opts["properties.auto.offset.reset"] == "earliest"


def test_bounded_source_stops_at_the_given_offsets_of_every_partition() -> None:
    stop = {1: 60, 0: 7}
    opts = options(ddl.flows_source_ddl(custom(), bounded=True, stop_at=stop))
    assert opts["scan.bounded.mode"] == "specific-offsets"
    assert opts["scan.bounded.specific-offsets"] == "partition:0,offset:7;partition:1,offset:60"
    # Unbounded runs never stop, whatever offsets are passed.
    assert "scan.bounded.mode" not in options(ddl.flows_source_ddl(custom(), stop_at=stop))
    with pytest.raises(ValueError, match="at least one partition"):
        ddl.flows_source_ddl(custom(), bounded=True, stop_at={})
