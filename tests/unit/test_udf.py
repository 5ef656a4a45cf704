"""Building the jar of the job's Java functions: cached by content, clear errors when it cannot be built."""

from __future__ import annotations

import os
import re
import time
import zipfile
from pathlib import Path

import pytest

from gwtel.errors import ServiceError
from processors import udf
from schemas.aggregate import METRICS
from schemas.histogram import MAX_BUCKET


def test_jar_holds_the_functions_and_is_built_once(tmp_path: Path) -> None:
    jar = udf.udf_jar(tmp_path)
    with zipfile.ZipFile(jar) as z:
        names = set(z.namelist())
        # Flink finds the record format through this entry when a table names it.
        factories = z.read("META-INF/services/org.apache.flink.table.factories.Factory").decode().split()
    assert {cls.replace(".", "/") + ".class" for cls in udf.FUNCTIONS.values()} <= names
    assert factories == ["gwtel.format.FlowRecordFormatFactory"]
    assert "gwtel/format/FlowRecordFormatFactory.class" in names
    built = jar.stat().st_mtime_ns
    assert udf.udf_jar(tmp_path) == jar and jar.stat().st_mtime_ns == built
    assert list(jar.parent.iterdir()) == [jar]  # no staging file left behind


def test_an_edited_source_builds_a_new_jar_and_a_stale_one_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = tmp_path / "java"
    src = sources / "gwtel" / "udf" / "Probe.java"
    src.parent.mkdir(parents=True)
    src.write_text("package gwtel.udf; public final class Probe { public static int v() { return 1; } }\n")
    monkeypatch.setattr(udf, "JAVA_SOURCES", sources)
    first = udf.udf_jar(tmp_path / "home")
    src.write_text("package gwtel.udf; public final class Probe { public static int v() { return 2; } }\n")
    second = udf.udf_jar(tmp_path / "home")
    # Another checkout sharing the home may run a job on the first jar: it stays until untouched for a day.
    assert second != first and second.is_file() and first.is_file()
    old = time.time() - udf.STALE_JAR_S - 60
    os.utime(first, (old, old))
    src.write_text("package gwtel.udf; public final class Probe { public static int v() { return 3; } }\n")
    third = udf.udf_jar(tmp_path / "home")
    assert third.is_file() and second.is_file() and not first.exists()


def test_a_compile_error_is_reported_with_the_compiler_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = tmp_path / "java"
    (sources / "gwtel").mkdir(parents=True)
    (sources / "gwtel" / "Broken.java").write_text("package gwtel; class Broken { int x = ; }\n")
    monkeypatch.setattr(udf, "JAVA_SOURCES", sources)
    with pytest.raises(ServiceError, match=r"(?s)building the job's Java functions failed.*Broken\.java"):
        udf.udf_jar(tmp_path / "home")
    assert not any((tmp_path / "home" / "lib" / "udf").iterdir())


def test_without_a_jdk_the_error_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("processors.udf.shutil.which", lambda _name: None)
    with pytest.raises(ServiceError, match=r"javac not found.*JDK"):
        udf.udf_jar(tmp_path)


def test_bucket_keys_agree_between_java_and_sql() -> None:
    java = (udf.JAVA_SOURCES / "gwtel" / "udf" / "BucketCounts.java").read_text()
    stride = re.search(r"int KEY_STRIDE = 1 << (\d+);", java)
    assert stride is not None and 1 << int(stride.group(1)) == udf.KEY_STRIDE > MAX_BUCKET
    accumulate = java[java.index("public void accumulate(") : java.index(") {", java.index("public void accumulate("))]
    assert accumulate.count("ArrayData h") == len(METRICS)
