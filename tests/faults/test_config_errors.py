"""Configuration errors through the real `gwtel` process: a message naming the file, the key and the fix,
exit code 2, no traceback, and nothing moved (no database created, no consumer group offsets)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from gwtel.services.clickhouse import ClickHouseService
from gwtel.services.kafka import KafkaService
from tests.faults import support as s
from tests.ports import free_port

pytestmark = [pytest.mark.integration, *(pytest.mark.filterwarnings(w) for w in s.KAFKA_WARNINGS)]

GROUPS = """
partners:
  groups:
    japan: {countries: [JP], prefixes: [%s]}
    korea: {countries: [KR], prefixes: [%s]}
"""

TWICE = "partners:\n  groups:\n    japan: {countries: [JP]}\n    korea: {countries: [KR, JP]}\n"
CASES = {
    "unknown key": ("kafka: {bootstrp: '127.0.0.1:9092'}\n", ["kafka.bootstrp", "unknown key: remove it"]),
    "bad prefix": (
        GROUPS % ("203.0.113.300/24", "198.51.100.0/24"),
        ["partners.groups.japan.prefixes", "203.0.113.300/24"],
    ),
    "host bits set": (
        GROUPS % ("203.0.113.7/24", "198.51.100.0/24"),
        ["partners.groups.japan.prefixes", "203.0.113.7/24"],
    ),
    "overlapping partners": (
        GROUPS % ("203.0.113.0/24", "203.0.113.128/25"),
        ["partners", "203.0.113.0/24", "203.0.113.128/25", "japan", "korea"],
    ),
    "same country twice": (TWICE, ["partners", "JP", "japan", "korea"]),
    "bad bootstrap": ("kafka: {bootstrap: 'localhost'}\n", ["kafka.bootstrap", "host:port"]),
    "bad url": ("clickhouse: {url: '127.0.0.1:8123'}\n", ["clickhouse.url", "http://"]),
    "not yaml": ("kafka: [unclosed\n", ["not valid YAML"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_invalid_configuration_names_file_key_and_fix(case: str, tmp_path: Path) -> None:
    text, expected = CASES[case]
    config = tmp_path / "gwtel.yaml"
    config.write_text(text, encoding="utf-8")
    out = s.run_gwtel(["load", "--metrics-port", "0"], config, 60)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert str(config) in out.stderr, out.stderr
    for fragment in expected:
        assert fragment in out.stderr, (fragment, out.stderr)


def test_unreachable_endpoints_stop_before_any_data_moves(
    kafka_service: KafkaService, clickhouse_service: ClickHouseService, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:10]
    dead_kafka, dead_ch = f"127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    cases = {
        "kafka": (dead_kafka, clickhouse_service.endpoint(), ["kafka.bootstrap", dead_kafka, "gwtel up"]),
        "clickhouse": (kafka_service.endpoint(), dead_ch, ["clickhouse.url", dead_ch, "gwtel up"]),
    }
    for name, (bootstrap, url, expected) in cases.items():
        config = tmp_path / f"{name}.yaml"
        config.write_text(
            f"kafka: {{bootstrap: '{bootstrap}'}}\nclickhouse: {{url: '{url}', database: pre_{tag}}}\n"
            f"loader: {{group_id: pre-{tag}}}\n",
            encoding="utf-8",
        )
        out = s.run_gwtel(["load", "--metrics-port", "0"], config, 60)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert str(config) in out.stderr and "nothing was sent or stored" in out.stderr
        for fragment in expected:
            assert fragment in out.stderr, (fragment, out.stderr)
    admin = clickhouse_service.client()
    try:
        assert admin.query(f"SELECT count() FROM system.databases WHERE name = 'pre_{tag}'").result_rows == [(0,)]
    finally:
        admin.close()
    kadmin = KafkaAdminClient(bootstrap_servers=kafka_service.endpoint())
    try:
        assert f"pre-{tag}" not in {g["group_id"] for g in kadmin.list_groups()}
    finally:
        kadmin.close()
