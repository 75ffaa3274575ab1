"""Budgets scoped as the providers count them: shared by the accounts of a scope,
in one process and across processes, with turns on a shared spacing."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from bridge.errors import QuotaExhaustedError
from bridge.model import Priority
from bridge.planner import Cadence, next_poll
from bridge.providers import default_budgets
from bridge.providers.http import HttpClient
from bridge.quota import (
    Budget,
    BudgetKind,
    MemoryLedger,
    Quota,
    QuotaBook,
    Scope,
    Scopes,
    apply_overrides,
)
from bridge.store import Store
from tests.support.clock import Clock

FLEETIZE = apply_overrides(default_budgets("fleetize"), {}, reserve=0.1)
# The 60 s spacing and its margin (Budget.gap): what the bridge keeps between calls.
GAP = next(b.gap for b in FLEETIZE if b.name == "spacing")
SAMSARA = apply_overrides(default_budgets("samsara"), {}, reserve=0.0)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 21, 8, 0, tzinfo=UTC))


def fleetize(book: QuotaBook, name: str, clock: Clock, egress: str = "default") -> Quota:
    return book.quota(
        name, FLEETIZE, Scopes.of("fleetize", f"token-{name}", egress=egress), now=clock
    )


def test_scope_keys_name_what_the_provider_counts_and_never_the_token() -> None:
    scopes = Scopes.of("samsara", "secret-token-123", organisation="acme")
    assert scopes.organisation == "samsara:org:acme"
    assert scopes.egress == "samsara:egress:default"
    assert scopes.token.startswith("samsara:token:")
    assert "secret-token-123" not in repr(scopes)
    # Equal credentials, equal keys; another token, another key.
    assert Scopes.of("samsara", "secret-token-123").token == scopes.token
    assert Scopes.of("samsara", "other").token != scopes.token
    # Without an organisation a token is its own.
    assert Scopes.of("samsara", "a").organisation != Scopes.of("samsara", "b").organisation
    budgets = {b.name: b.scope for b in default_budgets("fleetize")}
    assert budgets == {"daily": Scope.ACCOUNT, "spacing": Scope.EGRESS}
    samsara = {b.name: b.scope for b in default_budgets("samsara")}
    assert samsara["per_token"] is Scope.TOKEN
    assert samsara["per_organisation"] is Scope.ORGANISATION


async def test_accounts_behind_one_egress_share_the_spacing_but_not_the_daily_budget(
    clock: Clock,
) -> None:
    book = QuotaBook(MemoryLedger())
    a, b = fleetize(book, "a", clock), fleetize(book, "b", clock)
    other = fleetize(book, "c", clock, egress="office-2")
    await a.acquire("devicelist")
    with pytest.raises(QuotaExhaustedError) as caught:
        await b.acquire("devicelist")
    assert "egress 'default'" in caught.value.budget
    assert caught.value.available_at == clock.now + timedelta(seconds=GAP)
    await other.acquire("devicelist")  # another address: its own spacing
    assert a.calls_left_today() == 89
    assert b.calls_left_today() == 90  # its own 100 a day
    assert a.usage()["spacing"]["shared_with"] == ["b"]
    assert "shared_with" not in a.usage()["daily"]
    # Two accounts take turns: each plans one call per two spacings.
    assert a.min_spacing("devicelist") == 2 * GAP
    assert other.min_spacing("devicelist") == GAP


async def greedy(quotas: list[Quota], clock: Clock, hours: float, every: float) -> list[Made]:
    """Each account calls every `every` seconds if it may, else when told; the
    accounts are always asked in the same order (first-come would serve the
    first one each time)."""
    calls: list[Made] = []
    wants = {q.account: clock.now for q in quotas}
    end = clock.now + timedelta(hours=hours)
    while (when := min(wants.values())) < end:
        clock.now = when
        for quota in quotas:
            if wants[quota.account] != when:
                continue
            try:
                await quota.acquire("devicelist")
            except QuotaExhaustedError as err:
                wants[quota.account] = max(err.available_at, when + timedelta(seconds=0.001))
            else:
                calls.append(Made(quota.account, when))
                wants[quota.account] = when + timedelta(seconds=every)
    return calls


class Made:
    def __init__(self, account: str, at: datetime) -> None:
        self.account = account
        self.at = at


@pytest.mark.parametrize("accounts", [2, 5])
async def test_accounts_on_one_egress_take_turns_fairly_and_never_collide(
    clock: Clock, accounts: int
) -> None:
    book = QuotaBook(MemoryLedger())
    unlimited = apply_overrides(FLEETIZE, {"daily": {"limit": 100_000}})
    quotas = [
        book.quota(f"a{i}", unlimited, Scopes.of("fleetize", f"t{i}"), now=clock)
        for i in range(accounts)
    ]
    calls = await greedy(quotas, clock, hours=2, every=60)
    gaps = [(b.at - a.at).total_seconds() for a, b in itertools.pairwise(calls)]
    assert min(gaps) >= GAP  # never two calls within the spacing: no #1055
    assert len(calls) == 7200 // GAP + 1  # and the spacing is never wasted either
    counted = Counter(call.account for call in calls)
    shares = [counted[quota.account] for quota in quotas]
    assert max(shares) - min(shares) <= 1, shares


async def test_the_planner_staggers_accounts_that_share_a_spacing(clock: Clock) -> None:
    """Plans never fall within one spacing of each other: nobody is refused."""
    book = QuotaBook(MemoryLedger())
    a, b = fleetize(book, "a", clock), fleetize(book, "b", clock)
    cadence = Cadence(min_interval=60, max_interval=7200, adaptive=False)
    await a.acquire("devicelist")
    first = next_poll(cadence, a, moving=False, calls_per_poll=1, endpoint="devicelist")
    clock.advance(GAP)
    await b.acquire("devicelist")
    # b's even spread (a minute less of the day, as many calls) would land 59.3 s
    # after a's planned poll, inside its spacing: it goes one spacing after it.
    second = next_poll(cadence, b, moving=False, calls_per_poll=1, endpoint="devicelist")
    gap = (second.delay + GAP) - first.delay
    assert gap == pytest.approx(GAP, abs=1e-3), (first, second)
    assert "staggered" in second.reason
    # At its planned time each account finds the spacing free.
    clock.advance(first.delay - GAP)
    await a.acquire("devicelist")
    clock.advance(second.delay - (first.delay - GAP))
    await b.acquire("devicelist")


async def test_a_place_in_line_is_given_up_by_an_account_that_does_not_come(
    clock: Clock,
) -> None:
    book = QuotaBook(MemoryLedger())
    a, b, c = (fleetize(book, name, clock) for name in "abc")
    await a.acquire("devicelist")
    with pytest.raises(QuotaExhaustedError):
        await b.acquire("devicelist")  # b is first in line at +60
    clock.advance(60 + QuotaBook.TURN_GRACE.total_seconds() + 1)
    # b never came back: c does not wait behind it.
    await c.acquire("devicelist")


async def test_a_refresh_skips_the_line_but_never_meets_a_call(clock: Clock) -> None:
    book = QuotaBook(MemoryLedger())
    a, b, c = (fleetize(book, name, clock) for name in "abc")
    await a.acquire("devicelist")
    clock.advance(10)
    with pytest.raises(QuotaExhaustedError):
        await c.acquire("devicelist")  # c's poll waits in line for +60
    clock.advance(20)
    # The spacing is busy: the refresh hears when it frees up, and no call goes.
    denial = b.check("devicelist", Priority.COMMAND)
    assert denial is not None
    assert denial.available_at == clock.now + timedelta(seconds=GAP - 30)
    with pytest.raises(QuotaExhaustedError):
        await b.acquire("devicelist", Priority.COMMAND)
    clock.advance(GAP - 30)
    # A user is waiting: the refresh goes before the poll in line ...
    await b.acquire("devicelist", Priority.COMMAND)
    # ... and the poll is told a later time instead of meeting it.
    with pytest.raises(QuotaExhaustedError) as caught:
        await c.acquire("devicelist")
    assert caught.value.available_at == clock.now + timedelta(seconds=GAP)


async def test_a_threshold_hold_on_the_egress_holds_every_account_behind_it(
    clock: Clock,
) -> None:
    book = QuotaBook(MemoryLedger())
    a, b = fleetize(book, "a", clock), fleetize(book, "b", clock)
    await a.hold(61, "FLEETIZE #1055", Scope.EGRESS)
    with pytest.raises(QuotaExhaustedError, match="1055"):
        await b.acquire("devicelist", Priority.COMMAND)


async def test_two_accounts_with_one_token_share_its_budgets(clock: Clock) -> None:
    book = QuotaBook(MemoryLedger())
    scopes = Scopes.of("fleetize", "the-same-token")
    a = book.quota("a", FLEETIZE, scopes, now=clock)
    b = book.quota("b", FLEETIZE, scopes, now=clock)
    await a.acquire("devicelist")
    assert b.calls_left_today() == 89  # FLEETIZE counts the token's calls
    assert a.daily_sharers() == 2
    # Each plans half of what is left: together they spend the day's budget once.
    alone = book.quota("c", FLEETIZE, Scopes.of("fleetize", "c", egress="x"), now=clock)
    cadence = Cadence(min_interval=60, max_interval=7200, adaptive=False)
    shared = next_poll(cadence, b, moving=False, calls_per_poll=1, endpoint="devicelist")
    single = next_poll(cadence, alone, moving=False, calls_per_poll=1, endpoint="devicelist")
    assert shared.delay == pytest.approx(2 * single.delay * 90 / 89, rel=0.01)


async def test_samsara_token_and_organisation_budgets_are_shared(clock: Clock) -> None:
    book = QuotaBook(MemoryLedger())
    same = Scopes.of("samsara", "token-1", organisation="acme")
    a = book.quota("a", SAMSARA, same, now=clock)
    b = book.quota("b", SAMSARA, same, now=clock)
    for _ in range(100):
        await a.acquire("stats_feed")
    for _ in range(50):
        await b.acquire("stats_feed")
    with pytest.raises(QuotaExhaustedError, match="per_token"):
        await b.acquire("stats_feed")  # 150/s for the token, whoever spends it
    # Another token of the organisation: its own 150, but 200/s for all of them.
    c = book.quota("c", SAMSARA, Scopes.of("samsara", "token-2", organisation="acme"), now=clock)
    for _ in range(50):
        await c.acquire("stats_feed")
    with pytest.raises(QuotaExhaustedError, match="per_organisation"):
        await c.acquire("stats_feed")
    # A token of another organisation is not held back.
    d = book.quota("d", SAMSARA, Scopes.of("samsara", "token-3", organisation="other"), now=clock)
    await d.acquire("stats_feed")
    clock.advance(1.01)
    await c.acquire("stats_feed")


async def test_two_processes_on_one_store_never_both_spend_the_spacing(
    clock: Clock, tmp_path: Path
) -> None:
    """Each process has its own book (its own idea of what was spent): the
    ledger's check-and-record decides, so the second is refused although its
    book saw nothing."""
    path = tmp_path / "store.sqlite"
    with Store(path) as one, Store(path) as two:
        a = fleetize(QuotaBook(one), "a", clock)
        b = fleetize(QuotaBook(two), "b", clock)
        await a.load()
        await b.load()
        await a.acquire("devicelist")
        assert b.check("devicelist") is None  # its book does not know
        with pytest.raises(QuotaExhaustedError, match="spacing"):
            await b.acquire("devicelist")


async def test_a_spacing_counts_from_the_answer_not_from_the_record(
    clock: Clock, tmp_path: Path
) -> None:
    """The provider measures between arrivals; the call was recorded before it
    left. A request that took 5 s to leave and be answered (a busy loop, a wait
    for the store, a slow link) moves the next call 5 s later, in this process
    and in another on the same store: else the next one could land within the
    spacing, a #1055."""
    path = tmp_path / "store.sqlite"
    with Store(path) as one, Store(path) as two:
        book = QuotaBook(one)
        a, b = fleetize(book, "a", clock), fleetize(book, "b", clock)
        elsewhere = fleetize(QuotaBook(two), "c", clock)
        for quota in (a, b, elsewhere):
            await quota.load()
        call = await a.acquire("devicelist")
        clock.advance(5)
        await a.completed(call)
        clock.advance(GAP - 5)
        # One spacing after the record, but not after the answer: refused.
        denial = b.check("devicelist", Priority.COMMAND)
        assert denial is not None
        assert denial.available_at == call.at + timedelta(seconds=5 + GAP)
        with pytest.raises(QuotaExhaustedError, match="spacing"):
            await elsewhere.acquire("devicelist", Priority.COMMAND)
        clock.advance(5)
        await elsewhere.acquire("devicelist", Priority.COMMAND)


