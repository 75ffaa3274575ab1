"""Provider budgets at their edges: what mutation testing of bridge/quota.py found
untested (docs/mutants-quota-publisher.md). Every test asserts what an account
sees: a call allowed or refused, when it may go again, what the refusal says,
what the quota topic reports. Time is the test's own clock."""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

import pytest

from bridge.errors import QuotaExhaustedError
from bridge.model import Priority
from bridge.quota import (
    Budget,
    BudgetKind,
    Call,
    Hold,
    MemoryLedger,
    Quota,
    QuotaBook,
    Scope,
    Scopes,
    _ordinal,
    apply_overrides,
    endpoint_window,
)
from tests.support.clock import START, Clock

SPACING = Budget("spacing", BudgetKind.SPACING, period=60.0, scope=Scope.EGRESS)
GAP = SPACING.gap


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def refused(quota: Quota, endpoint: str = "x", priority: Priority = Priority.POLL) -> str:
    with pytest.raises(QuotaExhaustedError) as caught:
        await quota.acquire(endpoint, priority)
    return str(caught.value)


async def refusal(quota: Quota, endpoint: str = "x") -> QuotaExhaustedError:
    with pytest.raises(QuotaExhaustedError) as caught:
        await quota.acquire(endpoint)
    return caught.value


def sharing(
    book: QuotaBook, names: list[str], clock: Clock, budget: Budget = SPACING, **scope: str
) -> list[Quota]:
    return [
        book.quota(n, (budget,), Scopes.of("fleetize", f"token-{n}", **scope), now=clock)
        for n in names
    ]


# --- refusals on a shared spacing: who is in line, and where -----------------------


@pytest.mark.parametrize(
    ("waiting", "place"),
    [
        (1, "2nd"),
        (2, "3rd"),
        (3, "4th"),
        (10, "11th"),
        (11, "12th"),
        (12, "13th"),
        (19, "20th"),
        (20, "21st"),
        (21, "22nd"),
        (22, "23rd"),
        (23, "24th"),
        (100, "101st"),
        (110, "111th"),
        (111, "112th"),
    ],
)
async def test_an_account_that_just_called_waits_behind_every_account_in_line(
    clock: Clock, waiting: int, place: str
) -> None:
    book = QuotaBook(MemoryLedger())
    caller, *others = sharing(book, ["a", *(f"w{i:03d}" for i in range(waiting))], clock)
    await caller.acquire("x")
    # Refused in one instant, each in its own place and slot: none told another's.
    slots = []
    for index, other in enumerate(others):
        error = await refusal(other)
        assert f": {'next' if index == 0 else _ordinal(index + 1)} in line" in str(error)
        slots.append(error.retry_after)
    assert slots == pytest.approx([GAP * (n + 1) for n in range(waiting)])
    # The caller has called last: every waiting account goes before it, a gap apart.
    error = await refusal(caller)
    assert f": {place} in line" in str(error)
    assert f"shared by {waiting + 1} accounts on egress 'default'" in str(error)
    assert error.retry_after == pytest.approx(GAP * (waiting + 1))


@pytest.mark.parametrize(
    ("scope", "names", "words"),
    [
        (Scope.EGRESS, {"egress": "site:b"}, "egress 'site:b'"),
        (Scope.ORGANISATION, {"organisation": "acme"}, "organisation 'acme'"),
        (Scope.ORGANISATION, {}, "token's organisation"),
        (Scope.TOKEN, {}, "token:"),
        (Scope.ACCOUNT, {}, "account:"),
    ],
)
async def test_a_shared_spacing_refusal_names_what_is_shared_never_a_fingerprint(
    clock: Clock, scope: Scope, names: dict[str, str], words: str
) -> None:
    book = QuotaBook(MemoryLedger())
    budget = Budget("spacing", BudgetKind.SPACING, period=60.0, scope=scope)
    # One credential for token and account scopes: they are shared by the credential.
    same = scope in (Scope.TOKEN, Scope.ACCOUNT) or not names
    quotas = [
        book.quota(n, (budget,), Scopes.of("p", "one" if same else n, **names), now=clock)
        for n in ("a", "b")
    ]
    await quotas[0].acquire("x")
    message = await refused(quotas[1])
    assert f"shared by 2 accounts on {words}" in message
    assert "next in line" in message
    assert "~" not in message


