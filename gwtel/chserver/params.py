"""HTTP query parameters -> what one request asks for: transport options, bind parameters, settings.

Every parameter that is not a transport option or a `param_` bind value is a ClickHouse setting for that
request only; it is rendered into the statement's SETTINGS clause (see sqltext.render), never SET on the
shared engine connection.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from gwtel.chserver.errors import ChError, Codes

# Parameters the HTTP layer consumes itself (as the ClickHouse HTTP handler does).
TRANSPORT_PARAMS = frozenset(
    {
        "query",
        "database",
        "default_format",
        "session_id",
        "session_timeout",
        "session_check",
        "query_id",
        "wait_end_of_query",
        "compress",
        "decompress",
        "buffer_size",
        "quota_key",
        "role",
        "user",
        "password",
        "client_protocol_version",
        "enable_http_compression",
        "http_native_compression_disable_checksumming_on_decompress",
    }
)

# Real settings that only steer the HTTP transport of a server; here they have no effect, so they are
# accepted and dropped rather than sent to the engine.
TRANSPORT_ONLY_SETTINGS = frozenset(
    {
        "send_progress_in_http_headers",
        "http_headers_progress_interval_ms",
        "cancel_http_readonly_queries_on_client_close",
        "http_wait_end_of_query",
        "http_response_buffer_size",
        "add_http_cors_header",
        "http_zlib_compression_level",
    }
)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TRUE = {"1", "true", "yes", "on"}


def quote_literal(value: str) -> str:
    """A ClickHouse string literal; the engine converts it to the setting's own type."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def flag(value: str | None) -> bool:
    return value is not None and value.strip().lower() in _TRUE


@dataclass
class RequestParams:
    query: str | None = None
    database: str | None = None
    default_format: str | None = None
    session_id: str | None = None
    session_timeout_s: float = 60.0
    session_check: bool = False
    query_id: str | None = None
    compress: bool = False
    decompress: bool = False
    http_compression: bool = False
    settings: dict[str, str] = field(default_factory=dict)  # name -> SQL literal
    bind: dict[str, str] = field(default_factory=dict)  # param_x -> value (without the prefix)
    user: str = "default"
    readonly: bool = False  # the user's profile: only statements that read


def parse_params(raw: Mapping[str, str]) -> RequestParams:
    rp = RequestParams()
    for key, value in raw.items():
        if key.startswith("param_"):
            rp.bind[key[6:]] = value
        elif key in TRANSPORT_PARAMS or key in TRANSPORT_ONLY_SETTINGS:
            continue
        else:
            if not _NAME.match(key):
                raise ChError(Codes.UNKNOWN_SETTING, f"Unknown setting '{key[:100]}': not a valid setting name")
            rp.settings[key] = quote_literal(value)
    rp.query = raw.get("query")
    rp.database = raw.get("database") or None
    rp.default_format = raw.get("default_format") or None
    rp.session_id = raw.get("session_id") or None
    if "session_timeout" in raw:
        try:
            rp.session_timeout_s = float(raw["session_timeout"])
        except ValueError:
            raise ChError(Codes.BAD_ARGUMENTS, "Invalid session timeout: must be a number of seconds") from None
        if not 0 < rp.session_timeout_s <= 3600:
            raise ChError(Codes.BAD_ARGUMENTS, "Session timeout must be in (0, 3600] seconds")
    rp.session_check = flag(raw.get("session_check"))
    rp.query_id = raw.get("query_id") or None
    rp.compress = flag(raw.get("compress"))
    rp.decompress = flag(raw.get("decompress"))
    rp.http_compression = flag(raw.get("enable_http_compression"))
    if rp.database is not None and not rp.database.strip():
        rp.database = None
    return rp


def settings_clause(settings: Mapping[str, str]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in settings.items())
