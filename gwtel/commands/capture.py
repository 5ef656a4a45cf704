"""`gwtel capture --iface IF`: meter live traffic on the native engine's rings into Kafka (or JSON lines)."""

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
from ingest.agent_metrics import RingCollector
from ingest.applications import AppClassifier
from ingest.capture import CaptureResult, LiveCapture
from ingest.classify import PartnerClassifier
from ingest.native import NativeAgent
from ingest.seqstore import SeqStore
from ingest.sources.live import DEFAULT_SNAPLEN, LiveOptions


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "capture",
        help="meter live traffic of a network interface into Kafka",
        description=(
            "Capture packets on interfaces (AF_PACKET TPACKET_V3 rings metered by the native engine; needs "
            "CAP_NET_RAW), meter flows and send one FlowRecord per finished flow to Kafka, or write them as JSON "
            "lines with --to. SIGINT or SIGTERM exports every flow still open and exits. See docs/capture.md."
        ),
    )
    p.add_argument(
        "--iface", required=True, action="append", metavar="IF", help="interface to capture on, e.g. eth1 (repeatable)"
    )
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
        help="1:N sampling in the kernel (default agent.sampling_rate)",
    )
    p.add_argument(
        "--sample-mode",
        choices=("packet", "flow"),
        help="packet: each packet at random; flow: whole flows by a symmetric hash (default "
        "agent.capture.sampling_mode)",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="rings per interface, sharing it by flow (default agent.capture.workers)",
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
    cc = cfg.agent.capture
    sample = cfg.agent.sampling_rate if args.sample is None else args.sample
    mode = args.sample_mode or cc.sampling_mode
    options = [
        LiveOptions(
            iface,
            snaplen=args.snaplen,
            sample=sample,
            sample_mode=mode,
            bpf=args.bpf,
            promisc=not args.no_promisc,
            block_size=cc.block_size_kib * 1024,
            block_count=cc.block_count,
            block_timeout_ms=cc.block_timeout_ms,
            workers=cc.workers if args.workers is None else args.workers,
            fanout_defrag=cc.fanout_defrag,
        )
        for iface in args.iface
    ]
    stop = threading.Event()
    with ExitStack() as stack:
        write, producer = open_output(cfg, args.to, stack)
        home = cfg.local.home_path()
        seqs = SeqStore(home / "agent" / f"{cfg.agent.agent_id}.seq")
        agent = NativeAgent(
            cfg.agent,
            PartnerClassifier(cfg.partners),
            write,
            first_seq=seqs.first(),
            sampling_rate=sample,
            sampling_mode=mode,
            apps=AppClassifier(cfg.applications),
        )
        capture = LiveCapture(agent, options)
        stack.callback(capture.close)
        rings = RingCollector(cfg.agent.link_id, capture.ring_stats)
        endpoint = serve_agent_metrics(cfg, agent, producer, required=True, extra=(rings,))
        assert endpoint is not None
        stack.callback(endpoint.close)
        _on_signals(stop, stack)
        w = capture.workers[0]
        print(
            f"gwtel capture: capturing on {', '.join(args.iface)} ({linktypes.name(w.linktype)}, snaplen "
            f"{args.snaplen}, {w.opts.workers} ring(s) of {w.opts.block_count} x {w.opts.block_size >> 10} KiB each, "
            f"sampling 1:{sample} by {mode}, filter {args.bpf or 'none'}); metrics on {endpoint.url}",
            file=sys.stderr,
            flush=True,
        )
        try:
            result = capture.run(stop, duration_s=args.duration)
        finally:
            seqs.used(agent.meter.next_seq)  # also after a failure: records already sent keep their numbers
        _summary(agent, capture, result)
    return 0


def _on_signals(stop: threading.Event, stack: ExitStack) -> None:
    """SIGINT and SIGTERM ask the capture loop to stop; it then exports every open flow."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.signal(sig, handler)
        stack.callback(signal.signal, sig, previous)


def _summary(agent: NativeAgent, capture: LiveCapture, result: CaptureResult) -> None:
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
    for r in capture.ring_stats():
        k = r.kernel
        print(
            f"ring {r.iface}/{r.worker}: kernel accepted {k.packets:,}, drops {k.drops:,}, ring full "
            f"{k.freeze_q_cnt:,} times, reopened {r.reopened}",
            file=out,
        )
