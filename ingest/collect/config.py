"""Collector settings (the `collector:` section of the configuration), validated at start-up."""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ingest.anonymise_config import AnonymiseConfig

_ID = r"^[A-Za-z0-9_.-]{1,64}$"
SCHEMES = ("netflow", "ipfix", "sflow")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Listen(_Strict):
    protocol: Literal["netflow", "ipfix", "sflow"]
    host: str
    port: int


def parse_listen(url: str) -> Listen:
    """`ipfix://0.0.0.0:4739` -> Listen; a ValueError says what is wrong and how to write it."""
    parts = urlsplit(url)
    example = "e.g. ipfix://0.0.0.0:4739, netflow://0.0.0.0:2055 or sflow://[::]:6343"
    if parts.scheme not in SCHEMES:
        raise ValueError(f"{url!r}: the scheme must be one of {', '.join(SCHEMES)} ({example})")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ValueError(f"{url!r}: write protocol://address:port ({example})")
    try:
        ipaddress.ip_address(parts.hostname)
    except ValueError:
        raise ValueError(f"{url!r}: {parts.hostname!r} is not an IP address ({example})") from None
    return Listen(protocol=parts.scheme, host=parts.hostname, port=port)  # type: ignore[arg-type]


class Interface(_Strict):
    """What an exporter's interface (SNMP ifIndex) is: the link it belongs to and which side it faces."""

    link: str = Field(pattern=_ID)
    # external: faces the partner (traffic in on it is ingress, out on it is egress); internal: the domestic side
    side: Literal["external", "internal"] = "external"


class Exporter(_Strict):
    address: str
    # used when the exporter announces no sampling interval itself (1 = unsampled)
    sampling_rate: int | None = Field(default=None, ge=1)
    interfaces: dict[int, Interface] = Field(default_factory=dict)

    @field_validator("address")
    @classmethod
    def _ip(cls, v: str) -> str:
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            hint = "write the exporter's source address, e.g. 192.0.2.1"
            raise ValueError(f"{v!r} is not an IP address: {hint}") from None

    @field_validator("interfaces")
    @classmethod
    def _ifindex(cls, v: dict[int, Interface]) -> dict[int, Interface]:
        for k in v:
            if not 0 < k < 2**32:
                raise ValueError(f"interface {k}: an SNMP ifIndex is 1 .. 4294967295")
        return v


class CollectorConfig(_Strict):
    agent_id: str = Field(default="local-collector", pattern=_ID)
    # link of records whose exporter or interfaces are not in `exporters`
    default_link_id: str = Field(default="export-unmapped", pattern=_ID)
    listen: tuple[str, ...] = ("ipfix://0.0.0.0:4739", "netflow://0.0.0.0:2055", "sflow://0.0.0.0:6343")
    sockets_per_listener: int = Field(default=2, ge=1, le=64, description="SO_REUSEPORT sockets per address")
    receive_buffer_bytes: int = Field(default=32 << 20, ge=1 << 16)
    # datagrams read from one socket before the others get their turn (fairness between exporters)
    socket_quota: int = Field(default=64, ge=1, le=65536)
    batch_datagrams: int = Field(default=512, ge=1, le=65536)
    metrics_port: int = Field(default=9466, ge=0, le=65535, description="0 picks a free port")
    template_dir: str = "collector/templates"
    max_templates_per_exporter: int = Field(default=4096, ge=1)
    exporters: tuple[Exporter, ...] = ()
    # Prefix-preserving anonymisation of src_ip/dst_ip after classification (off unless given; docs/security.md)
    anonymise: AnonymiseConfig | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        seen: set[tuple[str, int]] = set()
        for url in v:
            lst = parse_listen(url)
            if (lst.host, lst.port) in seen:
                raise ValueError(f"{url!r}: address and port listed twice")
            seen.add((lst.host, lst.port))
        return v

    @model_validator(mode="after")
    def _unique_exporters(self) -> CollectorConfig:
        addrs = [e.address for e in self.exporters]
        dup = {a for a in addrs if addrs.count(a) > 1}
        if dup:
            raise ValueError(f"exporter {sorted(dup)[0]} listed twice: merge its interfaces into one entry")
        return self

    def listeners(self) -> list[Listen]:
        return [parse_listen(u) for u in self.listen]
