"""Agent settings (the `agent:` section of the configuration)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ingest.anonymise_config import AnonymiseConfig
from schemas.flow_record import SamplingMode


class CaptureConfig(BaseModel):
    """Live capture (`gwtel capture`): the TPACKET_V3 ring of each worker and how workers share an interface."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    block_size_kib: int = Field(default=1024, ge=4, description="ring block, a power of two; see docs/capture.md")
    block_count: int = Field(default=64, ge=2)
    block_timeout_ms: int = Field(default=50, ge=1, le=60_000)
    workers: int = Field(default=1, ge=1, le=64, description="rings in one PACKET_FANOUT_HASH group per interface")
    fanout_defrag: bool = False
    sampling_mode: SamplingMode = "packet"


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_id: str = Field(default="local-agent", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    link_id: str = Field(default="link-0", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="0 picks a free port")
    sampling_rate: int = Field(default=1, ge=1, description="1:N packet sampling applied at capture")
    capture: CaptureConfig = CaptureConfig()
    # File replay engine: `native` (Rust, gwtel_native) or `python` (the reference); live capture is always native
    engine: Literal["native", "python"] = "native"
    # Flow meter
    idle_timeout_s: float = Field(default=30.0, gt=0)
    # Slices of long flows are exported at most this far apart; keep it <= the job's window (see processors).
    active_timeout_s: float = Field(default=10.0, gt=0)
    max_flows: int = Field(default=1_000_000, ge=1)
    # Decapsulation of tunnels to the inner flow
    decap_gre: bool = False
    decap_vxlan: bool = False
    decap_gtp: bool = False
    # Kafka producer and its disk spool (relative paths are under GWTEL_HOME)
    spool_dir: str = "agent/spool"
    spool_max_bytes: int = Field(default=1 << 30, ge=1 << 20)
    compression: str = Field(default="lz4", pattern=r"^(lz4|zstd|gzip|none)$")
    # Prefix-preserving anonymisation of src_ip/dst_ip after classification (off unless given; docs/security.md)
    anonymise: AnonymiseConfig | None = None
