"""The capacity forecast as Prometheus gauges (`gwtel_forecast_*`), served by `gwtel forecast --serve`.

Prometheus cannot compute the forecast itself: the monthly 95th percentile billing figure lives in ClickHouse's
5-minute rollup (400 days), far beyond a Prometheus retention. One small process recomputes it (hourly by
default: the figures change once a month) and the generated rule `GwtelPartnerCapacityForecast` alerts on it.
It is not in the loader: loaders scale out and sit on the hot path, and the forecast needs one reader, rarely.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge

from processors.forecast import Forecast

LABELS = ["partner", "direction"]


class ForecastMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.months_left = Gauge(
            "gwtel_forecast_capacity_months_left",
            "Months from the last complete month until the trend of the monthly 95th percentile reaches the "
            "contracted capacity (0: reached); absent when flat, declining, without contract or under 3 months",
            LABELS,
            registry=registry,
        )
        self.trend = Gauge(
            "gwtel_forecast_trend_bps_per_month",
            "Growth of the monthly 95th percentile billing figure, bits/s per month (Theil-Sen slope)",
            LABELS,
            registry=registry,
        )
        self.last_p95 = Gauge(
            "gwtel_forecast_last_month_p95_bps",
            "The 95th percentile billing figure of the last complete month fitted, bits/s",
            LABELS,
            registry=registry,
        )
        self.months = Gauge(
            "gwtel_forecast_months_fitted",
            "Complete months the trend was fitted on",
            LABELS,
            registry=registry,
        )
        self.runs = Counter("gwtel_forecast_runs_total", "Forecast computations, by outcome", ["outcome"],
                            registry=registry)  # fmt: skip
        self.last_success = Gauge(
            "gwtel_forecast_last_success_timestamp_seconds",
            "When the forecast was last computed from ClickHouse",
            registry=registry,
        )

    def publish(self, forecasts: Sequence[Forecast], now_s: float) -> None:
        """Replace every series with `forecasts` (a partner that disappeared loses its series)."""
        for gauge in (self.months_left, self.trend, self.last_p95, self.months):
            gauge.clear()
        for f in forecasts:
            key = (f.partner, f.direction)
            self.months.labels(*key).set(len(f.months))
            if f.months:
                self.last_p95.labels(*key).set(f.months[-1].bps)
            if f.slope_bps is not None:
                self.trend.labels(*key).set(f.slope_bps)
            if f.months_left is not None:
                self.months_left.labels(*key).set(f.months_left)
        self.runs.labels("ok").inc()
        self.last_success.set(now_s)
