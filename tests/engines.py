"""Run a capture through both agent engines and require identical output (records, counters, errors, frames).

The native engine's records arrive encoded: they must decode to the reference's FlowRecords field by field, be
byte for byte what `schemas.codec.encode` writes for those, carry the keys `flow_key` gives them, and add up to
the same per-partner metrics. With application rules (`apps`), the engine's evaluation of them is compared with
the reference's (`ingest.applications.AppClassifier`) the same way.
"""

from __future__ import annotations

from pathlib import Path

from ingest.agent import Agent, AgentCounters
from ingest.agent_metrics import PartnerTally
from ingest.applications import NO_CLASSES, AppClassifier
from ingest.classification import Classifier
from ingest.classify import PartnerClassifier
from ingest.config import AgentConfig
from ingest.native import NativeAgent
from ingest.partners import PartnersConfig
from ingest.producer import flow_key
from ingest.replay import ReplayResult, replay_files
from ingest.sinks import EncodedBatch
from schemas import codec
from schemas.flow_record import FlowRecord

_CLASSIFIER = PartnerClassifier(PartnersConfig.default())


class Captured:
    """A sink keeping what it is given: single records, or batches (their pairs and their records decoded)."""

    def __init__(self) -> None:
        self.records: list[FlowRecord] = []
        self.pairs: list[tuple[bytes, bytes]] = []

    def __call__(self, rec: FlowRecord) -> None:
        self.records.append(rec)

    def write_batch(self, batch: EncodedBatch) -> None:
        self.pairs += batch.pairs()
        self.records += batch.records()


class _Run:
    def __init__(
        self,
        records: list[FlowRecord],
        counters: AgentCounters,
        res: ReplayResult,
        stats: object,
        partners: PartnerTally | None = None,
        pairs: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.records = records
        self.partners = partners
        self.pairs = pairs or []
        self.counters = counters
        self.errors = [str(e) for e in res.errors]
        # Frames read per file, before the damage for a damaged one (what `--allow-truncated` relies on).
        self.frames = [f.frames for f in res.files]
        self.stats = stats


def _python(cfg: AgentConfig, paths: list[Path], pace: bool, classifier: Classifier, apps: AppClassifier) -> _Run:
    out: list[FlowRecord] = []
    agent = Agent(cfg, classifier, out.append, first_seq=7, apps=apps)
    res = replay_files(agent, paths, pace=pace)
    st = agent.meter.stats
    stats = (st.packets, st.bytes, st.flows_created, st.records, st.exported, st.evicted, st.reoriented)
    return _Run(out, agent.counters, res, (stats, agent.fragments.stats))


def _native(cfg: AgentConfig, paths: list[Path], pace: bool, classifier: Classifier, apps: AppClassifier) -> _Run:
    out = Captured()
    agent = NativeAgent(cfg, classifier, out, first_seq=7, apps=apps)
    res = replay_files(agent, paths, pace=pace)
    st = agent.meter.stats
    stats = (st.packets, st.bytes, st.flows_created, st.records, st.exported, st.evicted, st.reoriented)
    return _Run(out.records, agent.counters, res, (stats, agent.fragments), agent.partners, out.pairs)


def same_records(
    cfg: AgentConfig,
    paths: list[Path],
    *,
    pace: bool = False,
    classifier: Classifier = _CLASSIFIER,
    apps: AppClassifier = NO_CLASSES,
) -> _Run:
    ref = _python(cfg, paths, pace, classifier, apps)
    nat = _native(cfg, paths, pace, classifier, apps)
    assert nat.errors == ref.errors
    assert nat.frames == ref.frames
    assert nat.counters == ref.counters
    assert len(nat.records) == len(ref.records)
    for a, b in zip(nat.records, ref.records, strict=True):
        assert a == b, f"native {a}\n!= python {b}"
    assert nat.pairs == [(flow_key(r), codec.encode(r)) for r in ref.records]
    tally = PartnerTally()
    for r in ref.records:
        tally.add(r)
    assert nat.partners is not None
    assert nat.partners.traffic == tally.traffic
    assert nat.partners.records == tally.records
    assert {k: h.counts for k, h in nat.partners.handshake.items()} == {k: h.counts for k, h in tally.handshake.items()}
    for k, h in tally.handshake.items():
        assert abs(nat.partners.handshake[k].total - h.total) <= 1e-9 * max(1.0, h.total)
    assert nat.stats == ref.stats
    return ref
