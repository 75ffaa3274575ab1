"""The bridge's persistence: the interfaces (`base`) and the embedded SQLite store.

Everything outside this package depends on `BridgeStore` and its parts, never on
SQLite: `open_store` chooses the backend from the config.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.store.base import (
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
    StoreUnavailableError,
)
from bridge.store.sqlite import SCHEMA_VERSION, SqliteStore

if TYPE_CHECKING:
    from bridge.config import StoreConfig

#: The embedded store under its old name (tests and benchmarks open files by it).
Store = SqliteStore

__all__ = [
    "SCHEMA_VERSION",
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
    "StoreUnavailableError",
    "open_store",
]


async def open_store(config: StoreConfig) -> BridgeStore:
    """The store the config names (today: the SQLite file at `store.path`)."""
    return SqliteStore(config.path)