async def test_no_call_on_a_spacing_while_another_is_under_way(clock: Clock) -> None:
    """A slow answer (a big devicelist, a slow link): when the provider got the
    request is only sure once it answered, so the next account waits for that,
    then a full spacing."""
    book = QuotaBook(MemoryLedger())
    a, b = fleetize(book, "a", clock), fleetize(book, "b", clock)
    call = await a.acquire("devicelist")
    a.sending(call)
    clock.advance(GAP + 10)
    denial = b.check("devicelist", Priority.COMMAND)
    assert denial is not None
    assert "under way" in denial.message()
    with pytest.raises(QuotaExhaustedError, match="under way"):
        await b.acquire("devicelist", Priority.COMMAND)
    await a.completed(call)
    clock.advance(GAP - 1)
    assert b.check("devicelist", Priority.COMMAND) is not None
    clock.advance(1)
    await b.acquire("devicelist", Priority.COMMAND)


async def test_a_restart_resumes_the_shared_spacing_from_the_store(
    clock: Clock, tmp_path: Path
) -> None:
    path = tmp_path / "store.sqlite"
    with Store(path) as store:
        await fleetize(QuotaBook(store), "a", clock).acquire("devicelist")
    clock.advance(20)
    with Store(path) as store:
        book = QuotaBook(store)
        b = fleetize(book, "b", clock)
        await b.load()
        denial = b.check("devicelist")
        assert denial is not None
        assert denial.available_at == clock.now + timedelta(seconds=GAP - 20)
        with pytest.raises(QuotaExhaustedError):
            await b.acquire("devicelist")