# --- which budgets a call counts against ----------------------------------------------


async def test_an_endpoint_window_limits_only_its_endpoint(clock: Clock) -> None:
    budget = endpoint_window("positions", limit=2, period=30.0)
    quota = Quota("t", (budget,), MemoryLedger(), now=clock)
    for _ in range(5):
        await quota.acquire("other")
    await quota.acquire("positions")
    await quota.acquire("positions")
    error = await refusal(quota, "positions")
    assert "positions (2 calls per 30 s on positions)" in str(error)
    assert error.retry_after == pytest.approx(30.0)
    assert quota.usage()["positions"]["endpoints"] == ["positions"]
    clock.advance(30.0)
    await quota.acquire("positions")


async def test_a_refusal_names_every_endpoint_of_its_budget(clock: Clock) -> None:
    budget = Budget("pair", BudgetKind.WINDOW, limit=1, period=10.0, endpoints=frozenset("ba"))
    quota = Quota("t", (budget,), MemoryLedger(), now=clock)
    await quota.acquire("a")
    assert "pair (1 calls per 10 s on a, b)" in await refused(quota, "b")
    unscoped = Quota("u", (Budget("all", BudgetKind.SPACING, period=5.0),), MemoryLedger())
    await unscoped.acquire("a")
    message = await refused(unscoped, "b")
    assert "all (one call per 5 s) is used up until 20" in message


async def test_an_overridden_endpoint_list_narrows_the_budget(clock: Clock) -> None:
    defaults = (Budget("w", BudgetKind.WINDOW, limit=1, period=60.0),)
    (budget,) = apply_overrides(defaults, {"w": {"endpoints": ["slow"]}})
    quota = Quota("t", (budget,), MemoryLedger(), now=clock)
    await quota.acquire("fast")
    await quota.acquire("fast")
    await quota.acquire("slow")
    await refused(quota, "slow")


async def test_a_daily_budget_on_one_endpoint_counts_only_that_endpoints_calls(
    clock: Clock,
) -> None:
    daily = Budget("export", BudgetKind.DAILY, limit=1, endpoints=frozenset({"export"}))
    quota = Quota("t", (daily,), MemoryLedger(), now=clock)
    await quota.acquire("list")
    await quota.acquire("export")
    await quota.acquire("list")
    await refused(quota, "export")


async def test_a_budget_that_does_not_apply_does_not_hide_the_ones_after_it(
    clock: Clock,
) -> None:
    budgets = (
        endpoint_window("other", limit=100, period=60.0),
        Budget("per_token", BudgetKind.WINDOW, limit=1, period=60.0),
    )
    quota = Quota("t", budgets, MemoryLedger(), now=clock)
    await quota.acquire("x")
    assert quota.check("x") is not None
    await refused(quota, "x")
    assert quota.available("x") == 0


async def test_the_binding_refusal_is_the_one_that_frees_last(clock: Clock) -> None:
    budgets = (
        Budget("spacing", BudgetKind.SPACING, period=60.0),
        Budget("daily", BudgetKind.DAILY, limit=1),
    )
    quota = Quota("t", budgets, MemoryLedger(), now=clock)
    await quota.acquire("x")
    error = await refusal(quota)
    assert error.available_at == datetime(2026, 11, 22, tzinfo=UTC)
    assert "daily" in str(error)
    budgets = budgets[::-1]
    quota = Quota("u", budgets, MemoryLedger(), now=clock)
    await quota.acquire("x")
    assert (await refusal(quota)).available_at == datetime(2026, 11, 22, tzinfo=UTC)


# --- the provider's day -----------------------------------------------------------


async def test_the_day_starts_at_midnight_exactly(clock: Clock) -> None:
    daily = Budget("daily", BudgetKind.DAILY, limit=1)
    quota = Quota("t", (daily,), MemoryLedger(), now=clock)
    # A call at midnight itself belongs to the day that starts then.
    clock.now = datetime(2026, 11, 21, tzinfo=UTC)
    await quota.acquire("x")
    clock.now = datetime(2026, 11, 21, 12, 30, 45, 500_000, tzinfo=UTC)
    error = await refusal(quota)
    # Free again at the next midnight to the microsecond, however odd `now` is.
    assert error.available_at == datetime(2026, 11, 22, tzinfo=UTC)
    assert error.retry_after == pytest.approx(11 * 3600 + 29 * 60 + 14.5)
    assert quota.seconds_left_today() == pytest.approx(error.retry_after)
    assert quota.usage()["daily"]["resets_at"] == "2026-11-22T00:00:00Z"


