"""Configuration: embedded defaults work; mistakes are reported with file, key and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from gwtel.config import ConfigError, GwtelConfig, load_config


def test_defaults_without_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GWTEL_CONFIG", raising=False)
    cfg = load_config(None)
    assert cfg == GwtelConfig()
    assert cfg.kafka.topics.flows == "gwtel.flows.v1"


def test_file_overrides(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("kafka:\n  bootstrap: broker1:9092,broker2:9092\n  partitions: 6\n")
    cfg = load_config(p)
    assert cfg.kafka.partitions == 6
    assert cfg.kafka.bootstrap == "broker1:9092,broker2:9092"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kafka:\n  bootstrapp: x:1\n", "kafka.bootstrapp: unknown key"),
        ("kafka:\n  bootstrap: nohostport\n", "kafka.bootstrap"),
        ("clickhouse:\n  url: localhost:8123\n", "must start with http"),
        ("kafka:\n  partitions: 0\n", "kafka.partitions"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("kafka: [unclosed\n", "not valid YAML"),
        ("job:\n  flink:\n    pipeline.jars: file:///x.jar\n", "job.flink may not set 'pipeline.jars'"),
        ("job:\n  flink:\n    parallelism.default: 4\n", "use job.parallelism"),
        ("job:\n  flink:\n    rest.port: [8081]\n", "job.flink"),
        ("job:\n  flink:\n    pipeline.auto-watermark-interval: 1 s\n", "use job.watermark_interval_ms"),
        ("job:\n  watermark_interval_ms: 0\n", "job.watermark_interval_ms"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert str(p) in str(info.value)
    assert expected in str(info.value)


def test_job_flink_settings_are_strings_as_flink_writes_them(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("job:\n  flink:\n    execution.target: remote\n    rest.port: 8081\n    a.flag: true\n")
    assert load_config(p).job.flink == {"execution.target": "remote", "rest.port": "8081", "a.flag": "true"}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yaml")


def test_low_latency_profile_is_valid_and_keeps_its_promise() -> None:
    from processors.job import warnings_for

    path = Path(__file__).resolve().parents[2] / "deploy" / "profiles" / "low-latency.yaml"
    cfg = load_config(path)
    assert warnings_for(cfg) == []  # no record's packets span windows
    # A 10 s window row is due after the window (the agent cuts records at its end), the bound, one
    # watermark interval and at most one checkpoint and one loader batch: each shorter than the defaults.
    job, default = cfg.job, GwtelConfig().job
    assert job.watermark_from == "export_ns"
    due_ms = job.watermark_bound_ms + job.watermark_interval_ms + job.checkpoint_interval_ms
    default_due_ms = default.watermark_bound_ms + default.watermark_interval_ms + default.checkpoint_interval_ms
    assert due_ms / 1000 + cfg.loader.batch_seconds <= 5
    assert due_ms < default_due_ms and cfg.loader.batch_seconds < GwtelConfig().loader.batch_seconds
