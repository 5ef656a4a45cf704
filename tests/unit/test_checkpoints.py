"""Finding the checkpoint to resume from, on folders laid out as Flink writes them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gwtel.errors import UserError
from processors import checkpoints


def chk(root: Path, job: str, n: int, mtime: float, complete: bool = True) -> Path:
    path = root / job / f"chk-{n}"
    path.mkdir(parents=True)
    if complete:
        meta = path / "_metadata"
        meta.write_bytes(b"x")
        os.utime(meta, (mtime, mtime))
    return path


def test_latest_is_the_newest_complete_checkpoint_of_any_job(tmp_path: Path) -> None:
    old = chk(tmp_path, "a" * 32, 9, mtime=1000)
    new = chk(tmp_path, "b" * 32, 2, mtime=2000)  # a later run: lower number, newer metadata
    chk(tmp_path, "b" * 32, 3, mtime=0, complete=False)  # being written: no _metadata yet
    (tmp_path / ("b" * 32) / "shared").mkdir()
    assert checkpoints.completed_checkpoints(tmp_path) == [old, new]
    assert checkpoints.latest_checkpoint(tmp_path) == new
    assert checkpoints.resolve("latest", tmp_path) == new


def test_explicit_path_must_hold_metadata(tmp_path: Path) -> None:
    done = chk(tmp_path, "c" * 32, 1, mtime=1000)
    assert checkpoints.resolve(str(done), tmp_path / "elsewhere") == done.resolve()
    unfinished = chk(tmp_path, "c" * 32, 2, mtime=0, complete=False)
    with pytest.raises(UserError, match="no _metadata"):
        checkpoints.resolve(str(unfinished), tmp_path)


def test_no_checkpoint_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="without --from-checkpoint"):
        checkpoints.latest_checkpoint(tmp_path / "never-ran")


def test_prune_keeps_the_newest_runs_and_the_one_being_resumed(tmp_path: Path) -> None:
    oldest = chk(tmp_path, "a" * 32, 9, mtime=1000)
    chk(tmp_path, "b" * 32, 4, mtime=2000)
    chk(tmp_path, "c" * 32, 7, mtime=3000)
    newest = chk(tmp_path, "d" * 32, 1, mtime=4000)
    removed = checkpoints.prune(tmp_path, keep_runs=2, protect=oldest)
    assert sorted(p.name for p in removed) == ["b" * 32]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a" * 32, "c" * 32, "d" * 32]
    assert checkpoints.latest_checkpoint(tmp_path) == newest
    assert [p.name for p in checkpoints.prune(tmp_path, keep_runs=1)] == ["c" * 32, "a" * 32]
    assert checkpoints.prune(tmp_path / "missing", keep_runs=1) == []
