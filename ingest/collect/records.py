"""Decoded export records -> FlowRecords: link and direction from the exporter's interface map, partner by AS
number where a group lists it, then by prefix and country as for captured traffic.

An export record covers one direction of a flow (biflow exporters such as Cisco NSEL aside), so its source is
taken as the initiator: ``bytes_fwd`` is the exported count and ``bytes_rev`` is 0. Counts stay as sampled, with
the exporter's ``sampling_rate`` beside them: queries renormalise (bytes * sampling_rate), as for the agents.
Exports carry no round-trip times: the latency fields stay empty.

What the export itself says is stored beside: the exporter's address, the input and output interface indexes,
the source and destination AS numbers and the next hop as exported (an unset, all-zero next hop as ""), and
``one_way`` = 1 unless the record is a biflow: it carries responder counters (Cisco NSEL) or RFC 5103 reverse
counters, even zero ones.

The collector itself has the native engine build and encode the records (`configure` hands it this builder's
interface map and the classifier's rules; native/src/export/records.rs); `build` is the Python reference the
tests compare the engine with, and what a tool that wants FlowRecord objects from decoded rows uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from ingest.anonymise import TextAnonymiser
from ingest.anonymise_config import engine_key
from ingest.applications import NO_CLASSES, AppClassifier
from ingest.classify import PartnerClassifier
from ingest.collect.config import CollectorConfig, Exporter, Interface
from ingest.collect.decoded import Exported
from ingest.collect.frames import packed_address
from ingest.flowkey import ip_text
from schemas.flow_record import FLOW_SCHEMA_VERSION, FlowRecord

if TYPE_CHECKING:
    import gwtel_native

_TCP: Final = 6
_FIN: Final = 0x01
_RST: Final = 0x04


def _end_reason(protocol: int, flags: int) -> str:
    if protocol == _TCP and flags & _RST:
        return "rst"
    if protocol == _TCP and flags & _FIN:
        return "fin"
    # a router exports on its own timers; the collector cannot tell idle from active expiry
    return "active"


_ADDRESS_CACHE: Final = 4096  # exporters and next hops are router addresses: few, unless an exporter lies


class RecordBuilder:
    def __init__(
        self,
        cfg: CollectorConfig,
        classifier: PartnerClassifier,
        *,
        first_seq: int = 0,
        apps: AppClassifier = NO_CLASSES,
    ) -> None:
        self._cfg = cfg
        self._classifier = classifier
        self._apps = apps
        self._exporters: dict[bytes, Exporter] = {}
        for e in cfg.exporters:
            family, addr16 = packed_address(e.address)
            self._exporters[addr16[:4] if family == 4 else addr16] = e
        self.next_seq = first_seq
        self.unmapped = 0  # records whose exporter or interfaces the map does not name
        self._address_text: dict[bytes, str] = {b"": ""}  # exporters, next hops: each formatted once
        # src/dst anonymised after classification; exporters and next hops are the operator's routers: kept
        self._anon_key = engine_key(cfg.anonymise)  # read at start-up: a bad key stops here
        self._anon = None if self._anon_key is None else TextAnonymiser(self._anon_key)

    def configure(self, engine: gwtel_native.Collector, agent_id: str) -> None:
        """Have `engine` build and encode the records itself (`take_records`) exactly as `build` does."""
        from ingest.native import record_args

        exporters = [
            (packed, e.sampling_rate, [(i, f.link, f.side == "external") for i, f in e.interfaces.items()])
            for packed, e in self._exporters.items()
        ]
        engine.configure_records(
            agent_id=agent_id,
            default_link_id=self._cfg.default_link_id,
            exporters=exporters,
            rules=self._classifier.engine_rules(),
            apps=self._apps.engine_rules(),
            sides=self._classifier.sides_of_packed,
            anon_key=self._anon_key,
            **record_args(),
        )

    def _link(self, exp: Exporter | None, r: Exported) -> tuple[str, str | None]:
        """(link id, direction) from the interface map; direction None: let the addresses decide."""
        if exp is None:
            self.unmapped += 1
            return self._cfg.default_link_id, None
        into: Interface | None = exp.interfaces.get(r.in_if)
        out: Interface | None = exp.interfaces.get(r.out_if)
        if into is not None and into.side == "external" and (out is None or out.side != "external"):
            return into.link, "ingress"
        if out is not None and out.side == "external":
            return out.link, "egress"
        mapped = into or out
        if mapped is None:
            self.unmapped += 1
            return self._cfg.default_link_id, None
        return mapped.link, None

    def _address(self, packed: bytes) -> str:
        """Text of a packed address; "" for none (the engine sends b"" for an unset IPv4 next hop) or all zero."""
        text = self._address_text.get(packed)
        if text is None:
            if len(self._address_text) >= _ADDRESS_CACHE:
                self._address_text = {b"": ""}
            text = self._address_text[packed] = ip_text(packed) if packed.strip(b"\0") else ""
        return text

    def build(self, rows: Iterable[Exported], export_ns: int, agent_id: str) -> list[FlowRecord]:
        out: list[FlowRecord] = []
        for r in rows:
            exp = self._exporters.get(r.exporter)
            link_id, direction = self._link(exp, r)
            src, dst = ip_text(r.src), ip_text(r.dst)
            cls = self._classifier.classify(src, dst, r.ip_version, link_id)
            partner, country, asn = cls.partner, cls.remote_country, cls.remote_asn
            if direction is None:
                direction = cls.direction
                if direction in ("egress", "transit"):
                    remote_asn = r.dst_as
                elif direction == "ingress":
                    remote_asn = r.src_as
                else:
                    remote_asn = 0
                if remote_asn:
                    partner = self._classifier.partner_of_asn(remote_asn) or partner
                    asn = remote_asn
            else:
                ingress = direction == "ingress"
                remote = self._classifier.remote(src if ingress else dst, link_id, r.src_as if ingress else r.dst_as)
                if remote is not None:
                    partner, country, asn = remote.partner, remote.remote_country, remote.remote_asn
            exporter = self._address(r.exporter)
            dscp = r.tos >> 2
            # the export's source is taken as the initiator; the remote end is it on an ingress link
            app_class = self._apps.classify(
                protocol=r.protocol,
                server_port=r.dst_port,
                dscp=dscp,
                src_ip=src,
                dst_ip=dst,
                remote_is_initiator=direction == "ingress",
                remote_asn=asn,
                link_id=link_id,
            )
            if self._anon is not None:
                src, dst = self._anon(src), self._anon(dst)
            sampling = r.sampling_rate
            if sampling <= 1 and exp is not None and exp.sampling_rate is not None:
                sampling = exp.sampling_rate
            out.append(
                FlowRecord(
                    schema_version=FLOW_SCHEMA_VERSION,
                    agent_id=agent_id,
                    seq=self.next_seq,
                    link_id=link_id,
                    sampling_rate=sampling,
                    ip_version=r.ip_version,
                    src_ip=src,
                    src_port=r.src_port,
                    dst_ip=dst,
                    dst_port=r.dst_port,
                    protocol=r.protocol,
                    vlan=r.vlan,
                    first_ns=r.first_ns,
                    last_ns=r.last_ns,
                    export_ns=export_ns,
                    end_reason=_end_reason(r.protocol, r.tcp_flags),
                    bytes_fwd=r.octets,
                    packets_fwd=r.packets,
                    bytes_rev=r.octets_rev,
                    packets_rev=r.packets_rev,
                    tcp_flags_fwd=r.tcp_flags,
                    tcp_flags_rev=0,
                    retrans_fwd=0,
                    retrans_rev=0,
                    hs_rtt_ext_us=None,
                    hs_rtt_int_us=None,
                    ts_rtt_count=0,
                    ts_rtt_min_us=None,
                    ts_rtt_max_us=None,
                    ts_rtt_sum_us=0,
                    ts_rtt_hist=(),
                    icmp_rtt_count=0,
                    icmp_rtt_min_us=None,
                    icmp_rtt_max_us=None,
                    icmp_rtt_sum_us=0,
                    icmp_rtt_hist=(),
                    dns_rtt_count=0,
                    dns_rtt_min_us=None,
                    dns_rtt_max_us=None,
                    dns_rtt_sum_us=0,
                    dns_rtt_hist=(),
                    direction=direction,
                    partner=partner,
                    remote_country=country,
                    remote_asn=asn,
                    exporter=exporter,
                    in_if=r.in_if,
                    out_if=r.out_if,
                    src_asn=r.src_as,
                    dst_asn=r.dst_as,
                    next_hop=self._address(r.next_hop),
                    one_way=0 if r.biflow or r.octets_rev or r.packets_rev else 1,
                    dscp=dscp,
                    app_class=app_class,
                )
            )
            self.next_seq += 1
        return out
