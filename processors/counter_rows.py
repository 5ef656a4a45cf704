"""The counters topic -> `link_counters` rows (migration 0012): one row per LinkCounter record, as sent."""

from __future__ import annotations

from dataclasses import astuple
from typing import Any, Final

from processors.tables import KAFKA_COLUMNS, TableSpec
from schemas.link_counter import LINK_COUNTER_FIELDS, decode

LINK_COUNTERS: Final = TableSpec("link_counters", (*LINK_COUNTER_FIELDS, *KAFKA_COLUMNS))


def counter_rows(value: bytes, latest_ns: int | None = None) -> list[tuple[TableSpec, list[Any]]]:
    """A counters-topic value -> one `link_counters` row, or RecordError (dead-lettered by the loader).

    ``latest_ns`` is not used: a counter sample's time is the collector's receive time, not the router's."""
    return [(LINK_COUNTERS, list(astuple(decode(value))))]
