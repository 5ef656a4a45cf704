"""Expand the Grafana ClickHouse plugin's macros and Grafana template variables in a panel's SQL.

The same text the plugin (4.x) would send for a fixed time range, so tests run every dashboard query against
ClickHouse without a Grafana. Anything left starting with `$` is an error: a macro this module does not know
would reach ClickHouse unexpanded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime


class MacroError(ValueError):
    """A macro or variable that cannot be expanded."""


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime
    interval_s: int  # what Grafana computes from the range and the panel width ($__interval)

    @property
    def from_s(self) -> int:
        return int(self.start.timestamp())

    @property
    def to_s(self) -> int:
        return int(self.end.timestamp())


def _functions(r: TimeRange) -> dict[str, str]:
    """Macros that take a column: name -> template with {c}."""
    from_ms, to_ms = r.from_s * 1000, r.to_s * 1000
    d0 = datetime.fromtimestamp(r.from_s, UTC).date().isoformat()
    d1 = datetime.fromtimestamp(r.to_s, UTC).date().isoformat()
    return {
        "timeFilter": f"{{c}} >= toDateTime({r.from_s}) AND {{c}} <= toDateTime({r.to_s})",
        "timeFilter_ms": f"{{c}} >= fromUnixTimestamp64Milli({from_ms}) AND {{c}} <= fromUnixTimestamp64Milli({to_ms})",
        "dateFilter": f"{{c}} >= toDate('{d0}') AND {{c}} <= toDate('{d1}')",
        "timeInterval": f"toStartOfInterval(toDateTime({{c}}), INTERVAL {max(r.interval_s, 1)} second)",
        "timeInterval_ms": "toStartOfInterval(toDateTime64({c}, 3), INTERVAL "
        f"{max(r.interval_s * 1000, 1)} millisecond)",
    }


def _values(r: TimeRange) -> dict[str, str]:
    return {
        "fromTime": f"toDateTime({r.from_s})",
        "toTime": f"toDateTime({r.to_s})",
        "fromTime_ms": f"fromUnixTimestamp64Milli({r.from_s * 1000})",
        "toTime_ms": f"fromUnixTimestamp64Milli({r.to_s * 1000})",
        "interval_s": str(r.interval_s),
    }


_FUNC = re.compile(r"\$__(\w+)\(([^()]*)\)")
_VALUE = re.compile(r"\$__(\w+)\b")
_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)\b")


def _format(name: str, values: Sequence[str], fmt: str | None) -> str:
    if fmt in (None, "raw", "csv"):
        return ",".join(values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt == "regex":
        return "(" + "|".join(re.escape(v) for v in values) + ")" if len(values) > 1 else re.escape(values[0])
    raise MacroError(f"variable ${{{name}:{fmt}}}: unknown format")


def expand_variables(text: str, variables: Mapping[str, Sequence[str]], *, default_format: str | None = None) -> str:
    """Grafana template variables: `$name`, `${name}`, `${name:format}` (multi-value joined by the format)."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        if name.startswith("__"):
            return m.group(0)  # a macro or a built-in, expanded elsewhere
        if name not in variables:
            raise MacroError(f"unknown variable ${name}")
        return _format(name, variables[name], m.group(2) or default_format)

    return _VAR.sub(sub, text)


def expand_sql(sql: str, r: TimeRange, variables: Mapping[str, Sequence[str]]) -> str:
    """The SQL the plugin sends for the range `r` with the variables' current values."""
    funcs, vals = _functions(r), _values(r)

    def func(m: re.Match[str]) -> str:
        name, arg = m.group(1), m.group(2).strip()
        if name not in funcs or not arg:
            raise MacroError(f"$__{name}({arg}): unknown macro or missing column")
        return funcs[name].format(c=arg)

    def value(m: re.Match[str]) -> str:
        if m.group(1) not in vals:
            raise MacroError(f"$__{m.group(1)}: unknown macro")
        return vals[m.group(1)]

    out = _VALUE.sub(value, _FUNC.sub(func, expand_variables(sql, variables, default_format="csv")))
    if "$" in out:
        raise MacroError(f"unexpanded text left in {out!r}")
    return out


def expand_promql(expr: str, variables: Mapping[str, Sequence[str]], builtins: Mapping[str, str]) -> str:
    """PromQL with Grafana's built-ins (`$__rate_interval`, `$__range`, ...) and variables (regex format)."""
    out = re.sub(r"\$__(\w+)\b", lambda m: builtins[m.group(1)] if m.group(1) in builtins else m.group(0), expr)
    out = expand_variables(out, variables, default_format="regex")
    if "$" in out:
        raise MacroError(f"unexpanded text left in {out!r}")
    return out
