"""SQLite, the embedded store: quota ledger, cursors, last states, journal, alerts.

One file, opened once per process (`bridge.store.base` says what each part
guarantees). A poll's cursors and the vehicle states they led to are written in
one transaction, after the states were handed to MQTT. A crash before the commit
replays the same changes from the older cursor (retained state makes that
harmless); a crash after it loses nothing. The quota ledger checks and records
every call in one IMMEDIATE transaction before it is sent (see `bridge.quota`):
another process on the same file waits for it, and never both spend the last call.

The methods are coroutines, as the protocols ask, but do their SQLite work
without awaiting in between: a statement takes microseconds to milliseconds, and
a check-and-record never interleaves with another one of this process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from bridge.model import VehicleState, utc_now
from bridge.quota import Call, Counted, Decide, Denial, Hold, LedgerView, Tally
from bridge.store.base import (
    TABLES,
    AlertClaim,
    DuplicateEntryError,
    JournalEntry,
    StoreError,
    StoreRows,
)

SCHEMA_VERSION = 8

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoint (
    account TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (account, key)
);
CREATE TABLE IF NOT EXISTS quota_ledger (
    scope TEXT NOT NULL,
    account TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS quota_ledger_scope_at ON quota_ledger (scope, at);
CREATE TABLE IF NOT EXISTS quota_scope_hold (
    scope TEXT PRIMARY KEY,
    until REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS command_journal (
    key TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    account TEXT NOT NULL,
    vehicle TEXT,
    order_ref TEXT,
    transaction_id TEXT,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    handle TEXT,
    response TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    answered_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS command_journal_order
    ON command_journal (account, order_ref) WHERE order_ref IS NOT NULL;
CREATE INDEX IF NOT EXISTS command_journal_status ON command_journal (status);
CREATE INDEX IF NOT EXISTS command_journal_transaction ON command_journal (transaction_id);
CREATE TABLE IF NOT EXISTS alert_seen (
    account TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    seen_at REAL NOT NULL,
    topic TEXT,
    payload TEXT,
    alert_time REAL,
    delivered_at REAL,
    PRIMARY KEY (account, alert_id)
);
CREATE INDEX IF NOT EXISTS alert_seen_at ON alert_seen (seen_at);
CREATE TABLE IF NOT EXISTS vehicle_state (
    account TEXT NOT NULL,
    vehicle_id TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (account, vehicle_id)
);
"""


_JOURNAL_COLUMNS = (
    "key, command, account, vehicle, order_ref, transaction_id, body, status, handle, "
    "response, created_at, updated_at"
)


def _tighten(path: Path) -> None:
    """Only the bridge's own user may read or write `path` (when it exists)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if stat.S_IMODE(mode) & 0o077:
        path.chmod(0o600)


def _private(path: Path) -> None:
    """The store file exists, readable and writable by its owner only (it holds
    command bodies, positions and the quota ledger); a directory made for it is
    its owner's only too."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(descriptor)
    _tighten(path)


