"""FlowRecord <-> Kafka value bytes (JSON via orjson), with validation that names what is wrong.

Decoding never raises anything but ``RecordError``, whose ``reason`` is a short, bounded label fit for a
metric (``not_json``, ``wrong_version``, ``missing_field``, ``bad_type``, ``bad_value``), and whose message
says which field and why: both go to the dead-letter topic.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from schemas.flow_record import FLOW_RECORD_FIELDS, FLOW_SCHEMA_VERSION, FlowRecord, HistBin

# Absurd-value bounds: a record outside them is rejected, not stored.
_MIN_NS: Final = 946_684_800 * 10**9  # 2000-01-01
_MAX_NS: Final = 4_102_444_800 * 10**9  # 2100-01-01
_MAX_COUNTER: Final = 2**63 - 1
_HIST_FIELDS: Final = frozenset(f.name for f in FLOW_RECORD_FIELDS if f.name.endswith("_hist"))
_STR_FIELDS: Final = frozenset(f.name for f in FLOW_RECORD_FIELDS if f.flink == "STRING")
_NULLABLE: Final = frozenset(f.name for f in FLOW_RECORD_FIELDS if f.clickhouse.startswith("Nullable("))
_OPTIONAL_WITH_DEFAULT: Final[dict[str, int | str]] = {"remote_asn": 0, "sampling_mode": "packet"}


class RecordError(ValueError):
    """A Kafka value that is not a valid FlowRecord v1."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def to_dict(rec: FlowRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in FLOW_RECORD_FIELDS:
        v = getattr(rec, f.name)
        if f.name in _HIST_FIELDS:
            v = [{"b": h.b, "c": h.c} for h in v]
        out[f.name] = v
    return out


def encode(rec: FlowRecord) -> bytes:
    return orjson.dumps(to_dict(rec))


def _check_int(name: str, v: Any, nullable: bool) -> None:
    if v is None:
        if not nullable:
            raise RecordError("bad_type", f"field {name!r} is null")
        return
    if not isinstance(v, int) or isinstance(v, bool):
        raise RecordError("bad_type", f"field {name!r} must be an integer, got {type(v).__name__}")
    if v < 0 or v > _MAX_COUNTER:
        raise RecordError("bad_value", f"field {name!r}={v} is out of range")


def _hist(name: str, v: Any) -> tuple[HistBin, ...]:
    if not isinstance(v, list):
        raise RecordError("bad_type", f"field {name!r} must be a list of {{b, c}} objects")
    bins = []
    for item in v:
        if not isinstance(item, dict) or set(item) != {"b", "c"}:
            raise RecordError("bad_type", f"field {name!r} holds an item that is not {{b, c}}")
        _check_int(name, item["b"], False)
        _check_int(name, item["c"], False)
        bins.append(HistBin(item["b"], item["c"]))
    return tuple(bins)


def from_dict(d: Any) -> FlowRecord:
    if not isinstance(d, dict):
        raise RecordError("bad_type", "record is not a JSON object")
    version = d.get("schema_version")
    if version != FLOW_SCHEMA_VERSION:
        raise RecordError("wrong_version", f"schema_version={version!r}, this reader takes {FLOW_SCHEMA_VERSION}")
    kwargs: dict[str, Any] = {}
    for f in FLOW_RECORD_FIELDS:
        if f.name not in d:
            if f.name in _OPTIONAL_WITH_DEFAULT:
                kwargs[f.name] = _OPTIONAL_WITH_DEFAULT[f.name]
                continue
            raise RecordError("missing_field", f"field {f.name!r} is missing")
        v = d[f.name]
        if f.name in _HIST_FIELDS:
            kwargs[f.name] = _hist(f.name, v)
        elif f.name in _STR_FIELDS:
            if not isinstance(v, str):
                raise RecordError("bad_type", f"field {f.name!r} must be a string")
            kwargs[f.name] = v
        else:
            _check_int(f.name, v, f.name in _NULLABLE)
            kwargs[f.name] = v
    rec = FlowRecord(**kwargs)
    _check_semantics(rec)
    return rec


def _check_semantics(rec: FlowRecord) -> None:
    for name in ("first_ns", "last_ns", "export_ns"):
        v = getattr(rec, name)
        if not _MIN_NS <= v <= _MAX_NS:
            raise RecordError("bad_value", f"field {name!r}={v} is not a timestamp between 2000 and 2100")
    if rec.last_ns < rec.first_ns:
        raise RecordError("bad_value", "last_ns is before first_ns")
    if rec.sampling_rate < 1:
        raise RecordError("bad_value", "sampling_rate must be >= 1")
    if rec.ip_version not in (4, 6):
        raise RecordError("bad_value", f"ip_version={rec.ip_version} is neither 4 nor 6")
    if rec.packets_fwd + rec.packets_rev == 0:
        raise RecordError("bad_value", "flow has no packets")


def decode(value: bytes) -> FlowRecord:
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise RecordError("not_json", f"value is not JSON ({exc})") from None
    return from_dict(d)
