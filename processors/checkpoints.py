"""Find the checkpoint a stopped job can be restarted from, and drop those of older runs.

Flink writes each job's checkpoints to `<checkpoint_dir>/<job id>/chk-<n>/`, and a checkpoint is complete
once its `_metadata` file exists. Checkpoints are retained when a job is cancelled or its process dies
(`RETAIN_ON_CANCELLATION`), so the newest complete one of any earlier run is where the next run resumes.
Each run writes a new job folder, so `prune` keeps only the newest few.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from gwtel.errors import UserError

_CHK = re.compile(r"^chk-(\d+)$")


def completed_checkpoints(root: Path) -> list[Path]:
    """Every complete checkpoint under `root`, oldest first (by the time its metadata was written)."""
    found: list[tuple[float, int, Path]] = []
    for meta in root.glob("*/chk-*/_metadata"):
        m = _CHK.match(meta.parent.name)
        if m is None:
            continue
        try:
            mtime = meta.stat().st_mtime
        except OSError:  # removed by Flink while we looked (it keeps only the newest)
            continue
        found.append((mtime, int(m.group(1)), meta.parent))
    return [path for _, _, path in sorted(found)]


def latest_checkpoint(root: Path) -> Path:
    """The newest complete checkpoint under `root`, or a UserError that says what to do."""
    found = completed_checkpoints(root)
    if not found:
        raise UserError(
            f"no completed checkpoint under {root}: the job must run at least one checkpoint interval "
            "(job.checkpoint_interval_ms) before it can be resumed; start without --from-checkpoint"
        )
    return found[-1]


def resolve(spec: str, root: Path) -> Path:
    """`latest` (the newest under `root`) or the path of a checkpoint or savepoint folder."""
    if spec == "latest":
        return latest_checkpoint(root)
    path = Path(spec).expanduser().resolve()
    if not (path / "_metadata").is_file():
        raise UserError(f"{path} is not a completed checkpoint or savepoint (no _metadata file in it)")
    return path


def _last_written(job: Path) -> float:
    """When a job folder last completed a checkpoint (or, without one, when the folder changed)."""
    times = []
    for meta in job.glob("chk-*/_metadata"):
        try:
            times.append(meta.stat().st_mtime)
        except OSError:
            continue
    if times:
        return max(times)
    try:
        return job.stat().st_mtime
    except OSError:
        return 0.0


def prune(root: Path, keep_runs: int, protect: Path | None = None) -> list[Path]:
    """Remove the job folders of all but the newest `keep_runs` runs; return what was removed.

    The folder holding `protect` (the checkpoint being resumed from) is always kept. A resumed job does not
    depend on older folders: Flink restores in NO_CLAIM mode, so the resumed job's first checkpoint is full.
    """
    if keep_runs < 1:
        raise ValueError("keep_runs must be >= 1")
    try:
        jobs = [p for p in root.iterdir() if p.is_dir()]
    except OSError:  # no checkpoint folder yet
        return []
    jobs.sort(key=_last_written, reverse=True)
    kept = {p.resolve() for p in jobs[:keep_runs]}
    if protect is not None:
        kept.update(p.resolve() for p in jobs if p.resolve() in protect.resolve().parents)
    removed = []
    for job in jobs:
        if job.resolve() not in kept:
            shutil.rmtree(job, ignore_errors=True)
            removed.append(job)
    return removed
