"""`gwtel verify --pcap FILE --expected FILE`: replay a capture through the whole pipeline and check the numbers.

The replay runs on its own topics, database, agent id and consumer groups (gwtel.pipeline.isolated), so repeated
verifies never mix with each other or with the main job's data; they are removed afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

from gwtel.compare import Comparison, compare
from gwtel.config import GwtelConfig, load_config
from gwtel.errors import UserError
from schemas.expected import Expected, ExpectedError, load


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "verify",
        help="replay a capture through the pipeline and compare ClickHouse with expected aggregates",
        description=(
            "Replay a capture through agent -> Kafka -> Flink -> loader -> ClickHouse on a private set of topics "
            "and a private database, then compare the per-partner aggregates in ClickHouse with an "
            "expected-aggregates file (written by `gwtel synth --expected` or by hand; see docs/verify.md). "
            "Bytes, packets and flows must match exactly, percentiles within the file's tolerance (one histogram "
            "bucket by default). Exit 0 when everything matches, 1 with a diff when something does not."
        ),
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pcap", type=Path, metavar="FILE", help="the capture to replay")
    src.add_argument(
        "--database", metavar="DB", help="no replay: compare what database DB already holds (e.g. the main job's)"
    )
    p.add_argument("--expected", type=Path, required=True, metavar="FILE", help="expected-aggregates JSON")
    p.add_argument("--keep", action="store_true", help="keep the run's database and topics for inspection")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from gwtel.pipeline import ReplayPass, discard, isolated, prepare, run_pipeline, start_services

    try:
        exp = load(args.expected)
    except ExpectedError as exc:
        raise UserError(str(exc)) from None
    base = load_config(args.config)
    if exp.window_s not in base.job.window_sizes_s:
        raise UserError(
            f"{args.expected}: window_s {exp.window_s} is not one the job emits ({list(base.job.window_sizes_s)}); "
            "change window_s in the file or job.window_sizes_s in the configuration"
        )
    if args.database is not None:
        return _report(compare_database(base, args.database, exp))
    if not args.pcap.is_file():
        raise UserError(f"capture file {args.pcap}: no such file")
    cfg = isolated(base, uuid.uuid4().hex[:10])

    def say(msg: str) -> None:
        print(f"    {msg}", flush=True)

    start_services(cfg)
    prepare(cfg)
    try:
        run_pipeline(cfg, [ReplayPass((args.pcap,), sampling_rate=exp.sampling_rate)], log=say)
        result = compare_database(cfg, cfg.clickhouse.database, exp)
    finally:
        if args.keep:
            t = cfg.kafka.topics
            print(f"kept database {cfg.clickhouse.database} and topics {t.flows}, {t.aggregates}", flush=True)
        else:
            discard(cfg)
    return _report(result)


def compare_database(cfg: GwtelConfig, database: str, exp: Expected) -> Comparison:
    from processors.chclient import make_client

    client = make_client(cfg.clickhouse, database="")
    try:
        sql = "SELECT count() FROM system.databases WHERE name = {d:String}"
        if not client.query(sql, parameters={"d": database}).result_rows[0][0]:
            raise UserError(f"ClickHouse at {cfg.clickhouse.url} has no database {database}")
        return compare(client, database, exp)
    finally:
        client.close()


def _report(result: Comparison) -> int:
    print(result.render(), flush=True)
    return 0 if result.ok else 1