async def test_a_call_seconds_after_midnight_counts_all_day(clock: Clock) -> None:
    daily = Budget("daily", BudgetKind.DAILY, limit=1)
    quota = Quota("t", (daily,), MemoryLedger(), now=clock)
    clock.now = datetime(2026, 11, 21, 0, 0, 0, 1, tzinfo=UTC)
    await quota.acquire("x")
    for later in (
        timedelta(microseconds=1),
        timedelta(seconds=30),
        timedelta(minutes=1, seconds=5),
    ):
        clock.now = datetime(2026, 11, 21, 23, 0, tzinfo=UTC) + later
        await refused(quota)
        assert quota.calls_left_today() == 0


async def test_the_smallest_daily_budget_is_the_one_left_today(clock: Clock) -> None:
    budgets = (
        Budget("big", BudgetKind.DAILY, limit=50),
        Budget("small", BudgetKind.DAILY, limit=5),
        Budget("bigger", BudgetKind.DAILY, limit=80),
    )
    quota = Quota("t", budgets, MemoryLedger(), now=clock)
    await quota.acquire("x")
    assert quota.calls_left_today() == 4
    assert quota.daily_sharers() == 1


async def test_calls_left_today_keeps_the_reserve_only_from_polls(clock: Clock) -> None:
    daily = Budget("daily", BudgetKind.DAILY, limit=10, reserve=0.2)
    quota = Quota("t", (daily,), MemoryLedger(), now=clock)
    assert quota.calls_left_today() == 8
    assert quota.calls_left_today(Priority.COMMAND) == 10
    assert quota.available("x") == 8
    assert quota.available("x", Priority.COMMAND) == 10
    for _ in range(8):
        await quota.acquire("x")
    assert quota.check("x") is not None
    assert quota.check("x", Priority.COMMAND) is None
    assert quota.usage()["daily"]["reserve"] == 2


# --- what can go now --------------------------------------------------------------


async def test_available_counts_the_calls_that_could_go_back_to_back(clock: Clock) -> None:
    budgets = (
        Budget("window", BudgetKind.WINDOW, limit=3, period=60.0),
        Budget("slow", BudgetKind.SPACING, period=10.0, endpoints=frozenset({"slow"})),
    )
    quota = Quota("t", budgets, MemoryLedger(), now=clock)
    assert quota.available("fast") == 3
    assert quota.available("slow") == 1
    await quota.acquire("slow")
    assert quota.available("fast") == 2
    assert quota.available("slow") == 0
    assert quota.check("slow") is not None
    assert quota.check("fast") is None
    # The tightest budget counts, whichever comes first.
    reversed_order = Quota("r", budgets[::-1], MemoryLedger(), now=clock)
    assert reversed_order.available("slow") == 1
    assert reversed_order.daily_sharers() == 1
    unlimited = Quota("u", (), MemoryLedger(), now=clock)
    assert unlimited.available("x") >= 10**6


async def test_a_hold_ends_at_its_time_and_a_zero_hold_holds_nothing(clock: Clock) -> None:
    budgets = (Budget("w", BudgetKind.WINDOW, limit=5, period=1.0),)
    quota = Quota("t", budgets, MemoryLedger(), now=clock)
    await quota.hold(0, "nothing")
    assert quota.available("x") == 5
    assert "hold" not in quota.usage()
    await quota.hold(30, "retry-after")
    await quota.hold(10, "shorter")
    assert quota.available("x") == 0
    assert quota.usage()["hold"] == {"until": "2026-11-21T08:00:30Z", "reason": "retry-after"}
    clock.advance(30)
    assert quota.available("x") == 5
    await quota.acquire("x")


