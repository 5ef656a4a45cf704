"""FlowRecord <-> Kafka value bytes (JSON via orjson), with validation that names what is wrong.

Decoding never raises anything but ``RecordError``, whose ``reason`` is a short, bounded label fit for a
metric (``not_json``, ``wrong_version``, ``missing_field``, ``bad_type``, ``bad_value``, ``out_of_range``),
and whose message says which field and why: both go to the dead-letter topic. What is acceptable is
defined once, in ``schemas.checks``, which ClickHouse's landing views are generated from too.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from schemas.checks import DEFAULTS, MAX_COUNTER, MAX_NS, MIN_NS, CheckError, checked
from schemas.flow_record import FLOW_RECORD_FIELDS, FlowRecord, HistBin

# Kept for readers of the old names; the bounds live in schemas.checks.
_MIN_NS: Final = MIN_NS
_MAX_NS: Final = MAX_NS
_MAX_COUNTER: Final = MAX_COUNTER
_HIST_FIELDS: Final = frozenset(f.name for f in FLOW_RECORD_FIELDS if f.name.endswith("_hist"))
_OPTIONAL_WITH_DEFAULT: Final = dict(DEFAULTS)


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


def from_dict(d: Any, latest_ns: int | None = None) -> FlowRecord:
    """The FlowRecord of a parsed JSON value, or RecordError: the checks of `schemas.checks`."""
    try:
        values = checked(d, latest_ns)
    except CheckError as exc:
        raise RecordError(exc.reason, exc.detail) from None
    for name in _HIST_FIELDS:
        values[name] = tuple(HistBin(b, c) for b, c in values[name])
    return FlowRecord(**values)


def decode(value: bytes, latest_ns: int | None = None) -> FlowRecord:
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise RecordError("not_json", f"value is not JSON ({exc})") from None
    return from_dict(d, latest_ns)


def decode_trusted(value: bytes) -> FlowRecord:
    """A record this process encoded itself (a native engine's batch), as it is: no checks, since a sink that
    takes FlowRecords must receive exactly what `encode` would have been given (checks belong to the reader)."""
    d = orjson.loads(value)
    for name in _HIST_FIELDS:
        d[name] = tuple(HistBin(h["b"], h["c"]) for h in d[name])
    return FlowRecord(**d)
