"""What the bridge keeps across restarts, as interfaces any backend can implement.

The poller, the commander, the app and the web server use only these protocols;
`bridge.store.sqlite` is the embedded implementation (one file, the default). A
backend shared by several processes implements the same methods with the same
guarantees:

- `QuotaLedger` (bridge.quota): calls and holds by scope key; `check_and_record`
  checks a call against the budgets of its scopes and records it in one atomic
  step, before the request leaves.
- `StateStore`: an account's checkpoint (feed cursors) and last vehicle states,
  written together in one transaction after they were published.
- `CommandJournal`: every command before it reaches a provider, keyed by
  transaction id (and order_ref), with its answer and whether the broker took it.
- `AlertLedger`: each alert claimed once with what to publish, until delivered.
- `LeaseStore` (shared backends only): the instances alive and which of them
  holds each unit of accounts, with fencing: a call or a poll's outcome of an
  account whose lease this instance lost is refused by the store itself.

Every method is a coroutine: a server database is reached over the network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import NamedTuple, Protocol, runtime_checkable

from bridge.model import VehicleState
from bridge.quota import QuotaLedger


class StoreError(Exception):
    """The store cannot be opened or written (read-only, full disk, newer schema,
    server unreachable): without it the bridge could break a quota or a
    command's exactly-once, so it stops safely."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached right now (a database server restarting, the
    network to it cut). Nothing was recorded, so no call may be made; unlike
    other store errors it is no reason to stop: the caller waits and tries again,
    and the store reconnects by itself."""


class LeaseLostError(Exception):
    """This instance does not hold the lease on the account any more (another
    instance took it over): the call was not recorded and must not be made, the
    poll's outcome was not saved."""


class DuplicateEntryError(Exception):
    """A journal entry with this key or order_ref exists already (a twin won)."""


class JournalEntry(NamedTuple):
    key: str
    command: str
    account: str
    vehicle: str | None
    order_ref: str | None
    transaction_id: str | None
    body: str
    status: str  # accepted -> pending -> confirmed | failed
    handle: str | None
    response: str | None
    created_at: float
    updated_at: float


class AlertClaim(NamedTuple):
    """An alert to publish once: claimed in the store with what to publish, and
    kept until the broker has taken it."""

    alert_id: str
    topic: str
    payload: str  # the alert's JSON, as first seen
    time: float  # when it happened (unix seconds)


class StateStore(Protocol):
    async def load_checkpoint(self, account: str) -> dict[str, str]: ...

    async def load_states(self, account: str) -> list[VehicleState]:
        """The account's last states; a row that cannot be read is left out."""
        ...

    async def save_poll(
        self,
        account: str,
        checkpoint: Mapping[str, str],
        changed: Iterable[VehicleState],
        removed: Iterable[str] = (),
    ) -> None:
        """Persist one poll's outcome atomically (checkpoint replaced whole)."""
        ...


class CommandJournal(Protocol):
    async def journal_get(self, key: str) -> JournalEntry | None: ...

    async def journal_by_transaction(self, transaction_id: str) -> JournalEntry | None:
        """The command first sent under a transaction id, in any account."""
        ...

    async def journal_by_order(self, account: str, order_ref: str) -> JournalEntry | None: ...

    async def journal_open(self) -> list[JournalEntry]:
        """Commands accepted or pending, oldest first."""
        ...

    async def journal_accept(self, entry: JournalEntry) -> None:
        """Record a command before it reaches the provider; `DuplicateEntryError`
        if its key or (account, order_ref) is known."""
        ...

    async def journal_update(
        self, key: str, status: str, *, handle: str | None = None, response: str | None = None
    ) -> None: ...

    async def journal_answered(self, key: str) -> None:
        """The command's answer reached the broker: never send it again."""
        ...

    async def journal_unanswered(self) -> list[JournalEntry]:
        """Commands with an answer that never reached the broker, oldest first."""
        ...


