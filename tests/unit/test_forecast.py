"""Capacity forecast arithmetic: Theil-Sen trend of monthly 95th percentiles, months left, edge cases.

Every expected figure is worked out by hand in the comments (slopes listed, median taken).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.forecast import (
    MonthP95,
    complete_months,
    forecast_one,
    forecast_rows,
    month_index,
    month_name,
    theil_sen,
)

G = 1e9


def months(first: str, gbps: list[float]) -> list[MonthP95]:
    start = month_index(first)
    return [MonthP95(month_name(start + i), v * G) for i, v in enumerate(gbps)]


def test_steady_growth_reaches_capacity_at_the_hand_computed_month() -> None:
    # 10, 20, 30, 40 Gb/s from January: every pairwise slope is 10 Gb/s per month, the line passes through
    # every point, so April's trend value is 40; (100 - 40) / 10 = 6 months: October.
    f = forecast_one("japan", "egress", int(100 * G), months("2026-01", [10, 20, 30, 40]))
    assert f.status == "forecast"
    assert f.slope_bps == pytest.approx(10 * G)
    assert f.level_bps == pytest.approx(40 * G)
    assert f.months_left == pytest.approx(6.0)
    assert f.reached_in == "2026-10"


def test_one_odd_month_does_not_bend_the_trend() -> None:
    # 10, 20, 30, 40, then 120 in May (a DDoS month). Pairwise slopes: 10 10 10 27.5 | 10 10 33.3 | 10 45 | 80;
    # sorted, the 5th and 6th of ten are 10 and 10: median 10. Residuals y - 10 * i = 10 10 10 10 80: median 10,
    # so May's trend value is 10 + 10 * 4 = 50; (100 - 50) / 10 = 5 months: October. (Least squares: slope 24,
    # May at 92, a third of a month left.)
    f = forecast_one("japan", "egress", int(100 * G), months("2026-01", [10, 20, 30, 40, 120]))
    assert f.slope_bps == pytest.approx(10 * G)
    assert f.level_bps == pytest.approx(50 * G)
    assert f.months_left == pytest.approx(5.0)
    assert f.reached_in == "2026-10"


def test_fractional_months_round_up_to_the_first_month_at_capacity() -> None:
    # 10, 15, 20 -> slope 5, March at 20; (42 - 20) / 5 = 4.4 months: the trend passes 42 during the 5th month.
    f = forecast_one("korea", "ingress", int(42 * G), months("2026-01", [10, 15, 20]))
    assert f.months_left == pytest.approx(4.4)
    assert f.reached_in == "2026-08"


def test_year_boundary_and_a_missing_month() -> None:
    # November, December, then February (January left out): x = 0, 1, 3 with 10, 20, 40.
    # Slopes 10, 15, 10: median 10; residuals 10, 10, 10: February at 40; (60 - 40) / 10 = 2 months: April.
    got = [MonthP95("2025-11", 10 * G), MonthP95("2026-02", 40 * G), MonthP95("2025-12", 20 * G)]
    f = forecast_one("korea", "egress", int(60 * G), got)
    assert [m.month for m in f.months] == ["2025-11", "2025-12", "2026-02"]
    assert f.slope_bps == pytest.approx(10 * G)
    assert f.months_left == pytest.approx(2.0)
    assert f.reached_in == "2026-04"


def test_too_few_months_gives_no_forecast() -> None:
    f = forecast_one("japan", "egress", int(100 * G), months("2026-01", [10, 20]))
    assert (f.status, f.slope_bps, f.months_left, f.reached_in) == ("too few months", None, None, None)
    assert forecast_rows([f])[0][6] == "too few months"


@pytest.mark.parametrize("gbps", [[30, 30, 30], [50, 40, 30], [30, 35, 30, 25]])
def test_flat_or_declining_is_never_reached(gbps: list[float]) -> None:
    f = forecast_one("japan", "egress", int(100 * G), months("2026-01", gbps))
    assert f.status == "not reached"
    assert f.slope_bps is not None and f.slope_bps <= 0
    assert f.months_left is None and f.reached_in is None
    assert forecast_rows([f])[0][6:] == ("not reached", "-")


def test_already_at_capacity() -> None:
    # 90, 100, 110 -> the trend is at 110 in March, above the 100 contracted.
    f = forecast_one("japan", "egress", int(100 * G), months("2026-01", [90, 100, 110]))
    assert (f.status, f.months_left, f.reached_in) == ("reached", 0.0, "2026-03")
    assert forecast_rows([f])[0][6] == "0 (REACHED)"


def test_no_contract_still_shows_the_trend() -> None:
    f = forecast_one("other", "egress", 0, months("2026-01", [1, 2, 3]))
    assert f.status == "no contract"
    assert f.slope_bps == pytest.approx(1 * G)
    assert f.months_left is None
    assert forecast_rows([f])[0] == ("other", "egress", "3", "3.000", "1.000", "-", "no contract", "-")


def test_theil_sen_definition_on_small_sets() -> None:
    # (0,0) (1,1) (2,4): slopes 1, 2, 3 -> 2; residuals 0, -1, 0 -> 0.
    assert theil_sen([0, 1, 2], [0, 1, 4]) == (2, 0)
    with pytest.raises(ValueError):
        theil_sen([1], [1])
    with pytest.raises(ValueError):
        theil_sen([1, 1], [1, 2])


def test_complete_months_end_before_now() -> None:
    now_ms = 1_773_576_000_000  # 2026-03-15T12:00:00Z
    assert complete_months(now_ms, 3) == ["2025-12", "2026-01", "2026-02"]
    assert month_name(month_index("2025-12") + 1) == "2026-01"


@given(
    a=st.integers(-1000, 1000),
    b=st.integers(-100, 100),
    n=st.integers(4, 12),
    outlier=st.one_of(st.none(), st.integers(-(10**6), 10**6)),
)
def test_exact_lines_are_recovered_even_with_one_outlier(a: int, b: int, n: int, outlier: int | None) -> None:
    # y = a + b x exactly: every pairwise slope is b. With one point moved, C(n, 2) >= 6 of the C(n + 1, 2) slopes
    # (n + 1 points, n >= 4) and n of the n + 1 residuals still equal b and a: both medians are unchanged.
    xs = list(range(n))
    ys = [a + b * x for x in xs]
    if outlier is not None:
        xs.append(n)
        ys.append(outlier)
    assert theil_sen(xs, ys) == (b, a)
