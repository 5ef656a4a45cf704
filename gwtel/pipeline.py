"""One pass of the whole pipeline over a capture: agent -> Kafka -> Flink job -> loader -> ClickHouse.

Used by `gwtel run` (the main job) and by the end-to-end tests, so both exercise the same code. It returns once
the delivery ledger balances: every record the agent produced is a row in ClickHouse and the loader has read
everything the job committed to the aggregates topic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from gwtel.config import GwtelConfig
from gwtel.errors import UserError


@dataclass
class PipelineResult:
    packets: int
    records: int
    rows_stored: int
    seconds: dict[str, float]


def _stored(client: Any, db: str, agent_id: str, first_seq: int) -> int:
    rows = client.query(
        f"SELECT count() FROM {db}.flows_raw WHERE agent_id = {{a:String}} AND seq >= {{s:UInt64}}",
        parameters={"a": agent_id, "s": first_seq},
    ).result_rows
    return int(rows[0][0])


def _caught_up(loader: Any) -> bool:
    consumer = loader.consumer
    tps = consumer.assignment()
    if not tps:
        return False
    ends = consumer.end_offsets(list(tps))
    return all(consumer.position(tp) >= ends[tp] for tp in tps) and bool(loader.idle())


def run_pipeline(
    cfg: GwtelConfig,
    pcap: Path,
    *,
    ledger_timeout_s: float = 300.0,
    log: Any = None,
    registry: CollectorRegistry | None = None,
) -> PipelineResult:
    """Replay `pcap` through every stage; the services must be up and the database migrated.

    With `registry`, the agent's counters and the loader's metrics are registered there (the ledger's stages).
    """
    from gwtel.commands.replay import do_replay
    from ingest.agent_metrics import AgentCollector
    from processors.chclient import make_client
    from processors.job import run_job
    from processors.loader_setup import build_loader

    say = log or (lambda _msg: None)
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    say(f"replaying {pcap} through the agent into Kafka topic {cfg.kafka.topics.flows}")
    run = do_replay(cfg, [pcap], "kafka")
    c = run.agent.counters
    if run.result.errors and all(f.frames == 0 for f in run.result.files):
        raise UserError(str(run.result.errors[0]))
    assert run.producer is not None
    if run.producer.spool_pending:
        raise UserError(f"{run.producer.spool_pending} records are still in the agent's spool: Kafka did not take them")
    first_seq = run.agent.meter.next_seq - c.records_emitted
    seconds["replay"] = time.monotonic() - t0
    say(f"{c.packets_seen:,} packets -> {c.records_emitted:,} flow records, {run.producer.acked:,} acked by Kafka")

    t0 = time.monotonic()
    say("aggregating with the Flink job (bounded: up to what the topic holds now)")
    run_job(cfg, bounded=True)
    seconds["aggregate"] = time.monotonic() - t0

    t0 = time.monotonic()
    db = cfg.clickhouse.database
    say(f"loading flows and aggregates into ClickHouse database {db} at {cfg.clickhouse.url}")
    if registry is not None:
        registry.register(AgentCollector(run.agent, run.producer))
    loader = build_loader(cfg, registry if registry is not None else CollectorRegistry())
    client = make_client(cfg.clickhouse)
    deadline = time.monotonic() + ledger_timeout_s
    try:
        while True:
            loader.step()
            stored = _stored(client, db, cfg.agent.agent_id, first_seq)
            if stored >= c.records_emitted and _caught_up(loader):
                break
            if time.monotonic() > deadline:
                raise UserError(
                    f"the delivery ledger did not balance in {ledger_timeout_s:.0f}s: the agent produced "
                    f"{c.records_emitted} records, ClickHouse holds {stored}; see `gwtel status` and the logs"
                )
    finally:
        loader.close()
        client.close()
    seconds["load"] = time.monotonic() - t0
    say(f"ledger: {c.records_emitted:,} records produced = {stored:,} rows stored")
    return PipelineResult(c.packets_seen, c.records_emitted, stored, seconds)


def truth_totals(truth: dict[str, Any]) -> dict[tuple[str, str], list[int]]:
    """Bytes and packets per (partner, direction) from a `gwtel synth` ground-truth document."""
    want: dict[tuple[str, str], list[int]] = {}
    for row in truth["bandwidth"]:
        acc = want.setdefault((row["partner"], row["direction"]), [0, 0])
        acc[0] += row["bytes"]
        acc[1] += row["packets"]
    return want
