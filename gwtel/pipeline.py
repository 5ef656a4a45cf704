"""One pass of the whole pipeline over captures: agent -> Kafka -> Flink job -> loader -> ClickHouse.

Used by `gwtel run` (the main job), `gwtel verify`, the end-to-end tests and the benchmarks, so all exercise the
same code. It returns once the delivery ledger balances: every record the agent produced is a row in ClickHouse (or
was older than the flows table's retention when it was produced: ClickHouse drops such a row at insert, and
the ledger counts it as dropped instead of waiting for it) and the loader has read everything the job
committed to the aggregates topic. No sleeping: the wait ends when the counts agree, or fails with both counts
after a timeout.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from gwtel.config import GwtelConfig, TopicsConfig
from gwtel.errors import UserError
from schemas.flow_record import FlowRecord


@dataclass(frozen=True)
class ReplayPass:
    """Captures replayed by one agent; passes differ by link id or sampling rate (None: the configured one)."""

    files: tuple[Path, ...]
    link_id: str | None = None
    sampling_rate: int | None = None


@dataclass
class PipelineResult:
    packets: int
    records: int
    rows_stored: int
    seconds: dict[str, float]
    records_per_pass: list[int] = field(default_factory=list)
    expired: int = 0  # records older than the flows table's retention: dropped by ClickHouse at insert


_DAY_NS = 86_400 * 1_000_000_000


def retention_cutoff_ns(cfg: GwtelConfig) -> int:
    """Rows of flows that started before this are older than `flows_raw`'s TTL: ClickHouse drops them."""
    return time.time_ns() - cfg.loader.ttl_flows_raw_days * _DAY_NS


def _stored(client: Any, db: str, agent_id: str, first_seq: int) -> int:
    rows = client.query(
        f"SELECT count() FROM {db}.flows_raw WHERE agent_id = {{a:String}} AND seq >= {{s:UInt64}}",
        parameters={"a": agent_id, "s": first_seq},
    ).result_rows
    return int(rows[0][0])


def caught_up(loader: Any) -> bool:
    """The loader has read every partition to its end (markers included) and holds no batch."""
    consumer = loader.consumer
    tps = consumer.assignment()
    if not tps:
        return False
    ends = consumer.end_offsets(list(tps))
    return all(consumer.position(tp) >= ends[tp] for tp in tps) and bool(loader.idle())


def _replay(
    cfg: GwtelConfig, rp: ReplayPass, say: Any, registry: CollectorRegistry | None
) -> tuple[int, int, int, int]:
    """One agent over the pass's files into Kafka; returns (packets, records, first seq, records older than the
    flows table's retention)."""
    from gwtel.commands.replay import do_replay
    from ingest.agent_metrics import AgentCollector

    update: dict[str, Any] = {}
    if rp.link_id is not None:
        update["link_id"] = rp.link_id
    if rp.sampling_rate is not None:
        update["sampling_rate"] = rp.sampling_rate
    pcfg = cfg.model_copy(update={"agent": cfg.agent.model_copy(update=update)}) if update else cfg
    names = ", ".join(str(f) for f in rp.files) if len(rp.files) <= 3 else f"{len(rp.files)} captures"
    say(f"replaying {names} (link {pcfg.agent.link_id}) through the agent into Kafka topic {cfg.kafka.topics.flows}")
    cutoff = retention_cutoff_ns(cfg)
    expired = 0

    def count_expired(rec: FlowRecord) -> None:
        nonlocal expired
        expired += rec.first_ns < cutoff

    run = do_replay(pcfg, list(rp.files), "kafka", on_record=count_expired)
    c = run.agent.counters
    if run.result.errors and all(f.frames == 0 for f in run.result.files):
        raise UserError(str(run.result.errors[0]))
    assert run.producer is not None
    if run.producer.spool_pending:
        raise UserError(f"{run.producer.spool_pending} records are still in the agent's spool: Kafka did not take them")
    say(f"{c.packets_seen:,} packets -> {c.records_emitted:,} flow records, {run.producer.acked:,} acked by Kafka")
    if registry is not None:
        registry.register(AgentCollector(run.agent, run.producer))
    if expired:
        say(
            f"{expired:,} of the records started before the flows table's retention "
            f"(loader.ttl_flows_raw_days = {cfg.loader.ttl_flows_raw_days}): ClickHouse drops them at insert"
        )
    return c.packets_seen, c.records_emitted, run.agent.meter.next_seq - c.records_emitted, expired


