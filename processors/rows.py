"""Kafka values -> validated ClickHouse rows, or a `RecordError` whose reason goes to the dead-letter topic.

Validation is complete before an insert: a value that does not fit its column (a port above 65535, a
negative counter) must be dead-lettered here, because an insert that fails on data would be retried forever.
Reasons are short labels fit for a metric: those of `schemas.codec`, plus `out_of_range` (fits the record
schema but not the ClickHouse column) and `unknown_kind`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

import orjson

from processors.tables import (
    AGG_KEY_FIELDS,
    AGG_KIND_FIELDS,
    AGG_KIND_NULLABLE,
    AGG_TABLES,
    FLOWS_LATE,
    FLOWS_RAW,
    TableSpec,
)
from schemas import addresses
from schemas.aggregate import AGGREGATE_SCHEMA_VERSION, KINDS
from schemas.checks import CheckError, checked
from schemas.codec import RecordError
from schemas.flow_record import DEFAULT_CLASS, FLOW_RECORD_FIELDS

TableRows = list[tuple[TableSpec, list[Any]]]
# (Kafka value, latest plausible last_ns or None) -> rows
Decoder = Callable[[bytes, int | None], TableRows]

_INT_RANGES: Final = {
    "UInt8": (0, 2**8 - 1),
    "UInt16": (0, 2**16 - 1),
    "UInt32": (0, 2**32 - 1),
    "UInt64": (0, 2**64 - 1),
    "Int64": (-(2**63), 2**63 - 1),
}


def _base(ch_type: str) -> tuple[str, bool]:
    """(`T`, nullable) for `T`, `Nullable(T)`, `LowCardinality(T)` and `LowCardinality(Nullable(T))`."""
    t = ch_type
    if t.startswith("LowCardinality(") and t.endswith(")"):
        t = t[len("LowCardinality(") : -1]
    if t.startswith("Nullable(") and t.endswith(")"):
        return t[len("Nullable(") : -1], True
    return t, False


def check_value(name: str, ch_type: str, v: Any) -> Any:
    """Return `v` as the column wants it, or raise RecordError naming the field."""
    base, nullable = _base(ch_type)
    if v is None:
        if nullable:
            return None
        raise RecordError("bad_type", f"field {name!r} is null")
    if base in _INT_RANGES:
        if not isinstance(v, int) or isinstance(v, bool):
            raise RecordError("bad_type", f"field {name!r} must be an integer, got {type(v).__name__}")
        lo, hi = _INT_RANGES[base]
        if not lo <= v <= hi:
            raise RecordError("out_of_range", f"field {name!r}={v} does not fit {base}")
        return v
    if base == "Float64":
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise RecordError("bad_type", f"field {name!r} must be a number, got {type(v).__name__}")
        if not math.isfinite(v):
            raise RecordError("bad_value", f"field {name!r} is not finite")
        return float(v)
    if base == "String":
        if not isinstance(v, str):
            raise RecordError("bad_type", f"field {name!r} must be a string")
        return v
    if base.startswith("Array(Tuple("):
        # Histogram bins, already validated by the record codec: only the bucket width is left to check.
        out = []
        for b, c in v:
            check_value(name, "UInt16", b)
            check_value(name, "UInt64", c)
            out.append((b, c))
        return out
    raise TypeError(f"no validation for ClickHouse type {ch_type!r} of {name!r}")


_NAMES: Final = tuple(f.name for f in FLOW_RECORD_FIELDS)
_ADDRESS_AT: Final = tuple(i for i, name in enumerate(_NAMES) if name in addresses.ADDRESS_FIELDS)


def _group_by(pairs: Iterable[tuple[Any, int]]) -> dict[Any, list[int]]:
    out: dict[Any, list[int]] = {}
    for key, i in pairs:
        out.setdefault(key, []).append(i)
    return out


def _tuple_getter(idx: Sequence[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """`operator.itemgetter` that returns a tuple for one index too (itemgetter's own returns the item)."""
    if len(idx) == 1:
        i = idx[0]
        return lambda row: (row[i],)
    return operator.itemgetter(*idx)


def flow_rows(value: bytes, latest_ns: int | None = None) -> TableRows:
    """A FlowRecord v1 value -> one `flows_raw` row (without the Kafka coordinates).

    ``latest_ns``: the latest plausible ``last_ns`` (the record's Kafka timestamp plus the allowed clock
    skew); a record ending after it is dead-lettered as ``bad_value``, as the Flink job does.
    """
    return [(FLOWS_RAW, _flow_row(value, latest_ns))]


def late_rows(value: bytes, latest_ns: int | None = None) -> TableRows:
    """A late-topic value (a FlowRecord v1, schemas.aggregate.LATE_FIELDS) -> one `flows_late` row."""
    return [(FLOWS_LATE, _flow_row(value, latest_ns))]


def _flow_row(value: bytes, latest_ns: int | None) -> list[Any]:
    """The checks of `schemas.checks` (the same ClickHouse runs on the landing path); raises what is wrong.

    Every bound there fits the column (`out_of_range` otherwise), so the row needs no second check.
    """
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise RecordError("not_json", f"value is not JSON ({exc})") from None
    try:
        values = checked(d, latest_ns)
    except CheckError as exc:
        raise RecordError(exc.reason, exc.detail) from None
    row = [values[name] for name in _NAMES]
    for i in _ADDRESS_AT:  # the IPv6 columns' values, as the landing view stores them
        row[i] = addresses.stored(row[i])
    return row


_AGG_COLUMN_TYPES: Final = {kind: dict(spec.columns) for kind, spec in AGG_TABLES.items()}


def aggregate_rows(value: bytes, latest_ns: int | None = None) -> TableRows:
    """An aggregate record v1 value -> one row of the window table of its kind.

    ``latest_ns`` is not used: the job only writes windows its watermark, bounded by the same skew, closed.
    """
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise RecordError("not_json", f"value is not JSON ({exc})") from None
    if not isinstance(d, dict):
        raise RecordError("bad_type", "record is not a JSON object")
    version = d.get("schema_version")
    if version != AGGREGATE_SCHEMA_VERSION:
        raise RecordError("wrong_version", f"schema_version={version!r}, this reader takes {AGGREGATE_SCHEMA_VERSION}")
    kind = d.get("kind")
    if kind not in KINDS:
        raise RecordError("unknown_kind", f"kind={kind!r} is none of {', '.join(KINDS)}")
    types = _AGG_COLUMN_TYPES[kind]
    row: list[Any] = []
    if "app_class" not in d:
        d["app_class"] = DEFAULT_CLASS  # written by a job older than application classes
    for name in (*AGG_KEY_FIELDS, *AGG_KIND_FIELDS[kind]):
        if name not in d and name not in AGG_KIND_NULLABLE[kind]:
            raise RecordError("missing_field", f"field {name!r} is missing for kind {kind}")
        row.append(check_value(name, types[name], d.get(name)))
    window_s = row[0]
    if window_s < 1:
        raise RecordError("bad_value", "window_s must be >= 1")
    if row[1] % 1000:
        raise RecordError("bad_value", f"window_start_ms={row[1]} is not a whole second")
    return [(AGG_TABLES[kind], row)]