async def test_calls_of_an_older_store_count_under_the_accounts_scopes(
    clock: Clock, tmp_path: Path
) -> None:
    """Schema 7 kept calls per account: an upgrade must not forget today's."""
    path = tmp_path / "store.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('schema_version', '7');"
            "CREATE TABLE quota_call (account TEXT NOT NULL, endpoint TEXT NOT NULL,"
            " at REAL NOT NULL);"
            "CREATE TABLE quota_hold (account TEXT PRIMARY KEY, until REAL NOT NULL,"
            " reason TEXT NOT NULL);"
        )
        db.executemany(
            "INSERT INTO quota_call VALUES (?, ?, ?)",
            [("a", "devicelist", (clock.now - timedelta(seconds=s)).timestamp()) for s in (10, 90)],
        )
    with Store(path) as store:
        book = QuotaBook(store)
        a = fleetize(book, "a", clock)
        b = fleetize(book, "b", clock)
        await a.load()
        await b.load()
        assert a.calls_left_today() == 88
        with pytest.raises(QuotaExhaustedError, match="spacing"):
            await b.acquire("devicelist")  # a's call 10 s ago holds the egress
    with Store(path) as store:  # adopted once, not twice
        again = fleetize(QuotaBook(store), "a", clock)
        await again.load()
        assert again.calls_left_today() == 88


