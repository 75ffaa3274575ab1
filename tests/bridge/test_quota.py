"""The quota engine and the planner: never a call over budget, and budget spent well."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.errors import QuotaExhaustedError
from bridge.model import Priority
from bridge.planner import Cadence, next_poll
from bridge.quota import Budget, BudgetKind, MemoryLedger, Quota, apply_overrides
from bridge.store import Store
from tests.support.clock import Clock

FLEETIZE = (
    Budget("daily", BudgetKind.DAILY, limit=100, reserve=0.1),
    Budget("spacing", BudgetKind.SPACING, period=60.0),
)
TELEMAX = (
    Budget("per_token", BudgetKind.WINDOW, limit=60, period=60.0, reserve=0.1),
    Budget(
        "safety_score",
        BudgetKind.WINDOW,
        limit=30,
        period=60.0,
        endpoints=frozenset({"safety_score"}),
        reserve=0.1,
    ),
)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 21, 8, 0, tzinfo=UTC))


async def test_spacing_refuses_a_call_before_60_seconds(clock: Clock) -> None:
    quota = Quota("f", FLEETIZE, MemoryLedger(), now=clock)
    await quota.acquire("devicelist")
    clock.advance(59.9)
    with pytest.raises(QuotaExhaustedError) as caught:
        await quota.acquire("devicelist")
    assert "one call per 60 s" in str(caught.value)
    # 60 s and the margin for the time between recording a call and its arrival.
    assert caught.value.retry_after == pytest.approx(0.7)
    clock.advance(0.6)
    with pytest.raises(QuotaExhaustedError):
        await quota.acquire("devicelist")
    clock.advance(0.1)
    await quota.acquire("devicelist")


async def test_daily_budget_keeps_the_reserve_from_polls_and_resets_at_the_day_boundary(
    clock: Clock,
) -> None:
    quota = Quota("f", (FLEETIZE[0],), MemoryLedger(), now=clock)
    for _ in range(90):
        await quota.acquire("devicelist")
    assert quota.calls_left_today(Priority.POLL) == 0
    with pytest.raises(QuotaExhaustedError) as caught:
        await quota.acquire("devicelist")
    assert caught.value.available_at == datetime(2026, 11, 22, tzinfo=UTC)
    # The reserve is for commands and refreshes.
    for _ in range(10):
        await quota.acquire("devicelist", Priority.COMMAND)
    with pytest.raises(QuotaExhaustedError):
        await quota.acquire("devicelist", Priority.COMMAND)
    clock.now = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
    assert quota.calls_left_today() == 90
    await quota.acquire("devicelist")


async def test_daily_budget_follows_the_providers_time_zone(clock: Clock) -> None:
    berlin = apply_overrides(FLEETIZE, {}, day_zone="Europe/Berlin")
    quota = Quota("f", berlin, MemoryLedger(), now=clock)
    daily = quota.daily_budget()
    assert daily is not None
    # Berlin midnight is 23:00 UTC in November.
    assert daily.next_day_start(clock.now) == datetime(2026, 11, 21, 23, 0, tzinfo=UTC)


async def test_a_daily_budget_counts_the_providers_day_not_the_utc_day(clock: Clock) -> None:
    """Calls before Berlin's midnight belong to yesterday there, even where UTC
    has not turned the day yet (a budget counted on the UTC day would refuse the
    call at 23:30 UTC, or allow 200 calls across Berlin's day)."""
    budget = Budget("daily", BudgetKind.DAILY, limit=3, day_zone="Europe/Berlin")
    quota = Quota("f", (budget,), MemoryLedger(), now=clock)
    clock.now = datetime(2026, 11, 21, 22, 0, tzinfo=UTC)  # 23:00 in Berlin
    for _ in range(3):
        await quota.acquire("devicelist")
    with pytest.raises(QuotaExhaustedError) as caught:
        await quota.acquire("devicelist")
    assert caught.value.available_at == datetime(2026, 11, 21, 23, 0, tzinfo=UTC)
    # 23:30 UTC, the same UTC day: in Berlin a new day with its whole budget.
    clock.now = datetime(2026, 11, 21, 23, 30, tzinfo=UTC)
    assert quota.calls_left_today() == 3
    for _ in range(3):
        await quota.acquire("devicelist")
    assert quota.calls_left_today() == 0
    usage = quota.usage()["daily"]
    assert usage["used"] == 3
    assert usage["resets_at"] == "2026-11-22T23:00:00Z"


async def test_a_daily_budget_across_a_daylight_saving_change(clock: Clock) -> None:
    # Berlin moves to summer time on 2026-03-29: that day is 23 hours long.
    budget = Budget("daily", BudgetKind.DAILY, limit=1, day_zone="Europe/Berlin")
    quota = Quota("f", (budget,), MemoryLedger(), now=clock)
    clock.now = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)  # 00:30 CET on the 29th
    await quota.acquire("devicelist")
    denial = quota.check("devicelist")
    assert denial is not None
    # The next midnight is 00:00 CEST = 22:00 UTC.
    assert denial.available_at == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)
    clock.now = datetime(2026, 3, 29, 21, 59, tzinfo=UTC)
    assert quota.calls_left_today() == 0
    clock.now = datetime(2026, 3, 29, 22, 0, tzinfo=UTC)
    assert quota.calls_left_today() == 1


