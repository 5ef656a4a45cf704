"""A PyFlink TableEnvironment configured for this project: connector jars, parallelism, state, checkpoints.

Jobs never configure jars or memory by hand: `make_table_env` puts the Kafka SQL connector (fetched by
`gwtel up` into `<GWTEL_HOME>/lib/flink/`) on `pipeline.jars`, sizes the local MiniCluster for a small
machine, and, given a checkpoint folder, keeps state in RocksDB with checkpoints there.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

from pyflink.common import Configuration
from pyflink.table import EnvironmentSettings, TableEnvironment

from gwtel.config import LocalConfig
from gwtel.errors import ServiceError
from gwtel.services.flink import prometheus_reporter_jar
from processors import udf

CONNECTOR_GLOB = "flink-sql-connector-kafka-*.jar"
PROMETHEUS_REPORTER_FACTORY = "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
# A local TableEnvironment starts PyFlink's Python worker pool, which imports Apache Beam and, through it,
# libraries that warn about their own deprecated calls at import time. Importing it once here, with those
# warnings muted, keeps job output clean (and tests that turn warnings into errors green).
_PYTHON_WORKER_MODULE = "pyflink.fn_execution.beam.beam_worker_pool_service"


def _preload_python_worker() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        importlib.import_module(_PYTHON_WORKER_MODULE)


def _put_on_jvm_class_path(jar: Path) -> None:
    """Add `jar` to the class path of the JVM PyFlink starts (only the first start in a process counts).

    Metric reporters are loaded by the cluster, not from `pipeline.jars`, and a local MiniCluster loads
    no plugins; PyFlink's launcher appends $HADOOP_CLASSPATH to the JVM class path, its one extension point.
    """
    current = os.environ.get("HADOOP_CLASSPATH", "")
    if str(jar) not in current.split(os.pathsep):
        os.environ["HADOOP_CLASSPATH"] = os.pathsep.join(p for p in (current, str(jar)) if p)


def default_jars(home: Path | None = None) -> list[Path]:
    """The connector jars under `<GWTEL_HOME>/lib/flink/` (GWTEL_HOME from the environment by default)."""
    lib = (home if home is not None else LocalConfig().home_path()) / "lib" / "flink"
    found = sorted(lib.glob(CONNECTOR_GLOB))
    if not found:
        raise ServiceError(
            f"no Flink Kafka connector jar in {lib}: run `gwtel up` (or set GWTEL_HOME to where it was fetched)"
        )
    return found


# Labels (Flink scope variables) the job's Prometheus reporter leaves out, see build_configuration.
REPORTER_EXCLUDED_LABELS = ("task_name", "task_attempt_id")


def build_configuration(
    *,
    parallelism: int = 1,
    jars: list[Path] | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_interval_ms: int | None = None,
    extra: Mapping[str, str] | None = None,
    metrics_port: int | None = None,
    restore_from: Path | None = None,
) -> dict[str, str]:
    """The Flink settings `make_table_env` applies, as plain strings (testable without a JVM).

    `metrics_port` starts Flink's Prometheus reporter there; `restore_from` (a checkpoint or savepoint
    folder) starts the job from that state.
    """
    if parallelism < 1:
        raise ValueError(f"parallelism must be >= 1, got {parallelism}")
    chosen = default_jars() if jars is None else jars
    missing = [str(j) for j in chosen if not j.is_file()]
    if missing:
        raise ServiceError(f"Flink job jars not found: {', '.join(missing)}; run `gwtel up` to fetch them")
    conf: dict[str, str] = {
        "parallelism.default": str(parallelism),
        # One slot per parallel subtask, one TaskManager: a MiniCluster that fits 2 cores.
        "taskmanager.numberOfTaskSlots": str(parallelism),
        "local.number-taskmanager": "1",
        # Local execution sizes memory from these (network min and max must be equal there).
        "taskmanager.memory.managed.size": "128m",
        "taskmanager.memory.network.min": "64m",
        "taskmanager.memory.network.max": "64m",
        # Bind anything the MiniCluster opens to loopback; port 0 lets the OS pick, never 8081 clashes.
        "rest.bind-address": "127.0.0.1",
        "rest.address": "127.0.0.1",
        "rest.bind-port": "0",
        "jobmanager.bind-host": "127.0.0.1",
        "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.host": "127.0.0.1",
        # Fail fast in a MiniCluster: a broken job should end the process, not retry forever.
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": "2",
        "restart-strategy.fixed-delay.delay": "1 s",
        # Chained operators pass rows on without a deep copy each. The job fans every FlowRecord out to a
        # dozen branches: copying was 44% of the source thread's time (bench/job.py, `copying_chain`).
        "pipeline.object-reuse": "true",
    }
    if chosen:
        conf["pipeline.jars"] = ";".join(j.resolve().as_uri() for j in chosen)
    if checkpoint_dir is not None:
        conf.update(
            {
                "state.backend.type": "rocksdb",
                "execution.checkpointing.dir": checkpoint_dir.resolve().as_uri(),
                "execution.checkpointing.mode": "EXACTLY_ONCE",
                "execution.checkpointing.interval": f"{checkpoint_interval_ms or 10_000} ms",
                "execution.checkpointing.min-pause": "500 ms",
                # Bounded jobs commit their last transactions in a final checkpoint when inputs end.
                "execution.checkpointing.checkpoints-after-tasks-finish": "true",
                "execution.checkpointing.incremental": "true",
                # RocksDB writes its own LOG per operator into the Flink log folder: keep only its header.
                "state.backend.rocksdb.log.level": "HEADER_LEVEL",
                # Keep the last checkpoint when a job is cancelled or ends, so it can be resumed from.
                "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
            }
        )
    elif checkpoint_interval_ms is not None:
        conf["execution.checkpointing.interval"] = f"{checkpoint_interval_ms} ms"
    if metrics_port is not None:
        # The reporter ships with apache-flink (pyflink/plugins/metrics-prometheus), the same release as
        # the runtime; one reporter serves the JobManager and TaskManager metrics of the MiniCluster.
        conf["metrics.reporter.prom.factory.class"] = PROMETHEUS_REPORTER_FACTORY
        conf["metrics.reporter.prom.port"] = str(metrics_port)
        # task_name is the whole operator chain's name (hundreds of characters in a SQL job) on every task
        # series, and task_attempt_id a new value at each restart: without them one scrape of the job fell
        # from about 1 MB to 565 KB, and series keep their identity across restarts. operator_name,
        # task_id and subtask_index still tell the series apart.
        conf["metrics.reporter.prom.scope.variables.excludes"] = ";".join(REPORTER_EXCLUDED_LABELS)
    if restore_from is not None:
        conf["execution.savepoint.path"] = restore_from.resolve().as_uri()
    if extra:
        conf.update(extra)
    return conf


def make_table_env(
    *,
    streaming: bool,
    parallelism: int = 1,
    jars: list[Path] | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_interval_ms: int | None = None,
    extra: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    metrics_port: int | None = None,
    restore_from: Path | None = None,
) -> TableEnvironment:
    """A TableEnvironment on a local MiniCluster (or the cluster `execution.target` in `extra` names).

    `jars=None` means the connector jars under GWTEL_HOME; pass `[]` for jobs that read no connector
    (batch tests on in-memory rows). The Flink JVM logs to `log_dir` (default `<GWTEL_HOME>/logs/flink`),
    unless $FLINK_LOG_DIR is set; it only takes effect before the first environment of the process.
    """
    # The job's own Java functions go with every environment, connector or not.
    conf = build_configuration(
        parallelism=parallelism,
        jars=[*(default_jars() if jars is None else jars), udf.udf_jar()],
        checkpoint_dir=checkpoint_dir,
        checkpoint_interval_ms=checkpoint_interval_ms,
        extra=extra,
        metrics_port=metrics_port,
        restore_from=restore_from,
    )
    # PyFlink would otherwise write its JVM log into the installed package folder.
    chosen_log_dir = log_dir if log_dir is not None else LocalConfig().home_path() / "logs" / "flink"
    chosen_log_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLINK_LOG_DIR", str(chosen_log_dir))
    _put_on_jvm_class_path(prometheus_reporter_jar())
    if checkpoint_dir is not None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
    _preload_python_worker()
    config = Configuration()
    for key, value in conf.items():
        config.set_string(key, value)
    builder = EnvironmentSettings.new_instance().with_configuration(config)
    builder = builder.in_streaming_mode() if streaming else builder.in_batch_mode()
    t_env = TableEnvironment.create(builder.build())
    udf.register(t_env)
    return t_env
