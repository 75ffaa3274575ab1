"""The bridge's persistence: the interfaces (`base`), the embedded SQLite store
and the PostgreSQL store several instances share (`bridge.store.postgres`).

Everything outside this package depends on `BridgeStore` and its parts, never on
SQLite or PostgreSQL: `open_store` chooses the backend from the config. psycopg
is imported only when a PostgreSQL store is opened (it is the `postgres` extra).
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from bridge.store.base import (
    TABLES,
    AlertClaim,
    AlertLedger,
    BridgeStore,
    CommandJournal,
    DuplicateEntryError,
    InstanceRecord,
    JournalEntry,
    Lease,
    LeaseLostError,
    LeaseStore,
    StateStore,
    StoreError,
    StoreRows,
    StoreUnavailableError,
)
from bridge.store.sqlite import SCHEMA_VERSION, SqliteStore

if TYPE_CHECKING:
    from bridge.config import StoreConfig

#: The embedded store under its old name (tests and benchmarks open files by it).
Store = SqliteStore

__all__ = [
    "SCHEMA_VERSION",
    "TABLES",
    "AlertClaim",
    "AlertLedger",
    "BridgeStore",
    "CommandJournal",
    "DuplicateEntryError",
    "InstanceRecord",
    "JournalEntry",
    "Lease",
    "LeaseLostError",
    "LeaseStore",
    "SqliteStore",
    "StateStore",
    "Store",
    "StoreError",
    "StoreRows",
    "StoreUnavailableError",
    "open_store",
]


POSTGRES_MISSING = (
    "store.url names a PostgreSQL store, but psycopg is not installed: "
    "pip install 'fleet-telematics-bridge[postgres]'"
)


async def open_store(config: StoreConfig) -> BridgeStore:
    """The store the config names: the PostgreSQL database at `store.url` when it
    is set (a `LeaseStore` too), else the SQLite file at `store.path`."""
    if config.url is None:
        return SqliteStore(config.path)
    if importlib.util.find_spec("psycopg") is None:
        raise StoreError(POSTGRES_MISSING)
    from bridge.store.postgres import PostgresStore

    return await PostgresStore.open(config.url)
