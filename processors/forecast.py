"""Capacity forecast: per partner and direction, the trend of the monthly 95th percentile billing figure and the
months left until the contracted capacity at that growth.

Each complete calendar month (UTC) is billed as `queries.billing_95th` bills it (5-minute average rates, missing
slots zero, top 5% dropped). The trend is a Theil-Sen line through those monthly figures: the median of the
slopes between every pair of months, and the median intercept. One odd month (a migration, an outage, a DDoS)
moves it far less than a least-squares line, and the answer can be checked by hand (docs/partners.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import combinations
from statistics import median
from typing import Any

from processors.queries import DIRECTIONS, FIVE_MIN_S, month_bounds_ms, percentile_95

MIN_MONTHS = 3  # two points always fit a line exactly: a trend needs a third to mean anything
MAX_MONTHS = 12  # bandwidth_5m keeps 400 days (loader.ttl_5m_days): twelve complete months fit
# A month counts when the pipeline stored something in at least this share of its 5-minute slots (any partner):
# a month the system was installed in, or was down for a week, would bill low and bend the trend.
MIN_COVERAGE = 0.9
_FAR_FUTURE_MS = 2**62  # `month_bounds_ms` cuts a month at "now": past months are whole


@dataclass(frozen=True)
class MonthP95:
    month: str  # YYYY-MM (UTC)
    bps: float  # that month's 95th percentile of the 5-minute rates


@dataclass(frozen=True)
class Forecast:
    partner: str
    direction: str
    capacity_bps: int  # contracted per direction; 0 = no contract
    months: tuple[MonthP95, ...]  # the months fitted, oldest first
    slope_bps: float | None  # growth of the monthly 95th percentile, bits/s per month; None: too few months
    level_bps: float | None  # the trend line at the last month fitted
    months_left: float | None  # from the last month fitted until the trend reaches the capacity
    reached_in: str | None  # YYYY-MM: the first month whose trend value is at or above the capacity
    status: str  # "forecast", "reached", "not reached" (flat or declining), "too few months", "no contract"


def month_index(month: str) -> int:
    year, mon = (int(x) for x in month.split("-"))
    return year * 12 + mon - 1


def month_name(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def theil_sen(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept): the median of the pairwise slopes, then the median of y - slope * x."""
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError("a line needs at least two points, as many x as y")
    slopes = [(y2 - y1) / (x2 - x1) for (x1, y1), (x2, y2) in combinations(zip(xs, ys, strict=True), 2) if x2 != x1]
    if not slopes:
        raise ValueError("every point has the same x")
    slope = median(slopes)
    return slope, median(y - slope * x for x, y in zip(xs, ys, strict=True))


def forecast_one(partner: str, direction: str, capacity_bps: int, months: Sequence[MonthP95]) -> Forecast:
    """The trend of `months` (any order) and, against `capacity_bps`, the months left at that growth."""
    ordered = tuple(sorted(months, key=lambda m: month_index(m.month)))
    if len(ordered) < MIN_MONTHS:
        return Forecast(partner, direction, capacity_bps, ordered, None, None, None, None, "too few months")
    xs = [month_index(m.month) for m in ordered]
    slope, intercept = theil_sen(xs, [m.bps for m in ordered])
    level = intercept + slope * xs[-1]
    status, left, reached = "forecast", None, None
    if not capacity_bps:
        status = "no contract"
    elif level >= capacity_bps:
        status, left, reached = "reached", 0.0, ordered[-1].month
    elif slope <= 0:
        status = "not reached"
    else:
        left = (capacity_bps - level) / slope
        reached = month_name(xs[-1] + math.ceil(left))
    return Forecast(partner, direction, capacity_bps, ordered, slope, level, left, reached, status)


def complete_months(now_ms: int, count: int = MAX_MONTHS) -> list[str]:
    """The last `count` calendar months (UTC) that ended before `now_ms`, oldest first."""
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    current = now.year * 12 + now.month - 1
    return [month_name(i) for i in range(current - count, current)]


def month_ms(month: str) -> tuple[int, int]:
    """[start, end) of a whole calendar month (UTC), in ms."""
    year, mon = (int(x) for x in month.split("-"))
    return month_bounds_ms(year, mon, now_ms=_FAR_FUTURE_MS)


def month_coverage(client: Any, db: str, months: Sequence[str]) -> dict[str, float]:
    """Per month: the share of its 5-minute slots in which anything was stored (any partner, direction, link)."""
    if not months:
        return {}
    first, last = month_ms(months[0])[0], month_ms(months[-1])[1]
    sql = f"""
        SELECT formatDateTime(ts, '%Y-%m', 'UTC') AS m, uniqExact(ts)
        FROM {db}.bandwidth_5m
        WHERE ts >= toDateTime(intDiv({{s:Int64}}, 1000), 'UTC') AND ts < toDateTime(intDiv({{e:Int64}}, 1000), 'UTC')
        GROUP BY m
    """
    got = {str(m): int(n) for m, n in client.query(sql, parameters={"s": first, "e": last}).result_rows}
    out = {}
    for m in months:
        start, end = month_ms(m)
        out[m] = got.get(m, 0) / ((end - start) // (FIVE_MIN_S * 1000))
    return out


def monthly_p95(client: Any, db: str, months: Sequence[str]) -> dict[tuple[str, str], list[MonthP95]]:
    """Per (partner, direction): the billing 95th percentile of each month with enough coverage and with traffic
    of that partner and direction (a partner that starts mid-year is fitted from its first month on)."""
    coverage = month_coverage(client, db, months)
    out: dict[tuple[str, str], list[MonthP95]] = {}
    for m in months:
        if coverage.get(m, 0.0) < MIN_COVERAGE:
            continue
        for r in percentile_95(client, db, *month_ms(m)):
            if r.direction in DIRECTIONS:
                out.setdefault((r.partner, r.direction), []).append(MonthP95(m, r.bps))
    return out


def collect_forecasts(
    client: Any, db: str, now_ms: int, capacity_bps: Mapping[str, int], months: int = MAX_MONTHS
) -> list[Forecast]:
    """A forecast per partner and direction with traffic in the last `months` complete months."""
    series = monthly_p95(client, db, complete_months(now_ms, months))
    return [forecast_one(p, d, capacity_bps.get(p, 0), s) for (p, d), s in sorted(series.items())]


# --- Presentation (shared by the text report, the HTML page and the metrics) ------------------------------------

FORECAST_HEAD = (
    "partner", "dir", "months", "last 95th Gb/s", "trend Gb/s/month", "capacity Gb/s", "months left", "reached in",
)  # fmt: skip
FORECAST_NOTE = (
    "Capacity forecast: Theil-Sen line through each complete month's 95th percentile billing figure (up to"
    f" {MAX_MONTHS} months, months with under {MIN_COVERAGE:.0%} of their 5-minute slots stored left out, at least"
    f" {MIN_MONTHS} needed); months left = (capacity - trend at the last month) / monthly growth."
)


def _gbps(bps: float | None) -> str:
    return "-" if bps is None else f"{bps / 1e9:.3f}"


def forecast_rows(forecasts: Sequence[Forecast]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for f in forecasts:
        if f.status == "forecast" and f.months_left is not None:
            left = f"{f.months_left:.1f}"
        else:
            left = "0 (REACHED)" if f.status == "reached" else f.status
        last = f.months[-1].bps if f.months else None
        rows.append(
            (f.partner, f.direction, str(len(f.months)), _gbps(last), _gbps(f.slope_bps),
             _gbps(f.capacity_bps) if f.capacity_bps else "-", left, f.reached_in or "-")
        )  # fmt: skip
    return rows
