"""One pipeline run shared by the golden and corpus end-to-end tests (imported by conftest.py).

A Flink run costs tens of seconds, so every golden capture and the corpus go through agent -> Kafka -> Flink ->
loader -> ClickHouse together: each golden case on its own link id and hour, the corpus on link `corpus`
(its captures are years older than the golden ones). Topics and database are unique to the session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gwtel.config import GwtelConfig
from gwtel.pipeline import PipelineResult, ReplayPass, discard, isolated, prepare, run_pipeline
from gwtel.services.clickhouse import ClickHouseService
from gwtel.services.flink import FlinkRuntime
from gwtel.services.kafka import KafkaService
from ingest.sources import CaptureError, open_capture
from processors.chclient import make_client
from schemas import expected
from tests.golden.regen import CASES, expected_path, pcap_path

CORPUS_LINK = "corpus"


def golden_link(name: str) -> str:
    return f"golden-{name}"


def _first_ts(path: Path) -> int:
    try:
        with open_capture(path) as reader:
            return next((f.ts_ns for f in reader), 0)
    except CaptureError:
        return 0


def corpus_captures() -> list[Path]:
    """The corpus in the order of its first timestamps, so fewer flows reach the job behind its watermark."""
    value = os.environ.get("GWTEL_TEST_DATA")
    if not value or not (Path(value) / "pcaps").is_dir():
        pytest.fail("GWTEL_TEST_DATA must name the shared test data folder (with pcaps/)", pytrace=False)
    files = sorted(p for p in (Path(value) / "pcaps").rglob("*") if p.is_file())
    return sorted(files, key=_first_ts)


@dataclass
class SharedRun:
    cfg: GwtelConfig
    client: Any
    result: PipelineResult
    corpus: list[Path]


@pytest.fixture(scope="session")
def shared_run(
    kafka_service: KafkaService,
    clickhouse_service: ClickHouseService,
    flink_runtime: FlinkRuntime,
    kafka_config: GwtelConfig,
) -> Iterator[SharedRun]:
    cfg = isolated(kafka_config, uuid.uuid4().hex[:10])
    cfg = cfg.model_copy(
        update={"clickhouse": cfg.clickhouse.model_copy(update={"url": clickhouse_service.endpoint()})}
    )
    prepare(cfg)
    corpus = corpus_captures()
    passes = [ReplayPass(tuple(corpus), link_id=CORPUS_LINK)]
    for case in CASES:
        exp = expected.load(expected_path(case))
        passes.append(ReplayPass((pcap_path(case),), link_id=golden_link(case.name), sampling_rate=exp.sampling_rate))
    try:
        result = run_pipeline(cfg, passes, ledger_timeout_s=240)
        client = make_client(cfg.clickhouse)
        try:
            yield SharedRun(cfg, client, result, corpus)
        finally:
            client.close()
    finally:
        discard(cfg)
