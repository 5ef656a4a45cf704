"""Crypto-PAn address anonymisation: the Python reference against the published vectors and its properties, the
key's configuration, and both engines of the agent and of the collector anonymising exactly the addresses (the
same records as without, classification included, apart from src_ip/dst_ip)."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from pathlib import Path

import gwtel_native
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ingest.anonymise import CryptoPan, TextAnonymiser
from ingest.anonymise_config import AnonymiseConfig, AnonymiseKeyError, load_key
from ingest.applications import NO_CLASSES
from ingest.collect.config import CollectorConfig
from ingest.collect.decoded import Exported
from ingest.collect.records import RecordBuilder
from ingest.config import AgentConfig
from ingest.native import record_args
from ingest.sinks import EncodedBatch
from ingest.synth import SynthConfig, generate
from schemas.flow_record import FlowRecord
from tests.engines import same_records
from tests.unit.test_collect_native_records import COLLECTOR, _classifier, _framed

VECTORS = Path(__file__).parent.parent / "data" / "cryptopan_vectors.txt"
KEY2 = bytes(range(32))


def _vectors() -> tuple[bytes, list[tuple[str, str]]]:
    rows = [line.split() for line in VECTORS.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert rows[0][0] == "key"
    return bytes.fromhex(rows[0][1]), [(a, b) for a, b in rows[1:]]


REF_KEY, PAIRS = _vectors()


def _anon(pan: CryptoPan, a: int, width: int) -> int:
    return int.from_bytes(pan.anonymise(a.to_bytes(width // 8)))


def _common(a: int, b: int, width: int) -> int:
    return width - (a ^ b).bit_length()


def test_reference_vectors() -> None:
    pan = CryptoPan(REF_KEY)
    assert sum(":" not in a for a, _ in PAIRS) >= 70 and any(":" in a for a, _ in PAIRS)
    for raw, want in PAIRS:
        assert ipaddress.ip_address(pan.anonymise(ipaddress.ip_address(raw).packed)) == ipaddress.ip_address(want)
    # the text form, as records carry it
    text = TextAnonymiser(REF_KEY)
    assert text("128.11.68.132") == "135.242.180.132"
    assert text("2001:db8::1") == "4401:2bc:603f:d91d:27f:ff8e:e6f1:dc1e"


@settings(max_examples=60, deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32),
    a=st.integers(0, 2**32 - 1),
    b=st.integers(0, 2**32 - 1),
    x=st.integers(0, 2**128 - 1),
    y=st.integers(0, 2**128 - 1),
    keep=st.integers(0, 128),
)
def test_prefixes_preserved(key: bytes, a: int, b: int, x: int, y: int, keep: int) -> None:
    pan = CryptoPan(key)
    assert _common(_anon(pan, a, 32), _anon(pan, b, 32), 32) == _common(a, b, 32)
    mask = ((1 << keep) - 1) << (128 - keep)  # IPv6 pairs sharing `keep` bits
    y = (x & mask) | (y & ~mask & (2**128 - 1))
    assert _common(_anon(pan, x, 128), _anon(pan, y, 128), 128) == _common(x, y, 128)


@settings(max_examples=30, deadline=None)
@given(
    k1=st.binary(min_size=32, max_size=32),
    k2=st.binary(min_size=32, max_size=32),
    a=st.binary(min_size=16, max_size=16),
)
def test_keyed(k1: bytes, k2: bytes, a: bytes) -> None:
    assert CryptoPan(k1).anonymise(a) == CryptoPan(k1).anonymise(a)
    if k1 != k2:
        assert CryptoPan(k1).anonymise(a) != CryptoPan(k2).anonymise(a)


def test_bijective_on_a_sample() -> None:
    pan = CryptoPan(KEY2)
    out = {pan.anonymise(bytes([198, 51, 96 + (i >> 8), i & 255])) for i in range(4096)}  # a /20
    assert len(out) == 4096
    assert len({o[:2] + bytes([o[2] & 0xF0]) for o in out}) == 1  # into one /20


# --- configuration and key


def test_exactly_one_key_source() -> None:
    for bad in ({}, {"key_file": "/k", "key_env": "K"}):
        with pytest.raises(ValidationError, match="exactly one of key_file and key_env"):
            AnonymiseConfig.model_validate(bad)
    assert AgentConfig().anonymise is None and CollectorConfig().anonymise is None  # off by default


def test_key_from_file_raw_or_hex_and_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw, hexed = tmp_path / "raw.key", tmp_path / "hex.key"
    raw.write_bytes(REF_KEY)
    hexed.write_text(REF_KEY.hex().upper() + "\n")
    assert load_key(AnonymiseConfig(key_file=str(raw))) == REF_KEY
    assert load_key(AnonymiseConfig(key_file=str(hexed))) == REF_KEY
    monkeypatch.setenv("GWTEL_TEST_ANON_KEY", REF_KEY.hex())
    assert load_key(AnonymiseConfig(key_env="GWTEL_TEST_ANON_KEY")) == REF_KEY


def test_bad_keys_are_refused_naming_the_setting_not_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "c0ffee" * 10  # 60 hex digits: too short
    short = tmp_path / "short.key"
    short.write_text(secret)
    binary = tmp_path / "bin.key"
    binary.write_bytes(b"\xff\xfe" + REF_KEY)
    monkeypatch.setenv("GWTEL_TEST_ANON_KEY", secret)
    monkeypatch.delenv("GWTEL_TEST_UNSET", raising=False)
    cases = [
        (AnonymiseConfig(key_file=str(short)), "anonymise.key_file .*60 characters"),
        (AnonymiseConfig(key_file=str(binary)), "anonymise.key_file .*32 raw bytes or 64 hex digits"),
        (AnonymiseConfig(key_file=str(tmp_path / "missing")), "anonymise.key_file: cannot read .*missing"),
        (AnonymiseConfig(key_env="GWTEL_TEST_ANON_KEY"), r"anonymise.key_env \(GWTEL_TEST_ANON_KEY\)"),
        (AnonymiseConfig(key_env="GWTEL_TEST_UNSET"), "GWTEL_TEST_UNSET is not set"),
    ]
    for cfg, message in cases:
        with pytest.raises(AnonymiseKeyError, match=message) as err:
            load_key(cfg)
        assert secret not in str(err.value) and REF_KEY.hex() not in str(err.value).lower()
    # the engines refuse a key of the wrong length the same way
    cls = _classifier()
    with pytest.raises(ValueError, match=r"32 bytes, not 3$"):
        gwtel_native.Collector().configure_records(
            agent_id="a", default_link_id="l", exporters=[], rules=cls.engine_rules(), sides=cls.sides_of_packed,
            apps=NO_CLASSES.engine_rules(), anon_key=b"abc", **record_args(),
        )  # fmt: skip


def test_the_key_is_never_in_the_configuration_or_a_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GWTEL_TEST_ANON_KEY", REF_KEY.hex())
    cfg = AgentConfig(anonymise=AnonymiseConfig(key_env="GWTEL_TEST_ANON_KEY"))
    dumped = repr(cfg) + cfg.model_dump_json()
    assert "GWTEL_TEST_ANON_KEY" in dumped and REF_KEY.hex() not in dumped
    assert REF_KEY.hex() not in repr(CryptoPan(REF_KEY)) + repr(TextAnonymiser(REF_KEY))


# --- the engines


def _only_addresses_differ(plain: list[FlowRecord], anon: list[FlowRecord], key: bytes) -> None:
    """`anon` is `plain` with src_ip/dst_ip anonymised by the reference, every other field (partner, country,
    direction, link...) unchanged."""
    text = TextAnonymiser(key)
    assert len(anon) == len(plain) > 0
    changed = 0
    for p, a in zip(plain, anon, strict=True):
        assert a == dataclasses.replace(p, src_ip=text(p.src_ip), dst_ip=text(p.dst_ip))
        changed += a.src_ip != p.src_ip
    assert changed > 0.9 * len(plain)


def test_agent_engines_anonymise_after_classification(tmp_path: Path) -> None:
    pcap = tmp_path / "s.pcap"
    generate(SynthConfig(seed=5, flows=400, duration_s=20, ingress_share=0.5), pcap, tmp_path / "s.json")
    (tmp_path / "k").write_bytes(KEY2)
    cfg = AgentConfig(anonymise=AnonymiseConfig(key_file=str(tmp_path / "k")))
    anon = same_records(cfg, [pcap])  # native and Python engines byte for byte, anonymised
    plain = same_records(AgentConfig(), [pcap])
    _only_addresses_differ(plain.records, anon.records, KEY2)
    assert len({r.partner for r in plain.records}) > 1 and {r.ip_version for r in plain.records} >= {4}


def test_collector_engines_anonymise_after_classification(tmp_path: Path) -> None:
    (tmp_path / "k").write_text(KEY2.hex())
    cfg = COLLECTOR.model_copy(update={"anonymise": AnonymiseConfig(key_file=str(tmp_path / "k"))})
    export_ns = 1_700_000_001_000_000_000
    rows = gwtel_native.Collector()
    rows.feed(_framed())
    exported = [Exported._make(t) for t in rows.take()]
    plain = RecordBuilder(COLLECTOR, _classifier()).build(exported, export_ns, "c")
    ref = RecordBuilder(cfg, _classifier()).build(exported, export_ns, "c")
    _only_addresses_differ(plain, ref, KEY2)
    assert any(r.exporter and r.next_hop for r in ref)  # kept: the operator's routers

    col = gwtel_native.Collector()
    RecordBuilder(cfg, _classifier()).configure(col, "c")
    col.feed(_framed())
    (count, keys, values, *_rest), _unmapped = col.take_records(0, export_ns)
    assert EncodedBatch(count, keys, values).records() == ref


# --- the command line


def test_replay_anonymises_and_never_prints_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gwtel.cli import main

    pcap = tmp_path / "s.pcap"
    generate(SynthConfig(seed=6, flows=50, duration_s=5), pcap, tmp_path / "s.json")
    conf = tmp_path / "gwtel.yaml"
    conf.write_text("agent:\n  metrics_port: 0\n  anonymise:\n    key_env: GWTEL_TEST_ANON_KEY\n")
    monkeypatch.setenv("GWTEL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GWTEL_CONFIG", str(conf))
    secret = KEY2.hex()

    monkeypatch.setenv("GWTEL_TEST_ANON_KEY", secret[:-2])  # one byte short: refused at start-up, cleanly
    assert main(["replay", str(pcap), "--to", "-"]) == 2
    err = capsys.readouterr().err
    assert "anonymise.key_env (GWTEL_TEST_ANON_KEY)" in err and secret[:-2] not in err and "Traceback" not in err

    monkeypatch.setenv("GWTEL_TEST_ANON_KEY", secret)
    assert main(["replay", str(pcap), "--to", "-"]) == 0
    out = capsys.readouterr()
    assert secret not in out.out + out.err
    lines = [json.loads(line) for line in out.out.splitlines() if line.startswith("{")]
    assert len(lines) >= 50
    plain = {r.src_ip for r in same_records(AgentConfig(), [pcap]).records}
    text = TextAnonymiser(KEY2)
    assert {r["src_ip"] for r in lines} == {text(a) for a in plain}
