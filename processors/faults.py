"""Fault-injection points for the fault suite (tests/faults), off unless ``$GWTEL_FAULT`` names one.

The variable is read once, when a command starts. ``loader_crash_after_insert`` makes `gwtel load` end the
process abruptly (``os._exit``, no clean-up, exit code ``CRASH_EXIT_CODE``) right after the first batch's
inserts returned and before its offsets are committed: the window the insert deduplication token covers.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, Final

from gwtel.errors import UserError

FAULT_ENV: Final = "GWTEL_FAULT"
LOADER_CRASH_AFTER_INSERT: Final = "loader_crash_after_insert"
KNOWN: Final = frozenset({LOADER_CRASH_AFTER_INSERT})
CRASH_EXIT_CODE: Final = 86


def configured() -> str | None:
    """The fault named by ``$GWTEL_FAULT``, or None; an unknown name stops the command."""
    value = os.environ.get(FAULT_ENV, "").strip()
    if not value:
        return None
    if value not in KNOWN:
        raise UserError(f"${FAULT_ENV}={value!r} is not a known fault ({', '.join(sorted(KNOWN))}); unset it")
    return value


def loader_after_insert(fault: str | None) -> Callable[[Any], None] | None:
    if fault != LOADER_CRASH_AFTER_INSERT:
        return None

    def crash(batch: Any) -> None:
        logging.getLogger("gwtel.loader").error("fault %s: exiting after inserting %s", fault, batch.token)
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)

    return crash
