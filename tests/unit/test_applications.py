"""The `applications:` section: what is refused at start-up (and how the message says so), and the rules'
reference evaluation against hand-worked flows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from gwtel.config import ConfigError, load_config
from ingest.applications import AppClassifier, ApplicationsConfig

RULES: dict[str, Any] = {
    "default": "bulk",
    "rules": [
        {"class": "trading", "protocols": ["tcp"], "server_ports": ["9000-9099", 7001], "dscp": ["EF"],
         "remote_prefixes": ["203.0.113.0/25", "2001:db8:77::/48"]},
        {"class": "vr", "protocols": ["udp"], "server_ports": ["40000-40999"]},
        {"class": "trading", "asns": [64500], "links": ["hk-1"]},
        {"class": "voice", "dscp": [46, "cs5"], "domestic_prefixes": ["10.9.0.0/16"]},
    ],
}  # fmt: skip


def classify(apps: AppClassifier, **kw: Any) -> str:
    flow: dict[str, Any] = dict(protocol=6, server_port=443, dscp=0, src_ip="10.0.0.1", dst_ip="203.0.113.5",
                                remote_is_initiator=False, remote_asn=0, link_id="link-0")  # fmt: skip
    flow.update(kw)
    return apps.classify(**flow)


def test_rules_first_match_wins_then_the_default() -> None:
    apps = AppClassifier(ApplicationsConfig.model_validate(RULES))
    assert apps.cfg.classes() == ["trading", "vr", "voice", "bulk"]
    assert classify(apps, server_port=9000, dscp=46) == "trading"
    assert classify(apps, server_port=7001, dscp=46) == "trading"
    # the remote end opened the flow: the remote prefix is the initiator's address
    assert classify(apps, server_port=9099, dscp=46, src_ip="203.0.113.9", dst_ip="10.0.0.1",
                    remote_is_initiator=True) == "trading"  # fmt: skip
    assert classify(apps, server_port=9000, dscp=46, dst_ip="203.0.113.128") == "bulk"  # outside the /25
    assert classify(apps, server_port=9000, dscp=0) == "bulk"  # not marked EF
    assert classify(apps, server_port=9100, dscp=46) == "bulk"
    assert classify(apps, protocol=17, server_port=9000, dscp=46) == "bulk"
    assert classify(apps, server_port=9000, dscp=46, src_ip="2001:db8::1", dst_ip="2001:db8:77::5") == "trading"
    assert classify(apps, protocol=17, server_port=40999) == "vr"
    assert classify(apps, protocol=17, server_port=41000) == "bulk"
    assert classify(apps, protocol=1, server_port=40000) == "bulk"  # ICMP's type<<8|code is no port
    # every condition of a rule must hold: the ASN alone is not enough, nor the link alone
    assert classify(apps, remote_asn=64500, link_id="hk-1") == "trading"
    assert classify(apps, remote_asn=64500) == "bulk"
    assert classify(apps, link_id="hk-1") == "bulk"
    # the domestic prefix is the end that is not remote
    assert classify(apps, protocol=17, server_port=5060, dscp=40, src_ip="10.9.1.1") == "voice"
    assert classify(apps, protocol=17, server_port=5060, dscp=40, src_ip="10.8.1.1") == "bulk"
    assert classify(apps, protocol=17, server_port=5060, dscp=40, src_ip="203.0.113.5", dst_ip="10.9.1.1",
                    remote_is_initiator=True) == "voice"  # fmt: skip


def test_no_rules_puts_every_flow_in_the_default_class() -> None:
    apps = AppClassifier(ApplicationsConfig())
    assert apps.cfg.classes() == ["default"]
    assert classify(apps, dscp=46, server_port=9000) == "default"


def test_engine_rules_carry_packed_prefixes_and_ranges() -> None:
    default, rules = AppClassifier(ApplicationsConfig.model_validate(RULES)).engine_rules()
    assert default == "bulk"
    cls, protos, ports, dscp, domestic, remote, asns, links = rules[0]
    assert (cls, protos, ports, dscp, domestic, asns, links) == ("trading", [6], [(9000, 9099), (7001, 7001)],
                                                                 [46], [], [], [])  # fmt: skip
    assert remote == [(bytes([203, 0, 113, 0]), 25), (bytes.fromhex("20010db8007700000000000000000000"), 48)]
    assert rules[3][3] == [46, 40]


def _error(raw: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as exc:
        ApplicationsConfig.model_validate(raw)
    return str(exc.value)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"class": "x"}, "has no condition and would claim every flow"),
        ({"class": "VR", "protocols": ["udp"]}, "'VR' is not a class name"),
        ({"class": "vr", "protocols": ["quic"]}, "'quic' is not a protocol"),
        ({"class": "vr", "protocols": [300]}, "300 is not a protocol"),
        ({"class": "vr", "server_ports": ["2000-1000"]}, "a range is written low-high"),
        ({"class": "vr", "server_ports": [70000]}, "ports are 0-65535"),
        ({"class": "vr", "server_ports": ["http"]}, "is not a port or port range"),
        ({"class": "vr", "dscp": [184]}, "looks like a whole ToS byte"),
        ({"class": "vr", "dscp": ["AF51"]}, "'AF51' is not a DSCP value"),
        ({"class": "vr", "remote_prefixes": ["203.0.113.1/24"]}, "host bits zero"),
        ({"class": "vr", "asns": [0]}, "ASN 0 is out of range"),
        ({"class": "vr", "links": [" "]}, "an empty link id"),
        ({"class": "vr", "protocols": ["icmp"], "server_ports": [1]}, "only protocols without ports"),
        ({"class": "vr", "protocol": ["udp"]}, "Extra inputs are not permitted"),
    ],
)
def test_bad_rules_are_refused_with_what_to_do(rule: dict[str, Any], expected: str) -> None:
    msg = _error({"rules": [rule]})
    assert expected in msg
    assert "rules.0" in msg  # the key of the faulty rule


def test_class_count_is_bounded() -> None:
    rules = [{"class": f"c{i}", "server_ports": [i]} for i in range(40)]
    assert "at most 32" in _error({"rules": rules})
    assert "is not a class name" in _error({"default": "Bulk"})


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gwtel.yaml"
    path.write_text(text)
    return path


def test_objectives_must_name_a_class_once_classes_are_configured(tmp_path: Path) -> None:
    partners = "partners:\n  groups:\n    japan:\n      countries: [JP]\n      slo: {trading: 60, vr: 8}\n"
    # without rules every flow is in the default class and objectives are not cross-checked; a configuration
    # written back out (every section, `applications` with no rules) loads again
    cfg = load_config(_config(tmp_path, partners))
    assert cfg.applications.classes() == ["default"]
    dumped = yaml.safe_dump(cfg.model_dump(mode="json"))
    assert load_config(_config(tmp_path, dumped)).applications == cfg.applications
    apps = "applications:\n  rules:\n    - {class: trading, protocols: [tcp], server_ports: [9000]}\n"
    with pytest.raises(ConfigError) as exc:
        load_config(_config(tmp_path, partners + apps))
    assert "partners.groups.japan.slo.vr: no application class 'vr'" in str(exc.value)
    assert "add a rule for it under applications.rules" in str(exc.value)
    ok = apps + "    - {class: vr, protocols: [udp], server_ports: ['40000-40999']}\n"
    cfg = load_config(_config(tmp_path, partners + ok))
    assert cfg.applications.classes() == ["trading", "vr", "default"]


def test_a_bad_rule_in_the_configuration_file_names_its_key(tmp_path: Path) -> None:
    text = "applications:\n  rules:\n    - {class: vr, protocols: [udp], server_ports: ['9-1']}\n"
    with pytest.raises(ConfigError) as exc:
        load_config(_config(tmp_path, text))
    assert "applications.rules.0.server_ports.0" in str(exc.value)