async def test_a_hold_on_the_egress_stops_every_account_behind_it(clock: Clock) -> None:
    book = QuotaBook(MemoryLedger())
    a, b = sharing(book, ["a", "b"], clock, egress="office")
    other = sharing(book, ["c"], clock, egress="elsewhere")[0]
    await a.hold(60, "#1055", Scope.EGRESS)
    assert "hold (#1055)" in await refused(b)
    assert b.available("x") == 0
    await other.acquire("x")
    clock.advance(60)
    await b.acquire("x")


async def test_a_hold_by_default_holds_only_the_token(clock: Clock) -> None:
    book = QuotaBook(MemoryLedger())
    window = Budget("w", BudgetKind.WINDOW, limit=5, period=60.0)
    a, b = sharing(book, ["a", "b"], clock, window)
    await a.hold(60, "429")
    assert "hold (429)" in await refused(a)
    await b.acquire("x")


async def test_the_longest_of_several_holds_binds(clock: Clock) -> None:
    book = QuotaBook(MemoryLedger())
    (a,) = sharing(book, ["a"], clock)
    await a.hold(20, "token", Scope.TOKEN)
    await a.hold(90, "egress", Scope.EGRESS)
    await a.hold(40, "account", Scope.ACCOUNT)
    assert a.usage()["hold"]["reason"] == "egress"
    clock.advance(89)
    assert a.available("x") == 0
    clock.advance(1)
    assert a.available("x") == 1


async def test_calls_made_counts_the_calls_this_account_made(clock: Clock) -> None:
    quota = Quota("t", (Budget("w", BudgetKind.WINDOW, limit=3, period=60.0),), MemoryLedger())
    assert quota.calls_made == 0
    await quota.acquire("x")
    await quota.acquire("x")
    assert quota.calls_made == 2


async def test_usage_reports_a_window_before_and_after_its_first_call(clock: Clock) -> None:
    window = endpoint_window("positions", limit=2, period=30.0)
    quota = Quota("t", (window,), MemoryLedger(), now=clock)
    entry = quota.usage()["positions"]
    assert entry["resets_at"] is None
    assert entry["period_s"] == 30.0
    assert entry["endpoints"] == ["positions"]
    await quota.acquire("positions")
    assert quota.usage()["positions"]["resets_at"] == "2026-11-21T08:00:30Z"


# --- a second process on one ledger --------------------------------------------------


async def test_a_second_process_sees_the_calls_and_the_longest_hold(clock: Clock) -> None:
    ledger = MemoryLedger()
    budgets = (Budget("w", BudgetKind.WINDOW, limit=2, period=60.0),)
    first = Quota("t", budgets, QuotaBook(ledger), now=clock)
    await first.acquire("x")
    await first.acquire("x")
    second = Quota("t", budgets, QuotaBook(ledger), now=clock)
    await second.load()
    assert second.available("x") == 0
    assert second.check("x") is not None
    await refused(second)

    await first.hold(60, "long")
    await Quota("t", budgets, QuotaBook(ledger), now=clock).hold(10, "short")
    third = Quota("t", budgets, QuotaBook(ledger), now=clock)
    await third.load()
    assert third.usage()["hold"]["reason"] == "long"
    clock.advance(59)
    await refused(third)


async def test_a_hold_from_the_ledger_does_not_shorten_a_longer_known_one(clock: Clock) -> None:
    ledger = MemoryLedger()
    budgets = (Budget("w", BudgetKind.WINDOW, limit=5, period=60.0),)
    book = QuotaBook(ledger)
    first = Quota("t", budgets, book, now=clock)
    await first.hold(60, "known")
    await Quota("t", budgets, QuotaBook(ledger), now=clock).hold(60, "same time")
    ledger.hold_of["local:t"] = Hold(START + timedelta(seconds=5), "earlier")
    late = Quota("t", budgets, book, now=clock)
    await late.load()
    assert late.usage()["hold"]["reason"] == "known"


async def test_an_account_loads_its_scopes_once(clock: Clock) -> None:
    ledger = MemoryLedger()
    budgets = (Budget("w", BudgetKind.WINDOW, limit=3, period=60.0),)
    quota = Quota("t", budgets, QuotaBook(ledger), now=clock)
    await quota.acquire("x")
    # Another process spends the rest: this one learns it at the ledger's check.
    other = Quota("t", budgets, QuotaBook(ledger), now=clock)
    await other.acquire("x")
    await other.acquire("x")
    await refused(quota)
    assert quota.calls_made == 1


