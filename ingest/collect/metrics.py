"""The collector's Prometheus metrics, read from the loop's plain counters at scrape time.

Exporters are labelled by address: they are the configured routers, a bounded set (the native engine caps the
number it keeps counters for). Decode errors carry the reason; kernel drops are per listening socket.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ingest.collect.service import CollectorService
    from ingest.producer import FlowProducer


def _ip(b: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(b) == 4 else socket.AF_INET6, b)


class CollectorMetrics(Collector):
    def __init__(self, service: CollectorService, producer: FlowProducer | None) -> None:
        self._svc = service
        self._producer = producer

    def collect(self) -> Iterator[Metric]:
        svc = self._svc
        c = svc.engine.counters()
        datagrams = cast(dict[str, int], c["datagrams"])
        records = cast(dict[str, int], c["records"])
        errors = cast(list[tuple[bytes, str, int]], c["errors"])
        dg = CounterMetricFamily("gwtel_collector_datagrams", "Export datagrams decoded.", labels=["protocol"])
        rc = CounterMetricFamily("gwtel_collector_records", "Flow records decoded.", labels=["protocol"])
        for k in sorted(datagrams):
            dg.add_metric([k], datagrams[k])
            rc.add_metric([k], records[k])
        yield dg
        yield rc
        err = CounterMetricFamily(
            "gwtel_collector_decode_errors",
            "Datagrams or sets refused, by exporter and reason.",
            labels=["exporter", "reason"],
        )
        for exporter, reason, n in errors:
            err.add_metric([_ip(exporter), reason], n)
        yield err
        sent = CounterMetricFamily("gwtel_collector_records_sent", "FlowRecords handed to the producer.", labels=[])
        sent.add_metric([], svc.state.records_sent)
        yield sent
        unm = CounterMetricFamily(
            "gwtel_collector_records_unmapped",
            "Records whose exporter or interfaces the interface map lacks.",
            labels=[],
        )
        unm.add_metric([], svc.builder.unmapped)
        yield unm
        tpl = GaugeMetricFamily("gwtel_collector_templates", "Templates held.", labels=[])
        tpl.add_metric([], cast(int, c["templates"]))
        yield tpl
        drops = CounterMetricFamily(
            "gwtel_collector_kernel_drops",
            "Datagrams the kernel dropped (receive buffer full).",
            labels=["listen", "socket"],
        )
        rx = CounterMetricFamily(
            "gwtel_collector_socket_datagrams", "Datagrams read per socket.", labels=["listen", "socket"]
        )
        for st in svc.listeners.stats:
            drops.add_metric([st.listen, str(st.index)], st.kernel_drops)
            rx.add_metric([st.listen, str(st.index)], st.datagrams)
        yield drops
        yield rx
        octets = CounterMetricFamily(
            "gwtel_collector_link_octets",
            "Interface octet counters from sFlow counter samples (to cross-check the flows' totals).",
            labels=["exporter", "if_index", "direction"],
        )
        flows = CounterMetricFamily(
            "gwtel_collector_link_flow_octets",
            "sFlow flow samples' octets scaled by their sampling rate, per interface they came in or went out on "
            "(interfaces with counter samples only): its rate over gwtel_collector_link_octets' should be near 1.",
            labels=["exporter", "if_index", "direction"],
        )
        flow_octets = svc.state.flow_octets
        for (exporter, if_index), lc in sorted(svc.state.links.items()):
            for direction, counted in (("in", lc.in_octets), ("out", lc.out_octets)):
                labels = [_ip(exporter), str(if_index), direction]
                octets.add_metric(labels, counted)
                flows.add_metric(labels, flow_octets.get((exporter, if_index, direction), 0))
        yield octets
        yield flows
        if self._producer is not None:
            spool = GaugeMetricFamily("gwtel_collector_spool_records", "Records waiting in the disk spool.", labels=[])
            spool.add_metric([], self._producer.spool_pending)
            yield spool