class AlertLedger(Protocol):
    async def claim_alerts(self, account: str, claims: Iterable[AlertClaim]) -> set[str]:
        """Record alerts with what to publish; returns the ids not seen before."""
        ...

    async def alerts_undelivered(self, account: str) -> list[AlertClaim]: ...

    async def alerts_delivered(self, account: str, alert_ids: Iterable[str]) -> None: ...

    async def prune_alerts(self, older_than: datetime) -> int: ...


class InstanceRecord(NamedTuple):
    """One `fleet-bridge run` process sharing the store."""

    instance: str  # unique per process start (host, pid and a random part)
    host: str
    pid: int
    started_at: float  # unix seconds
    seen_at: float  # its last heartbeat, by the store's clock


class Lease(NamedTuple):
    """Who holds a unit (a group of accounts that share a budget scope)."""

    unit: str
    owner: str
    epoch: int  # grows by one each time the unit changes hands: the fencing token
    expires_at: float  # by the store's clock


@runtime_checkable
class LeaseStore(Protocol):
    """Instances and leases in a store shared by several processes. Every time is
    the store's own clock, so instances on machines whose clocks differ agree."""

    async def beat(
        self, instance: str, host: str, pid: int, started_at: float, ttl: float
    ) -> list[InstanceRecord]:
        """Say this instance is alive (seen now); returns every instance seen
        within `ttl` seconds, this one included, ordered by id. Instances unseen
        for much longer are forgotten."""
        ...

    async def leave(self, instance: str) -> None:
        """A clean stop: forget the instance and free its leases at once."""
        ...

    async def take(self, unit: str, instance: str, ttl: float) -> int | None:
        """Hold `unit` for `ttl` seconds if it is free, expired or already ours;
        returns the lease's epoch (a new one when it changed hands), else None."""
        ...

    async def renew(self, instance: str, leases: Mapping[str, int], ttl: float) -> set[str]:
        """Extend the leases (unit -> epoch) that are still ours; returns those."""
        ...

    async def give_up(self, instance: str, unit: str, epoch: int) -> None:
        """Free a lease we hold (for an instance that should have it)."""
        ...

    async def leases(self) -> list[Lease]: ...

    def fence(self, account: str, instance: str, lease: tuple[str, int] | None) -> None:
        """From now on, `check_and_record` for a call of `account` and `save_poll`
        of `account` succeed only while `instance` holds lease (unit, epoch),
        checked by the store's clock in the same transaction; otherwise they raise
        `LeaseLostError` and record nothing. None: the account is not ours, every
        such write is refused."""
        ...

    def journal_changed(self) -> asyncio.Event:
        """Set whenever any instance journals a command (LISTEN/NOTIFY); the
        reader clears it before looking at the journal."""
        ...


#: What `fleet-bridge migrate-store` copies from one backend to another: each
#: table with its columns, in the order `export_rows` gives and `import_rows`
#: takes them (times as in SQLite: unix seconds, `updated_at` ISO 8601 text).
TABLES: dict[str, tuple[str, ...]] = {
    "checkpoint": ("account", "key", "value", "updated_at"),
    "vehicle_state": ("account", "vehicle_id", "state", "updated_at"),
    "quota_ledger": ("scope", "account", "endpoint", "at"),
    "quota_scope_hold": ("scope", "until", "reason"),
    "command_journal": (
        "key",
        "command",
        "account",
        "vehicle",
        "order_ref",
        "transaction_id",
        "body",
        "status",
        "handle",
        "response",
        "created_at",
        "updated_at",
        "answered_at",
    ),
    "alert_seen": (
        "account",
        "alert_id",
        "seen_at",
        "topic",
        "payload",
        "alert_time",
        "delivered_at",
    ),
}

#: A whole store's rows by table (see `TABLES`).
StoreRows = dict[str, list[tuple[object, ...]]]


class BridgeStore(QuotaLedger, StateStore, CommandJournal, AlertLedger, Protocol):
    """Everything the daemon keeps: what `open_store` returns."""

    async def integrity(self) -> str:
        """The backend's own consistency check: "ok", or what is wrong."""
        ...

    async def close(self) -> None: ...