# --- accounts leaving a shared spacing ------------------------------------------


async def test_an_account_that_leaves_gives_up_its_share_and_its_place(clock: Clock) -> None:
    book = QuotaBook(MemoryLedger())
    a, b, c = sharing(book, ["a", "b", "c"], clock)
    assert a.min_spacing("x") == pytest.approx(3 * GAP)
    await a.acquire("x")
    await refused(b)  # b takes a place in line
    b.close()
    assert a.min_spacing("x") == pytest.approx(2 * GAP)
    assert a.shared_with(SPACING) == ["a", "c"]
    # With b gone, a is next (not behind b's old place).
    error = await refusal(a)
    assert "next in line" in str(error)
    assert error.retry_after == pytest.approx(GAP)
    assert c.min_spacing("other") == pytest.approx(2 * GAP)
    # Nor do b's plans move the others'.
    assert b.stagger("x", 200.0) == 200.0
    b.close()
    assert a.stagger("x", 210.0) == 210.0


async def test_a_forgotten_account_no_longer_staggers_the_others(clock: Clock) -> None:
    book = QuotaBook(MemoryLedger())
    a, b, c = sharing(book, ["a", "b", "c"], clock)
    assert b.stagger("x", 10.0) == 10.0
    await a.acquire("x")
    await refused(b)
    book.forget("b")
    assert a.min_spacing("x") == pytest.approx(2 * GAP)
    assert a.stagger("x", 10.0) == 10.0
    assert c.stagger("x", 100.0) == 100.0
    error = await refusal(a)
    assert "next in line" in str(error)
    assert error.retry_after == pytest.approx(GAP)


async def test_stagger_moves_a_plan_past_the_others_and_only_for_its_spacing(
    clock: Clock,
) -> None:
    book = QuotaBook(MemoryLedger())
    budget = Budget(
        "spacing", BudgetKind.SPACING, period=60.0, endpoints=frozenset({"x"}), scope=Scope.EGRESS
    )
    a, b = sharing(book, ["a", "b"], clock, budget)
    assert a.stagger("x", 100.0) == 100.0
    # b's plan 30 s after a's would fall within one spacing: moved one gap past it.
    assert b.stagger("x", 130.0) == pytest.approx(100.0 + budget.gap)
    # Exactly one gap before a's plan is no collision; neither is one gap after.
    assert b.stagger("x", 100.0 - budget.gap) == pytest.approx(100.0 - budget.gap)
    assert b.stagger("x", 100.0 + budget.gap) == pytest.approx(100.0 + budget.gap)
    # Another endpoint is not spaced: not moved.
    assert b.stagger("x", 101.0 - 2 * budget.gap) == pytest.approx(101.0 - 2 * budget.gap)
    assert b.stagger("y", 101.0) == 101.0
    assert b.min_spacing("y") == 0.0
    assert b.min_spacing("x") == pytest.approx(2 * budget.gap)
    # A plan just past still counts for the grace, to its end; after it, no more.
    clock.advance(100.0 + QuotaBook.TURN_GRACE.total_seconds())
    grace = QuotaBook.TURN_GRACE.total_seconds()
    assert b.stagger("x", 0.0) == pytest.approx(budget.gap - grace)
    clock.advance(budget.gap + 1.0)
    assert a.stagger("x", 1.0) == 1.0


async def test_plans_due_within_seconds_are_staggered_too(clock: Clock) -> None:
    book = QuotaBook(MemoryLedger())
    a, b = sharing(book, ["a", "b"], clock)
    assert a.stagger("x", 1.0) == 1.0
    assert b.stagger("x", 2.0) == pytest.approx(1.0 + GAP)


async def test_plans_on_other_egresses_do_not_stagger_each_other(clock: Clock) -> None:
    book = QuotaBook(MemoryLedger())
    a, _c = sharing(book, ["a", "c"], clock, egress="one")
    b, _d = sharing(book, ["b", "d"], clock, egress="two")
    assert a.stagger("x", 100.0) == 100.0
    assert b.stagger("x", 130.0) == 130.0


