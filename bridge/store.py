"""SQLite persistence for the daemon: feed cursors and last vehicle states.

A poll's cursors and the vehicle states they led to are written in one
transaction, after the states were handed to MQTT. A crash before the commit
replays the same changes from the older cursor (retained state makes that
harmless); a crash after it loses nothing. Later issues add the quota ledger and
the command journal here.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from bridge.model import VehicleState, utc_now

SCHEMA_VERSION = 1

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
CREATE TABLE IF NOT EXISTS vehicle_state (
    account TEXT NOT NULL,
    vehicle_id TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (account, vehicle_id)
);
"""


class StoreError(Exception):
    """The store cannot be opened or written (read-only, full disk, newer schema)."""


class Store:
    """One SQLite file, opened once per process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE).
            self._db = sqlite3.connect(str(path), isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._check_version()
        except (sqlite3.Error, OSError) as err:
            raise StoreError(f"cannot open the store at {self.path}: {err}") from err

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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    # --- reads ---------------------------------------------------------------
    def load_checkpoint(self, account: str) -> dict[str, str]:
        rows = self._db.execute(
            "SELECT key, value FROM checkpoint WHERE account=?", (account,)
        ).fetchall()
        return dict(rows)

    def load_states(self, account: str) -> list[VehicleState]:
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

    def accounts(self) -> set[str]:
        rows = self._db.execute(
            "SELECT account FROM vehicle_state UNION SELECT account FROM checkpoint"
        ).fetchall()
        return {row[0] for row in rows}

    # --- writes --------------------------------------------------------------
    def save_poll(
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
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as err:
            raise StoreError(f"cannot write the store at {self.path}: {err}") from err

    def forget_account(self, account: str) -> None:
        """Drop everything of an account that is no longer configured."""
        with self._transaction():
            self._db.execute("DELETE FROM checkpoint WHERE account=?", (account,))
            self._db.execute("DELETE FROM vehicle_state WHERE account=?", (account,))
