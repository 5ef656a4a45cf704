"""Session fixture for the real local Prometheus, and a free port for test metrics endpoints.

Prometheus runs under the configured home (`$GWTEL_HOME`), so a Prometheus already started there by
`gwtel up` is reused and left running; one started here is stopped at the end of the session.
A Prometheus that does not start fails the tests that need it.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest

from gwtel.config import load_config
from gwtel.errors import ServiceError
from gwtel.services.prometheus import PrometheusService

# Ports reserved for test metrics endpoints (others are used by Kafka, ClickHouse and Prometheus).
TEST_METRICS_PORTS = range(9480, 9491)


@pytest.fixture(scope="session")
def prometheus() -> Iterator[PrometheusService]:
    cfg = load_config()
    svc = PrometheusService(cfg, cfg.local.home_path())
    started_here = not (svc.running() and svc.health().ok)
    failure = None
    try:
        svc.start()
    except ServiceError as exc:
        failure = str(exc)
    if failure is not None:
        pytest.fail(f"the local Prometheus did not start: {failure}", pytrace=False)
    yield svc
    if started_here:
        svc.stop()


def free_metrics_port() -> int:
    """The first port of the test range nothing listens on."""
    for port in TEST_METRICS_PORTS:
        with contextlib.suppress(OSError), socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
            return port
    pytest.fail(f"no free port for a test metrics endpoint in {TEST_METRICS_PORTS}", pytrace=False)


@pytest.fixture
def metrics_port() -> int:
    return free_metrics_port()
