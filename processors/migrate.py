"""Apply the ClickHouse migrations in `schemas/migrations/` in order, recording each in `schema_migrations`.

A migration is `NNNN_name.sql`: statements separated by a `;` at the end of a line, with `${db}` and the
`${ttl_*_days}` retention parameters substituted at apply time. Every statement is idempotent on its own
(`IF NOT EXISTS`), so a run interrupted half way through a migration simply runs it again; the version row is
written only after all its statements succeeded. A migration whose text changed after it was applied is an
error: released migrations are never edited, a new one is added instead.

Retention is configuration, not schema: after the migrations, `reconcile_ttls` alters a table's TTL only when
it differs from the configured number of days, so re-running changes nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any, Final

import schemas.migrations
from gwtel.errors import UserError
from processors.cluster import ClusterSchema
from processors.config import JobConfig, LoaderConfig

DEFAULT_WINDOW_SIZES_S: Final = JobConfig().window_sizes_s

MIGRATIONS_DIR: Final = Path(schemas.migrations.__file__).parent
VERSION_TABLE: Final = "schema_migrations"
_NAME_RE: Final = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_TTL_RE: Final = re.compile(r"\bTTL\s+(\w+)\s*\+\s*toIntervalDay\((\d+)\)")
_DB_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MV_WINDOW_RE: Final = re.compile(r"\bwindow_s\s*=\s*(\d+)")

# Which retention setting governs which table (the migrations use the same parameter names).
TTL_PARAMS: Final[Mapping[str, str]] = {
    "flows_raw": "ttl_flows_raw_days",
    "flows_late": "ttl_flows_raw_days",
    "flows_quarantine": "ttl_flows_raw_days",
    "flows_batches": "ttl_flows_raw_days",
    "link_counters": "ttl_flows_raw_days",
    "bandwidth_window": "ttl_window_days",
    "latency_window": "ttl_window_days",
    "latency_hist_window": "ttl_window_days",
    "bandwidth_5m": "ttl_5m_days",
    "latency_5m": "ttl_5m_days",
    "latency_hist_5m": "ttl_5m_days",
    "bandwidth_1h": "ttl_1h_days",
    "latency_1h": "ttl_1h_days",
    "latency_hist_1h": "ttl_1h_days",
    "bandwidth_1d": "ttl_1d_days",
    "latency_1d": "ttl_1d_days",
    "latency_hist_1d": "ttl_1d_days",
}


# A statement that changes stored rows (an ALTER ... UPDATE, a MODIFY COLUMN conversion) returns when its mutation
# has run on every replica: the next statement may read what it wrote (0013: UPDATE, then the type's conversion).
STATEMENT_SETTINGS: Final = {"mutations_sync": 2}


class MigrationError(UserError):
    """The migrations on disk and the state of the database disagree, or a statement failed."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    text: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def discover(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in `folder`, ordered; versions must be 1, 2, 3, ... without gaps or repeats."""
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        m = _NAME_RE.match(path.name)
        if m is None:
            raise MigrationError(f"{path}: migration files are named NNNN_lowercase_name.sql")
        found.append(Migration(int(m.group(1)), m.group(2), path.read_text(encoding="utf-8")))
    for expected, mig in enumerate(found, start=1):
        if mig.version != expected:
            raise MigrationError(f"{folder}: expected migration {expected:04d} next, found {mig.version:04d}")
    return found


def params_from(
    database: str, loader: LoaderConfig, window_sizes_s: Sequence[int] = DEFAULT_WINDOW_SIZES_S
) -> dict[str, str]:
    """Substitution parameters of the migrations: the database, every retention setting, the rollups' window
    size and the job's window sizes (the late rows' view, late_into_windows)."""
    if not _DB_RE.match(database):
        raise MigrationError(f"database name {database!r} must be letters, digits and underscores")
    out = {"db": database, "rollup_window_s": str(int(loader.rollup_window_s))}
    out["window_sizes_s"] = "[" + ", ".join(str(int(w)) for w in window_sizes_s) + "]"
    for name in set(TTL_PARAMS.values()):
        out[name] = str(int(getattr(loader, name)))
    return out


def split_statements(sql: str) -> list[str]:
    """Split on `;` at the end of a line; comment lines before a statement are dropped."""
    statements: list[str] = []
    current: list[str] = []
    for line in sql.splitlines():
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current).rstrip().removesuffix(";"))
            current = []
    statements.append("\n".join(current))
    return [s for s in (_strip_leading_comments(c) for c in statements) if s]


def _strip_leading_comments(chunk: str) -> str:
    lines = chunk.strip().splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines).strip()


def render(mig: Migration, params: Mapping[str, str]) -> list[str]:
    try:
        return split_statements(Template(mig.text).substitute(params))
    except (KeyError, ValueError) as exc:
        raise MigrationError(f"migration {mig.version:04d}_{mig.name}: bad parameter ({exc})") from None