def run_pipeline(
    cfg: GwtelConfig,
    pcap: Path | Sequence[ReplayPass],
    *,
    ledger_timeout_s: float = 300.0,
    log: Any = None,
    registry: CollectorRegistry | None = None,
) -> PipelineResult:
    """Replay the captures through every stage; the services must be up and the database migrated.

    With `registry` (one replay pass only), the agent's counters and the loader's metrics are registered there:
    the ledger's stages.
    """
    from processors.chclient import make_client
    from processors.job import run_job
    from processors.loader_setup import build_loader

    say = log or (lambda _msg: None)
    passes = [ReplayPass((pcap,))] if isinstance(pcap, Path) else list(pcap)
    if registry is not None and len(passes) != 1:
        raise ValueError("a metrics registry takes one replay pass: each agent's collectors share metric names")
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    per_pass = [_replay(cfg, rp, say, registry) for rp in passes]
    packets = sum(p[0] for p in per_pass)
    records = sum(p[1] for p in per_pass)
    first_seq = per_pass[0][2]
    expired = sum(p[3] for p in per_pass)
    seconds["replay"] = time.monotonic() - t0

    t0 = time.monotonic()
    say("aggregating with the Flink job (bounded: up to what the topic holds now)")
    run_job(cfg, bounded=True)
    seconds["aggregate"] = time.monotonic() - t0

    t0 = time.monotonic()
    db = cfg.clickhouse.database
    say(f"loading flows and aggregates into ClickHouse database {db} at {cfg.clickhouse.url}")
    loader = build_loader(cfg, registry if registry is not None else CollectorRegistry())
    client = make_client(cfg.clickhouse)
    deadline = time.monotonic() + ledger_timeout_s
    try:
        while True:
            loader.step()
            stored = _stored(client, db, cfg.agent.agent_id, first_seq)
            if stored + expired >= records and caught_up(loader):
                break
            if time.monotonic() > deadline:
                raise UserError(
                    f"the delivery ledger did not balance in {ledger_timeout_s:.0f}s: the agent produced "
                    f"{records} records ({expired} of them older than the retention, dropped at insert), "
                    f"ClickHouse holds {stored}. See `gwtel status` and the logs"
                )
    finally:
        loader.close()
        client.close()
    seconds["load"] = time.monotonic() - t0
    dropped = f" + {expired:,} dropped by the retention" if expired else ""
    say(f"ledger: {records:,} records produced = {stored:,} rows stored{dropped}")
    return PipelineResult(packets, records, stored, seconds, [p[1] for p in per_pass], expired)


# Replayed captures can be years old, and rows older than a table's TTL vanish at insert: the run's own database
# keeps everything since 1947, the longest TTL whose end (now + TTL) still fits ClickHouse's DateTime (year 2106).
_KEEP_DAYS = 29_000
_KEEP_ALL = {f"ttl_{t}_days": _KEEP_DAYS for t in ("flows_raw", "window", "5m", "1h", "1d")}


def isolated(cfg: GwtelConfig, tag: str) -> GwtelConfig:
    """`cfg` with its own topics, database, agent id, consumer groups, checkpoints and a TTL that keeps old
    captures: runs never mix."""
    topics = TopicsConfig(
        flows=f"gwtel.run-{tag}.flows",
        aggregates=f"gwtel.run-{tag}.aggregates",
        late=f"gwtel.run-{tag}.late",
        counters=f"gwtel.run-{tag}.counters",
        dead_letter=f"gwtel.run-{tag}.deadletter",
    )
    return cfg.model_copy(
        update={
            "kafka": cfg.kafka.model_copy(update={"topics": topics}),
            "clickhouse": cfg.clickhouse.model_copy(update={"database": f"gwtel_run_{tag}"}),
            "agent": cfg.agent.model_copy(update={"agent_id": f"run-{tag}", "spool_dir": f"runs/{tag}/spool"}),
            "job": cfg.job.model_copy(
                update={
                    "group_id": f"gwtel-run-{tag}",
                    "transactional_id_prefix": f"gwtel-run-{tag}",
                    "checkpoint_dir": f"runs/{tag}/checkpoints",
                }
            ),
            "loader": cfg.loader.model_copy(update={"group_id": f"gwtel-run-loader-{tag}", **_KEEP_ALL}),
        }
    )


def prepare(cfg: GwtelConfig) -> None:
    """Create the run's topics and migrate its database (the services must be up)."""
    from gwtel.services.kafka import KafkaService
    from processors.loader_setup import migrate

    KafkaService(cfg, cfg.local.home_path()).ensure_topics()
    migrate(cfg)


def drop_database(cfg: GwtelConfig) -> None:
    """Drop `cfg.clickhouse.database` if it exists."""
    from processors.chclient import make_client

    client = make_client(cfg.clickhouse, database="")
    try:
        client.command(f"DROP DATABASE IF EXISTS {cfg.clickhouse.database}")
    finally:
        client.close()


def discard(cfg: GwtelConfig) -> None:
    """Drop what `isolated` + `prepare` created: database, topics, spool, checkpoints and sequence file."""
    from gwtel.services.kafka import KafkaService

    home = cfg.local.home_path()
    drop_database(cfg)
    svc = KafkaService(cfg, home)
    svc.delete_topics(svc.configured_topics())
    run_dir = home / Path(cfg.agent.spool_dir).parent  # runs/<tag>: the spool and the checkpoints
    if run_dir.parent == home / "runs":
        shutil.rmtree(run_dir, ignore_errors=True)
    (home / "agent" / f"{cfg.agent.agent_id}.seq").unlink(missing_ok=True)


def truth_totals(truth: dict[str, Any]) -> dict[tuple[str, str], list[int]]:
    """Bytes and packets per (partner, direction) from a `gwtel synth` ground-truth document."""
    want: dict[tuple[str, str], list[int]] = {}
    for row in truth["bandwidth"]:
        acc = want.setdefault((row["partner"], row["direction"]), [0, 0])
        acc[0] += row["bytes"]
        acc[1] += row["packets"]
    return want


def start_services(cfg: GwtelConfig, say: Any = None) -> None:
    """Start (or find running) every local service; one that cannot start stops the job with what to do."""
    from gwtel.errors import ServiceError
    from gwtel.services import registry

    home = cfg.local.home_path()
    for svc in registry.build(cfg, home):
        try:
            svc.start()
        except ServiceError as exc:
            raise ServiceError(
                f"the {svc.name} service could not start, so no data moved.\n{exc}\n"
                f"What to try: `gwtel status`; the logs in {home / 'logs'}; a port of `local.ports` in use by "
                "another program (change it in the configuration file); `gwtel down` then `gwtel up`."
            ) from None
        if say is not None:
            say(f"{svc.name:<11} {svc.endpoint()}")
