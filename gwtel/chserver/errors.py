"""ClickHouse-style errors: `Code: N. DB::Exception: ... (NAME) (version V)` and the HTTP status for each code.

The engine reports failures as text, sometimes with the code prefix repeated by nested layers; the text is
normalised once here so clients (clickhouse-connect raises DatabaseError with it) see what a server sends.
"""

from __future__ import annotations

import re


class Codes:
    """The error codes this server raises itself (same numbers as ClickHouse's ErrorCodes)."""

    UNKNOWN_EXCEPTION = 1002
    CANNOT_PARSE_INPUT = 27
    UNKNOWN_FORMAT = 73
    SYNTAX_ERROR = 62
    NOT_IMPLEMENTED = 48
    UNKNOWN_TABLE = 60
    UNKNOWN_DATABASE = 81
    UNKNOWN_SETTING = 115
    BAD_ARGUMENTS = 36
    READONLY = 164
    SESSION_NOT_FOUND = 372
    SESSION_IS_LOCKED = 373
    CANNOT_DECOMPRESS = 271
    UNKNOWN_COMPRESSION_METHOD = 89
    HTTP_LENGTH_REQUIRED = 381
    TOO_LARGE_REQUEST = 571
    INCORRECT_DATA = 117
    AUTHENTICATION_FAILED = 516


_NAMES = {
    Codes.UNKNOWN_EXCEPTION: "UNKNOWN_EXCEPTION",
    Codes.CANNOT_PARSE_INPUT: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
    Codes.UNKNOWN_FORMAT: "UNKNOWN_FORMAT",
    Codes.SYNTAX_ERROR: "SYNTAX_ERROR",
    Codes.NOT_IMPLEMENTED: "NOT_IMPLEMENTED",
    Codes.UNKNOWN_TABLE: "UNKNOWN_TABLE",
    Codes.UNKNOWN_DATABASE: "UNKNOWN_DATABASE",
    Codes.UNKNOWN_SETTING: "UNKNOWN_SETTING",
    Codes.BAD_ARGUMENTS: "BAD_ARGUMENTS",
    Codes.READONLY: "READONLY",
    Codes.SESSION_NOT_FOUND: "SESSION_NOT_FOUND",
    Codes.SESSION_IS_LOCKED: "SESSION_IS_LOCKED",
    Codes.CANNOT_DECOMPRESS: "CANNOT_DECOMPRESS",
    Codes.UNKNOWN_COMPRESSION_METHOD: "UNKNOWN_COMPRESSION_METHOD",
    Codes.HTTP_LENGTH_REQUIRED: "HTTP_LENGTH_REQUIRED",
    Codes.TOO_LARGE_REQUEST: "HTTP_REQUEST_TOO_LARGE",
    Codes.INCORRECT_DATA: "INCORRECT_DATA",
    Codes.AUTHENTICATION_FAILED: "AUTHENTICATION_FAILED",
}

# Mirrors the grouping of ClickHouse's HTTP handler (exceptionCodeToHTTPStatus).
_STATUS_400 = {
    6,
    25,
    26,
    27,
    32,
    33,
    36,
    38,
    41,
    42,
    43,
    44,
    53,
    62,
    69,
    70,
    72,
    115,
    117,
    130,
    131,
    190,
    231,
    271,
    375,
    386,
    395,
    473,
}
_STATUS_403 = {164, 497, 516}
_STATUS_404 = {46, 47, 60, 63, 73, 81, 83, 84, 89, 372}
_STATUS_OTHER = {48: 501, 381: 411, 571: 413, 373: 409, 159: 504, 209: 503, 210: 503}

_PREFIX = re.compile(r"^(?:Code: (\d+)\. DB::Exception: )+")
_TAIL = re.compile(r"(?:\.?\s*\((?:version [^)]*|[A-Z][A-Z0-9_]+)\))*\.?\s*$")
_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)")


class ChError(Exception):
    """A failure reported to the client the way a ClickHouse server does."""

    def __init__(self, code: int, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message.rstrip(". ")
        self.name = name or _NAMES.get(code, "UNKNOWN_EXCEPTION")

    def http_status(self) -> int:
        if self.code in _STATUS_OTHER:
            return _STATUS_OTHER[self.code]
        if self.code in _STATUS_403:
            return 403
        if self.code in _STATUS_404:
            return 404
        if self.code in _STATUS_400:
            return 400
        return 500

    def body(self, version: str) -> str:
        return f"Code: {self.code}. DB::Exception: {self.message}. ({self.name}) (version {version})\n"


def from_engine(text: str) -> ChError:
    """Normalise an engine error text (possibly `Code: N. DB::Exception: Code: N. ...`) into a ChError."""
    text = text.strip()
    m = _PREFIX.match(text)
    if not m:
        return ChError(Codes.UNKNOWN_EXCEPTION, text or "unknown engine error")
    code = int(m.group(1))
    rest = text[m.end() :]
    names = _NAME.findall(rest)
    tail = _TAIL.search(rest)
    message = rest[: tail.start()] if tail else rest
    return ChError(code, message, names[-1] if names else None)
