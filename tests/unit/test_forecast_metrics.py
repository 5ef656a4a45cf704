"""The forecast gauges: what `gwtel forecast --serve` publishes for each kind of forecast."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from processors.forecast import MonthP95, forecast_one
from processors.forecast_metrics import ForecastMetrics

G = 10**9


def _months(gbps: list[int]) -> list[MonthP95]:
    return [MonthP95(f"2026-{i + 1:02d}", v * G) for i, v in enumerate(gbps)]


def test_published_series() -> None:
    registry = CollectorRegistry()
    metrics = ForecastMetrics(registry)
    growing = forecast_one("korea", "egress", 100 * G, _months([10, 20, 30, 40]))  # 6 months left
    flat = forecast_one("japan", "ingress", 100 * G, _months([5, 5, 5]))
    short = forecast_one("korea", "ingress", 100 * G, _months([7]))
    metrics.publish([growing, flat, short], now_s=1234.0)

    def value(name: str, partner: str, direction: str) -> float | None:
        return registry.get_sample_value(name, {"partner": partner, "direction": direction})

    assert value("gwtel_forecast_capacity_months_left", "korea", "egress") == 6.0
    assert value("gwtel_forecast_trend_bps_per_month", "korea", "egress") == 10 * G
    assert value("gwtel_forecast_last_month_p95_bps", "korea", "egress") == 40 * G
    assert value("gwtel_forecast_months_fitted", "korea", "egress") == 4
    # Flat: a trend but no months-left series, so the alert cannot fire on it.
    assert value("gwtel_forecast_capacity_months_left", "japan", "ingress") is None
    assert value("gwtel_forecast_trend_bps_per_month", "japan", "ingress") == 0
    # Too few months: neither a trend nor months left.
    assert value("gwtel_forecast_trend_bps_per_month", "korea", "ingress") is None
    assert value("gwtel_forecast_months_fitted", "korea", "ingress") == 1
    assert registry.get_sample_value("gwtel_forecast_last_success_timestamp_seconds") == 1234.0
    assert registry.get_sample_value("gwtel_forecast_runs_total", {"outcome": "ok"}) == 1

    # A partner that disappears from the forecast loses its series.
    metrics.publish([flat], now_s=1300.0)
    assert value("gwtel_forecast_capacity_months_left", "korea", "egress") is None
    assert registry.get_sample_value("gwtel_forecast_runs_total", {"outcome": "ok"}) == 2