async def test_an_unshared_spacing_does_not_hide_a_shared_one(clock: Clock) -> None:
    book = QuotaBook(MemoryLedger())
    own = Budget("own", BudgetKind.SPACING, period=10.0, scope=Scope.TOKEN)
    budgets = (own, SPACING)
    a, b = (book.quota(n, budgets, Scopes.of("fleetize", f"token-{n}"), now=clock) for n in "ab")
    assert a.stagger("x", 100.0) == 100.0
    assert b.stagger("x", 130.0) == pytest.approx(100.0 + GAP)


async def test_accounts_without_scopes_share_nothing(clock: Clock) -> None:
    book = QuotaBook(MemoryLedger())
    budgets = (Budget("spacing", BudgetKind.SPACING, period=60.0),)
    a = Quota("a", budgets, book, now=clock)
    b = Quota("b", budgets, book, now=clock)
    await a.acquire("x")
    await b.acquire("x")
    assert a.shared_with(budgets[0]) == ["a"]
    await refused(a)


async def test_checking_does_not_take_a_place_in_line(clock: Clock) -> None:
    book = QuotaBook(MemoryLedger())
    a, b = sharing(book, ["a", "b"], clock)
    await a.acquire("x")
    # b only asks (the planner does): a, asking again, is behind no one.
    assert b.check("x") is not None
    error = await refusal(a)
    assert "next in line" in str(error)
    assert error.retry_after == pytest.approx(GAP)


async def test_only_accounts_with_a_spacing_on_the_egress_share_it(clock: Clock) -> None:
    book = QuotaBook(MemoryLedger())
    (a,) = sharing(book, ["a"], clock)
    # b is behind the same egress, with a spacing of its own token only.
    own = Budget("own", BudgetKind.SPACING, period=10.0, scope=Scope.TOKEN)
    window = Budget("w", BudgetKind.WINDOW, limit=5, period=60.0)
    book.quota("b", (own, window), Scopes.of("fleetize", "token-b"), now=clock)
    assert a.shared_with(SPACING) == ["a"]
    assert a.min_spacing("x") == pytest.approx(GAP)


async def test_a_command_skips_the_line_on_a_shared_spacing(clock: Clock) -> None:
    book = QuotaBook(MemoryLedger())
    a, b = sharing(book, ["a", "b"], clock)
    await a.acquire("x")
    await refused(b)  # b's poll waits in line for the next slot
    clock.advance(GAP)
    await a.acquire("x", Priority.COMMAND)


# --- a spacing counts from the answer (Quota.completed): the second run's survivors ----


async def test_a_ledger_read_after_a_late_answer_holds_the_answers_time(clock: Clock) -> None:
    """Another book on the same ledger (the next process) sees the moved call:
    its spacing counts from the answer too, and the call is counted once."""
    ledger = MemoryLedger()
    (a,) = sharing(QuotaBook(ledger), ["a"], clock)
    call = await a.acquire("x")
    clock.advance(5)
    await a.completed(call)
    (b,) = sharing(QuotaBook(ledger), ["b"], clock)
    await b.load()
    clock.advance(GAP - 5)
    denial = b.check("x")
    assert denial is not None
    assert denial.available_at == START + timedelta(seconds=GAP + 5)
    clock.advance(5)
    assert b.check("x") is None
    calls = [c for scope in ledger.calls.values() for c in scope]
    assert {c.at for c in calls} == {START + timedelta(seconds=5)}


