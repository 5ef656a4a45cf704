"""Java and Maven helpers shared by the JVM services: tool checks and jar gathering from Maven Central.

Jars are gathered by a small pom under `deploy/local/` with `mvn dependency:copy-dependencies` into
`<GWTEL_HOME>/lib/<name>/`. A marker file records what was gathered (versions and the pom's hash), so a
second call is a no-op and a changed pom gathers again. Files land in a temporary folder first, so an
interrupted download never leaves a half-filled lib folder that looks complete.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from gwtel.errors import ServiceError

DEPLOY_LOCAL = Path(__file__).resolve().parents[2] / "deploy" / "local"
MARKER = ".gwtel-jars"
_INSTALL_HINT = "apt-get install maven openjdk-17-jre-headless"


def require_tool(tool: str) -> str:
    """Path of `tool` (java, mvn) on PATH, or a ServiceError that says how to install it."""
    path = shutil.which(tool)
    if path is None:
        raise ServiceError(f"`{tool}` is not on PATH; install it with: {_INSTALL_HINT}")
    return path


def java_version() -> str:
    """First line of `java -version` (it prints to stderr), or a ServiceError."""
    java = require_tool("java")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"`java -version` failed ({exc}); reinstall with: {_INSTALL_HINT}") from None
    text = (out.stderr or out.stdout).strip()
    if out.returncode != 0 or not text:
        raise ServiceError(f"`java -version` exited {out.returncode}: {text[-300:]}")
    return text.splitlines()[0]


def _marker_text(pom: Path, properties: Mapping[str, str]) -> str:
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    lines = [f"{k}={v}" for k, v in sorted(properties.items())]
    return "\n".join([*lines, f"pom-sha256={digest}"]) + "\n"


def jars_present(lib_dir: Path, pom: Path, properties: Mapping[str, str]) -> bool:
    marker = lib_dir / MARKER
    try:
        recorded = marker.read_text(encoding="utf-8")
    except OSError:
        return False
    return recorded == _marker_text(pom, properties) and any(lib_dir.glob("*.jar"))


def maven_copy_dependencies(
    pom: Path, lib_dir: Path, properties: Mapping[str, str] | None = None, timeout_s: float = 600.0
) -> bool:
    """Gather the pom's dependencies into `lib_dir`; return False when they were already there."""
    props = dict(properties or {})
    if jars_present(lib_dir, pom, props):
        return False
    mvn = require_tool("mvn")
    require_tool("java")
    staging = lib_dir.with_name(lib_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    argv = [
        mvn,
        "-B",
        "-q",
        "-Dstyle.color=never",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        *(f"-D{k}={v}" for k, v in sorted(props.items())),
    ]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise ServiceError(
            f"Maven did not finish gathering {pom.parent.name} jars within {timeout_s:.0f}s; "
            "check that Maven Central is reachable (proxy settings in ~/.m2/settings.xml)"
        ) from None
    if out.returncode != 0 or not any(staging.glob("*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        detail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-15:])
        raise ServiceError(
            f"Maven could not gather the {pom.parent.name} jars (exit {out.returncode}) with `{' '.join(argv)}`:\n"
            f"{detail}"
        )
    (staging / MARKER).write_text(_marker_text(pom, props), encoding="utf-8")
    shutil.rmtree(lib_dir, ignore_errors=True)
    staging.rename(lib_dir)
    return True
