"""`gwtel aggregate`: the Flink aggregation job on the local MiniCluster (Kafka flows -> Kafka aggregates)."""

from __future__ import annotations

import argparse
import sys

from gwtel import preflight
from gwtel.config import load_config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "aggregate",
        help="run the Flink job: per-partner bandwidth and latency windows",
        description=(
            "Read FlowRecords from Kafka, aggregate them per event-time window x partner x direction x link, "
            "and write aggregates, late records and malformed records to their Kafka topics (exactly once). "
            "Runs until interrupted, or with --bounded until the offsets present at start are read."
        ),
    )
    p.add_argument(
        "--bounded", action="store_true", help="stop after the records present in the topic at start (replay)"
    )
    p.add_argument(
        "--from-checkpoint",
        metavar="PATH|latest",
        default=None,
        help=(
            "resume from a retained checkpoint: `latest` (the newest under job.checkpoint_dir) or a "
            "chk-N/savepoint folder; offsets and window state come from it"
        ),
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    preflight.check_kafka_login(cfg.kafka)
    # Imported here: pyflink is slow to import and only this command needs it.
    from processors import checkpoints
    from processors.job import checkpoint_dir, run_job, warnings_for

    for warning in warnings_for(cfg):
        print(f"gwtel aggregate: warning: {warning}", file=sys.stderr)
    restore = None
    if args.from_checkpoint is not None:
        restore = checkpoints.resolve(args.from_checkpoint, checkpoint_dir(cfg))
    topics = cfg.kafka.topics
    print(
        f"aggregating {topics.flows} -> {topics.aggregates} (late: {topics.late}, malformed: "
        f"{topics.dead_letter}); windows {', '.join(f'{w} s' for w in cfg.job.window_sizes_s)}"
        f"{'; bounded' if args.bounded else ''}{f'; resuming from {restore}' if restore else ''}",
        flush=True,
    )

    def started(job_id: str, port: int) -> None:
        print(f"job {job_id} running; metrics on http://127.0.0.1:{port}/metrics", flush=True)

    run_job(cfg, bounded=args.bounded, restore_from=restore, on_start=started)
    return 0
