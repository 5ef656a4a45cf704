"""Just enough SQL lexing to place per-request settings and the FORMAT clause, and to split INSERT data.

The engine parses the SQL for real; this module only finds clause boundaries at the top level (outside
parentheses, strings, quoted identifiers and comments), so request settings ride in the query's own SETTINGS
clause and never become connection state.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from gwtel.chserver.errors import ChError, Codes

TokenKind = Literal["word", "string", "quoted", "number", "punct"]


@dataclass(frozen=True, slots=True)
class Token:
    kind: TokenKind
    text: str
    start: int
    end: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""


def _quoted_end(sql: str, pos: int, quote: str) -> int:
    i = pos + 1
    n = len(sql)
    while i < n:
        ch = sql[i]
        if ch == "\\":
            i += 2
            continue
        if ch == quote:
            if i + 1 < n and sql[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    raise ChError(Codes.SYNTAX_ERROR, f"Syntax error: unterminated quoted text starting at position {pos + 1}")


def lex(sql: str, pos: int = 0) -> Iterator[Token]:
    """Tokens of `sql` from `pos`, lazily, so a caller can stop before INSERT data."""
    n = len(sql)
    while pos < n:
        ch = sql[pos]
        if ch.isspace():
            pos += 1
        elif sql.startswith("--", pos) or ch == "#":
            nl = sql.find("\n", pos)
            pos = n if nl < 0 else nl + 1
        elif sql.startswith("/*", pos):
            end = sql.find("*/", pos + 2)
            if end < 0:
                raise ChError(Codes.SYNTAX_ERROR, f"Syntax error: unterminated comment at position {pos + 1}")
            pos = end + 2
        elif ch in "'\"`":
            end = _quoted_end(sql, pos, ch)
            yield Token("string" if ch == "'" else "quoted", sql[pos:end], pos, end)
            pos = end
        elif ch.isalpha() or ch == "_":
            end = pos + 1
            while end < n and (sql[end].isalnum() or sql[end] in "_$"):
                end += 1
            yield Token("word", sql[pos:end], pos, end)
            pos = end
        elif ch.isdigit():
            end = pos + 1
            while end < n and (sql[end].isalnum() or sql[end] in "._"):
                end += 1
            yield Token("number", sql[pos:end], pos, end)
            pos = end
        else:
            yield Token("punct", ch, pos, pos + 1)
            pos += 1


def unquote_identifier(tok: Token) -> str:
    if tok.kind == "quoted":
        q = tok.text[0]
        return tok.text[1:-1].replace(q + q, q).replace("\\" + q, q)
    return tok.text


class Kind(Enum):
    RESULT = "result"  # produces a result set: FORMAT and SETTINGS appended
    COMMAND = "command"  # DDL and the like: accepts FORMAT ... SETTINGS ... but returns nothing
    SETTINGS_ONLY = "settings_only"  # DELETE/UPDATE: a SETTINGS clause but no FORMAT
    BARE = "bare"  # SYSTEM, transactions, grants: neither clause is accepted
    SET = "set"
    USE = "use"
    INSERT = "insert"


_RESULT_HEADS = {"SELECT", "WITH", "SHOW", "DESC", "DESCRIBE", "EXISTS", "EXPLAIN", "CHECK", "("}
_SETTINGS_ONLY_HEADS = {"DELETE", "UPDATE"}
_BARE_HEADS = {"SYSTEM", "BEGIN", "COMMIT", "ROLLBACK", "GRANT", "REVOKE", "WATCH"}
# Statements that change data or schema: refused over HTTP GET, which implies readonly on a real server.
MODIFYING_HEADS = frozenset(
    {
        "INSERT",
        "CREATE",
        "DROP",
        "ALTER",
        "RENAME",
        "TRUNCATE",
        "OPTIMIZE",
        "DELETE",
        "UPDATE",
        "ATTACH",
        "DETACH",
        "EXCHANGE",
        "SYSTEM",
        "KILL",
        "GRANT",
        "REVOKE",
        "UNDROP",
        "BACKUP",
        "RESTORE",
        "MOVE",
        "REPLACE",
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
    }
)


def classify(sql: str) -> tuple[Kind, str]:
    """The statement kind and its first keyword (upper case); an empty query is a clear error."""
    first = next(lex(sql), None)
    if first is None:
        raise ChError(Codes.SYNTAX_ERROR, "Empty query")
    head = first.upper or first.text
    if head in _RESULT_HEADS:
        return Kind.RESULT, head
    if head == "INSERT":
        return Kind.INSERT, head
    if head == "SET":
        return Kind.SET, head
    if head == "USE":
        return Kind.USE, head
    if head in _SETTINGS_ONLY_HEADS:
        return Kind.SETTINGS_ONLY, head
    if head in _BARE_HEADS:
        return Kind.BARE, head
    return Kind.COMMAND, head


def _strip_statement(sql: str) -> tuple[list[Token], int]:
    """Top-level tokens without trailing semicolons, and where the statement ends; rejects multi-statements."""
    toks = list(lex(sql))
    while toks and toks[-1].text == ";" and toks[-1].kind == "punct":
        toks.pop()
    depth = 0
    for t in toks:
        if t.kind == "punct":
            if t.text in "([":
                depth += 1
            elif t.text in ")]":
                depth -= 1
            elif t.text == ";" and depth == 0:
                raise ChError(Codes.SYNTAX_ERROR, "Syntax error: Multi-statements are not allowed")
    end = toks[-1].end if toks else 0
    return toks, end


def _depths(toks: list[Token]) -> list[int]:
    out: list[int] = []
    depth = 0
    for t in toks:
        if t.kind == "punct" and t.text in ")]":
            depth -= 1
        out.append(depth)
        if t.kind == "punct" and t.text in "([":
            depth += 1
    return out


@dataclass(frozen=True)
class Rendered:
    sql: str
    fmt: str | None  # the output format, when the statement takes a FORMAT clause


def render(sql: str, kind: Kind, default_format: str, settings_sql: str) -> Rendered:
    """The statement with its output format and the request's settings merged into its own clauses.

    Settings written in the query win over request settings (as on a real server, where URL settings are
    defaults for the query): the engine takes the last of duplicate names in one clause (measured), so the
    request's come first, then the statement's own clause, then one written after FORMAT.
    """
    toks, end = _strip_statement(sql)
    body_end = end
    fmt: str | None = None
    trailing = ""
    depths = _depths(toks)
    if kind in (Kind.RESULT, Kind.COMMAND):
        for i in range(len(toks) - 2, 0, -1):
            t = toks[i]
            if t.upper != "FORMAT" or depths[i] != 0 or toks[i + 1].kind not in ("word", "quoted"):
                continue
            if i + 2 == len(toks) or toks[i + 2].upper == "SETTINGS":
                fmt = unquote_identifier(toks[i + 1])
                body_end = t.start
                if i + 2 < len(toks):
                    trailing = sql[toks[i + 2].end : end].strip()
                break
        fmt = fmt or default_format
        # The statement's own trailing SETTINGS joins the merged clause after FORMAT: statements such as
        # DESCRIBE or SHOW CREATE refuse a second SETTINGS clause. (In DDL a trailing SETTINGS belongs to the
        # table, not to the query: left in place.)
        own = _own_settings(toks, depths, sql, body_end) if kind == Kind.RESULT else None
        if own is not None:
            body_end, own_sql = own
            trailing = ", ".join(s for s in (own_sql, trailing) if s)
        clause = ", ".join(s for s in (settings_sql, trailing) if s)
        text = f"{sql[:body_end].rstrip()}\nFORMAT {fmt}"
        if clause:
            text += f"\nSETTINGS {clause}"
        return Rendered(text, fmt if kind == Kind.RESULT else None)
    text = sql[:end].rstrip()
    if kind == Kind.SETTINGS_ONLY and settings_sql:
        own_at = next((t.end for t, d in zip(toks, depths, strict=True) if t.upper == "SETTINGS" and d == 0), None)
        if own_at is None:
            text += f"\nSETTINGS {settings_sql}"
        else:
            text = f"{text[:own_at]} {settings_sql},{text[own_at:]}"
    return Rendered(text, None)


def _own_settings(toks: list[Token], depths: list[int], sql: str, body_end: int) -> tuple[int, str] | None:
    """(where it starts, its text) of a top-level `SETTINGS a = 1, b = 'x'` that ends the statement body."""
    body = [i for i, t in enumerate(toks) if t.end <= body_end]
    for i in reversed(body):
        if toks[i].upper == "SETTINGS" and depths[i] == 0:
            if _is_assignments(toks[i + 1 : body[-1] + 1]):
                return toks[i].start, sql[toks[i].end : body_end].strip()
            return None
    return None


def _is_assignments(toks: list[Token]) -> bool:
    """`name = value[, name = value ...]`, each value one literal, a signed number or a bracketed group."""
    i, n = 0, len(toks)
    while True:
        if i + 2 >= n or toks[i].kind not in ("word", "quoted") or toks[i + 1].text != "=":
            return False
        j = i + 2
        if toks[j].kind == "punct" and toks[j].text in "+-" and j + 1 < n:
            j += 1
        if toks[j].kind == "punct" and toks[j].text in "([":
            depth = 0
            while j < n:
                if toks[j].kind == "punct" and toks[j].text in "([":
                    depth += 1
                elif toks[j].kind == "punct" and toks[j].text in ")]":
                    depth -= 1
                if depth == 0:
                    break
                j += 1
        elif toks[j].kind == "punct":
            return False
        j += 1
        if j >= n:
            return True
        if toks[j].text != ",":
            return False
        i = j + 1


@dataclass(frozen=True)
class InsertPlan:
    header: str  # INSERT INTO t (cols) SETTINGS ..., without the data clause
    fmt: str | None  # input format of the data; None for INSERT ... SELECT (a plain statement)
    data_start: int  # offset in the text where inline data begins (len(text) when none)
    statement: str  # the whole statement with settings merged (used when fmt is None)


def plan_insert(text: str, settings_sql: str) -> InsertPlan:
    """Split an INSERT into its header (settings merged) and its data format and inline data offset."""
    toks = lex(text)
    depth = 0
    own_at: int | None = None
    for t in toks:
        if t.kind == "punct" and t.text in "([":
            depth += 1
            continue
        if t.kind == "punct" and t.text in ")]":
            depth -= 1
            continue
        if depth:
            continue
        word = t.upper
        if word == "SETTINGS":
            own_at = t.end
        elif word in ("FORMAT", "VALUES", "SELECT", "WITH"):
            # Request settings go first: the last of duplicate names wins, and the statement's own must.
            if settings_sql and own_at is not None:
                head = f"{text[:own_at]} {settings_sql},{text[own_at : t.start].rstrip()}"
            elif settings_sql:
                head = f"{text[: t.start].rstrip()} SETTINGS {settings_sql}"
            else:
                head = text[: t.start].rstrip()
            if word == "VALUES":
                return InsertPlan(head, "Values", t.end, "")
            if word == "FORMAT":
                name = next(toks, None)
                if name is None or name.kind not in ("word", "quoted"):
                    raise ChError(Codes.SYNTAX_ERROR, "Syntax error: INSERT ... FORMAT needs a format name")
                return InsertPlan(head, unquote_identifier(name), _data_start(text, name.end), "")
            stmt_toks, end = _strip_statement(text)
            del stmt_toks
            return InsertPlan(head, None, len(text), f"{head}\n{text[t.start : end]}")
        elif word == "FROM" and next(toks, Token("word", "", 0, 0)).upper == "INFILE":
            raise ChError(Codes.NOT_IMPLEMENTED, "INSERT ... FROM INFILE is not supported over HTTP")
    raise ChError(Codes.SYNTAX_ERROR, "Syntax error: INSERT query needs FORMAT <name>, VALUES or SELECT")


def _data_start(text: str, pos: int) -> int:
    """Data begins after the first newline following the format name, or after the spaces before it."""
    n = len(text)
    while pos < n and text[pos] in " \t":
        pos += 1
    if text.startswith("\r\n", pos):
        return pos + 2
    if pos < n and text[pos] == "\n":
        return pos + 1
    return pos


def parse_set(sql: str) -> list[tuple[str, str]]:
    """`SET a = 1, b = 'x'` as (name, SQL literal text) pairs."""
    toks, end = _strip_statement(sql)
    parts: list[tuple[str, str]] = []
    i = 1
    while i < len(toks):
        name = toks[i]
        if name.kind not in ("word", "quoted") or i + 1 >= len(toks) or toks[i + 1].text != "=":
            raise ChError(Codes.SYNTAX_ERROR, "Syntax error: expected SET name = value[, name = value ...]")
        j = i + 2
        depth = 0
        while j < len(toks) and not (depth == 0 and toks[j].text == ","):
            if toks[j].kind == "punct" and toks[j].text in "([{":
                depth += 1
            elif toks[j].kind == "punct" and toks[j].text in ")]}":
                depth -= 1
            j += 1
        if j == i + 2:
            raise ChError(Codes.SYNTAX_ERROR, f"Syntax error: SET {name.text} has no value")
        value_end = toks[j].start if j < len(toks) else end
        parts.append((unquote_identifier(name), sql[toks[i + 2].start : value_end].strip()))
        i = j + 1
    if not parts:
        raise ChError(Codes.SYNTAX_ERROR, "Syntax error: SET needs at least one name = value")
    return parts


def parse_use(sql: str) -> str:
    toks, _ = _strip_statement(sql)
    if len(toks) != 2 or toks[1].kind not in ("word", "quoted"):
        raise ChError(Codes.SYNTAX_ERROR, "Syntax error: expected USE <database>")
    return unquote_identifier(toks[1])
