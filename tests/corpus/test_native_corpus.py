"""Every capture of the shared corpus through both agent engines: identical records, counters and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.classify import PartnerClassifier
from ingest.config import AgentConfig
from ingest.native import NativeAgent
from ingest.partners import PartnersConfig
from ingest.sources import CaptureError
from tests.corpus.conftest import capture_files
from tests.engines import same_records

pytestmark = [pytest.mark.corpus, pytest.mark.timeout(300)]


def test_every_corpus_capture_matches(corpus_dir: Path) -> None:
    files = capture_files(corpus_dir)
    assert len(files) >= 20
    errors = 0
    for path in files:
        for cfg in (AgentConfig(), AgentConfig(decap_gre=True, decap_vxlan=True, decap_gtp=True)):
            ref = same_records(cfg, [path])
            errors += bool(ref.errors)
    assert errors >= 2  # corrupt files gave the same CaptureError text in both engines


def test_unreadable_file_raises_the_reference_error(corpus_dir: Path) -> None:
    path = corpus_dir / "pcaps" / "libpcap__pcap-invalid-version-1.pcap"
    agent = NativeAgent(AgentConfig(), PartnerClassifier(PartnersConfig.default()), lambda _r: None)
    with pytest.raises(CaptureError, match=r"unsupported pcap version 1\.4"):
        agent.replay_file(path)
