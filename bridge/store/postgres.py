"""PostgreSQL, the store several bridge processes share (`store.url`).

The same tables and guarantees as `bridge.store.sqlite` (see `bridge.store.base`),
plus what sharing needs (`LeaseStore`): the instances alive, who holds each unit
of accounts, fencing, and LISTEN/NOTIFY when a command is journaled.

- Migrations: `MIGRATIONS` is an ordered list of steps, recorded in
  `schema_migrations`; `open` applies the missing ones in one transaction under
  an advisory lock, so instances starting together migrate once, and refuses a
  database a newer bridge migrated further.
- `check_and_record` takes one transaction-scoped advisory lock per scope
  (sorted, so two spenders never deadlock) before counting: two processes
  spending from one scope serialize there, as two on one SQLite file do on its
  write lock.
- Fencing: a fenced account's call and poll outcome are written only while its
  lease row (owner, epoch, unexpired by the server's clock) exists, read FOR
  SHARE in the same transaction, so no other instance can take the lease over
  before the write commits.
- Outage: a lost connection raises `StoreUnavailableError` (the transaction is
  rolled back by the server) and is dropped; the next call connects again.

Connections: a few of our own (`pool_size`), each in autocommit mode with
explicit BEGIN/COMMIT, plus one that LISTENs. psycopg 3, not asyncpg: typed,
libpq's own connection handling (URLs, TLS, passfiles), LISTEN/NOTIFY and
pipelining.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Self

import psycopg
from psycopg import AsyncConnection, AsyncCursor
from psycopg.errors import UniqueViolation
from psycopg.rows import TupleRow

from bridge.model import VehicleState, utc_now
from bridge.quota import Call, Counted, Decide, Denial, Hold, LedgerView, Tally
from bridge.store.base import (
    TABLES,
    AlertClaim,
    DuplicateEntryError,
    InstanceRecord,
    JournalEntry,
    Lease,
    LeaseLostError,
    StoreError,
    StoreRows,
    StoreUnavailableError,
)
from bridge.store.url import redact_url, scrub, url_where

_LOGGER = logging.getLogger(__name__)

#: The channel `journal_accept` and `journal_update` notify (payload: the account).
CHANNEL = "fleet_bridge_journal"

#: pg_advisory_xact_lock key of the migrations ("fleetbrg" as a big-endian int8).
MIGRATION_LOCK = int.from_bytes(b"fleetbrg", "big") - (1 << 63)

#: Instances unseen for this many lease times are forgotten by `beat`.
FORGET_AFTER = 10

_Connection = AsyncConnection[TupleRow]
_Cursor = AsyncCursor[TupleRow]

#: The schema, step by step: step n (1-based) brings a database to version n.
#: Never edit a released step; append one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE checkpoint (
            account text NOT NULL,
            key text NOT NULL,
            value text NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (account, key)
        )""",
        """CREATE TABLE quota_ledger (
            scope text NOT NULL,
            account text NOT NULL,
            endpoint text NOT NULL,
            at double precision NOT NULL
        )""",
        "CREATE INDEX quota_ledger_scope_at ON quota_ledger (scope, at)",
        """CREATE TABLE quota_scope_hold (
            scope text PRIMARY KEY,
            until double precision NOT NULL,
            reason text NOT NULL
        )""",
        """CREATE TABLE command_journal (
            key text PRIMARY KEY,
            command text NOT NULL,
            account text NOT NULL,
            vehicle text,
            order_ref text,
            transaction_id text,
            body text NOT NULL,
            status text NOT NULL,
            handle text,
            response text,
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL,
            answered_at double precision
        )""",
        """CREATE UNIQUE INDEX command_journal_order
            ON command_journal (account, order_ref) WHERE order_ref IS NOT NULL""",
        "CREATE INDEX command_journal_status ON command_journal (status)",
        "CREATE INDEX command_journal_transaction ON command_journal (transaction_id)",
        """CREATE TABLE alert_seen (
            account text NOT NULL,
            alert_id text NOT NULL,
            seen_at double precision NOT NULL,
            topic text,
            payload text,
            alert_time double precision,
            delivered_at double precision,
            PRIMARY KEY (account, alert_id)
        )""",
        "CREATE INDEX alert_seen_at ON alert_seen (seen_at)",
        """CREATE TABLE vehicle_state (
            account text NOT NULL,
            vehicle_id text NOT NULL,
            state text NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (account, vehicle_id)
        )""",
        """CREATE TABLE bridge_instance (
            instance text PRIMARY KEY,
            host text NOT NULL,
            pid integer NOT NULL,
            started_at timestamptz NOT NULL,
            seen_at timestamptz NOT NULL
        )""",
        """CREATE TABLE bridge_lease (
            unit text PRIMARY KEY,
            owner text NOT NULL,
            epoch bigint NOT NULL,
            expires_at timestamptz NOT NULL
        )""",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)

