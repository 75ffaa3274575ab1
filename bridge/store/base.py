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

Every method is a coroutine: a server database is reached over the network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import NamedTuple, Protocol

from bridge.model import VehicleState
from bridge.quota import QuotaLedger


class StoreError(Exception):
    """The store cannot be opened or written (read-only, full disk, newer schema,
    server unreachable): without it the bridge could break a quota or a
    command's exactly-once, so it stops safely."""


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


class BridgeStore(QuotaLedger, StateStore, CommandJournal, AlertLedger, Protocol):
    """Everything the daemon keeps: what `open_store` returns."""

    async def integrity(self) -> str:
        """The backend's own consistency check: "ok", or what is wrong."""
        ...

    async def close(self) -> None: ...
