"""Old public captures: `gwtel run --pcap` keeps them, and the ledger counts rows the retention drops.

The capture is a zeek trace from 2012 in the shared test data ($GWTEL_TEST_DATA); the packet count it must
yield in ClickHouse comes from the data set's MANIFEST.tsv (tshark's count of its frames), not from the pipeline.
"""

from __future__ import annotations

import csv
import os
import re
import uuid
from pathlib import Path

import pytest

from gwtel.cli import main
from gwtel.config import GwtelConfig, load_config
from gwtel.pipeline import discard, isolated, prepare, run_pipeline
from processors.chclient import make_client

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CAPTURE = "zeek__ftp_ipv4.pcap"  # 2012-02-21, 95 IPv4 TCP frames


def data_dir() -> Path:
    value = os.environ.get("GWTEL_TEST_DATA")
    if not value or not (Path(value) / "pcaps").is_dir():
        pytest.fail("GWTEL_TEST_DATA must name the shared test data folder (with pcaps/)", pytrace=False)
    return Path(value)


def tshark_frames(name: str) -> int:
    with open(data_dir() / "MANIFEST.tsv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["local_name"].endswith("/" + name):
                m = re.search(r"\bframes=(\d+)", row["tshark_summary"])
                assert m, row["tshark_summary"]
                return int(m.group(1))
    raise AssertionError(f"{name} is not in MANIFEST.tsv")


def count(cfg: GwtelConfig, sql: str) -> int:
    client = make_client(cfg.clickhouse)
    try:
        return int(client.query(sql.replace("DB.", f"{cfg.clickhouse.database}.")).result_rows[0][0] or 0)
    finally:
        client.close()


def test_run_keeps_an_old_capture_in_its_own_database(capsys: pytest.CaptureFixture[str]) -> None:
    pcap = data_dir() / "pcaps" / CAPTURE
    frames = tshark_frames(CAPTURE)
    assert main(["run", "--pcap", str(pcap)]) == 0
    out = capsys.readouterr().out
    m = re.search(r"own database gwtel_run_(\w+) ", out)
    assert m, out
    cfg = isolated(load_config(), m.group(1))
    try:
        assert "before the tables' retention" in out
        assert count(cfg, "SELECT sum(packets_fwd + packets_rev) FROM DB.flows_raw") == frames
        assert count(cfg, "SELECT sum(packets) FROM DB.bandwidth_window WHERE window_s = 10") == frames
        assert count(cfg, "SELECT min(toYear(ts)) FROM DB.flows_raw") == 2012  # the timestamps as captured
    finally:
        discard(cfg)


def test_ledger_counts_rows_the_retention_drops() -> None:
    """In a database with the usual retention the old capture's rows vanish at insert: the ledger balances
    at once with them counted as dropped instead of waiting out its timeout."""
    own = isolated(load_config(), f"ttl_{uuid.uuid4().hex[:8]}")
    cfg = own.model_copy(update={"loader": own.loader.model_copy(update={"ttl_flows_raw_days": 15})})
    prepare(cfg)
    try:
        result = run_pipeline(cfg, data_dir() / "pcaps" / CAPTURE, ledger_timeout_s=120)
        assert result.records > 0
        assert (result.expired, result.rows_stored) == (result.records, 0)
        assert count(cfg, "SELECT count() FROM DB.flows_raw") == 0
    finally:
        discard(cfg)