_JOURNAL_COLUMNS = (
    "key, command, account, vehicle, order_ref, transaction_id, body, status, handle, "
    "response, created_at, updated_at"
)

#: Columns kept as timestamptz here and as ISO 8601 text in SQLite.
_TEXT_TIMES = {("checkpoint", "updated_at"), ("vehicle_state", "updated_at")}


class StoreNotEmptyError(StoreError):
    """`import_rows` into a store that holds data already."""


class PostgresStore:
    """A PostgreSQL database shared by every instance (a `BridgeStore` and a
    `LeaseStore`). Build it with `await PostgresStore.open(url)`."""

    def __init__(self, url: str, *, pool_size: int = 4, connect_timeout: float = 10.0) -> None:
        self._url = url
        self.where = url_where(url)
        self.shown_url = redact_url(url)
        self._options: dict[str, Any] = {"autocommit": True}
        # libpq's own defaults wait hours on a connection whose peer vanished
        # without a reset (a cut network): these bound that to about half a
        # minute. An option the URL names itself is left to it.
        defaults: dict[str, Any] = {
            "connect_timeout": max(1, round(connect_timeout)),
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": 30_000,
        }
        for option, value in defaults.items():
            if option not in url:
                self._options[option] = value
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(pool_size)
        self._fences: dict[str, tuple[str, tuple[str, int] | None]] = {}
        self._journal_event = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(
        cls, url: str, *, pool_size: int = 4, connect_timeout: float = 10.0
    ) -> PostgresStore:
        """Connect, apply the migrations this bridge knows and start listening."""
        store = cls(url, pool_size=pool_size, connect_timeout=connect_timeout)
        try:
            await store._migrate()
            listening = await store._connect()
            try:
                await listening.execute(f"LISTEN {CHANNEL}")
            except psycopg.Error as err:
                await _close_quietly(listening)
                raise store._error(err) from None
        except BaseException:
            await store.close()
            raise
        # Whatever was journaled before this LISTEN: the reader looks once.
        store._journal_event.set()
        store._listener = asyncio.create_task(store._listen(listening), name="store-listen")
        return store

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        idle, self._idle = self._idle, []
        for conn in idle:
            await _close_quietly(conn)

    # --- connections -----------------------------------------------------------
    def _error(self, err: psycopg.Error) -> StoreError:
        """What a psycopg error means to the bridge, without the URL's password."""
        text = scrub(str(err).strip() or type(err).__name__, self._url)
        if isinstance(err, psycopg.OperationalError | psycopg.InterfaceError):
            return StoreUnavailableError(
                f"cannot reach the PostgreSQL store at {self.where}: {text}"
            )
        return StoreError(f"the PostgreSQL store at {self.where} failed: {text}")

    async def _connect(self) -> _Connection:
        try:
            return await AsyncConnection.connect(self._url, **self._options)
        except psycopg.Error as err:
            failure = self._error(err)
        # Raised outside the handler, so not even as its __context__ does
        # libpq's error (which can quote the URL, password and all) come along.
        raise failure

    async def _begin(self) -> _Connection:
        """A connection in a fresh transaction: an idle one if it still works
        (one the server dropped while idle is closed: nothing was sent on it)."""
        while self._idle:
            conn = self._idle.pop()
            try:
                await conn.execute("BEGIN")
            except psycopg.Error:
                await _close_quietly(conn)
                continue
            return conn
        conn = await self._connect()
        try:
            await conn.execute("BEGIN")
        except psycopg.Error as err:
            await _close_quietly(conn)
            raise self._error(err) from None
        return conn

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_Cursor]:
        """One transaction: committed when the block ends, rolled back when it
        raises. A psycopg error becomes a `StoreError` (chained to it);
        `StoreUnavailableError` when the connection was lost."""
        if self._closed:
            raise StoreError(f"the PostgreSQL store at {self.where} is closed")
        async with self._slots:
            conn = await self._begin()
            try:
                async with conn.cursor() as cursor:
                    yield cursor
                await conn.execute("COMMIT")
            except BaseException as err:
                await self._abandon(conn, err)
                if isinstance(err, psycopg.Error):
                    raise self._error(err) from err
                raise
            await self._release(conn)

    async def _release(self, conn: _Connection) -> None:
        """Keep a sound connection for the next transaction (unless closing)."""
        if self._closed:
            await _close_quietly(conn)
        else:
            self._idle.append(conn)

    async def _abandon(self, conn: _Connection, err: BaseException) -> None:
        """After a failed transaction: roll back and keep the connection when it
        is sound (a constraint, a deadlock, an error of the block), else close
        it, and the idle ones too when the server went away."""
        if conn.broken or not isinstance(err, Exception):
            # Lost, or cancelled mid-statement: never reuse it.
            await _close_quietly(conn)
            if conn.broken:
                idle, self._idle = self._idle, []
                for other in idle:
                    await _close_quietly(other)
            return
        try:
            await conn.execute("ROLLBACK")
        except psycopg.Error:
            await _close_quietly(conn)
            return
        await self._release(conn)

    async def _listen(self, conn: _Connection | None) -> None:
        """Set `journal_changed` on every notification; after an outage, connect
        and LISTEN again and set it once (what was sent meanwhile is lost)."""
        delay = 0.5
        while True:
            if conn is None:
                try:
                    conn = await self._connect()
                    await conn.execute(f"LISTEN {CHANNEL}")
                except (StoreError, psycopg.Error) as err:
                    if conn is not None:
                        await _close_quietly(conn)
                        conn = None
                    _LOGGER.debug("store: cannot listen yet: %s", err)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                delay = 0.5
                _LOGGER.info("store: listening to %s again", self.where)
                self._journal_event.set()
            try:
                async for _note in conn.notifies():
                    self._journal_event.set()
            except psycopg.Error as err:
                _LOGGER.warning(
                    "store: lost the listening connection to %s: %s",
                    self.where,
                    scrub(str(err).strip(), self._url),
                )
            finally:
                await _close_quietly(conn)
                conn = None

    # --- migrations ------------------------------------------------------------
    async def _migrate(self) -> None:
        async with self._transaction() as cur:
            await cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version integer PRIMARY KEY, applied_at timestamptz NOT NULL)"
            )
            await cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            current = int(_one(await cur.fetchone()))
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"the PostgreSQL store at {self.where} was migrated by a newer "
                    f"fleet-bridge (schema {current} > {SCHEMA_VERSION})"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version - 1]:
                    await cur.execute(statement)
                await cur.execute(
                    "INSERT INTO schema_migrations(version, applied_at) VALUES (%s, now())",
                    (version,),
                )
                _LOGGER.info("store: %s migrated to schema %d", self.where, version)

    async def schema_version(self) -> int:
        async with self._transaction() as cur:
            await cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            return int(_one(await cur.fetchone()))

    async def integrity(self) -> str:
        """ "ok" when the server answers and the schema is the one this bridge knows."""
        try:
            async with self._transaction() as cur:
                await cur.execute("SELECT 1")
            version = await self.schema_version()
        except StoreError as err:
            return str(err)
        if version != SCHEMA_VERSION:
            return f"schema {version}, expected {SCHEMA_VERSION}"
        return "ok"

    # --- fencing ---------------------------------------------------------------
    def fence(self, account: str, instance: str, lease: tuple[str, int] | None) -> None:
        self._fences[account] = (instance, lease)

    async def _check_fence(self, cur: _Cursor, account: str) -> None:
        """Raise `LeaseLostError` unless this instance holds the account's lease
        now; the row stays locked FOR SHARE until the transaction ends, so it
        cannot change hands before the write commits."""
        fence = self._fences.get(account)
        if fence is None:
            return
        instance, lease = fence
        if lease is None:
            raise LeaseLostError(f"account {account} is not this instance's ({instance})")
        unit, epoch = lease
        # clock_timestamp(), not now(): the transaction may have waited for a lock.
        await cur.execute(
            "SELECT 1 FROM bridge_lease WHERE unit=%s AND owner=%s AND epoch=%s "
            "AND expires_at > clock_timestamp() FOR SHARE",
            (unit, instance, epoch),
        )
        if await cur.fetchone() is None:
            raise LeaseLostError(
                f"instance {instance} lost the lease on {unit} (epoch {epoch}) of account {account}"
            )

    # --- reads -----------------------------------------------------------------
    async def load_checkpoint(self, account: str) -> dict[str, str]:
        async with self._transaction() as cur:
            await cur.execute("SELECT key, value FROM checkpoint WHERE account=%s", (account,))
            return {str(key): str(value) for key, value in await cur.fetchall()}

    async def load_states(self, account: str) -> list[VehicleState]:
        async with self._transaction() as cur:
            await cur.execute(
                "SELECT state FROM vehicle_state WHERE account=%s ORDER BY vehicle_id", (account,)
            )
            rows = await cur.fetchall()
        states = []
        for (text,) in rows:
            try:
                states.append(VehicleState.from_json(json.loads(text)))
            except (ValueError, KeyError, TypeError):
                # A row we cannot read is dropped: the next poll refills it.
                continue
        return states

    # --- writes ----------------------------------------------------------------
    async def save_poll(
        self,
        account: str,
        checkpoint: Mapping[str, str],
        changed: Iterable[VehicleState],
        removed: Iterable[str] = (),
    ) -> None:
        """Persist one poll's outcome atomically (refused for a fenced account
        whose lease this instance lost)."""
        now = utc_now()
        async with self._transaction() as cur:
            await self._check_fence(cur, account)
            await cur.execute("DELETE FROM checkpoint WHERE account=%s", (account,))
            cursors = [(account, k, v, now) for k, v in checkpoint.items()]
            if cursors:
                await cur.executemany(
                    "INSERT INTO checkpoint(account, key, value, updated_at) VALUES(%s,%s,%s,%s)",
                    cursors,
                )
            states = [
                (account, s.vehicle_id, json.dumps(s.to_json(), separators=(",", ":")), now)
                for s in changed
            ]
            if states:
                await cur.executemany(
                    "INSERT INTO vehicle_state(account, vehicle_id, state, updated_at) "
                    "VALUES(%s,%s,%s,%s) ON CONFLICT (account, vehicle_id) DO UPDATE SET "
                    "state=excluded.state, updated_at=excluded.updated_at",
                    states,
                )
            gone = [(account, vid) for vid in removed]
            if gone:
                await cur.executemany(
                    "DELETE FROM vehicle_state WHERE account=%s AND vehicle_id=%s", gone
                )

    # --- quota ledger (bridge.quota.QuotaLedger) -------------------------------
    async def recent(self, scope: str, since: datetime) -> list[Call]:
        async with self._transaction() as cur:
            await cur.execute(
                "SELECT endpoint, at, account FROM quota_ledger WHERE scope=%s AND at>=%s "
                "ORDER BY at",
                (scope, since.timestamp()),
            )
            rows = await cur.fetchall()
        return [Call(endpoint, _time(at), account) for endpoint, at, account in rows]

    async def holds(self, scopes: Collection[str]) -> dict[str, Hold]:
        async with self._transaction() as cur:
            return await self._holds(cur, scopes)

    async def _holds(self, cur: _Cursor, scopes: Collection[str]) -> dict[str, Hold]:
        wanted = list(dict.fromkeys(scopes))
        if not wanted:
            return {}
        await cur.execute(
            "SELECT scope, until, reason FROM quota_scope_hold WHERE scope = ANY(%s)", (wanted,)
        )
        found = {scope: Hold(_time(until), reason) for scope, until, reason in await cur.fetchall()}
        return {scope: found[scope] for scope in wanted if scope in found}

    async def _count(self, cur: _Cursor, tally: Tally) -> Counted:
        where = "scope=%s AND at>=%s" if tally.inclusive else "scope=%s AND at>%s"
        args: list[object] = [tally.scope, tally.since.timestamp()]
        if tally.endpoints:
            where += " AND endpoint = ANY(%s)"
            args.append(sorted(tally.endpoints))
        await cur.execute(f"SELECT COUNT(*) FROM quota_ledger WHERE {where}", args)
        count = int(_one(await cur.fetchone()))
        latest: tuple[Call, ...] = ()
        if tally.latest and count:
            await cur.execute(
                f"SELECT endpoint, at, account FROM quota_ledger WHERE {where} "
                "ORDER BY at DESC LIMIT %s",
                [*args, tally.latest],
            )
            rows = await cur.fetchall()
            latest = tuple(Call(endpoint, _time(at), account) for endpoint, at, account in rows)
        return Counted(count, latest)

    async def check_and_record(
        self,
        call: Call,
        scopes: Collection[str],
        held: Collection[str],
        tallies: Collection[Tally],
        decide: Decide,
    ) -> Denial | None:
        """Count, decide and record in one transaction, holding an advisory lock
        on every scope involved: another process spending from one of them
        waits until this call is recorded (or refused)."""
        locked = sorted({*scopes, *held, *(tally.scope for tally in tallies)})
        async with self._transaction() as cur:
            for scope in locked:
                await cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (scope,))
            await self._check_fence(cur, call.account)
            counts = {tally: await self._count(cur, tally) for tally in tallies}
            view = LedgerView(counts, await self._holds(cur, held))
            denial = decide(view)
            rows = [(scope, call.account, call.endpoint, call.at.timestamp()) for scope in scopes]
            if denial is None and rows:
                await cur.executemany(
                    "INSERT INTO quota_ledger(scope, account, endpoint, at) VALUES(%s,%s,%s,%s)",
                    rows,
                )
        return denial

    async def restamp(self, call: Call, scopes: Collection[str], at: datetime) -> None:
        async with self._transaction() as cur:
            await cur.executemany(
                "UPDATE quota_ledger SET at=%s WHERE scope=%s AND account=%s AND endpoint=%s"
                " AND at=%s AND at<%s",
                [
                    (
                        at.timestamp(),
                        scope,
                        call.account,
                        call.endpoint,
                        call.at.timestamp(),
                        at.timestamp(),
                    )
                    for scope in scopes
                ],
            )

    async def save_hold(self, scope: str, hold: Hold) -> None:
        async with self._transaction() as cur:
            await cur.execute(
                "INSERT INTO quota_scope_hold(scope, until, reason) VALUES(%s,%s,%s) "
                "ON CONFLICT (scope) DO UPDATE SET until=excluded.until, reason=excluded.reason "
                "WHERE excluded.until > quota_scope_hold.until",
                (scope, hold.until.timestamp(), hold.reason),
            )

    async def prune(self, scope: str, before: datetime) -> None:
        async with self._transaction() as cur:
            await cur.execute(
                "DELETE FROM quota_ledger WHERE scope=%s AND at<%s", (scope, before.timestamp())
            )

    async def adopt(self, account: str, scopes: Collection[str]) -> None:
        """Nothing to adopt: no PostgreSQL store kept calls per account (an
        SQLite store's are scoped before `migrate-store` copies them)."""

    # --- command journal -------------------------------------------------------
    async def _journal_one(self, where: str, args: tuple[object, ...]) -> JournalEntry | None:
        async with self._transaction() as cur:
            await cur.execute(f"SELECT {_JOURNAL_COLUMNS} FROM command_journal {where}", args)
            row = await cur.fetchone()
        return None if row is None else JournalEntry(*row)

    async def _journal_many(self, where: str) -> list[JournalEntry]:
        async with self._transaction() as cur:
            await cur.execute(f"SELECT {_JOURNAL_COLUMNS} FROM command_journal {where}")
            rows = await cur.fetchall()
        return [JournalEntry(*row) for row in rows]

    async def journal_get(self, key: str) -> JournalEntry | None:
        return await self._journal_one("WHERE key=%s", (key,))

    async def journal_by_transaction(self, transaction_id: str) -> JournalEntry | None:
        return await self._journal_one(
            "WHERE transaction_id=%s ORDER BY created_at LIMIT 1", (transaction_id,)
        )

    async def journal_by_order(self, account: str, order_ref: str) -> JournalEntry | None:
        return await self._journal_one("WHERE account=%s AND order_ref=%s", (account, order_ref))

    async def journal_open(self) -> list[JournalEntry]:
        return await self._journal_many(
            "WHERE status IN ('accepted', 'pending') ORDER BY created_at"
        )

    async def journal_accept(self, entry: JournalEntry) -> None:
        """Record a command before it reaches the provider (`DuplicateEntryError`
        if its key or order_ref is known) and tell every instance."""
        try:
            async with self._transaction() as cur:
                await cur.execute(
                    f"INSERT INTO command_journal({_JOURNAL_COLUMNS}) "
                    "VALUES(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    tuple(entry),
                )
                await cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, entry.account))
        except StoreError as err:
            if isinstance(err.__cause__, UniqueViolation):
                raise DuplicateEntryError(entry.key) from None
            raise

    async def journal_update(
        self, key: str, status: str, *, handle: str | None = None, response: str | None = None
    ) -> None:
        async with self._transaction() as cur:
            await cur.execute(
                "UPDATE command_journal SET status=%s, handle=COALESCE(%s, handle), "
                "response=COALESCE(%s, response), updated_at=%s WHERE key=%s RETURNING account",
                (status, handle, response, utc_now().timestamp(), key),
            )
            row = await cur.fetchone()
            if row is not None:
                await cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, row[0]))

    async def journal_answered(self, key: str) -> None:
        async with self._transaction() as cur:
            await cur.execute(
                "UPDATE command_journal SET answered_at=%s WHERE key=%s AND answered_at IS NULL",
                (utc_now().timestamp(), key),
            )

    async def journal_unanswered(self) -> list[JournalEntry]:
        return await self._journal_many(
            "WHERE response IS NOT NULL AND answered_at IS NULL ORDER BY created_at"
        )

    def journal_changed(self) -> asyncio.Event:
        return self._journal_event

    # --- alerts ----------------------------------------------------------------
    async def claim_alerts(self, account: str, claims: Iterable[AlertClaim]) -> set[str]:
        now = utc_now().timestamp()
        rows = {claim.alert_id: claim for claim in claims}
        fresh: set[str] = set()
        if not rows:
            return fresh
        async with self._transaction() as cur:
            for claim in rows.values():
                await cur.execute(
                    "INSERT INTO alert_seen(account, alert_id, seen_at, topic, payload, "
                    "alert_time) VALUES(%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                    (account, claim.alert_id, now, claim.topic, claim.payload, claim.time),
                )
                if cur.rowcount:
                    fresh.add(claim.alert_id)
        return fresh

    async def alerts_undelivered(self, account: str) -> list[AlertClaim]:
        async with self._transaction() as cur:
            await cur.execute(
                "SELECT alert_id, topic, payload, alert_time FROM alert_seen WHERE account=%s "
                "AND delivered_at IS NULL AND payload IS NOT NULL ORDER BY alert_time, seen_at",
                (account,),
            )
            rows = await cur.fetchall()
        return [AlertClaim(*row) for row in rows]

    async def alerts_delivered(self, account: str, alert_ids: Iterable[str]) -> None:
        now = utc_now().timestamp()
        ids = list(alert_ids)
        if not ids:
            return
        async with self._transaction() as cur:
            await cur.execute(
                "UPDATE alert_seen SET delivered_at=%s, payload=NULL "
                "WHERE account=%s AND alert_id = ANY(%s) AND delivered_at IS NULL",
                (now, account, ids),
            )

    async def prune_alerts(self, older_than: datetime) -> int:
        async with self._transaction() as cur:
            await cur.execute(
                "DELETE FROM alert_seen WHERE seen_at < %s", (older_than.timestamp(),)
            )
            return cur.rowcount

    # --- instances and leases (LeaseStore) -------------------------------------
    async def beat(
        self, instance: str, host: str, pid: int, started_at: float, ttl: float
    ) -> list[InstanceRecord]:
        async with self._transaction() as cur:
            await cur.execute(
                "INSERT INTO bridge_instance(instance, host, pid, started_at, seen_at) "
                "VALUES(%s, %s, %s, to_timestamp(%s), clock_timestamp()) "
                "ON CONFLICT (instance) DO UPDATE SET host=excluded.host, pid=excluded.pid, "
                "seen_at=excluded.seen_at",
                (instance, host, pid, started_at),
            )
            await cur.execute(
                "DELETE FROM bridge_instance WHERE seen_at < clock_timestamp() - "
                "make_interval(secs => %s)",
                (FORGET_AFTER * ttl,),
            )
            await cur.execute(
                "SELECT instance, host, pid, extract(epoch FROM started_at)::float8, "
                "extract(epoch FROM seen_at)::float8 FROM bridge_instance "
                "WHERE seen_at > clock_timestamp() - make_interval(secs => %s) ORDER BY instance",
                (ttl,),
            )
            rows = await cur.fetchall()
        return [InstanceRecord(*row) for row in rows]

    async def leave(self, instance: str) -> None:
        async with self._transaction() as cur:
            await cur.execute("DELETE FROM bridge_lease WHERE owner=%s", (instance,))
            await cur.execute("DELETE FROM bridge_instance WHERE instance=%s", (instance,))

    async def take(self, unit: str, instance: str, ttl: float) -> int | None:
        async with self._transaction() as cur:
            await cur.execute(
                "INSERT INTO bridge_lease(unit, owner, epoch, expires_at) "
                "VALUES(%s, %s, 1, clock_timestamp() + make_interval(secs => %s)) "
                "ON CONFLICT (unit) DO UPDATE SET owner=excluded.owner, "
                "epoch=CASE WHEN bridge_lease.owner = excluded.owner THEN bridge_lease.epoch "
                "ELSE bridge_lease.epoch + 1 END, expires_at=excluded.expires_at "
                "WHERE bridge_lease.expires_at < clock_timestamp() "
                "OR bridge_lease.owner = excluded.owner RETURNING epoch",
                (unit, instance, ttl),
            )
            row = await cur.fetchone()
        return None if row is None else int(row[0])

    async def renew(self, instance: str, leases: Mapping[str, int], ttl: float) -> set[str]:
        if not leases:
            return set()
        units = list(leases)
        async with self._transaction() as cur:
            await cur.execute(
                "UPDATE bridge_lease SET expires_at = clock_timestamp() + "
                "make_interval(secs => %s) FROM unnest(%s::text[], %s::bigint[]) AS mine(unit, "
                "epoch) WHERE bridge_lease.unit = mine.unit AND bridge_lease.epoch = mine.epoch "
                "AND bridge_lease.owner = %s RETURNING bridge_lease.unit",
                (ttl, units, [leases[u] for u in units], instance),
            )
            rows = await cur.fetchall()
        return {str(row[0]) for row in rows}

    async def give_up(self, instance: str, unit: str, epoch: int) -> None:
        async with self._transaction() as cur:
            await cur.execute(
                "DELETE FROM bridge_lease WHERE unit=%s AND owner=%s AND epoch=%s",
                (unit, instance, epoch),
            )

    async def leases(self) -> list[Lease]:
        async with self._transaction() as cur:
            await cur.execute(
                "SELECT unit, owner, epoch, extract(epoch FROM expires_at)::float8 "
                "FROM bridge_lease ORDER BY unit"
            )
            rows = await cur.fetchall()
        return [Lease(unit, owner, int(epoch), expires) for unit, owner, epoch, expires in rows]

    async def clock(self) -> float:
        """The server's time now (unix seconds): what leases expire by."""
        async with self._transaction() as cur:
            await cur.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
            return float(_one(await cur.fetchone()))

    # --- copying a whole store (fleet-bridge migrate-store) --------------------
    async def export_rows(self) -> StoreRows:
        """Every row of the store (`TABLES`), as SQLite keeps them."""
        rows: StoreRows = {}
        async with self._transaction() as cur:
            await cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            for table, columns in TABLES.items():
                await cur.execute(f"SELECT {', '.join(columns)} FROM {table}")
                rows[table] = [
                    tuple(
                        value.astimezone(UTC).isoformat()
                        if (table, column) in _TEXT_TIMES and isinstance(value, datetime)
                        else value
                        for column, value in zip(columns, row, strict=True)
                    )
                    for row in await cur.fetchall()
                ]
        return rows

    async def import_rows(self, rows: StoreRows) -> dict[str, int]:
        """Copy a whole store's rows in one transaction; `StoreNotEmptyError`
        (and nothing written) when any of the tables holds a row already."""
        counts: dict[str, int] = {}
        async with self._transaction() as cur:
            tables = ", ".join(TABLES)
            # No instance writes while the copy runs (nor between check and copy).
            await cur.execute(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")
            filled = []
            for table in TABLES:
                await cur.execute(f"SELECT EXISTS (SELECT 1 FROM {table})")
                if _one(await cur.fetchone()):
                    filled.append(table)
            if filled:
                raise StoreNotEmptyError(
                    f"the PostgreSQL store at {self.where} holds data already (in "
                    f"{', '.join(filled)}): nothing was copied"
                )
            for table, columns in TABLES.items():
                values = [
                    tuple(
                        _parse_time(value) if (table, column) in _TEXT_TIMES else value
                        for column, value in zip(columns, row, strict=True)
                    )
                    for row in rows.get(table, [])
                ]
                if values:
                    async with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                        for value in values:
                            await copy.write_row(value)
                counts[table] = len(values)
        return counts


def _one(row: tuple[Any, ...] | None) -> Any:
    if row is None:
        raise StoreError("the PostgreSQL store answered nothing")
    return row[0]


def _parse_time(value: object) -> object:
    """An ISO 8601 text time (SQLite's `updated_at`) as a datetime."""
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value


async def _close_quietly(conn: _Connection) -> None:
    with contextlib.suppress(Exception):
        await conn.close()


def _time(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)