class SqliteStore:
    """One SQLite file, opened once per process (a `BridgeStore`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            if str(path) != ":memory:":
                _private(self.path)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE).
            self._db = sqlite3.connect(str(path), isolation_level=None)
            # What is deleted (an old command body, a pruned claim) is overwritten,
            # not left readable in free pages.
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a quota call recorded before a request must survive even a
            # power cut, or a restart could spend the same budget twice.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._migrate()
            self._check_version()
            if str(path) != ":memory:":
                # The WAL and shared-memory files SQLite made beside it (an older
                # bridge made them readable by everyone too).
                for suffix in ("-wal", "-shm"):
                    _tighten(self.path.with_name(self.path.name + suffix))
        except (sqlite3.Error, OSError) as err:
            raise StoreError(f"cannot open the store at {self.path}: {err}") from err

    def _migrate(self) -> None:
        alert_columns = {row[1] for row in self._db.execute("PRAGMA table_info(alert_seen)")}
        if "delivered_at" not in alert_columns:  # schema 5: claimed meant published
            for column in ("topic TEXT", "payload TEXT", "alert_time REAL", "delivered_at REAL"):
                self._db.execute(f"ALTER TABLE alert_seen ADD COLUMN {column}")
            self._db.execute("UPDATE alert_seen SET delivered_at=seen_at")
        # Schema 6 and older kept Telemax and Metrotec bearer tokens in the
        # checkpoints: no token is kept at rest any more (a restart logs in).
        deleted = self._db.execute(
            "DELETE FROM checkpoint WHERE key IN ('token', 'token_expires', 'token_renew_at',"
            " 'token_for')"
        ).rowcount
        if deleted:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(command_journal)")}
        if "answered_at" not in columns:  # schema 4: answers were not tracked
            self._db.execute("ALTER TABLE command_journal ADD COLUMN answered_at REAL")
            # What an older bridge answered was sent then: not again now.
            self._db.execute(
                "UPDATE command_journal SET answered_at=updated_at WHERE response IS NOT NULL"
            )

    async def integrity(self) -> str:
        """SQLite's own check of the whole file: "ok", or what is wrong."""
        rows = self._db.execute("PRAGMA integrity_check").fetchall()
        return "; ".join(str(row[0]) for row in rows)

    def _check_version(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) > SCHEMA_VERSION:
            raise StoreError(
                f"the store at {self.path} was written by a newer fleet-bridge "
                f"(schema {row[0]} > {SCHEMA_VERSION})"
            )
        elif int(row[0]) < SCHEMA_VERSION:
            # Older stores only lack tables, which the schema script just created.
            self._db.execute(
                "UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),)
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._db.close()

    async def export_rows(self) -> StoreRows:
        """Every row of the store (`TABLES`), for `fleet-bridge migrate-store`;
        read in one transaction, so a running bridge cannot tear it."""
        rows: StoreRows = {}
        try:
            self._db.execute("BEGIN")
            try:
                for table, columns in TABLES.items():
                    rows[table] = [
                        tuple(row)
                        for row in self._db.execute(
                            f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid"
                        )
                    ]
            finally:
                self._db.execute("ROLLBACK")
        except sqlite3.Error as err:
            raise StoreError(f"cannot read the store at {self.path}: {err}") from err
        return rows

    # --- reads ---------------------------------------------------------------
    async def load_checkpoint(self, account: str) -> dict[str, str]:
        rows = self._db.execute(
            "SELECT key, value FROM checkpoint WHERE account=?", (account,)
        ).fetchall()
        return dict(rows)

    async def load_states(self, account: str) -> list[VehicleState]:
        rows = self._db.execute(
            "SELECT state FROM vehicle_state WHERE account=? ORDER BY vehicle_id", (account,)
        ).fetchall()
        states = []
        for (text,) in rows:
            try:
                states.append(VehicleState.from_json(json.loads(text)))
            except (ValueError, KeyError, TypeError):
                # A row we cannot read is dropped: the next poll refills it.
                continue
        return states

    # --- writes --------------------------------------------------------------
    async def save_poll(
        self,
        account: str,
        checkpoint: Mapping[str, str],
        changed: Iterable[VehicleState],
        removed: Iterable[str] = (),
    ) -> None:
        """Persist one poll's outcome atomically."""
        now = utc_now().isoformat()
        with self._transaction():
            self._db.execute("DELETE FROM checkpoint WHERE account=?", (account,))
            self._db.executemany(
                "INSERT INTO checkpoint(account, key, value, updated_at) VALUES(?,?,?,?)",
                [(account, k, v, now) for k, v in checkpoint.items()],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO vehicle_state(account, vehicle_id, state, updated_at)"
                " VALUES(?,?,?,?)",
                [
                    (account, s.vehicle_id, json.dumps(s.to_json(), separators=(",", ":")), now)
                    for s in changed
                ],
            )
            self._db.executemany(
                "DELETE FROM vehicle_state WHERE account=? AND vehicle_id=?",
                [(account, vid) for vid in removed],
            )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                # SQLite rolls back by itself on some errors (a full disk): a
                # second ROLLBACK would hide the real error behind its own.
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as err:
            raise StoreError(f"cannot write the store at {self.path}: {err}") from err

    # --- quota ledger (bridge.quota.QuotaLedger) --------------------------------
    async def recent(self, scope: str, since: datetime) -> list[Call]:
        rows = self._db.execute(
            "SELECT endpoint, at, account FROM quota_ledger WHERE scope=? AND at>=? ORDER BY at",
            (scope, since.timestamp()),
        ).fetchall()
        return [Call(endpoint, _time(at), account) for endpoint, at, account in rows]

    async def holds(self, scopes: Collection[str]) -> dict[str, Hold]:
        return self._holds(scopes)

    def _holds(self, scopes: Collection[str]) -> dict[str, Hold]:
        found: dict[str, Hold] = {}
        for scope in dict.fromkeys(scopes):
            row = self._db.execute(
                "SELECT until, reason FROM quota_scope_hold WHERE scope=?", (scope,)
            ).fetchone()
            if row is not None:
                found[scope] = Hold(_time(row[0]), row[1])
        return found

    def _count(self, tally: Tally) -> Counted:
        where = "scope=? AND at>=?" if tally.inclusive else "scope=? AND at>?"
        args: list[object] = [tally.scope, tally.since.timestamp()]
        if tally.endpoints:
            where += f" AND endpoint IN ({','.join('?' * len(tally.endpoints))})"
            args += sorted(tally.endpoints)
        (count,) = self._db.execute(
            f"SELECT COUNT(*) FROM quota_ledger WHERE {where}", args
        ).fetchone()
        latest: tuple[Call, ...] = ()
        if tally.latest and count:
            rows = self._db.execute(
                f"SELECT endpoint, at, account FROM quota_ledger WHERE {where} "
                "ORDER BY at DESC LIMIT ?",
                [*args, tally.latest],
            ).fetchall()
            latest = tuple(Call(endpoint, _time(at), account) for endpoint, at, account in rows)
        return Counted(int(count), latest)

    async def check_and_record(
        self,
        call: Call,
        scopes: Collection[str],
        held: Collection[str],
        tallies: Collection[Tally],
        decide: Decide,
    ) -> Denial | None:
        # BEGIN IMMEDIATE takes the write lock before reading: another process
        # on this file checks after this call is recorded, never in between.
        with self._transaction():
            view = LedgerView({t: self._count(t) for t in tallies}, self._holds(held))
            denial = decide(view)
            if denial is None:
                self._db.executemany(
                    "INSERT INTO quota_ledger(scope, account, endpoint, at) VALUES(?,?,?,?)",
                    [(scope, call.account, call.endpoint, call.at.timestamp()) for scope in scopes],
                )
        return denial

    async def restamp(self, call: Call, scopes: Collection[str], at: datetime) -> None:
        with self._transaction():
            self._db.executemany(
                "UPDATE quota_ledger SET at=? WHERE scope=? AND account=? AND endpoint=?"
                " AND at=? AND at<?",
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
        with self._transaction():
            self._db.execute(
                "INSERT INTO quota_scope_hold(scope, until, reason) VALUES(?,?,?) "
                "ON CONFLICT(scope) DO UPDATE SET until=excluded.until, reason=excluded.reason "
                "WHERE excluded.until > quota_scope_hold.until",
                (scope, hold.until.timestamp(), hold.reason),
            )

    async def prune(self, scope: str, before: datetime) -> None:
        with self._transaction():
            self._db.execute(
                "DELETE FROM quota_ledger WHERE scope=? AND at<?", (scope, before.timestamp())
            )

    async def adopt(self, account: str, scopes: Collection[str]) -> None:
        """Schema 7 kept calls and holds per account: they count under the
        account's scopes from now on (once; the old rows are then gone)."""
        tables = {
            row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if "quota_call" not in tables or not scopes:
            return
        with self._transaction():
            calls = self._db.execute(
                "SELECT endpoint, at FROM quota_call WHERE account=?", (account,)
            ).fetchall()
            self._db.executemany(
                "INSERT INTO quota_ledger(scope, account, endpoint, at) VALUES(?,?,?,?)",
                [(scope, account, endpoint, at) for endpoint, at in calls for scope in scopes],
            )
            self._db.execute("DELETE FROM quota_call WHERE account=?", (account,))
            if "quota_hold" in tables:
                hold = self._db.execute(
                    "SELECT until, reason FROM quota_hold WHERE account=?", (account,)
                ).fetchone()
                if hold is not None:
                    for scope in scopes:
                        self._db.execute(
                            "INSERT INTO quota_scope_hold(scope, until, reason) VALUES(?,?,?) "
                            "ON CONFLICT(scope) DO UPDATE SET until=excluded.until, "
                            "reason=excluded.reason WHERE excluded.until > quota_scope_hold.until",
                            (scope, hold[0], hold[1]),
                        )
                    self._db.execute("DELETE FROM quota_hold WHERE account=?", (account,))

    # --- command journal (exactly-once effects) ------------------------------
    async def journal_get(self, key: str) -> JournalEntry | None:
        row = self._db.execute(
            f"SELECT {_JOURNAL_COLUMNS} FROM command_journal WHERE key=?", (key,)
        ).fetchone()
        return None if row is None else JournalEntry(*row)

    async def journal_by_transaction(self, transaction_id: str) -> JournalEntry | None:
        """The command first sent under a transaction id, in any account (answers
        share one topic per command, so an id names one command bridge-wide)."""
        row = self._db.execute(
            f"SELECT {_JOURNAL_COLUMNS} FROM command_journal WHERE transaction_id=? "
            "ORDER BY created_at LIMIT 1",
            (transaction_id,),
        ).fetchone()
        return None if row is None else JournalEntry(*row)

    async def journal_by_order(self, account: str, order_ref: str) -> JournalEntry | None:
        row = self._db.execute(
            f"SELECT {_JOURNAL_COLUMNS} FROM command_journal WHERE account=? AND order_ref=?",
            (account, order_ref),
        ).fetchone()
        return None if row is None else JournalEntry(*row)

    async def journal_open(self) -> list[JournalEntry]:
        """Commands accepted or pending: to finish or follow up after a restart."""
        rows = self._db.execute(
            f"SELECT {_JOURNAL_COLUMNS} FROM command_journal "
            "WHERE status IN ('accepted', 'pending') ORDER BY created_at"
        ).fetchall()
        return [JournalEntry(*row) for row in rows]

    async def journal_accept(self, entry: JournalEntry) -> None:
        """Record a command before it reaches the provider (`DuplicateEntryError`
        if its key or order_ref is known)."""
        try:
            with self._transaction():
                self._db.execute(
                    f"INSERT INTO command_journal({_JOURNAL_COLUMNS}) "
                    "VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
                    tuple(entry),
                )
        except StoreError as err:
            if isinstance(err.__cause__, sqlite3.IntegrityError):
                raise DuplicateEntryError(entry.key) from None
            raise

    async def journal_update(
        self, key: str, status: str, *, handle: str | None = None, response: str | None = None
    ) -> None:
        with self._transaction():
            self._db.execute(
                "UPDATE command_journal SET status=?, handle=COALESCE(?, handle), "
                "response=COALESCE(?, response), updated_at=? WHERE key=?",
                (status, handle, response, utc_now().timestamp(), key),
            )

    async def journal_answered(self, key: str) -> None:
        """The command's answer reached the broker: never send it again."""
        with self._transaction():
            self._db.execute(
                "UPDATE command_journal SET answered_at=? WHERE key=? AND answered_at IS NULL",
                (utc_now().timestamp(), key),
            )

    async def journal_unanswered(self) -> list[JournalEntry]:
        """Commands with an answer that never reached the broker (a crash or a
        broker outage in between): to send after a restart."""
        rows = self._db.execute(
            f"SELECT {_JOURNAL_COLUMNS} FROM command_journal "
            "WHERE response IS NOT NULL AND answered_at IS NULL ORDER BY created_at"
        ).fetchall()
        return [JournalEntry(*row) for row in rows]

    # --- alerts seen (each published once) ----------------------------------
    async def claim_alerts(self, account: str, claims: Iterable[AlertClaim]) -> set[str]:
        """Record alerts with what to publish; returns the ids not seen before.

        Polls, restarts and webhooks all pass through here, so an alert
        delivered twice is claimed once. A claimed alert stays undelivered
        (`alerts_undelivered`) until `alerts_delivered` says the broker took it:
        claim and delivery are one outcome, whatever happens in between."""
        now = utc_now().timestamp()
        fresh: set[str] = set()
        rows = {claim.alert_id: claim for claim in claims}
        if not rows:
            return fresh
        with self._transaction():
            for claim in rows.values():
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO alert_seen(account, alert_id, seen_at, topic, payload,"
                    " alert_time) VALUES(?,?,?,?,?,?)",
                    (account, claim.alert_id, now, claim.topic, claim.payload, claim.time),
                )
                if cursor.rowcount:
                    fresh.add(claim.alert_id)
        return fresh

    async def alerts_undelivered(self, account: str) -> list[AlertClaim]:
        """Claimed alerts the broker has not taken yet, oldest first."""
        rows = self._db.execute(
            "SELECT alert_id, topic, payload, alert_time FROM alert_seen WHERE account=? "
            "AND delivered_at IS NULL AND payload IS NOT NULL ORDER BY alert_time, seen_at",
            (account,),
        ).fetchall()
        return [AlertClaim(*row) for row in rows]

    async def alerts_delivered(self, account: str, alert_ids: Iterable[str]) -> None:
        """The broker took these alerts: never publish them again. The payload
        is dropped, only the id is kept (to recognise a repeat)."""
        now = utc_now().timestamp()
        with self._transaction():
            self._db.executemany(
                "UPDATE alert_seen SET delivered_at=?, payload=NULL "
                "WHERE account=? AND alert_id=? AND delivered_at IS NULL",
                [(now, account, alert_id) for alert_id in alert_ids],
            )

    async def prune_alerts(self, older_than: datetime) -> int:
        with self._transaction():
            cursor = self._db.execute(
                "DELETE FROM alert_seen WHERE seen_at < ?", (older_than.timestamp(),)
            )
        return cursor.rowcount


def _time(at: float) -> datetime:
    return datetime.fromtimestamp(at, UTC)
