"""The `collector:` section: listeners, exporters and interface map validated with actionable messages."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gwtel.config import GwtelConfig
from ingest.collect.config import CollectorConfig, parse_listen


def test_defaults_listen_on_the_three_protocols() -> None:
    cfg = GwtelConfig().collector
    assert [(x.protocol, x.port) for x in cfg.listeners()] == [("ipfix", 4739), ("netflow", 2055), ("sflow", 6343)]


def test_listen_urls() -> None:
    assert parse_listen("sflow://[::]:6343").host == "::"
    for bad, words in [
        ("udp://0.0.0.0:1", "scheme"),
        ("ipfix://0.0.0.0", "protocol://address:port"),
        ("ipfix://router:4739", "not an IP address"),
        ("ipfix://0.0.0.0:99999", "protocol://address:port"),
    ]:
        with pytest.raises(ValueError, match=words):
            parse_listen(bad)
    with pytest.raises(ValidationError, match="listed twice"):
        CollectorConfig(listen=("ipfix://0.0.0.0:4739", "netflow://0.0.0.0:4739"))


def test_exporters_and_interfaces() -> None:
    cfg = CollectorConfig.model_validate(
        {"exporters": [{"address": "2001:db8::0001", "interfaces": {"7": {"link": "sg-1"}}}]}
    )
    assert cfg.exporters[0].address == "2001:db8::1"
    assert cfg.exporters[0].interfaces[7].side == "external"
    for bad, words in [
        ({"exporters": [{"address": "router1"}]}, "not an IP address"),
        ({"exporters": [{"address": "192.0.2.1"}, {"address": "192.0.2.1"}]}, "listed twice"),
        ({"exporters": [{"address": "192.0.2.1", "interfaces": {0: {"link": "a"}}}]}, "ifIndex"),
        ({"exporters": [{"address": "192.0.2.1", "interfaces": {1: {"link": "a", "side": "up"}}}]}, "side"),
        ({"exporters": [{"address": "192.0.2.1", "sampling_rate": 0}]}, "sampling_rate"),
        ({"listen_on": []}, "listen_on"),
    ]:
        with pytest.raises(ValidationError, match=words):
            CollectorConfig.model_validate(bad)