async def test_sliding_window_frees_up_as_calls_age_out(clock: Clock) -> None:
    quota = Quota("t", TELEMAX, MemoryLedger(), now=clock)
    for i in range(54):  # 60 minus the 10 % reserve
        await quota.acquire("last_position")
        clock.advance(0.5 if i < 53 else 0)
    assert quota.available("last_position") == 0
    denial = quota.check("last_position")
    assert denial is not None
    # The oldest call was at t=0: the window admits one more at t=60.
    assert denial.available_at == datetime(2026, 11, 21, 8, 1, tzinfo=UTC)
    clock.now = denial.available_at
    await quota.acquire("last_position")


async def test_per_endpoint_budget_binds_only_its_endpoint(clock: Clock) -> None:
    quota = Quota("t", TELEMAX, MemoryLedger(), now=clock)
    assert quota.available("safety_score") == 27
    for _ in range(27):
        await quota.acquire("safety_score")
    assert quota.available("safety_score") == 0
    assert quota.available("last_position") == 54 - 27
    await quota.acquire("last_position")


async def test_hold_blocks_every_endpoint_until_it_ends(clock: Clock) -> None:
    ledger = MemoryLedger()
    quota = Quota("t", TELEMAX, ledger, now=clock)
    await quota.hold(30, "Telemax answered 429")
    with pytest.raises(QuotaExhaustedError, match="429"):
        await quota.acquire("companies")
    # A restart remembers the hold.
    again = Quota("t", TELEMAX, ledger, now=clock)
    await again.load()
    assert again.check("companies") is not None
    clock.advance(30)
    await again.acquire("companies")


async def test_the_sqlite_ledger_remembers_calls_across_a_restart(
    clock: Clock, tmp_path: Path
) -> None:
    path = tmp_path / "store.sqlite"
    with Store(path) as store:
        quota = Quota("f", FLEETIZE, store, now=clock)
        for _ in range(3):
            await quota.acquire("devicelist")
            clock.advance(61)
    clock.advance(-30)  # restart 30 s after the last call
    with Store(path) as store:
        restarted = Quota("f", FLEETIZE, store, now=clock)
        await restarted.load()
        assert restarted.calls_left_today() == 87
        with pytest.raises(QuotaExhaustedError, match="spacing"):
            await restarted.acquire("devicelist")


def test_overrides_correct_defaults_and_add_budgets() -> None:
    budgets = apply_overrides(
        FLEETIZE,
        {"daily": {"limit": 200}, "burst": {"kind": "window", "limit": 5, "period": 10}},
        reserve=0.2,
    )
    by_name = {b.name: b for b in budgets}
    assert by_name["daily"].limit == 200
    assert by_name["daily"].limit_for(Priority.POLL) == 160
    assert by_name["burst"].kind is BudgetKind.WINDOW
    assert by_name["spacing"].period == 60


async def test_usage_reports_each_budget(clock: Clock) -> None:
    quota = Quota("f", FLEETIZE, MemoryLedger(), now=clock)
    await quota.acquire("devicelist")
    usage = quota.usage()
    assert usage["daily"] == {
        "kind": "daily",
        "used": 1,
        "limit": 100,
        "reserve": 10,
        "scope": "token",
        "resets_at": "2026-11-22T00:00:00Z",
    }
    assert usage["spacing"]["resets_at"] == "2026-11-21T08:01:00Z"


async def test_planner_polls_faster_when_moving_and_slower_when_parked(clock: Clock) -> None:
    quota = Quota("f", FLEETIZE, MemoryLedger(), now=clock)
    cadence = Cadence(min_interval=60, max_interval=7200)
    # 16 h left today, 90 poll calls: an even spread is 640 s.
    moving = next_poll(cadence, quota, moving=True, calls_per_poll=1, endpoint="devicelist")
    parked = next_poll(cadence, quota, moving=False, calls_per_poll=1, endpoint="devicelist")
    assert moving.delay == pytest.approx(320)
    assert parked.delay == pytest.approx(1920)
    assert moving.reason == "vehicles moving"


async def test_planner_never_plans_below_the_spacing_nor_past_the_budget(clock: Clock) -> None:
    quota = Quota("f", FLEETIZE, MemoryLedger(), now=clock)
    clock.now = datetime(2026, 11, 21, 23, 59, tzinfo=UTC)
    await quota.acquire("devicelist")
    plan = next_poll(
        Cadence(min_interval=5), quota, moving=True, calls_per_poll=1, endpoint="devicelist"
    )
    assert plan.delay >= 60
    spent = Quota("g", (FLEETIZE[0],), MemoryLedger(), now=clock)
    for _ in range(90):
        await spent.acquire("devicelist")
    plan = next_poll(Cadence(), spent, moving=True, calls_per_poll=1, endpoint="devicelist")
    assert plan.delay == pytest.approx(61)  # the day ends in 60 s
    assert "daily budget spent" in plan.reason


async def test_planner_uses_the_fixed_interval_without_a_daily_budget(clock: Clock) -> None:
    quota = Quota("t", TELEMAX, MemoryLedger(), now=clock)
    plan = next_poll(
        Cadence(interval=30), quota, moving=False, calls_per_poll=3, endpoint="last_position"
    )
    assert plan.delay == 30
