"""Flink runtime: not a process. Jobs run on a MiniCluster inside the `gwtel aggregate` process (PyFlink
starts its JVM), or on a remote cluster in deployment. What this "service" owns is the Kafka SQL connector
jar under `<GWTEL_HOME>/lib/flink/`, the Prometheus metrics reporter jar, the jar of the job's Java functions
(built by `processors.udf`), and the checks that a job can start here.

The reporter jar comes with apache-flink itself (`pyflink/plugins/metrics-prometheus/`), built from the
same release as the runtime, so it can never be of another version than the JVM that loads it. A local
MiniCluster does not load plugins: `processors.flink_env` puts the jar on the JVM class path instead.

It has the same interface as the process services so `gwtel up/status` can list it next to them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from gwtel.config import GwtelConfig
from gwtel.errors import ServiceError
from gwtel.services.base import Health
from gwtel.services.java import DEPLOY_LOCAL, jars_present, java_version, maven_copy_dependencies
from processors import udf

CONNECTOR_VERSION = "5.0.0-2.2"
CONNECTOR_JAR = f"flink-sql-connector-kafka-{CONNECTOR_VERSION}.jar"
_POM = DEPLOY_LOCAL / "flink" / "pom.xml"
_PROPS = {"flink.kafka.connector.version": CONNECTOR_VERSION}
REPORTER_GLOB = "plugins/metrics-prometheus/flink-metrics-prometheus-*.jar"


def prometheus_reporter_jar() -> Path:
    """Flink's Prometheus reporter as shipped in the apache-flink package, or a ServiceError."""
    spec = importlib.util.find_spec("pyflink")
    if spec is None or spec.origin is None:
        raise ServiceError("pyflink is not importable: install the project's dependencies (apache-flink)")
    found = sorted(Path(spec.origin).parent.glob(REPORTER_GLOB))
    if not found:
        raise ServiceError(
            f"no Prometheus reporter ({REPORTER_GLOB}) in {Path(spec.origin).parent}: reinstall apache-flink"
        )
    return found[-1]


class FlinkRuntime:
    name = "flink"

    def __init__(self, cfg: GwtelConfig, home: Path) -> None:
        self.cfg = cfg
        self.home = home
        self.lib_dir = home / "lib" / "flink"

    def fetch(self) -> None:
        maven_copy_dependencies(_POM, self.lib_dir, _PROPS)

    def connector_jar(self) -> Path:
        return self.lib_dir / CONNECTOR_JAR

    def jars(self) -> list[Path]:
        """Every jar a job needs on `pipeline.jars` (today: the Kafka SQL connector)."""
        return [self.connector_jar()]

    def endpoint(self) -> str:
        return "local MiniCluster (in process)"

    def running(self) -> bool:
        return self.connector_jar().is_file() and jars_present(self.lib_dir, _POM, _PROPS)

    def health(self) -> Health:
        if importlib.util.find_spec("pyflink") is None:
            return Health(False, "pyflink is not importable: install the project's dependencies (apache-flink)")
        try:
            java = java_version()
        except ServiceError as exc:
            return Health(False, str(exc))
        if not self.running():
            return Health(False, f"{self.connector_jar()} is missing: run `gwtel up` to fetch it")
        try:
            reporter = prometheus_reporter_jar()
        except ServiceError as exc:
            return Health(False, str(exc))
        return Health(True, f"PyFlink with {CONNECTOR_JAR} and {reporter.name} on {java}")

    def start(self) -> None:
        self.fetch()
        # Built here so a missing JDK shows at `gwtel up`, not at the first job (which would build it too).
        udf.udf_jar(self.home)
        h = self.health()
        if not h.ok:
            raise ServiceError(f"flink: {h.detail}")

    def stop(self) -> None:
        """Nothing runs between jobs."""