async def test_a_late_answer_goes_behind_the_calls_recorded_before_it(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = MemoryLedger()
    book = QuotaBook(ledger)
    a, b = sharing(book, ["a", "b"], clock)
    await b.completed(await b.acquire("x"))  # answered at once: its stamp stays
    clock.advance(GAP)
    call = await a.acquire("x")
    clock.advance(7)
    with caplog.at_level(logging.WARNING, logger="bridge.quota"):
        await a.completed(call)
    assert caplog.records == []  # moved in the ledger too, not only here
    assert [c.at for c in ledger.calls[b.scopes.egress]] == [
        START,
        START + timedelta(seconds=GAP + 7),
    ]
    # The newest call is the late answer: the spacing counts from it, here and
    # for a book that reads the ledger afresh.
    clock.advance(GAP - 1)
    (fresh,) = sharing(QuotaBook(ledger), ["c"], clock)
    await fresh.load()
    for quota in (b, fresh):
        denial = quota.check("x")
        assert denial is not None
        assert denial.available_at == START + timedelta(seconds=2 * GAP + 7)


async def test_a_window_counts_from_the_record_not_from_the_answer(clock: Clock) -> None:
    """Only a spacing moves to the answer: a window of 1 call in 10 s frees 10 s
    after the record, however long the answer took."""
    window = Budget("window", BudgetKind.WINDOW, limit=1, period=10.0)
    quota = QuotaBook(MemoryLedger()).quota("w", (window,), now=clock)
    call = await quota.acquire("x")
    clock.advance(5)
    await quota.completed(call)
    clock.advance(5)
    assert quota.check("x") is None


async def test_a_spacing_on_some_endpoints_moves_their_calls(clock: Clock) -> None:
    listing = Budget("listing", BudgetKind.SPACING, period=60.0, endpoints=frozenset({"list"}))
    quota = QuotaBook(MemoryLedger()).quota("s", (listing,), now=clock)
    call = await quota.acquire("list")
    clock.advance(5)
    await quota.completed(call)
    clock.advance(listing.gap - 5)  # one spacing after the record, not after the answer
    denial = quota.check("list")
    assert denial is not None
    assert denial.available_at == START + timedelta(seconds=5 + listing.gap)


async def test_a_restamp_the_ledger_refuses_is_logged_and_the_call_counts(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    class Refusing(MemoryLedger):
        async def restamp(self, call: Call, scopes: Collection[str], at: datetime) -> None:
            raise OSError("disk full")

    (a,) = sharing(QuotaBook(Refusing()), ["a"], clock)
    call = await a.acquire("x")
    clock.advance(5)
    with caplog.at_level(logging.WARNING, logger="bridge.quota"):
        await a.completed(call)  # never raises
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "a: could not move a call's time in the ledger (OSError)")
    ]
    # This process moved it all the same.
    clock.advance(GAP - 5)
    assert a.check("x") is not None


async def test_a_call_under_way_says_so_only_once_it_is_the_later_reason(clock: Clock) -> None:
    book = QuotaBook(MemoryLedger())
    a, b = sharing(book, ["a", "b"], clock)
    call = await a.acquire("x")
    a.sending(call)
    # At the record's instant both reasons free at the same time: the spacing's own.
    denial = b.check("x", Priority.COMMAND)
    assert denial is not None
    assert denial.available_at == START + timedelta(seconds=GAP)
    assert "under way" not in denial.message()
    # Later, still unanswered: a full spacing from now, because of the call under way.
    clock.advance(GAP + 10)
    denial = b.check("x", Priority.COMMAND)
    assert denial is not None
    assert "under way" in denial.message()
    assert denial.available_at == clock.now + timedelta(seconds=GAP)


async def test_two_accounts_refused_in_one_instant_are_told_different_slots(
    clock: Clock,
) -> None:
    """Neither has called yet: the first refused is next, the second after it,
    and each goes at its slot (before, both were told "next in line" and the
    same slot, and the second woke for nothing)."""
    book = QuotaBook(MemoryLedger())
    a, b, c = sharing(book, ["a", "b", "c"], clock)
    await a.acquire("x")
    first, second = await refusal(b), await refusal(c)
    assert ": next in line" in str(first)
    assert ": 2nd in line" in str(second)
    assert (first.retry_after, second.retry_after) == pytest.approx((GAP, 2 * GAP))
    clock.advance(GAP)
    again = await refusal(c)  # b's slot, and b has not called yet
    assert ": 2nd in line" in str(again)
    assert again.retry_after == pytest.approx(GAP)
    await b.acquire("x")
    clock.advance(GAP)
    await c.acquire("x")


async def test_a_newcomer_whose_last_call_is_older_goes_before_those_in_line(
    clock: Clock,
) -> None:
    """The line is by last call first: an account refused for the first time
    that called longer ago than the one already waiting goes before it."""
    book = QuotaBook(MemoryLedger())
    w, v = sharing(book, ["w", "v"], clock)
    await w.acquire("x")
    clock.advance(GAP)
    await v.acquire("x")
    clock.advance(1)
    assert ": next in line" in await refused(v)
    assert ": next in line" in await refused(w)
    clock.advance(GAP - 1)
    assert ": 2nd in line" in await refused(v)  # w goes first
    await w.acquire("x")
