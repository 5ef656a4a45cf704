"""What `gwtel replay` and `gwtel capture` share around the agent: its record output and its metrics endpoint."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from typing import BinaryIO

from prometheus_client.registry import Collector

from gwtel.config import GwtelConfig
from gwtel.errors import UserError
from gwtel.metrics_http import MetricsEndpoint, process_registry, serve_metrics
from gwtel.preflight import check_kafka_login
from ingest.agent_metrics import AgentCollector, MeteredAgent
from ingest.producer import FlowProducer
from ingest.sinks import BatchSink, JsonlSink, KafkaSink

AGENT_JOB = "agent"


def open_output(cfg: GwtelConfig, to: str, stack: ExitStack) -> tuple[BatchSink, FlowProducer | None]:
    """The record writer for ``--to`` (kafka, jsonl:PATH or -) and the Kafka producer if any; closed by `stack`."""
    if to == "kafka":
        check_kafka_login(cfg.kafka)
        producer = FlowProducer(
            cfg.kafka.bootstrap,
            cfg.kafka.topics.flows,
            spool_dir=cfg.local.home_path() / cfg.agent.spool_dir,
            spool_max_bytes=cfg.agent.spool_max_bytes,
            compression=None if cfg.agent.compression == "none" else cfg.agent.compression,
            client_id=f"gwtel-agent-{cfg.agent.agent_id}",
            extra_kafka=cfg.kafka.security.librdkafka(),
        )
        stack.callback(producer.close)
        return KafkaSink(producer), producer
    if to == "-":
        return JsonlSink(sys.stdout.buffer, before=sys.stdout.flush), None
    if to.startswith("jsonl:"):
        try:
            out: BinaryIO = stack.enter_context(open(to[6:], "wb"))  # noqa: SIM115
        except OSError as exc:
            raise UserError(f"--to {to}: cannot write ({exc.strerror})") from None
        return JsonlSink(out), None
    raise UserError(f"--to {to!r}: use kafka, jsonl:PATH or -")


def serve_agent_metrics(
    cfg: GwtelConfig,
    agent: MeteredAgent,
    producer: FlowProducer | None,
    *,
    required: bool,
    extra: tuple[Collector, ...] = (),
) -> MetricsEndpoint | None:
    """Serve the agent's metrics on ``agent.metrics_port`` and announce them to the local Prometheus.

    A busy port stops a long-running capture (``required``); a replay warns and goes on without metrics, since
    its records reach Kafka either way.
    """
    registry = process_registry(AgentCollector(agent, producer), *extra)
    try:
        return serve_metrics(
            AGENT_JOB,
            cfg.agent.agent_id,
            cfg.agent.metrics_port,
            cfg.local.home_path(),
            registry,
            component="agent",
            host=cfg.prometheus.metrics_host,
        )
    except UserError as exc:
        if required:
            raise
        print(f"warning: {exc}; continuing without metrics", file=sys.stderr)
        return None
