"""Partner configuration: the packaged default loads, and every ambiguity is rejected with its key and fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gwtel.config import GwtelConfig
from gwtel.errors import UserError
from ingest.partners import PartnersConfig, load_partners


def _cfg(groups: dict[str, Any], **extra: Any) -> PartnersConfig:
    return PartnersConfig.model_validate({"groups": groups, **extra})


def _error(groups: dict[str, Any], **extra: Any) -> str:
    with pytest.raises(ValidationError) as info:
        _cfg(groups, **extra)
    return str(info.value)


def test_default_has_the_documented_groups() -> None:
    cfg = PartnersConfig.default()
    assert set(cfg.groups) == {"japan", "korea", "belt_and_road"}
    assert cfg.fallback == "other"
    assert cfg.domestic.countries == ["CN"]
    assert cfg.private_is_domestic is True
    assert cfg.groups["japan"].countries == ["JP"]
    assert cfg.groups["korea"].countries == ["KR"]
    bri = cfg.groups["belt_and_road"]
    # Separate groups and the domestic side never appear in the Belt and Road list.
    assert {"JP", "KR", "CN", "IT", "PA"}.isdisjoint(bri.countries)
    assert {"RU", "PK", "KZ", "SG", "GR", "NZ"} <= set(bri.countries)
    assert len(bri.countries) == len(set(bri.countries)) == 148
    assert "yidaiyilu.gov.cn" in bri.source


def test_main_config_uses_the_packaged_default() -> None:
    assert GwtelConfig().partners == PartnersConfig.default()


def test_omitting_groups_keeps_defaults_and_giving_them_replaces() -> None:
    assert set(PartnersConfig.model_validate({"private_is_domestic": False}).groups) == {
        "japan",
        "korea",
        "belt_and_road",
    }
    assert set(_cfg({"vietnam": {"countries": ["VN"]}}).groups) == {"vietnam"}


def test_prefix_entries_accept_strings_and_mappings_with_asn() -> None:
    cfg = _cfg({"japan": {"prefixes": ["203.0.113.0/24", {"prefix": "2001:db8::/32", "asn": 2914}]}})
    entries = cfg.groups["japan"].prefixes
    assert [(e.prefix, e.asn) for e in entries] == [("203.0.113.0/24", 0), ("2001:db8::/32", 2914)]


def test_bad_cidr_names_key_and_fix() -> None:
    msg = _error({"japan": {"prefixes": ["203.0.113.1/24"]}})
    assert "groups.japan.prefixes.0" in msg
    assert "host bits zero" in msg
    assert "groups.japan.prefixes.0" in _error({"japan": {"prefixes": ["300.0.0.0/8"]}})


def test_invalid_country_code() -> None:
    msg = _error({"japan": {"countries": ["XX"]}})
    assert "groups.japan.countries.0" in msg and "ISO 3166-1 alpha-2" in msg
    assert "did you mean 'JP'" in _error({"japan": {"countries": ["jp"]}})


def test_country_in_two_groups() -> None:
    msg = _error({"japan": {"countries": ["JP"]}, "east_asia": {"countries": ["KR", "JP"]}})
    assert "groups.east_asia.countries[1]" in msg
    assert "groups.japan.countries[0]" in msg
    assert "one group only" in msg


def test_domestic_country_in_a_group() -> None:
    msg = _error({"asia": {"countries": ["CN"]}})
    assert "groups.asia.countries[0]" in msg and "domestic.countries[0]" in msg


def test_overlapping_prefixes_name_both_groups_and_prefixes() -> None:
    msg = _error(
        {
            "japan": {"prefixes": ["203.0.112.0/23"]},
            "korea": {"prefixes": ["198.51.100.0/24", "203.0.113.0/24"]},
        }
    )
    assert "groups.korea.prefixes[1]=203.0.113.0/24" in msg
    assert "groups.japan.prefixes[0]=203.0.112.0/23" in msg
    assert "'korea' vs 'japan'" in msg
    assert "198.51.100.0/24" not in msg  # the disjoint one is not blamed


def test_overlap_with_domestic_prefixes_and_ipv6() -> None:
    msg = _error({"japan": {"prefixes": ["2001:db8:1::/48"]}}, domestic={"prefixes": ["2001:db8::/32"]})
    assert "domestic.prefixes[0]=2001:db8::/32" in msg and "groups.japan.prefixes[0]=2001:db8:1::/48" in msg


def test_nested_prefixes_of_one_group_are_allowed_and_disjoint_ones_too() -> None:
    cfg = _cfg(
        {
            "japan": {"prefixes": ["203.0.112.0/23", "203.0.113.0/24"]},
            "korea": {"prefixes": ["203.0.114.0/24"]},
        }
    )
    assert len(cfg.groups["japan"].prefixes) == 2


def test_link_id_in_two_groups() -> None:
    msg = _error({"japan": {"links": ["qd-jp-1"]}, "korea": {"links": ["qd-jp-1"]}})
    assert "groups.korea.links[0]" in msg and "groups.japan.links[0]" in msg


def test_asn_in_two_groups_and_out_of_range() -> None:
    assert "groups.korea.asns[0]" in _error({"japan": {"asns": [2914]}, "korea": {"asns": [2914]}})
    assert "out of range" in _error({"japan": {"asns": [0]}})


def test_empty_group() -> None:
    msg = _error({"japan": {"countries": ["JP"]}, "korea": {"description": "todo"}})
    assert "groups.korea" in msg and "empty" in msg and "remove it" in msg


def test_reserved_and_badly_named_groups() -> None:
    assert "reserved" in _error({"other": {"countries": ["JP"]}})
    assert "reserved" in _error({"domestic": {"countries": ["JP"]}})
    assert "lower-case" in _error({"Japan": {"countries": ["JP"]}})


def test_unknown_key_is_rejected() -> None:
    msg = _error({"japan": {"countrys": ["JP"]}})
    assert "groups.japan.countrys" in msg


def test_slo_thresholds() -> None:
    cfg = _cfg({"japan": {"countries": ["JP"], "slo": {"vr": 8, "trading": 30.5}}})
    assert cfg.groups["japan"].slo == {"vr": 8.0, "trading": 30.5}
    assert "positive" in _error({"japan": {"countries": ["JP"], "slo": {"vr": 0}}})


def test_load_partners_names_the_file(tmp_path: Path) -> None:
    good = tmp_path / "ok.yaml"
    good.write_text("groups:\n  japan:\n    countries: [JP]\n", encoding="utf-8")
    assert set(load_partners(good).groups) == {"japan"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups:\n  japan:\n    countries: [JP]\n  korea:\n    countries: [JP]\n", encoding="utf-8")
    with pytest.raises(UserError) as info:
        load_partners(bad)
    text = str(info.value)
    assert str(bad) in text and "groups.korea.countries[0]" in text and "one group only" in text
    with pytest.raises(UserError, match="cannot read"):
        load_partners(tmp_path / "missing.yaml")
