"""Session fixtures for the local Kafka broker and the Flink runtime (imported by conftest.py).

The broker starts once per test session in `$GWTEL_HOME` (or a fresh temporary home) with the ports of the
configuration (`$GWTEL_CONFIG` or the defaults). A broker that was already running there (`gwtel up`) is
reused and left running; one this session started is stopped at the end. A broker that does not start is
an error, never a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gwtel.config import GwtelConfig, load_config
from gwtel.errors import ServiceError
from gwtel.services.flink import FlinkRuntime
from gwtel.services.kafka import KafkaService


@pytest.fixture(scope="session")
def kafka_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("GWTEL_HOME")
    if env:
        return Path(env).expanduser().resolve()
    return tmp_path_factory.mktemp("gwtel-home")


@pytest.fixture(scope="session")
def kafka_config() -> GwtelConfig:
    return load_config()


@pytest.fixture(scope="session")
def kafka_service(kafka_config: GwtelConfig, kafka_home: Path) -> Iterator[KafkaService]:
    svc = KafkaService(kafka_config, kafka_home)
    already_running = svc.running() and svc.health().ok
    try:
        svc.start()
    except ServiceError as exc:
        pytest.fail(f"the local Kafka broker did not start: {exc}", pytrace=False)
    yield svc
    if not already_running:
        svc.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_service: KafkaService) -> str:
    return kafka_service.endpoint()


@pytest.fixture
def kafka_topic(kafka_service: KafkaService) -> Callable[..., str]:
    """Create a uniquely named topic: `kafka_topic("flows", partitions=3)` -> "test.flows.<uuid>"."""

    def make(stem: str = "t", partitions: int = 1) -> str:
        name = f"test.{stem}.{uuid.uuid4().hex[:12]}"
        kafka_service.ensure_topics([name], partitions=partitions)
        return name

    return make


@pytest.fixture(scope="session")
def flink_runtime(kafka_config: GwtelConfig, kafka_home: Path) -> FlinkRuntime:
    rt = FlinkRuntime(kafka_config, kafka_home)
    try:
        rt.start()  # fetches the connector jar and checks java and pyflink
    except ServiceError as exc:
        pytest.fail(f"the Flink runtime is not usable: {exc}", pytrace=False)
    return rt
