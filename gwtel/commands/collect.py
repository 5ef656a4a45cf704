"""`gwtel collect`: receive router flow exports (IPFIX, NetFlow v9/v5, sFlow v5) and send them as FlowRecords."""

from __future__ import annotations

import argparse
import sys
import threading
from contextlib import ExitStack

from gwtel.agent_run import open_output
from gwtel.commands.capture import _on_signals
from gwtel.config import GwtelConfig, load_config
from gwtel.errors import UserError
from gwtel.metrics_http import process_registry, serve_metrics
from ingest.applications import AppClassifier
from ingest.classify import PartnerClassifier
from ingest.collect.config import CollectorConfig
from ingest.collect.counters import CounterSink
from ingest.collect.listener import Listeners
from ingest.collect.metrics import CollectorMetrics
from ingest.collect.records import RecordBuilder
from ingest.collect.service import CollectorService
from ingest.collect.templates import TemplateFiles
from ingest.producer import FlowProducer
from ingest.seqstore import SeqStore

COLLECTOR_JOB = "collector"
# the counters topic's producer keeps its own spool beside the records' (`collector/spool`)
COUNTER_SPOOL = "collector/counter-spool"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "collect",
        help="receive IPFIX, NetFlow and sFlow exports from routers into Kafka",
        description=(
            "Listen for flow exports from routers (IPFIX, NetFlow v9/v5, sFlow v5), decode them in the native "
            "engine and send one FlowRecord per exported flow to Kafka, or JSON lines with --to. Links and "
            "directions come from the collector.exporters interface map. See docs/collect.md."
        ),
    )
    p.add_argument(
        "--listen",
        action="append",
        metavar="URL",
        help="ipfix://ADDR:PORT, netflow://ADDR:PORT or sflow://ADDR:PORT; repeatable (default collector.listen)",
    )
    p.add_argument(
        "--to", default="kafka", metavar="DEST", help="kafka (default), jsonl:PATH, or - for JSON lines on stdout"
    )
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: until SIGINT/SIGTERM)")
    p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="configuration file")
    p.set_defaults(func=_run)


def _collector_config(cfg: GwtelConfig, listen: list[str] | None) -> CollectorConfig:
    if not listen:
        return cfg.collector
    try:
        return CollectorConfig.model_validate({**cfg.collector.model_dump(), "listen": tuple(listen)})
    except ValueError as exc:
        raise UserError(f"--listen: {exc}") from None


def open_counter_output(cfg: GwtelConfig, to: str, stack: ExitStack) -> CounterSink | None:
    """sFlow counter samples go to the counters topic when records go to Kafka; with JSON lines output they are
    only exported as metrics."""
    if to != "kafka":
        return None
    producer = FlowProducer(
        cfg.kafka.bootstrap,
        cfg.kafka.topics.counters,
        spool_dir=cfg.local.home_path() / COUNTER_SPOOL,
        spool_max_bytes=cfg.agent.spool_max_bytes,
        client_id=f"gwtel-counters-{cfg.agent.agent_id}",
    )
    stack.callback(producer.close)
    return producer.send_batch


def _run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.duration is not None and args.duration <= 0:
        raise UserError(f"--duration {args.duration}: give a positive number of seconds")
    ccfg = _collector_config(cfg, args.listen)
    home = cfg.local.home_path()
    # the collector's own producer identity and spool, next to (never shared with) a capture agent's
    out_cfg = cfg.model_copy(
        update={"agent": cfg.agent.model_copy(update={"agent_id": ccfg.agent_id, "spool_dir": "collector/spool"})}
    )
    stop = threading.Event()
    with ExitStack() as stack:
        try:
            listeners = Listeners(
                ccfg.listeners(),
                sockets_per_listener=ccfg.sockets_per_listener,
                receive_buffer=ccfg.receive_buffer_bytes,
            )
        except OSError as exc:
            raise UserError(f"cannot listen on {', '.join(ccfg.listen)}: {exc.strerror}") from None
        stack.callback(listeners.close)
        write, producer = open_output(out_cfg, args.to, stack)
        seqs = SeqStore(home / "collector" / f"{ccfg.agent_id}.seq")
        builder = RecordBuilder(
            ccfg, PartnerClassifier(cfg.partners), first_seq=seqs.first(), apps=AppClassifier(cfg.applications)
        )
        counters = open_counter_output(out_cfg, args.to, stack)
        service = CollectorService(
            ccfg, listeners, builder, write, TemplateFiles(home / ccfg.template_dir), counters=counters
        )
        endpoint = serve_metrics(
            COLLECTOR_JOB,
            ccfg.agent_id,
            ccfg.metrics_port,
            home,
            process_registry(CollectorMetrics(service, producer)),
            component="collector",
            host=cfg.prometheus.metrics_host,
        )
        stack.callback(endpoint.close)
        _on_signals(stop, stack)
        print(
            f"gwtel collect: listening on {', '.join(ccfg.listen)} ({ccfg.sockets_per_listener} sockets each, "
            f"{service.restored} templates restored); metrics on {endpoint.url}",
            file=sys.stderr,
            flush=True,
        )
        try:
            service.run(stop, args.duration)
        finally:
            seqs.used(builder.next_seq)
        c = service.engine.counters()
        drops = sum(st.kernel_drops for st in listeners.stats)
        print(
            f"gwtel collect: stopped: datagrams {c['datagrams']}, records sent {service.state.records_sent:,}, "
            f"decode errors {len(c['errors'])} kinds, kernel drops {drops:,}",  # type: ignore[arg-type]
            file=sys.stderr,
        )
    return 0