class Migrator:
    """Brings one database up to a migration version; safe to run any number of times, from any state."""

    def __init__(
        self,
        client: Any,
        database: str,
        loader: LoaderConfig | None = None,
        migrations: Sequence[Migration] | None = None,
        window_sizes_s: Sequence[int] = DEFAULT_WINDOW_SIZES_S,
        cluster: str | None = None,
    ) -> None:
        self.client = client
        self.database = database
        self.params = params_from(database, loader or LoaderConfig(), window_sizes_s)
        self.migrations = list(migrations) if migrations is not None else discover()
        # Cluster mode: the same statements, transformed (processors.cluster); its ledger is replicated.
        self.cluster = ClusterSchema(cluster, database) if cluster else None
        if self.cluster is not None:
            self.cluster.learn(s for mig in self.migrations for s in render(mig, self.params))

    def _statements(self, mig: Migration) -> list[str]:
        single = render(mig, self.params)
        return single if self.cluster is None else self.cluster.all_statements(single)

    def _bootstrap(self) -> None:
        if self.cluster is not None:
            for stmt in self.cluster.bootstrap():
                self.client.command(stmt)
            return
        db = self.database
        self.client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
        self.client.command(
            f"CREATE TABLE IF NOT EXISTS {db}.{VERSION_TABLE} ("
            " version UInt32, name String, checksum String,"
            " applied_at DateTime64(3, 'UTC') DEFAULT now64(3))"
            " ENGINE = MergeTree ORDER BY version"
        )

    def applied(self) -> dict[int, str]:
        """version -> checksum of what is recorded as applied (empty when the version table is absent)."""
        exists = self.client.command(
            "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}",
            parameters={"db": self.database, "t": VERSION_TABLE},
        )
        if int(exists) == 0:
            return {}
        rows = self.client.query(
            f"SELECT version, any(checksum) FROM {self.database}.{VERSION_TABLE} GROUP BY version"
        ).result_rows
        return {int(v): str(c) for v, c in rows}

    def current_version(self) -> int:
        return max(self.applied(), default=0)

    def migrate(self, target: int | None = None) -> list[int]:
        """Apply every migration up to `target` (default: the last) not applied yet; return their versions."""
        self._bootstrap()
        done = self.applied()
        newly: list[int] = []
        for mig in self.migrations:
            if target is not None and mig.version > target:
                break
            if mig.version in done:
                if done[mig.version] != mig.checksum:
                    raise MigrationError(
                        f"migration {mig.version:04d}_{mig.name} was changed after it was applied to "
                        f"{self.database}; restore it and add a new migration instead"
                    )
                continue
            for stmt in self._statements(mig):
                try:
                    self.client.command(stmt, settings=STATEMENT_SETTINGS)
                except Exception as exc:  # the driver raises several types; say which statement failed
                    first = stmt.splitlines()[0][:100]
                    raise MigrationError(f"migration {mig.version:04d}_{mig.name} failed at `{first}`: {exc}") from exc
            self.client.insert(
                VERSION_TABLE,
                [[mig.version, mig.name, mig.checksum]],
                column_names=["version", "name", "checksum"],
                database=self.database,
            )
            newly.append(mig.version)
        return newly

    def table_ttls(self) -> dict[str, tuple[str, int]]:
        """table -> (time column, days) for each table of the database with a `TTL col + INTERVAL n DAY`."""
        rows = self.client.query(
            "SELECT name, engine_full FROM system.tables WHERE database = {db:String}",
            parameters={"db": self.database},
        ).result_rows
        out: dict[str, tuple[str, int]] = {}
        for name, engine_full in rows:
            m = _TTL_RE.search(str(engine_full))
            if m is not None:
                out[str(name)] = (m.group(1), int(m.group(2)))
        return out

    def reconcile_ttls(self) -> list[str]:
        """Set each table's TTL to the configured days where it differs; return the tables altered."""
        altered: list[str] = []
        for table, (column, days) in sorted(self.table_ttls().items()):
            param = TTL_PARAMS.get(table)
            if param is None:
                continue
            want = int(self.params[param])
            if want != days:
                on = "" if self.cluster is None else self.cluster.on
                self.client.command(
                    f"ALTER TABLE {self.database}.{table}{on} MODIFY TTL {column} + INTERVAL {want} DAY"
                )
                altered.append(table)
        return altered

    def check_rollup_source(self) -> None:
        """Fail when a rollup view reads another window size than `loader.rollup_window_s`.

        Not altered automatically: switching the source size in the middle of a bucket would count that
        bucket's traffic once from each size. The message says how to switch at a bucket boundary.
        """
        want = int(self.params["rollup_window_s"])
        rows = self.client.query(
            "SELECT name, as_select FROM system.tables WHERE database = {db:String} AND engine = 'MaterializedView'",
            parameters={"db": self.database},
        ).result_rows
        wrong = sorted(
            str(name)
            for name, select in rows
            if (m := _MV_WINDOW_RE.search(str(select))) is not None and int(m.group(1)) != want
        )
        if wrong:
            raise MigrationError(
                f"rollup views {', '.join(wrong)} in {self.database} read another window size than "
                f"loader.rollup_window_s={want}; set it back, or stop the loader and recreate the views "
                "(DROP VIEW, then `gwtel migrate` after deleting their versions from schema_migrations)"
            )

    def run(self) -> tuple[list[int], list[str]]:
        """Migrate to the latest version, then reconcile retention: what `gwtel migrate` and the loader do."""
        applied = self.migrate()
        self.check_rollup_source()
        return applied, self.reconcile_ttls()
