"""The boundary between the flow meter and enrichment: who is remote, which partner, which way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Classification:
    """Enrichment of one flow, decided once when the flow is created.

    ``direction`` is the direction of the initiator's traffic: ``egress`` (domestic initiator -> partner),
    ``ingress`` (partner initiator -> domestic), ``domestic`` (both sides domestic), ``transit`` (neither side
    domestic), ``unknown``. ``remote_is_initiator`` says which endpoint is the partner side, so latency legs and
    per-direction bytes can be attributed.
    """

    direction: str
    partner: str
    remote_country: str
    remote_asn: int
    remote_is_initiator: bool


class Classifier(Protocol):
    def classify(self, src_ip: str, dst_ip: str, ip_version: int, link_id: str) -> Classification:
        """Classify a flow from its initiator (src) and responder (dst) addresses in text form."""
        ...
