"""The stored tables' address columns retyped from text to IPv6 (landing version 13, `schemas.addresses`),
every row kept: the end of migration 0013, rendered by `processors.landing.migration_sql`.

Every statement may run again (the migration runner repeats an interrupted migration from its start) and ends
in the same state.
"""

from __future__ import annotations

from typing import Final

from schemas import addresses
from schemas.flow_record import FLOW_RECORD_FIELDS

_FLOW_TABLES: Final = ("flows_raw", "flows_late")


def _flows_sql(db: str) -> list[str]:
    """A text column converts to IPv6 only if every value parses (one that does not leaves the table's conversion
    stuck), so an UPDATE first rewrites each value that is not canonical IPv6 text yet: "" (not known) as `::`,
    IPv4 as `::ffff:a.b.c.d`, and a text no check takes (stored before the checks) as `::` too. Run again, the
    UPDATE finds no row and MODIFY finds the type it sets. The runner waits for each mutation to end
    (`processors.migrate.STATEMENT_SETTINGS`): the UPDATE must be done before the conversion reads the column."""
    names = [f.name for f in FLOW_RECORD_FIELDS if f.name in addresses.ADDRESS_FIELDS]
    canonical = {n: f"IPv6NumToString(toIPv6OrZero(toString(`{n}`)))" for n in names}
    sets = ", ".join(f"`{n}` = {canonical[n]}" for n in names)
    where = " OR ".join(f"toString(`{n}`) != {canonical[n]}" for n in names)
    # an optional address has the text default '' (0006): `::` is its IPv6 form
    modify = ", ".join(
        f"MODIFY COLUMN `{n}` {addresses.STORED_TYPE}"
        + (" DEFAULT toIPv6('::')" if n in addresses.OPTIONAL_ADDRESS_FIELDS else "")
        for n in names
    )
    out = []
    for table in _FLOW_TABLES:
        out.append(f"ALTER TABLE {db}.{table} UPDATE {sets} WHERE {where};")
        out.append(f"ALTER TABLE {db}.{table} {modify};")
    return out


def retype_sql(db: str) -> str:
    """The statements, with a heading comment."""
    head = "\n-- Addresses stored as IPv6 (IPv4 mapped, unknown as ::), every row kept (processors/address_types.py).\n"
    return head + "\n".join(_flows_sql(db)) + "\n"
