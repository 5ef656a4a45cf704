"""A service that cannot start stops the main job with its name, the cause and what to try."""

from __future__ import annotations

import pytest

from gwtel.config import GwtelConfig
from gwtel.errors import ServiceError
from gwtel.pipeline import isolated, start_services
from gwtel.services import registry


class _Broken:
    name = "kafka"

    def start(self) -> None:
        raise ServiceError("kafka did not become healthy within 60s; last lines of kafka.log:\nAddress already in use")

    def endpoint(self) -> str:
        return "127.0.0.1:1"


def test_a_service_that_cannot_start_is_named_with_what_to_try(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "build", lambda cfg, home=None: [_Broken()])
    with pytest.raises(ServiceError) as info:
        start_services(GwtelConfig())
    msg = str(info.value)
    assert msg.startswith("the kafka service could not start, so no data moved.")
    assert "Address already in use" in msg and "gwtel status" in msg and "local.ports" in msg


def test_isolated_runs_share_nothing_and_keep_old_captures() -> None:
    base = GwtelConfig()
    a, b = isolated(base, "a1"), isolated(base, "b2")
    for x in (a, b):
        assert x.clickhouse.database != base.clickhouse.database
        assert set(x.kafka.topics.model_dump().values()).isdisjoint(base.kafka.topics.model_dump().values())
        assert min(x.loader.ttl_flows_raw_days, x.loader.ttl_window_days) >= (2026 - 1970) * 366
    assert a.kafka.topics.flows != b.kafka.topics.flows
    assert (a.agent.agent_id, a.job.group_id, a.loader.group_id, a.job.transactional_id_prefix) != (
        b.agent.agent_id,
        b.job.group_id,
        b.loader.group_id,
        b.job.transactional_id_prefix,
    )
