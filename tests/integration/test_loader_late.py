"""The late topic on the real broker: its FlowRecords land in flows_late (and their windows), never in flows_raw."""

from __future__ import annotations

from collections.abc import Callable

from gwtel.config import GwtelConfig
from processors.loader_setup import migrate
from schemas import codec
from tests.integration.test_loader import NOW_NS, flow_value, load_all, metric, produce, pytestmark, q, setup
from tests.unit.test_batcher import flow

__all__ = ["pytestmark", "setup"]


def late_value(i: int, nbytes: int) -> bytes:
    first = NOW_NS - 600 * 10**9 + i * 10**9
    rec = flow(seq=1000 + i, first_ns=first, last_ns=first + 10**9, export_ns=first + 300 * 10**9, bytes_fwd=nbytes)
    return codec.encode(rec)


def test_late_topic_loads_into_flows_late(setup: Callable[..., GwtelConfig]) -> None:
    cfg = setup(batch_rows=2, batch_seconds=0.3)
    migrate(cfg)
    late = [(0, late_value(i, 1000 + i)) for i in range(5)]
    produce(cfg, cfg.kafka.topics.late, late)
    produce(cfg, cfg.kafka.topics.flows, [(0, flow_value(i)) for i in range(1, 4)])
    produce(cfg, cfg.kafka.topics.late, [(0, b"{not json")])  # dead-lettered like a bad flow
    registry = load_all(cfg)

    expected_late_bytes = 1000 + 1001 + 1002 + 1003 + 1004
    assert q(cfg, "SELECT count(), sum(bytes_fwd), min(seq), max(seq), any(kafka_topic) FROM DB.flows_late") == [
        (5, expected_late_bytes, 1000, 1004, cfg.kafka.topics.late)
    ]
    # The flows topic still fills flows_raw (3 records of 100, 200, 300 bytes), and nothing crosses over.
    assert q(cfg, "SELECT count(), sum(bytes_fwd), min(seq) FROM DB.flows_raw") == [(3, 600, 1)]
    # The late records are added to their windows (migration late_into_windows), at every window size, with
    # the late topic's coordinates; the flows topic adds nothing there (windows come from the job).
    recs = [codec.decode(v) for _, v in late]
    both_sides = sum(r.bytes_fwd + r.bytes_rev for r in recs)
    assert q(cfg, "SELECT window_s, sum(bytes), sum(flows), any(kafka_topic) FROM DB.bandwidth_window "
                  "GROUP BY window_s ORDER BY window_s") == [
        (w, both_sides, len(recs), cfg.kafka.topics.late) for w in cfg.job.window_sizes_s
    ]  # fmt: skip
    assert metric(registry, "gwtel_loader_dead_lettered_total", reason="not_json") == 1
    # `ts` is derived from the record's own start time, as in flows_raw.
    first_s = (NOW_NS - 600 * 10**9) // 10**9
    assert q(cfg, "SELECT toUnixTimestamp(min(ts)) FROM DB.flows_late") == [(first_s,)]
