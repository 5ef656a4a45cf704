"""`gwtel capture --iface IF`: meter live traffic of one interface through the agent into Kafka (or JSON lines)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from contextlib import ExitStack
from types import FrameType

from gwtel.agent_run import open_output, serve_agent_metrics
from gwtel.config import load_config
from gwtel.errors import UserError
from ingest import linktypes
from ingest.agent import Agent
from ingest.capture import CaptureResult, capture_live
from ingest.classify import PartnerClassifier
from ingest.seqstore import SeqStore
from ingest.sources.live import DEFAULT_SNAPLEN, LiveOptions, LiveSource


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "capture",
        help="meter live traffic of a network interface into Kafka",
        description=(
            "Capture packets on an interface (AF_PACKET; needs CAP_NET_RAW), meter flows and send one FlowRecord "
            "per finished flow to Kafka, or write them as JSON lines with --to. SIGINT or SIGTERM exports every "
            "flow still open and exits. See docs/capture.md."
        ),
    )
    p.add_argument("--iface", required=True, metavar="IF", help="interface to capture on, e.g. eth1")
    p.add_argument("--bpf", metavar="FILTER", help="tcpdump filter expression, compiled with tcpdump -ddd")
    p.add_argument(
        "--snaplen",
        type=int,
        default=DEFAULT_SNAPLEN,
        metavar="N",
        help=f"bytes kept per packet (default {DEFAULT_SNAPLEN}: headers only; byte counts use the IP length)",
    )
    p.add_argument(
        "--sample",
        type=int,
        metavar="N",
        help="keep 1 packet in N, at random, in the kernel (default agent.sampling_rate)",
    )
    p.add_argument(
        "--to", default="kafka", metavar="DEST", help="kafka (default), jsonl:PATH, or - for JSON lines on stdout"
    )
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: until SIGINT/SIGTERM)")
    p.add_argument("--no-promisc", action="store_true", help="do not put the interface in promiscuous mode")
    # Also accepted after the subcommand; SUPPRESS keeps `gwtel --config F capture` working.
    p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="configuration file")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    if args.duration is not None and args.duration <= 0:
        raise UserError(f"--duration {args.duration}: give a positive number of seconds")
    sample = cfg.agent.sampling_rate if args.sample is None else args.sample
    opts = LiveOptions(args.iface, snaplen=args.snaplen, sample=sample, bpf=args.bpf, promisc=not args.no_promisc)
    stop = threading.Event()
    with ExitStack() as stack:
        source = stack.enter_context(LiveSource(opts))
        write, producer = open_output(cfg, args.to, stack)
        home = cfg.local.home_path()
        seqs = SeqStore(home / "agent" / f"{cfg.agent.agent_id}.seq")
        agent = Agent(cfg.agent, PartnerClassifier(cfg.partners), write, first_seq=seqs.first(), sampling_rate=sample)
        endpoint = serve_agent_metrics(cfg, agent, producer, required=True)
        assert endpoint is not None
        stack.callback(endpoint.close)
        _on_signals(stop, stack)
        print(
            f"gwtel capture: capturing on {args.iface} ({linktypes.name(source.linktype)}, snaplen {opts.snaplen}, "
            f"sampling 1:{sample}, filter {args.bpf or 'none'}); metrics on {endpoint.url}",
            file=sys.stderr,
            flush=True,
        )
        try:
            result = capture_live(agent, source, stop, duration_s=args.duration)
        finally:
            seqs.used(agent.meter.next_seq)  # also after a failure: records already sent keep their numbers
        _summary(agent, result)
    return 0


def _on_signals(stop: threading.Event, stack: ExitStack) -> None:
    """SIGINT and SIGTERM ask the capture loop to stop; it then exports every open flow."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.signal(sig, handler)
        stack.callback(signal.signal, sig, previous)


def _summary(agent: Agent, result: CaptureResult) -> None:
    c = agent.counters
    st = agent.meter.stats
    out = sys.stderr
    print(
        f"gwtel capture: stopped ({result.stopped_by}) after {result.seconds:.1f}s: packets {c.packets_seen:,}, "
        f"decoded {c.packets_decoded:,}, kernel accepted {c.kernel_packets:,}, kernel drops {c.kernel_drops:,}",
        file=out,
    )
    if c.rejected:
        print("rejected " + ", ".join(f"{r} {n:,}" for r, n in sorted(c.rejected.items())), file=out)
    print(f"flows {st.flows_created:,}, records {c.records_emitted:,}, evicted {st.evicted:,}", file=out)
