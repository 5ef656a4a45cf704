"""Corpus fixtures: the shared test data folder named by $GWTEL_TEST_DATA, and its MANIFEST.tsv."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest


def _data_dir() -> Path:
    value = os.environ.get("GWTEL_TEST_DATA")
    if not value:
        pytest.fail(
            "GWTEL_TEST_DATA is not set: point it at the shared test data folder "
            "(the one holding MANIFEST.tsv and pcaps/), e.g. GWTEL_TEST_DATA=/work/shared/data",
            pytrace=False,
        )
    path = Path(value)
    if not (path / "MANIFEST.tsv").is_file() or not (path / "pcaps").is_dir():
        pytest.fail(
            f"GWTEL_TEST_DATA={value}: no MANIFEST.tsv and pcaps/ folder there; "
            "point it at the shared test data folder",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The shared test data folder; the test fails (never skips) when it is not configured."""
    return _data_dir()


@pytest.fixture(scope="session")
def manifest(corpus_dir: Path) -> dict[str, dict[str, str]]:
    """MANIFEST rows keyed by file name (the manifest's folder layout may differ from the disk's)."""
    with (corpus_dir / "MANIFEST.tsv").open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return {Path(row["local_name"]).name: row for row in rows if row["local_name"].startswith("pcaps/")}


def capture_files(corpus_dir: Path) -> list[Path]:
    return sorted(p for p in (corpus_dir / "pcaps").rglob("*") if p.is_file())
