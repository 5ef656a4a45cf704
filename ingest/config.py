"""Agent settings (the `agent:` section of the configuration)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agent_id: str = "local-agent"
    link_id: str = "link-0"
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    idle_timeout_s: float = Field(default=30.0, gt=0)
    active_timeout_s: float = Field(default=10.0, gt=0)
    max_flows: int = Field(default=1_000_000, ge=1)
