"""`gwtel replay FILE...`: replay captures through the agent into Kafka (or JSON lines)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from gwtel.agent_run import open_output, serve_agent_metrics
from gwtel.config import GwtelConfig, load_config
from gwtel.errors import UserError
from ingest.agent import Agent
from ingest.applications import AppClassifier
from ingest.classify import PartnerClassifier
from ingest.native import NativeAgent
from ingest.producer import FlowProducer
from ingest.replay import ProgressLine, ReplayResult, replay_files
from ingest.seqstore import SeqStore
from ingest.sinks import ObservedSink
from schemas.flow_record import FlowRecord


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="replay pcap/pcapng files through the agent into Kafka",
        description=(
            "Read capture files (pcap, pcap-ns, pcapng, gzip; format from the magic number), meter flows and "
            "send one FlowRecord per finished flow to Kafka, or write them as JSON lines with --to."
        ),
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.add_argument(
        "--to", default="kafka", metavar="DEST", help="kafka (default), jsonl:PATH, or - for JSON lines on stdout"
    )
    p.add_argument("--pace", action="store_true", help="replay at recorded speed instead of as fast as possible")
    p.add_argument("--shift-to-now", action="store_true", help="with --pace: move timestamps to the present")
    p.add_argument(
        "--allow-truncated", action="store_true", help="exit 0 when a file is damaged midway (after what it held)"
    )
    p.set_defaults(func=_run)


@dataclass
class ReplayRun:
    agent: Agent | NativeAgent
    result: ReplayResult
    partners: Counter[str]
    producer: FlowProducer | None


def do_replay(
    cfg: GwtelConfig,
    files: list[Path],
    to: str = "kafka",
    *,
    pace: bool = False,
    shift: bool = False,
    on_record: Callable[[FlowRecord], None] | None = None,
) -> ReplayRun:
    """Replay files through one agent into Kafka (with its spool) or JSON lines; close everything after.
    ``on_record`` sees every record as it is written (the pipeline's ledger counts what retention drops)."""
    for f in files:
        if not f.exists():
            raise UserError(f"capture file {f}: no such file")
    home = cfg.local.home_path()
    classifier = PartnerClassifier(cfg.partners)
    with ExitStack() as stack:
        write, producer = open_output(cfg, to, stack)
        sink = write if on_record is None else ObservedSink(write, on_record)
        seqs = SeqStore(home / "agent" / f"{cfg.agent.agent_id}.seq")
        native = cfg.agent.engine == "native"
        apps = AppClassifier(cfg.applications)
        agent = (NativeAgent if native else Agent)(cfg.agent, classifier, sink, first_seq=seqs.first(), apps=apps)
        endpoint = serve_agent_metrics(cfg, agent, producer, required=False)
        if endpoint is not None:
            stack.callback(endpoint.close)
        progress = ProgressLine()
        result = replay_files(agent, files, pace=pace, shift_to_now=shift, progress=progress)
        progress.done()
        seqs.used(agent.meter.next_seq)
    return ReplayRun(agent, result, Counter(agent.partners.records), producer)


def _run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    run = do_replay(cfg, args.files, args.to, pace=args.pace, shift=args.shift_to_now)
    result = run.result
    _summary(run)
    for err in result.errors:
        print(f"gwtel replay: {err}", file=sys.stderr)
    if any(f.error is not None and f.frames == 0 for f in result.files):
        return 2
    if result.errors and not args.allow_truncated:
        return 2
    return 0


def _summary(run: ReplayRun) -> None:
    agent, seconds, partners, producer = run.agent, run.result.seconds, run.partners, run.producer
    c = agent.counters
    st = agent.meter.stats
    out = sys.stderr
    rate = c.packets_seen / seconds if seconds > 0 else 0.0
    print(f"packets {c.packets_seen:,} ({rate:,.0f}/s), decoded {c.packets_decoded:,}", file=out)
    if c.rejected:
        print("rejected " + ", ".join(f"{r} {n:,}" for r, n in sorted(c.rejected.items())), file=out)
    print(f"flows {st.flows_created:,}, records {c.records_emitted:,}, evicted {st.evicted:,}", file=out)
    print("records by partner " + ", ".join(f"{p} {n:,}" for p, n in sorted(partners.items())), file=out)
    if producer is not None:
        print(
            f"kafka acked {producer.acked:,}, spooled {producer.spooled:,}, pending in spool {producer.spool_pending:,}"
            f", dropped {producer.dropped:,}",
            file=out,
        )
