"""Flink job and loader settings (the `job:` and `loader:` sections)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from processors.landing import MAX_BATCH_ROWS

# Kafka brokers refuse producer transactions longer than transaction.max.timeout.ms (15 min by default).
BROKER_MAX_TRANSACTION_MS = 15 * 60 * 1000


# Flink settings the job derives itself, with where to set them instead.
RESERVED_FLINK_SETTINGS = {
    "pipeline.jars": "the job ships its own jars (the Kafka connector and its Java functions)",
    "parallelism.default": "use job.parallelism",
    "table.local-time-zone": "the job computes window starts in UTC",
    "execution.savepoint.path": "use `gwtel aggregate --from-checkpoint`",
    "execution.checkpointing.interval": "use job.checkpoint_interval_ms",
    "execution.checkpointing.dir": "use job.checkpoint_dir",
    "pipeline.auto-watermark-interval": "use job.watermark_interval_ms",
}


def _flink_value(value: object) -> object:
    """A YAML scalar as Flink writes it: true -> "true", 8081 -> "8081"; anything else is left to validation."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    return value


class JobConfig(BaseModel):
    """The aggregation job. Times are event time unless named otherwise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Tumbling window lengths; each divides a day so windows of every size share UTC day boundaries and
    # the shorter ones roll up exactly into the longer ones.
    window_sizes_s: tuple[int, ...] = (10, 60)
    # What moves event time forward (docs/processors.md, "Event time, watermark, late records"):
    # `export_ns`: the agent cuts every flow's record at each multiple of agent.active_timeout_s, so once it
    # has exported at time E no later record of it ends before the boundary at or before E; the watermark
    # follows that boundary, held back by the bound. `last_ns`: the newest last packet minus the bound
    # (for producers that do not cut at boundaries; the bound must then exceed their idle timeout).
    watermark_from: Literal["export_ns", "last_ns"] = "export_ns"
    # export_ns: how far one agent's export clock may trail another's writing to the same partition (and
    # delivery reorder); a window closes this long after the first record exported past its end.
    # last_ns: the out-of-orderness allowed before a record is late.
    watermark_bound_ms: int = Field(default=2_000, ge=0)
    # How often (processing time) the source emits a watermark. Each one makes every window operator flush
    # its buffer of pre-aggregated rows into state: 1 s sustained 1.06-1.09x the records/s of Flink's
    # 200 ms (bench/job.py, `watermark_1s`), but window rows reached ClickHouse about 8 s later in two
    # streaming runs of bench/e2e.py (62-63 s against 54-56 s), so the default stays at 200 ms.
    watermark_interval_ms: int = Field(default=200, ge=10, le=60_000)
    # A Kafka partition with no records for this long stops holding back the watermark.
    idle_timeout_ms: int = Field(default=30_000, ge=1)
    # Records whose last packet lies further ahead of the job's clock (the loader: of the record's Kafka
    # timestamp) go to the dead-letter topic (bad_value): one far-future record would otherwise move the
    # watermark past every real one.
    max_future_skew_s: int = Field(default=900, ge=0)
    parallelism: int = Field(default=1, ge=1)
    checkpoint_interval_ms: int = Field(default=10_000, ge=100)
    # Relative paths are resolved under the local services home (GWTEL_HOME).
    checkpoint_dir: str = "flink/checkpoints"
    # Each run of the job writes its own folder there; the job removes all but this many newest at start.
    checkpoint_retain_runs: int = Field(default=3, ge=1)
    group_id: str = "gwtel-aggregate"
    # Must be unique per job on a cluster: Flink fences (aborts) open transactions with this prefix.
    transactional_id_prefix: str = "gwtel-aggregate"
    transaction_timeout_ms: int = Field(default=600_000, ge=1_000, le=BROKER_MAX_TRANSACTION_MS)
    # `group-offsets`: continue from the offsets the last run committed on its checkpoints (the group's
    # first run starts at the earliest offset). A restart from a checkpoint ignores it: offsets come from
    # the checkpoint's state.
    startup_mode: str = Field(default="group-offsets", pattern="^(earliest-offset|latest-offset|group-offsets)$")
    # Flink's Prometheus reporter (all job, task and Kafka source metrics); 0 picks a free port.
    metrics_port: int = Field(default=9472, ge=0, le=65535)
    # Extra Flink settings for the job, e.g. to submit it to a cluster instead of the in-process
    # MiniCluster: {execution.target: remote, rest.address: <JobManager host>, rest.port: 8081}.
    flink: dict[str, str] = Field(default_factory=dict)

    @field_validator("flink", mode="before")
    @classmethod
    def _flink(cls, v: object) -> object:
        if not isinstance(v, dict):
            return v
        out = {}
        for key, value in v.items():
            if key in RESERVED_FLINK_SETTINGS:
                raise ValueError(f"job.flink may not set {key!r}: {RESERVED_FLINK_SETTINGS[key]}")
            out[key] = _flink_value(value)
        return out

    @field_validator("window_sizes_s")
    @classmethod
    def _windows(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v:
            raise ValueError("give at least one window size, e.g. [10, 60]")
        for size in v:
            if size < 1 or 86_400 % size:
                raise ValueError(f"window size {size} s must be >= 1 and divide 86400 (a day)")
        if len(set(v)) != len(v):
            raise ValueError(f"window sizes {list(v)} repeat a value")
        return tuple(sorted(v))

    @model_validator(mode="after")
    def _txn_outlives_checkpoint(self) -> JobConfig:
        # A transaction stays open from one checkpoint to the next commit; shorter timeouts abort it.
        if self.transaction_timeout_ms < 3 * self.checkpoint_interval_ms:
            raise ValueError(
                f"transaction_timeout_ms ({self.transaction_timeout_ms}) must be at least 3x "
                f"checkpoint_interval_ms ({self.checkpoint_interval_ms})"
            )
        return self


class LoaderConfig(BaseModel):
    """Kafka -> ClickHouse loader: batching, retries, metrics, and the retention of the tables it fills.

    TTLs are applied by `gwtel migrate` (and the loader at start): changing one here alters the table.
    The 5-minute rollup keeps more than a year by default because monthly 95th-percentile billing reads it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A landing batch must reach ClickHouse's views as one block (processors.landing).
    batch_rows: int = Field(default=50_000, ge=1, le=MAX_BATCH_ROWS)
    batch_seconds: float = Field(default=2.0, gt=0)
    # Landing inserts of different partitions sent at once (one batch per partition in flight), each thread
    # with its own client: a ClickHouse server (the embedded one too) parses them on as many cores as it has
    # free. 1 by default: on the 2-core test machine 2 stores 1.35x the rows with the loader alone, but end to end
    # the Flink job shares those cores and the pipeline measured no faster (docs/clickhouse.md, "Throughput").
    insert_threads: int = Field(default=1, ge=1, le=32)
    group_id: str = Field(default="gwtel-loader", min_length=1)
    retry_initial_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)
    lag_interval_s: float = Field(default=5.0, gt=0)
    metrics_port: int = Field(default=9473, ge=0, le=65535)
    # The job emits several window sizes; the 5 min / 1 h / 1 day rollups read exactly one of them
    # (summing two sizes would count traffic twice). Fixed when the rollup views are created.
    rollup_window_s: int = Field(default=60, ge=1)
    ttl_flows_raw_days: int = Field(default=15, ge=1)
    ttl_window_days: int = Field(default=15, ge=1)
    ttl_5m_days: int = Field(default=400, ge=1)
    ttl_1h_days: int = Field(default=730, ge=1)
    ttl_1d_days: int = Field(default=1830, ge=1)

    @field_validator("rollup_window_s")
    @classmethod
    def _divides_5m(cls, v: int) -> int:
        if 300 % v:
            raise ValueError(f"rollup_window_s {v} must divide 300 so windows fill 5-minute buckets exactly")
        return v