def test_a_budget_scope_can_be_corrected() -> None:
    budgets = apply_overrides(FLEETIZE, {"spacing": {"scope": "account"}})
    assert {b.name: b.scope for b in budgets}["spacing"] is Scope.ACCOUNT
    added = apply_overrides((), {"x": {"kind": "window", "limit": 1, "period": 1}})
    assert added[0].scope is Scope.TOKEN
    assert Budget("y", BudgetKind.SPACING).scope is Scope.TOKEN


async def test_the_http_client_spaces_from_the_answer_and_holds_others_meanwhile(
    clock: Clock,
) -> None:
    """Through the client the providers use: while a FLEETIZE request is on its
    way the other account of the address may not call, and once answered (5 s
    later here) the spacing counts from the answer."""
    book = QuotaBook(MemoryLedger())
    a, b = fleetize(book, "a", clock), fleetize(book, "b", clock)
    arrived, answer = asyncio.Event(), asyncio.Event()

    async def handler(_: web.Request) -> web.Response:
        arrived.set()
        await answer.wait()
        clock.advance(5)
        return web.json_response([])

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        client = HttpClient(session, "fleetize", quota=a)
        url = URL(str(server.make_url("/v2/devicelist")))
        request = asyncio.create_task(client.request("POST", url, endpoint="devicelist"))
        await asyncio.wait_for(arrived.wait(), 10)
        clock.advance(GAP + 10)
        denial = b.check("devicelist", Priority.COMMAND)
        assert denial is not None
        assert "under way" in denial.message()
        answer.set()
        await asyncio.wait_for(request, 10)
    answered = clock.now
    clock.advance(1)
    denial = b.check("devicelist", Priority.COMMAND)
    assert denial is not None
    assert denial.available_at == answered + timedelta(seconds=GAP)
