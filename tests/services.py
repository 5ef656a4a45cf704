"""A service of a test's own, started for the test and stopped after it; one that does not start fails the
test, never skips it."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterator
from typing import Any, Protocol, TypeVar

import pytest

from gwtel.errors import ServiceError


class _Service(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


S = TypeVar("S", bound=_Service)


@contextlib.contextmanager
def running(svc: S, what: str) -> Iterator[S]:
    try:
        svc.start()
    except ServiceError as exc:
        svc.stop()
        pytest.fail(f"{what} did not start: {exc}", pytrace=False)
    try:
        yield svc
    finally:
        svc.stop()


def flink_rest(endpoint: str, path: str, method: str = "GET") -> Any:
    """A Flink REST call (`endpoint` as FlinkCluster.endpoint()); its JSON answer, None when empty."""
    req = urllib.request.Request(f"{endpoint}{path}", method=method)
    with urllib.request.urlopen(req, timeout=5) as resp:
        body = resp.read()
    return json.loads(body) if body else None
