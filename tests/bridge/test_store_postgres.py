"""The store contract against SQLite and PostgreSQL alike, and what only a store
shared by several processes does: scopes spent from two connections at once,
migrations, leases and fencing, LISTEN/NOTIFY, outages and secrets."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from bridge.config import parse_config
from bridge.model import VehicleState
from bridge.quota import Call, Denial, Hold, LedgerView, Tally
from bridge.store import (
    AlertClaim,
    BridgeStore,
    DuplicateEntryError,
    JournalEntry,
    LeaseLostError,
    LeaseStore,
    SqliteStore,
    StoreError,
    StoreUnavailableError,
)
from bridge.store.postgres import SCHEMA_VERSION, PostgresStore
from bridge.store.url import redact_url, url_passwords
from tests.bridge.test_store import TRUCK
from tests.support.mqtt import free_port
from tests.support.postgres import Postgres, fresh_database

_names = itertools.count()
WAIT = 30.0  # seconds any awaited condition may take on a loaded machine


def new_url(server: Postgres) -> str:
    return fresh_database(server, f"t{next(_names)}_{int(time.time() * 1000) % 10**8}")


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BridgeStore]:
    opened: BridgeStore
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "store.sqlite")
    else:
        opened = await PostgresStore.open(new_url(request.getfixturevalue("postgres_shared")))
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def url(postgres_shared: Postgres) -> str:
    return new_url(postgres_shared)


@pytest.fixture
async def pair(url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two stores on one database: two processes of the bridge."""
    first = await PostgresStore.open(url)
    second = await PostgresStore.open(url)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


def entry(
    key: str, account: str = "depot", order_ref: str | None = None, **kw: object
) -> JournalEntry:
    fields: dict[str, object] = {
        "key": key,
        "command": "message",
        "account": account,
        "vehicle": "112",
        "order_ref": order_ref,
        "transaction_id": f"tx-{key}",
        "body": '{"text": "hi"}',
        "status": "accepted",
        "handle": None,
        "response": None,
        "created_at": 1000.0 + len(key),
        "updated_at": 1000.0,
    }
    fields.update(kw)
    return JournalEntry(**fields)  # type: ignore[arg-type]


NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)


def window(scope: str, limit: int) -> tuple[Tally, Callable[[LedgerView], Denial | None]]:
    """A tally of the last minute and a decision allowing `limit` calls in it."""
    tally = Tally(scope, NOW - timedelta(minutes=1), latest=1)

    def decide(view: LedgerView) -> Denial | None:
        if scope in view.holds:
            return Denial(f"hold on {scope}", view.holds[scope].until)
        if view.counts[tally].count >= limit:
            return Denial(f"{limit}/min of {scope}", NOW + timedelta(minutes=1))
        return None

    return tally, decide


