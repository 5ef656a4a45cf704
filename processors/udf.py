"""The job's Java code: built once from ``processors/java`` into a jar, its functions registered on every environment.

The jar also holds the record format ``gwtel-flow`` (``processors/java/gwtel/format``), which Flink finds through
the jar's ``META-INF/services`` entry when a table names it.

Flink SQL runs a Java function in the JVM without crossing to Python; a Python one would cost
more per row than the rows it saves. The jar is compiled with the JDK's ``javac`` against PyFlink's own
jars and kept under ``<GWTEL_HOME>/lib/udf/``, named by a hash of its sources and the Flink release, so an
edit or an upgrade builds a new one and nothing stale is ever loaded. It goes on ``pipeline.jars``, which
ships it with the job to a remote cluster too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import pyflink

from gwtel.config import LocalConfig
from gwtel.errors import ServiceError

JAVA_SOURCES = Path(__file__).parent / "java"
# SQL name -> Java class of each function the job calls.
BUCKET_COUNTS = "GWTEL_BUCKET_COUNTS"
SIDE_COUNTS = "GWTEL_SIDE_COUNTS"
FUNCTIONS = {
    BUCKET_COUNTS: "gwtel.udf.BucketCounts",
    SIDE_COUNTS: "gwtel.udf.SideCounts",
}
# The record format's name in a table's `format` option (FlowRecordFormatFactory.IDENTIFIER).
FLOW_FORMAT = "gwtel-flow"
# BucketCounts keys its map by metric * KEY_STRIDE + bucket (its own KEY_STRIDE, which tests/unit/test_udf.py
# checks against this one and schemas.histogram.MAX_BUCKET); the SQL that reads the map splits it again.
KEY_STRIDE = 1 << 16
_JAVA_RELEASE = "11"
STALE_JAR_S = 86_400


def _sources() -> list[Path]:
    return sorted(JAVA_SOURCES.rglob("*.java"))


def _resources() -> list[Path]:
    """Files the jar carries as they are (the service entry that names the format factory)."""
    return sorted(p for p in (JAVA_SOURCES / "META-INF").rglob("*") if p.is_file())


def _flink_lib() -> Path:
    return Path(pyflink.__file__).parent / "lib"


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for src in [*_sources(), *_resources()]:
        digest.update(src.relative_to(JAVA_SOURCES).as_posix().encode())
        digest.update(src.read_bytes())
    digest.update(" ".join(sorted(p.name for p in _flink_lib().glob("*.jar"))).encode())
    digest.update(_JAVA_RELEASE.encode())
    return digest.hexdigest()[:16]


def jar_path(home: Path | None = None) -> Path:
    """Where the jar of the current sources lives (it may not be built yet)."""
    root = home if home is not None else LocalConfig().home_path()
    return root / "lib" / "udf" / f"gwtel-udf-{_fingerprint()}.jar"


def udf_jar(home: Path | None = None) -> Path:
    """The jar of the job's Java functions, built first if the current sources have none yet."""
    target = jar_path(home)
    if target.is_file():
        return target
    javac = shutil.which("javac")
    if javac is None:
        raise ServiceError(
            "javac not found: the job's Java functions are built with a JDK (11 or later); install one "
            "(e.g. `apt install openjdk-17-jdk-headless`) or put its bin folder on PATH"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gwtel-udf-") as tmp:
        classes = Path(tmp) / "classes"
        cmd = [javac, "--release", _JAVA_RELEASE, "-nowarn", "-d", str(classes),
               "-cp", str(_flink_lib() / "*"), *map(str, _sources())]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ServiceError(f"building the job's Java functions failed:\n{done.stderr.strip()}")
        # Written aside, then renamed: a concurrent build or reader never sees half a jar.
        partial = Path(tmp) / target.name
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as jar:
            jar.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\n\r\n")
            for cls in sorted(classes.rglob("*.class")):
                jar.write(cls, cls.relative_to(classes).as_posix())
            for res in _resources():
                jar.write(res, res.relative_to(JAVA_SOURCES).as_posix())
        staged = target.parent / f".{target.name}.{os.getpid()}"
        shutil.move(str(partial), str(staged))
        os.replace(staged, target)
    # Another checkout sharing this home (its own sources: another jar) may be running a job on its jar: only
    # jars untouched for a day are removed, not every other one.
    stale = time.time() - STALE_JAR_S
    for old in target.parent.glob("gwtel-udf-*.jar"):
        with contextlib.suppress(FileNotFoundError):
            if old != target and old.stat().st_mtime < stale:
                old.unlink(missing_ok=True)
    return target


def register(t_env: Any) -> None:
    """Make the job's functions callable by their SQL names in ``t_env`` (its jars must hold ``udf_jar``)."""
    for name, cls in FUNCTIONS.items():
        t_env.create_java_temporary_system_function(name, cls)
