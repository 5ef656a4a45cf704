"""The `kafka.security` section: validation, the password sources, and its one mapping into each client's
settings (librdkafka, kafka-python, the Java client of the Flink job), against the libraries' documented keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gwtel.config import GwtelConfig
from gwtel.errors import UserError
from gwtel.kafka_security import FLINK_SHADED_PREFIX, KafkaSecurity
from gwtel.preflight import security_message
from processors import ddl


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    return path


def scram(ca: Path, **kw: object) -> KafkaSecurity:
    return KafkaSecurity.model_validate(
        {"protocol": "SASL_SSL", "username": "u1", "password_env": "T_KAFKA_PW", "ca_file": str(ca), **kw}
    )


def test_default_is_plaintext_and_maps_to_nothing_secret() -> None:
    sec = KafkaSecurity()
    assert sec.librdkafka() == {"security.protocol": "plaintext"}
    assert sec.kafka_python() == {"security_protocol": "PLAINTEXT"}
    assert sec.java() == {"security.protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"protocol": "SASL_SSL"}, "needs username"),
        ({"protocol": "SASL_PLAINTEXT", "username": "u", "mechanism": "PLAIN"}, "SASL_SSL"),
        ({"protocol": "SSL", "cert_file": "/c.pem"}, "go together"),
        ({"protocol": "PLAINTEXT", "ca_file": "/ca.pem"}, "no TLS"),
        ({"protocol": "TLS"}, "protocol"),
        ({"password": "x"}, "password"),  # a password can never be written into the file
    ],
)
def test_invalid_sections_are_refused(raw: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        GwtelConfig.model_validate({"kafka": {"security": raw}})


def test_scram_over_tls_in_every_client(ca: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_KAFKA_PW", 's3"cr\\et')
    sec = scram(ca)
    assert sec.librdkafka() == {
        "security.protocol": "sasl_ssl",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "u1",
        "sasl.password": 's3"cr\\et',
        "ssl.ca.location": str(ca),
        "ssl.endpoint.identification.algorithm": "https",
    }
    assert sec.kafka_python() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "u1",
        "sasl_plain_password": 's3"cr\\et',
        "ssl_cafile": str(ca),
        "ssl_check_hostname": True,
    }
    java = sec.java()
    # JAAS quoting: a quote or backslash in the password is escaped, so the value parses back whole.
    assert java["sasl.jaas.config"] == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="u1" password="s3\\"cr\\\\et";'
    )
    assert java["ssl.truststore.type"] == "PEM" and java["ssl.truststore.location"] == str(ca)
    assert java["ssl.endpoint.identification.algorithm"] == "https"


def test_flink_options_use_the_shaded_login_module(ca: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_KAFKA_PW", "pw")
    opts = scram(ca, mechanism="PLAIN").flink_options()
    assert opts["properties.security.protocol"] == "SASL_SSL"
    assert opts["properties.sasl.mechanism"] == "PLAIN"
    assert opts["properties.sasl.jaas.config"].startswith(
        FLINK_SHADED_PREFIX + "org.apache.kafka.common.security.plain.PlainLoginModule required"
    )


def test_every_flink_table_carries_the_security(ca: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_KAFKA_PW", "pw")
    security = {"protocol": "SASL_SSL", "username": "u1", "password_env": "T_KAFKA_PW", "ca_file": str(ca)}
    cfg = GwtelConfig.model_validate({"kafka": {"security": security}})
    tables = [
        ddl.flows_source_ddl(cfg),
        ddl.aggregates_sink_ddl(cfg),
        ddl.late_sink_ddl(cfg),
        ddl.dead_letter_sink_ddl(cfg),
    ]
    for sql in tables:
        assert "'properties.security.protocol' = 'SASL_SSL'" in sql
        assert "'properties.sasl.mechanism' = 'SCRAM-SHA-512'" in sql
        assert f"'properties.ssl.truststore.location' = '{ca}'" in sql


def test_client_certificate(ca: Path, tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("CERT", encoding="utf-8")
    key.write_text("KEY", encoding="utf-8")
    sec = KafkaSecurity(protocol="SSL", ca_file=str(ca), cert_file=str(cert), key_file=str(key), check_hostname=False)
    assert sec.librdkafka() == {
        "security.protocol": "ssl",
        "ssl.ca.location": str(ca),
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
        "ssl.endpoint.identification.algorithm": "none",
    }
    assert sec.kafka_python()["ssl_certfile"] == str(cert) and sec.kafka_python()["ssl_keyfile"] == str(key)
    java = sec.java()
    assert (java["ssl.keystore.type"], java["ssl.keystore.certificate.chain"], java["ssl.keystore.key"]) == (
        "PEM",
        "CERT",
        "KEY",
    )
    assert java["ssl.endpoint.identification.algorithm"] == ""


def test_password_file_wins_and_missing_sources_name_the_setting(
    ca: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("T_KAFKA_PW", raising=False)
    with pytest.raises(UserError, match=r"\$T_KAFKA_PW"):
        scram(ca).password()
    pw = tmp_path / "pw"
    pw.write_text("from-file\nignored\n", encoding="utf-8")
    monkeypatch.setenv("T_KAFKA_PW", "from-env")
    assert scram(ca, password_file=str(pw)).password() == "from-file"
    with pytest.raises(UserError, match=r"kafka\.security\.password_file"):
        scram(ca, password_file=str(tmp_path / "absent")).password()
    with pytest.raises(UserError, match=r"kafka\.security\.ca_file"):
        scram(tmp_path / "no-ca.pem").librdkafka()


def test_secrets_stay_out_of_the_configuration_dump(ca: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_KAFKA_PW", "dump-secret-1")
    dumped = scram(ca).model_dump_json()
    assert "dump-secret-1" not in dumped and "T_KAFKA_PW" in dumped


@pytest.mark.parametrize(
    ("error", "setting"),
    [
        ("SSL handshake failed: certificate verify failed", "kafka.security.ca_file"),
        ("SASL authentication error: Authentication failed", "kafka.security.password"),
        ("Disconnected while requesting ApiVersion", "kafka.security.protocol"),
    ],
)
def test_errors_name_the_setting(ca: Path, error: str, setting: str) -> None:
    assert security_message(scram(ca), "b:1", error).startswith(setting)
