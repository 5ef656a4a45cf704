"""Pure pieces of the queries and report: the 95th percentile rank, slot and step choice, chart ticks."""

from __future__ import annotations

import pytest

from processors.queries import month_bounds_ms, rank_95th, rollup_suffix
from processors.report import budget_note, five_minute_slots
from processors.report_html import plot_step
from processors.svgplot import nice_ticks

NOV_2026_MS = 1_793_491_200_000  # 2026-11-01T00:00:00Z
DEC_2026_MS = 1_796_083_200_000  # 2026-12-01T00:00:00Z


def test_rank_95th_drops_the_top_five_percent() -> None:
    assert rank_95th(list(range(1, 21)), 20) == 19  # 20 samples: the single highest is dropped
    assert rank_95th(list(range(1, 20)), 19) == 19  # 19 samples: 5% is less than one, nothing dropped
    assert rank_95th(list(range(1, 101)), 100) == 95  # 100 samples: 96..100 dropped
    # 10 written samples in 40 slots: 30 zeros; 2 dropped (9, 10), the billed one is 8.
    assert rank_95th(list(range(1, 11)), 40) == 8
    # Mostly idle: 3 busy slots out of 100 are all inside the free 5%.
    assert rank_95th([500, 600, 700], 100) == 0
    assert rank_95th([], 0) == 0
    with pytest.raises(ValueError):
        rank_95th([1, 2], 1)


def test_month_bounds_stop_at_now_rounded_to_five_minutes() -> None:
    assert month_bounds_ms(2026, 11, DEC_2026_MS + 10**9) == (NOV_2026_MS, DEC_2026_MS)
    assert month_bounds_ms(2026, 11, NOV_2026_MS + 3 * 86_400_000 + 299_999) == (
        NOV_2026_MS,
        NOV_2026_MS + 3 * 86_400_000,
    )
    assert month_bounds_ms(2026, 11, NOV_2026_MS - 1) == (NOV_2026_MS, NOV_2026_MS)  # not started: no slot
    assert month_bounds_ms(2026, 12, 2 * DEC_2026_MS)[1] - DEC_2026_MS == 31 * 86_400_000  # into January


def test_rollup_is_used_only_for_whole_buckets() -> None:
    day = NOV_2026_MS
    assert rollup_suffix(day, day + 86_400_000, 86_400) == "1d"
    assert rollup_suffix(day, day + 86_400_000, 3_600) == "1h"
    assert rollup_suffix(day + 300_000, day + 900_000, 300) == "5m"
    assert rollup_suffix(day + 60_000, day + 900_000, 300) is None  # starts mid-bucket
    assert rollup_suffix(day, day + 900_000, 120) is None  # step finer than 5 minutes


def test_five_minute_slots_inside_a_range() -> None:
    assert five_minute_slots(NOV_2026_MS + 1, NOV_2026_MS + 900_001) == (NOV_2026_MS + 300_000, NOV_2026_MS + 900_000)
    assert five_minute_slots(NOV_2026_MS + 1, NOV_2026_MS + 500_000) is None


def test_plot_step_keeps_lines_short_and_on_window_boundaries() -> None:
    assert plot_step(0, 7_200_000, 60) == 60  # 2 h of 60 s windows: 120 points
    assert plot_step(0, 7_200_000, 10) == 30  # 720 windows -> 240 points
    assert plot_step(0, 30 * 86_400_000, 60) == 10_800  # a month: 3 h steps (240 points), whole 5 minutes


def test_nice_ticks_cover_the_range_with_round_steps() -> None:
    assert nice_ticks(0, 0.27) == [0, 0.1, 0.2, 0.3]
    assert nice_ticks(0, 83.2) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(0, 0) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_the_error_budget_names_the_period_it_covers() -> None:
    # flows_raw keeps 15 days by default: the budget says so instead of claiming 30
    assert "of the 15 days (flows_raw keeps 15: loader.ttl_flows_raw_days) before" in budget_note(15)
    assert "of the 30 days before" in budget_note(30)
    assert "keeps" not in budget_note(30)