async def spend(
    store: BridgeStore, scope: str, limit: int, account: str = "depot", at: datetime = NOW
) -> Denial | None:
    tally, decide = window(scope, limit)
    return await store.check_and_record(
        Call("vehicles", at, account), [scope], [scope], [tally], decide
    )


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll `check` until it holds (a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + WAIT
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# --- the contract, on both backends ----------------------------------------------
async def test_a_poll_is_saved_and_loaded(store: BridgeStore) -> None:
    van = VehicleState(vehicle_id="113", name="Van")
    await store.save_poll("depot", {"a": "1", "b": "1"}, [TRUCK, van])
    assert await store.load_checkpoint("depot") == {"a": "1", "b": "1"}
    assert await store.load_states("depot") == [TRUCK, van]
    await store.save_poll("depot", {"a": "2"}, [TRUCK], removed=["113"])
    assert await store.load_checkpoint("depot") == {"a": "2"}
    assert await store.load_states("depot") == [TRUCK]
    assert await store.load_checkpoint("other") == {}
    assert await store.load_states("other") == []
    assert await store.integrity() == "ok"


async def test_a_failed_poll_write_changes_nothing(store: BridgeStore) -> None:
    await store.save_poll("depot", {"a": "1"}, [TRUCK])

    class Boom(Exception):
        pass

    def exploding() -> list[VehicleState]:
        raise Boom

    class Changed:
        def __iter__(self):  # type: ignore[no-untyped-def]
            return iter(exploding())

    with pytest.raises(Boom):
        await store.save_poll("depot", {"a": "2"}, Changed())  # type: ignore[arg-type]
    assert await store.load_checkpoint("depot") == {"a": "1"}
    assert await store.load_states("depot") == [TRUCK]
    # The store still works after the failed write.
    await store.save_poll("depot", {"a": "3"}, [])
    assert await store.load_checkpoint("depot") == {"a": "3"}


async def test_the_journal(store: BridgeStore) -> None:
    await store.journal_accept(entry("k1", order_ref="o-1"))
    await store.journal_accept(entry("k22"))
    with pytest.raises(DuplicateEntryError):
        await store.journal_accept(entry("k1"))
    with pytest.raises(DuplicateEntryError):
        await store.journal_accept(entry("k333", order_ref="o-1"))
    # Another account may use the same order_ref.
    await store.journal_accept(entry("k4444", account="yard", order_ref="o-1"))
    assert await store.journal_get("k1") == entry("k1", order_ref="o-1")
    assert await store.journal_get("nope") is None
    assert (await store.journal_by_order("depot", "o-1")) == entry("k1", order_ref="o-1")
    assert await store.journal_by_order("depot", "o-2") is None
    found = await store.journal_by_transaction("tx-k22")
    assert found is not None
    assert found.key == "k22"

    await store.journal_update("k1", "pending", handle="h-1")
    await store.journal_update("k1", "confirmed", response='{"ok": true}')
    done = await store.journal_get("k1")
    assert done is not None
    assert (done.status, done.handle, done.response) == ("confirmed", "h-1", '{"ok": true}')
    assert done.updated_at > 1000.0
    assert [e.key for e in await store.journal_open()] == ["k22", "k4444"]

    assert [e.key for e in await store.journal_unanswered()] == ["k1"]
    await store.journal_answered("k1")
    await store.journal_answered("k1")
    assert await store.journal_unanswered() == []


async def test_alerts_are_claimed_once_until_delivered(store: BridgeStore) -> None:
    first = AlertClaim("a1", "fleet/depot/alert", '{"id": "a1"}', 20.0)
    second = AlertClaim("a2", "fleet/depot/alert", '{"id": "a2"}', 10.0)
    assert await store.claim_alerts("depot", [first, second, first]) == {"a1", "a2"}
    assert await store.claim_alerts("depot", [first]) == set()
    assert await store.claim_alerts("yard", [first]) == {"a1"}
    assert await store.claim_alerts("depot", []) == set()
    assert await store.alerts_undelivered("depot") == [second, first]
    await store.alerts_delivered("depot", ["a2"])
    assert await store.alerts_undelivered("depot") == [first]
    assert await store.claim_alerts("depot", [second]) == set()  # delivered, still known
    assert await store.prune_alerts(datetime.now(UTC) - timedelta(days=1)) == 0
    assert await store.prune_alerts(datetime.now(UTC) + timedelta(seconds=5)) == 3
    assert await store.alerts_undelivered("depot") == []


async def test_a_call_moved_to_when_it_was_answered_counts_from_then(store: BridgeStore) -> None:
    call = Call("devicelist", NOW, "fz0")
    other = Call("devicelist", NOW, "fz1")
    for recorded in (call, other):
        assert (
            await store.check_and_record(
                recorded, ["egress:x", "account:" + recorded.account], [], [], lambda _: None
            )
            is None
        )
    answered = NOW + timedelta(seconds=4)
    await store.restamp(call, ["egress:x"], answered)
    # Moved under the scope named, and only that call: the account's row, and
    # another account's call of the same instant, stay where they were.
    assert sorted(c.at for c in await store.recent("egress:x", NOW)) == [NOW, answered]
    assert [c.at for c in await store.recent("account:fz0", NOW)] == [NOW]
    # Never earlier.
    await store.restamp(Call("devicelist", answered, "fz0"), ["egress:x"], NOW)
    assert sorted(c.at for c in await store.recent("egress:x", NOW)) == [NOW, answered]


async def test_the_quota_ledger(store: BridgeStore) -> None:
    for _ in range(3):
        assert await spend(store, "token:a", 3) is None
    denial = await spend(store, "token:a", 3)
    assert denial is not None
    assert denial.budget == "3/min of token:a"
    # A call is recorded under every scope it spends from.
    tally = Tally("egress:x", NOW - timedelta(minutes=1), endpoints=frozenset({"vehicles"}))
    seen: list[LedgerView] = []

    def allow(view: LedgerView) -> None:
        seen.append(view)

    call = Call("vehicles", NOW + timedelta(seconds=1), "yard")
    assert await store.check_and_record(call, ["token:b", "egress:x"], [], [tally], allow) is None
    assert seen[0].counts[tally].count == 0
    assert await store.recent("egress:x", NOW) == [call]
    assert [c.account for c in await store.recent("token:a", NOW - timedelta(hours=1))] == [
        "depot"
    ] * 3
    # The newest calls come with a tally that asks for them, newest first.
    latest = Tally("token:a", NOW - timedelta(minutes=1), latest=2, inclusive=True)
    earlier = NOW - timedelta(seconds=30)
    assert (
        await store.check_and_record(Call("vehicles", earlier, "depot"), ["token:a"], [], [], allow)
        is None
    )
    await store.check_and_record(call, [], [], [latest], allow)
    assert seen[-1].counts[latest].count == 4
    assert [c.at for c in seen[-1].counts[latest].latest] == [NOW, NOW]
    # Holds: a later one wins, an earlier one does not replace it.
    await store.save_hold("token:c", Hold(NOW + timedelta(minutes=5), "429"))
    await store.save_hold("token:c", Hold(NOW + timedelta(minutes=1), "again"))
    assert await store.holds(["token:c", "token:a"]) == {
        "token:c": Hold(NOW + timedelta(minutes=5), "429")
    }
    held = await spend(store, "token:c", 10)
    assert held is not None
    assert held.budget == "hold on token:c"
    assert await store.recent("token:c", NOW - timedelta(hours=1)) == []
    # Pruning forgets what is older.
    await store.prune("token:a", NOW)
    assert [c.at for c in await store.recent("token:a", NOW - timedelta(hours=1))] == [NOW] * 3
    await store.adopt("depot", ["token:a"])  # nothing older to adopt


# --- PostgreSQL only: several processes ---------------------------------------------
async def test_two_processes_never_spend_more_than_the_budget(
    pair: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = pair
    limit = 7
    attempts = [spend(store, "token:shared", limit) for store in (first, second) * 20]
    outcomes = await asyncio.wait_for(asyncio.gather(*attempts), WAIT)
    assert sum(outcome is None for outcome in outcomes) == limit
    recorded = await first.recent("token:shared", NOW - timedelta(hours=1))
    assert len(recorded) == limit


async def test_instances_starting_together_migrate_once(url: str) -> None:
    stores = await asyncio.wait_for(
        asyncio.gather(*(PostgresStore.open(url) for _ in range(4))), WAIT
    )
    try:
        assert [await s.schema_version() for s in stores] == [SCHEMA_VERSION] * 4
        assert all([await s.integrity() == "ok" for s in stores])
    finally:
        for s in stores:
            await s.close()
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert rows == [(v,) for v in range(1, SCHEMA_VERSION + 1)]


async def test_a_newer_schema_is_refused(url: str) -> None:
    store = await PostgresStore.open(url)
    await store.close()
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (99, now())")
    with pytest.raises(StoreError, match=rf"newer fleet-bridge \(schema 99 > {SCHEMA_VERSION}\)"):
        await PostgresStore.open(url)


async def test_leases_change_hands_with_a_new_epoch(
    pair: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = pair
    assert isinstance(first, LeaseStore)
    assert await first.take("unit-1", "A", 30) == 1
    assert await second.take("unit-1", "B", 30) is None
    assert await first.take("unit-1", "A", 30) == 1  # already ours: the same epoch
    assert await first.renew("A", {"unit-1": 1, "unit-2": 1}, 30) == {"unit-1"}
    assert await first.renew("A", {"unit-1": 2}, 30) == set()
    assert await second.renew("B", {"unit-1": 1}, 30) == set()
    (lease,) = await second.leases()
    assert (lease.unit, lease.owner, lease.epoch) == ("unit-1", "A", 1)
    assert 15 < lease.expires_at - await first.clock() <= 30

    # A lets its lease run out: B takes it over, with the next epoch.
    assert await first.take("unit-2", "A", 1) == 1

    async def expired() -> bool:
        leases = {lease.unit: lease for lease in await second.leases()}
        return leases["unit-2"].expires_at < await second.clock()

    await eventually(expired, "the lease to expire")
    assert await second.take("unit-2", "B", 30) == 2
    assert await first.renew("A", {"unit-2": 1}, 30) == set()
    assert await first.take("unit-2", "A", 30) is None

    # Giving up needs the right epoch; the unit is free at once after it.
    await second.give_up("B", "unit-2", 1)
    assert await first.take("unit-2", "A", 30) is None
    await second.give_up("B", "unit-2", 2)
    assert await first.take("unit-2", "A", 30) == 1

    # A clean stop frees every lease of the instance.
    await first.beat("A", "host-a", 11, 1000.0, 30)
    await first.leave("A")
    assert await second.leases() == []
    assert [i.instance for i in await second.beat("B", "host-b", 12, 2000.0, 30)] == ["B"]


async def test_beat_lists_the_instances_alive(pair: tuple[PostgresStore, PostgresStore]) -> None:
    first, second = pair
    started = time.time()
    assert [i.instance for i in await second.beat("B", "host-b", 12, started, 30)] == ["B"]
    alive = await first.beat("A", "host-a", 11, started - 5, 30)
    assert [(i.instance, i.host, i.pid) for i in alive] == [
        ("A", "host-a", 11),
        ("B", "host-b", 12),
    ]
    assert alive[0].started_at == pytest.approx(started - 5, abs=1e-3)
    assert abs(alive[0].seen_at - await first.clock()) < 5
    # An instance not seen within the ttl is not listed (nor, much later, kept).
    await first.beat("A", "host-a", 11, started, 1)

    async def b_gone() -> bool:
        return [i.instance for i in await first.beat("A", "host-a", 11, started, 1)] == ["A"]

    await eventually(b_gone, "B to be unseen for a second")


async def test_a_fenced_account_writes_only_while_its_lease_is_held(
    pair: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = pair
    epoch = await first.take("unit-1", "A", 60)
    assert epoch == 1
    first.fence("depot", "A", ("unit-1", epoch))
    assert await spend(first, "token:a", 10) is None
    await first.save_poll("depot", {"a": "1"}, [TRUCK])
    # Unfenced accounts are not checked at all.
    assert await spend(first, "token:y", 10, account="yard") is None

    # The lease runs out (A takes it again for a second only, and stops
    # renewing) and B takes it over: A's writes are refused.
    assert await first.take("unit-1", "A", 1) == 1

    async def taken() -> bool:
        return await second.take("unit-1", "B", 30) == 2

    await eventually(taken, "B to take the expired lease over")
    with pytest.raises(LeaseLostError):
        await spend(first, "token:a", 10)
    with pytest.raises(LeaseLostError):
        await first.save_poll("depot", {"a": "2"}, [])
    assert len(await first.recent("token:a", NOW - timedelta(hours=1))) == 1
    assert await second.load_checkpoint("depot") == {"a": "1"}

    # B, fenced on the new epoch, writes; an account fenced as not ours never.
    second.fence("depot", "B", ("unit-1", 2))
    assert await spend(second, "token:a", 10) is None
    await second.save_poll("depot", {"a": "3"}, [])
    second.fence("yard", "B", None)
    with pytest.raises(LeaseLostError):
        await spend(second, "token:y", 10, account="yard")
    with pytest.raises(LeaseLostError):
        await second.save_poll("yard", {}, [])
    assert await first.load_checkpoint("depot") == {"a": "3"}
    # A lease given up fences its holder out at once.
    await second.give_up("B", "unit-1", 2)
    with pytest.raises(LeaseLostError):
        await spend(second, "token:a", 10)


async def test_journal_changed_is_set_by_another_instance(
    pair: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = pair
    changed = second.journal_changed()
    assert changed.is_set()  # whatever was journaled before it listened
    changed.clear()
    await first.journal_accept(entry("k1"))
    await asyncio.wait_for(changed.wait(), WAIT)
    changed.clear()
    await first.journal_update("k1", "pending")
    await asyncio.wait_for(changed.wait(), WAIT)


# --- outages and secrets --------------------------------------------------------------
async def test_an_outage_is_reported_and_survived(postgres: Postgres) -> None:
    store = await PostgresStore.open(postgres.url, connect_timeout=3)
    try:
        await store.save_poll("depot", {"a": "1"}, [TRUCK])
        postgres.stop()
        store.journal_changed().clear()
        for attempt in (
            store.load_checkpoint("depot"),
            spend(store, "token:a", 10),
            store.journal_accept(entry("k1")),
        ):
            with pytest.raises(StoreUnavailableError, match=f"127.0.0.1:{postgres.port}"):
                await asyncio.wait_for(attempt, WAIT)
        assert "127.0.0.1" in await store.integrity()
        postgres.start()
        # The next call connects again by itself.
        assert await store.load_checkpoint("depot") == {"a": "1"}
        assert await spend(store, "token:a", 10) is None
        assert await store.integrity() == "ok"
        # The listener is back too, and says something may have been missed.
        await asyncio.wait_for(store.journal_changed().wait(), WAIT)
        store.journal_changed().clear()
        other = await PostgresStore.open(postgres.url, connect_timeout=3)
        try:
            await other.journal_accept(entry("k1"))
        finally:
            await other.close()
        await asyncio.wait_for(store.journal_changed().wait(), WAIT)
    finally:
        await store.close()


def test_a_url_is_shown_without_its_password() -> None:
    url = "postgresql://fleet:p%40ss-W0rd@db.example:6432/fleet?sslmode=require&password=other"
    shown = redact_url(url)
    assert shown == "postgresql://fleet:***@db.example:6432/fleet?sslmode=require&password=***"
    assert url_passwords(url) == ["p%40ss-W0rd", "p@ss-W0rd", "other"]
    assert redact_url("postgresql://db.example/fleet") == "postgresql://db.example/fleet"


async def test_a_wrong_password_is_not_in_the_error(postgres_shared: Postgres) -> None:
    # The test server trusts everyone: this role alone must give a password.
    hba = postgres_shared.data / "pg_hba.conf"
    rule = "host all secretive 127.0.0.1/32 scram-sha-256\n"
    if rule not in hba.read_text():
        hba.write_text(rule + hba.read_text())
    admin = f"postgresql://fleet@127.0.0.1:{postgres_shared.port}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS secretive")
        conn.execute("CREATE ROLE secretive LOGIN PASSWORD 'right-horse-battery'")
        conn.execute("SELECT pg_reload_conf()")
        conn.execute("DROP DATABASE IF EXISTS secretive")
        conn.execute("CREATE DATABASE secretive OWNER secretive")
    server = f"127.0.0.1:{postgres_shared.port}"
    password = "Wr0ng-Staple-Pass"
    with pytest.raises(StoreUnavailableError) as caught:
        await PostgresStore.open(f"postgresql://secretive:{password}@{server}/secretive")
    assert "password authentication failed" in str(caught.value)
    assert password not in str(caught.value)
    assert caught.value.__cause__ is None or password not in str(caught.value.__cause__)
    store = await PostgresStore.open(
        f"postgresql://secretive:right-horse-battery@{server}/secretive"
    )
    await store.close()
    # Nothing listening: the error names where, not the password.
    port = free_port()
    with pytest.raises(StoreUnavailableError, match=f"127.0.0.1:{port}") as caught:
        await PostgresStore.open(f"postgresql://fleet:{password}@127.0.0.1:{port}/x")
    assert password not in str(caught.value)
    # libpq quotes a URL it cannot read, password and all: not here, not even
    # in the exception's context.
    with pytest.raises(StoreError) as unreadable:
        await PostgresStore.open(f"postgresql://fleet:%zz{password}@127.0.0.1:{port}/x")
    assert password not in str(unreadable.value)
    assert unreadable.value.__context__ is None
    assert unreadable.value.__cause__ is None


# --- the config -------------------------------------------------------------------
MINIMAL = """\
accounts:
  - provider: samsara
    id: demo
    token: abc
store:
"""


def test_store_url_and_lease_time_in_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_PASSWORD", "pg-S3cret")
    config = parse_config(
        MINIMAL + "  url: postgresql://fleet:${PG_PASSWORD}@db:5432/fleet\n  lease_time: 15\n"
    )
    assert config.store.url == "postgresql://fleet:pg-S3cret@db:5432/fleet"
    assert config.store.lease_time == 15
    assert "pg-S3cret" in config.secrets()
    assert parse_config(MINIMAL.replace("store:\n", "")).store.url is None
    assert parse_config(MINIMAL.replace("store:\n", "")).store.lease_time == 10


@pytest.mark.parametrize(
    ("option", "problem"),
    [
        ("url: mysql://db/fleet", "store.url"),
        ("url: postgresql://db:port/fleet", "store.url"),
        ("lease_time: 1", "store.lease_time"),
        ("lease_time: 301", "store.lease_time"),
    ],
)
def test_bad_store_options_are_named(option: str, problem: str) -> None:
    from bridge.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_config(MINIMAL + f"  {option}\n")
    assert any(problem in p for p in caught.value.problems), caught.value.problems


# --- open_store -------------------------------------------------------------------
async def test_open_store_chooses_by_the_config(url: str, tmp_path: Path) -> None:
    from bridge.config import StoreConfig
    from bridge.store import open_store

    sqlite = await open_store(StoreConfig(path=tmp_path / "s.sqlite"))
    assert isinstance(sqlite, SqliteStore)
    await sqlite.close()
    shared = await open_store(StoreConfig(url=url))
    assert isinstance(shared, PostgresStore)
    assert isinstance(shared, LeaseStore)
    await shared.close()


async def test_open_store_without_psycopg_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from bridge.config import StoreConfig
    from bridge.store import open_store

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a)
    )
    with pytest.raises(StoreError, match=r"pip install 'fleet-telematics-bridge\[postgres\]'"):
        await open_store(StoreConfig(url="postgresql://db/fleet"))


def test_a_password_written_into_store_url_is_an_inline_secret() -> None:
    from bridge.cli import inline_secrets

    assert inline_secrets("store:\n  url: postgresql://fleet:hunter2@db/fleet\n") == ["store.url"]
    assert inline_secrets("store:\n  url: postgresql://fleet:${PG_PASSWORD}@db/fleet\n") == []
    assert inline_secrets("store:\n  url: postgresql://fleet@db/fleet\n") == []


def test_the_store_config_repr_hides_the_url() -> None:
    config = parse_config(MINIMAL + "  url: postgresql://fleet:hunter2@db/fleet\n")
    assert "hunter2" not in repr(config)
