"""Kafka transport security: the `kafka.security` section and its one mapping into each client library.

Every Kafka client of the project takes its TLS and SASL settings from here: librdkafka (the agent's and
collector's producers, the loader's consumer, the dead-letter producer), kafka-python (admin and offset
calls) and the Java client inside the Flink job (its Kafka source and sinks). The password is read from a
file or an environment variable at the moment a client is built; it is never part of the configuration
model, so dumping or printing the configuration cannot show it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gwtel.errors import UserError
from gwtel.secrets import ENV_NAME, read_secret, source

Protocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
Mechanism = Literal["SCRAM-SHA-512", "PLAIN"]

# The Flink Kafka SQL connector is a shaded jar: the Kafka client's classes live under this package.
FLINK_SHADED_PREFIX = "org.apache.flink.kafka.shaded."
_LOGIN_MODULES = {
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
}


class KafkaSecurityError(UserError):
    """A security setting cannot be used (missing password, unreadable file); the message names the key."""


class KafkaSecurity(BaseModel):
    """How every client reaches the brokers: protocol, SASL user and password source, TLS trust and identity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: Protocol = "PLAINTEXT"
    mechanism: Mechanism = "SCRAM-SHA-512"
    username: str = ""
    # The password is looked up when a client is built: `password_file` (first line) if set, else this
    # environment variable. Neither is ever printed.
    password_env: str = Field(default="GWTEL_KAFKA_PASSWORD", pattern=ENV_NAME)
    password_file: str | None = None
    # PEM files. ca_file: the CA that signed the brokers' certificates (default: the system store).
    ca_file: str | None = None
    # A client certificate and its key, for brokers that require TLS client authentication.
    cert_file: str | None = None
    key_file: str | None = None
    check_hostname: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecurity:
        if self.sasl and not self.username:
            raise ValueError(f"protocol {self.protocol} needs username (and a password, see password_env)")
        if self.sasl and self.mechanism == "PLAIN" and not self.tls:
            raise ValueError("mechanism PLAIN sends the password in clear: use protocol SASL_SSL")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (a client certificate and its private key)")
        if not self.tls and any(f is not None for f in (self.ca_file, self.cert_file, self.key_file)):
            raise ValueError(f"ca_file, cert_file and key_file are TLS settings; protocol {self.protocol} has no TLS")
        return self

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def password(self) -> str:
        """The SASL password: from `password_file` if set, else from the environment; never empty."""
        return read_secret(key="kafka.security", env=self.password_env, file=self.password_file, required=True)

    def password_source(self) -> str:
        return source(key="kafka.security", env=self.password_env, file=self.password_file)

    def _files(self) -> dict[str, str]:
        """The TLS files that are set, each checked readable, by setting name."""
        out = {}
        for key in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, key)
            if value is None:
                continue
            path = Path(value).expanduser()
            if not os.access(path, os.R_OK) or not path.is_file():
                raise KafkaSecurityError(f"kafka.security.{key}: {value} is not a readable file")
            out[key] = str(path.resolve())
        return out

    # -- mappings -------------------------------------------------------------------------------------
    def librdkafka(self) -> dict[str, Any]:
        """Settings for confluent-kafka (librdkafka) producers, consumers and admin clients."""
        out: dict[str, Any] = {"security.protocol": self.protocol.lower()}
        if self.sasl:
            out |= {"sasl.mechanisms": self.mechanism, "sasl.username": self.username, "sasl.password": self.password()}
        if self.tls:
            files = self._files()
            names = {
                "ca_file": "ssl.ca.location",
                "cert_file": "ssl.certificate.location",
                "key_file": "ssl.key.location",
            }
            out |= {names[k]: v for k, v in files.items()}
            out["ssl.endpoint.identification.algorithm"] = "https" if self.check_hostname else "none"
        return out

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python clients (KafkaAdminClient, KafkaConsumer, KafkaProducer)."""
        out: dict[str, Any] = {"security_protocol": self.protocol}
        if self.sasl:
            out |= {
                "sasl_mechanism": self.mechanism,
                "sasl_plain_username": self.username,
                "sasl_plain_password": self.password(),
            }
        if self.tls:
            files = self._files()
            names = {"ca_file": "ssl_cafile", "cert_file": "ssl_certfile", "key_file": "ssl_keyfile"}
            out |= {names[k]: v for k, v in files.items()}
            out["ssl_check_hostname"] = self.check_hostname
        return out

    def java(self, class_prefix: str = "") -> dict[str, str]:
        """Kafka Java client properties; `class_prefix` is the package prefix of a shaded client."""
        out: dict[str, str] = {"security.protocol": self.protocol}
        if self.sasl:
            user, password = _jaas_quote(self.username), _jaas_quote(self.password())
            module = class_prefix + _LOGIN_MODULES[self.mechanism]
            out |= {
                "sasl.mechanism": self.mechanism,
                "sasl.jaas.config": f'{module} required username="{user}" password="{password}";',
            }
        if self.tls:
            files = self._files()
            if "ca_file" in files:
                out |= {"ssl.truststore.type": "PEM", "ssl.truststore.location": files["ca_file"]}
            if "cert_file" in files:
                # PEM key stores take the chain and the (unencrypted PKCS#8) key as values.
                out |= {
                    "ssl.keystore.type": "PEM",
                    "ssl.keystore.certificate.chain": Path(files["cert_file"]).read_text(encoding="utf-8"),
                    "ssl.keystore.key": Path(files["key_file"]).read_text(encoding="utf-8"),
                }
            out["ssl.endpoint.identification.algorithm"] = "https" if self.check_hostname else ""
        return out

    def flink_options(self) -> dict[str, str]:
        """Options of the Flink Kafka SQL connector's tables (`properties.*`, shaded client classes); none for
        PLAINTEXT, the connector's default."""
        if self.protocol == "PLAINTEXT":
            return {}
        return {f"properties.{k}": v for k, v in self.java(FLINK_SHADED_PREFIX).items()}


def _jaas_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
