"""Run a capture through both agent engines and require identical output (records, counters, errors, frames)."""

from __future__ import annotations

from pathlib import Path

from ingest.agent import Agent, AgentCounters
from ingest.classify import PartnerClassifier
from ingest.config import AgentConfig
from ingest.native import NativeAgent
from ingest.partners import PartnersConfig
from ingest.replay import ReplayResult, replay_files
from schemas.flow_record import FlowRecord

_CLASSIFIER = PartnerClassifier(PartnersConfig.default())


class _Run:
    def __init__(self, records: list[FlowRecord], counters: AgentCounters, res: ReplayResult, stats: object) -> None:
        self.records = records
        self.counters = counters
        self.errors = [str(e) for e in res.errors]
        # Frames read per file, before the damage for a damaged one (what `--allow-truncated` relies on).
        self.frames = [f.frames for f in res.files]
        self.stats = stats


def _python(cfg: AgentConfig, paths: list[Path], pace: bool = False) -> _Run:
    out: list[FlowRecord] = []
    agent = Agent(cfg, _CLASSIFIER, out.append, first_seq=7)
    res = replay_files(agent, paths, pace=pace)
    st = agent.meter.stats
    stats = (st.packets, st.bytes, st.flows_created, st.records, st.exported, st.evicted, st.reoriented)
    return _Run(out, agent.counters, res, (stats, agent.fragments.stats))


def _native(cfg: AgentConfig, paths: list[Path], pace: bool = False) -> _Run:
    out: list[FlowRecord] = []
    agent = NativeAgent(cfg, _CLASSIFIER, out.append, first_seq=7)
    res = replay_files(agent, paths, pace=pace)
    st = agent.meter.stats
    stats = (st.packets, st.bytes, st.flows_created, st.records, st.exported, st.evicted, st.reoriented)
    return _Run(out, agent.counters, res, (stats, agent.fragments))


def same_records(cfg: AgentConfig, paths: list[Path], *, pace: bool = False) -> _Run:
    ref = _python(cfg, paths, pace)
    nat = _native(cfg, paths, pace)
    assert nat.errors == ref.errors
    assert nat.frames == ref.frames
    assert nat.counters == ref.counters
    assert len(nat.records) == len(ref.records)
    for a, b in zip(nat.records, ref.records, strict=True):
        assert a == b, f"native {a}\n!= python {b}"
    assert nat.stats == ref.stats
    return ref
